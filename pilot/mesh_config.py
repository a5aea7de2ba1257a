"""The mesh-wide settings pilot reads from Istio's MeshConfig (the `mesh` key of the `istio`
ConfigMap): for now, whether and where sidecars call Mixer.

Istio 1.4's fields, with its defaults: `disablePolicyChecks` (true: no Check calls),
`policyCheckFailOpen` (false: a request is refused when Mixer cannot answer),
`mixerCheckServer` and `mixerReportServer` (`host:port`; empty: no Check / no Report),
`disableMixerHttpReports`. One field of ours: `policyCheckTimeout` (Envoy's ext_authz timeout,
Istio's sidecar had a fixed one). A file with an unknown field or a wrongly typed one is
refused with a message naming it, as galley refuses bad config.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

import yaml

DEFAULT_CHECK_TIMEOUT: Final = 0.5


class MeshConfigError(ValueError):
    """The mesh config file is unreadable or has a field pilot does not know or cannot use."""


@dataclass(frozen=True, slots=True)
class MeshConfig:
    disable_policy_checks: bool = True
    policy_check_fail_open: bool = False
    mixer_check_server: str = ""
    mixer_report_server: str = ""
    disable_mixer_http_reports: bool = False
    policy_check_timeout: float = DEFAULT_CHECK_TIMEOUT  # seconds

    @property
    def policy_checks(self) -> bool:
        return not self.disable_policy_checks and bool(self.mixer_check_server)

    @property
    def telemetry_reports(self) -> bool:
        return not self.disable_mixer_http_reports and bool(self.mixer_report_server)

    @classmethod
    def from_mapping(cls, raw: Any, source: str = "mesh config") -> MeshConfig:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise MeshConfigError(f"{source}: expected a mapping of MeshConfig fields")
        known = {_camel(f.name): f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            field = known.get(key)
            if field is None:
                raise MeshConfigError(f"{source}: unknown field {key!r}")
            default = getattr(cls(), field.name)
            if isinstance(default, bool) and not isinstance(value, bool):
                raise MeshConfigError(f"{source}: {key} must be true or false")
            if isinstance(default, str) and not isinstance(value, str):
                raise MeshConfigError(f"{source}: {key} must be a string (host:port)")
            if isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                    raise MeshConfigError(f"{source}: {key} must be a positive number of seconds")
                value = float(value)
            values[field.name] = value
        for key in ("mixerCheckServer", "mixerReportServer"):
            server = raw.get(key, "")
            if server and not _host_port(server):
                raise MeshConfigError(f"{source}: {key} {server!r} is not host:port")
        return cls(**values)

    @classmethod
    def load(cls, path: Path) -> MeshConfig:
        """A MeshConfig file: its fields at the top level, or under `mesh` as in the ConfigMap."""
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise MeshConfigError(f"{path}: {error}") from error
        if isinstance(raw, dict) and set(raw) == {"mesh"}:
            raw = raw["mesh"]
            if isinstance(raw, str):  # the ConfigMap's `mesh: |` holds YAML text
                raw = yaml.safe_load(raw)
        return cls.from_mapping(raw, str(path))


DEFAULT_MESH: Final = MeshConfig()
"""Istio's defaults: no policy checks, no telemetry reports."""


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def _host_port(server: str) -> bool:
    host, sep, port = server.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def split_host_port(server: str) -> tuple[str, int]:
    host, _, port = server.rpartition(":")
    return host.strip("[]"), int(port)
