"""Sidecar: narrows what a workload's proxy sees and listens on.

Pilot uses it to scope the services, routes and listeners generated for each proxy (the
"proxy view" that many proxies can share), so a broken Sidecar would change what whole
namespaces can reach; istiod rejects the shapes checked here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from meshconfig.base import CheckedModel, Problem, UInt32
from meshconfig.networking.checks import (
    UNIX_PREFIX,
    is_http_protocol,
    is_ip,
    namespaced_host_errors,
    unix_path_error,
)
from meshconfig.networking.common import Destination, WorkloadSelector, port_problems
from meshconfig.networking.destination_rule import ConnectionPoolSettings
from meshconfig.networking.gateway import ServerTLSSettings

CaptureMode = Literal["DEFAULT", "IPTABLES", "NONE"]
_LOCAL_HOSTS = frozenset({"", "127.0.0.1", "0.0.0.0", "::1", "::"})


class SidecarPort(CheckedModel):
    """A listener port; number 0 means a Unix domain socket (egress only)."""

    number: UInt32 | None = None
    protocol: str | None = None
    name: str | None = None
    target_port: UInt32 | None = None

    def problems(self) -> Iterator[Problem]:
        yield from port_problems(self.name or None, self.protocol)  # "" is no name here
        if self.target_port:
            yield ("targetPort",), "targetPort has no effect on sidecars"


def _bind_problems(bind: str | None) -> Iterator[Problem]:
    if bind and not is_ip(bind):
        yield ("bind",), f"{bind!r} is not an IP address"


def _default_endpoint_error(endpoint: str) -> str | None:
    """`127.0.0.1:<port>`, `0.0.0.0:<port>`, `[::1]:<port>`, `[::]:<port>` or `unix://<path>`."""
    if endpoint.startswith(UNIX_PREFIX):
        return unix_path_error(endpoint.removeprefix(UNIX_PREFIX))
    host, colon, port = endpoint.rpartition(":")
    if not colon:
        return f"{endpoint!r} is missing a port"
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host not in _LOCAL_HOSTS:
        return (
            "defaultEndpoint must be 127.0.0.1:<port>, 0.0.0.0:<port>, [::1]:<port>, "
            "[::]:<port> or unix://<path>"
        )
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"port {port!r} is not a number in the range 1-65535"
    return None


class IstioIngressListener(CheckedModel):
    port: SidecarPort
    bind: str | None = None
    capture_mode: CaptureMode | None = None
    default_endpoint: str | None = None
    tls: ServerTLSSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None

    def problems(self) -> Iterator[Problem]:
        number = self.port.number or 0
        if not 1 <= number <= 65535:
            yield ("port", "number"), f"port {number} is not in the range 1-65535"
        yield from _bind_problems(self.bind)
        if self.default_endpoint:
            invalid = _default_endpoint_error(self.default_endpoint)
            if invalid:
                yield ("defaultEndpoint",), invalid
        if self.tls is not None:
            yield from self._tls_problems(self.tls)
        pool = self.connection_pool
        if pool is not None and pool.http is not None and not is_http_protocol(self.port.protocol):
            yield ("connectionPool", "http"), "HTTP settings need an HTTP port protocol"

    @staticmethod
    def _tls_problems(tls: ServerTLSSettings) -> Iterator[Problem]:
        for alias, value in (
            ("subjectAltNames", tls.subject_alt_names),
            ("httpsRedirect", tls.https_redirect),
            ("credentialName", tls.credential_name),
        ):
            if value:
                yield ("tls", alias), "is not supported on sidecar ingress listeners"
        if tls.mode in {"ISTIO_MUTUAL", "AUTO_PASSTHROUGH"}:
            yield ("tls", "mode"), f"{tls.mode} is not allowed on sidecar ingress listeners"


class IstioEgressListener(CheckedModel):
    port: SidecarPort | None = None
    bind: str | None = None
    capture_mode: CaptureMode | None = None
    hosts: list[str]

    def problems(self) -> Iterator[Problem]:
        if not self.hosts:
            yield ("hosts",), "an egress listener needs at least one host"
        for index, host in enumerate(self.hosts):
            for reason in namespaced_host_errors(host, gateway=False):
                yield ("hosts", index), reason
        if self.port is None:
            return
        bind = self.bind or ""
        if not self.port.number:
            if not bind.startswith(UNIX_PREFIX):
                yield ("bind",), "port 0 needs a unix:// bind address"
            else:
                invalid = unix_path_error(bind.removeprefix(UNIX_PREFIX))
                if invalid:
                    yield ("bind",), invalid
            if self.capture_mode not in {None, "DEFAULT", "NONE"}:
                yield ("captureMode",), "must be DEFAULT or NONE for unix domain sockets"
        else:
            if self.port.number > 65535:
                yield ("port", "number"), f"port {self.port.number} is not in the range 1-65535"
            yield from _bind_problems(self.bind)


class OutboundTrafficPolicy(CheckedModel):
    mode: Literal["REGISTRY_ONLY", "ALLOW_ANY"] | None = None
    egress_proxy: Destination | None = None

    def problems(self) -> Iterator[Problem]:
        if self.egress_proxy is None:
            return
        if self.mode != "ALLOW_ANY":
            yield ("egressProxy",), "can only be set with mode ALLOW_ANY"
        elif self.egress_proxy.port is None:
            yield ("egressProxy", "port"), "is required"


class Sidecar(CheckedModel):
    """The spec of networking.istio.io Sidecar."""

    workload_selector: WorkloadSelector | None = None
    ingress: list[IstioIngressListener] | None = None
    egress: list[IstioEgressListener] | None = None
    inbound_connection_pool: ConnectionPoolSettings | None = None
    outbound_traffic_policy: OutboundTrafficPolicy | None = None

    def problems(self) -> Iterator[Problem]:
        parts = (self.ingress, self.egress, self.inbound_connection_pool)
        if not any(parts) and self.outbound_traffic_policy is None:
            yield (
                (),
                "a Sidecar needs ingress, egress, inboundConnectionPool or outboundTrafficPolicy",
            )
        ports: set[int] = set()
        for index, listener in enumerate(self.ingress or []):
            number = listener.port.number or 0
            if number in ports:
                yield ("ingress", index, "port", "number"), f"port {number} is used twice"
            ports.add(number)
        yield from self._egress_problems()

    def _egress_problems(self) -> Iterator[Problem]:
        listeners = self.egress or []
        ports: set[int] = set()
        sockets: set[str] = set()
        for index, listener in enumerate(listeners):
            if listener.port is None:
                if index != len(listeners) - 1:
                    yield ("egress", index, "port"), "only the last egress listener may omit port"
            elif listener.port.number:
                if listener.port.number in ports:
                    yield (
                        ("egress", index, "port", "number"),
                        f"port {listener.port.number} is used twice",
                    )
                ports.add(listener.port.number)
            else:
                if (listener.bind or "") in sockets:
                    yield ("egress", index, "bind"), "unix domain socket binds must be unique"
                sockets.add(listener.bind or "")
