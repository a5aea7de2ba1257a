"""Read a directory of Istio YAML into a registry snapshot (the local mesh's service registry).

Only the reading lives here: which files, which documents, which kinds. The directory may hold
any other resources (VirtualServices, Deployments, ...): documents of kinds the registry does
not know are skipped. Callers re-run `load_directory` when the directory changes; a later
config source (Galley) replaces this module and keeps `convert` and `snapshot`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

import yaml

from pilot.registry.errors import ConfigError, Source
from pilot.registry.fields import Fields
from pilot.registry.snapshot import KINDS, RegistrySnapshot, SnapshotBuilder

GROUP: Final = "networking.istio.io"
VERSIONS: Final = ("v1", "v1beta1", "v1alpha3")
SUFFIXES: Final = frozenset({".yaml", ".yml"})
DEFAULT_NAMESPACE: Final = "default"

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_directory(directory: str | Path) -> RegistrySnapshot:
    """Every ServiceEntry and WorkloadEntry in the directory's *.yaml / *.yml files.

    Files are read in name order (hidden files and subdirectories are skipped, which also
    skips the `..data` links of a mounted ConfigMap). Raises `ConfigError` on the first
    invalid resource.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ConfigError(Source(str(root)), "", "is not a directory")
    builder = SnapshotBuilder()
    files = sorted(p for p in root.iterdir() if p.suffix in SUFFIXES and not p.name.startswith("."))
    for file in files:
        if file.is_file():
            for source, spec in _resources(file):
                builder.add(source, spec)
    return builder.build()


def _resources(file: Path) -> Iterator[tuple[Source, object]]:
    """(source, spec) of each registry resource in one file."""
    try:
        documents = list(yaml.load_all(file.read_text(encoding="utf-8"), Loader=_Loader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(Source(str(file)), "", f"cannot read YAML: {exc}") from exc
    for index, document in enumerate(documents, start=1):
        if document is None:
            continue
        if not isinstance(document, Mapping):
            raise ConfigError(Source(str(file)), f"document {index}", "must be a mapping")
        kind = document.get("kind")
        group, _, version = str(document.get("apiVersion", "")).rpartition("/")
        if kind not in KINDS or group != GROUP:
            continue
        source = _source(file, str(kind), document.get("metadata"), index)
        if version not in VERSIONS:
            raise ConfigError(source, "apiVersion", f"version {version!r} is not one of {VERSIONS}")
        yield source, document.get("spec")


def _source(file: Path, kind: str, metadata: object, index: int) -> Source:
    fields = Fields(Source(str(file), kind, "?", f"? (document {index})"))
    meta = fields.mapping(metadata, "metadata")
    name = fields.optional_string(meta, "name", "metadata")
    if not name:
        raise fields.error("metadata.name", "is required")
    namespace = fields.optional_string(meta, "namespace", "metadata") or DEFAULT_NAMESPACE
    return Source(str(file), kind, namespace, name)
