"""Gateway: the ports, hosts and TLS settings an ingress or egress gateway Envoy listens with.

Pilot builds the gateway's listeners from these servers; VirtualServices bound to the gateway
supply the routes. The server-side TLS settings are shared with Sidecar ingress listeners.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field

from meshconfig.base import CheckedModel, Problem, UInt32
from meshconfig.networking.checks import (
    UNIX_PREFIX,
    is_http_protocol,
    is_ip,
    is_tls_protocol,
    namespaced_host_errors,
    protocol_error,
    unix_path_error,
)

TLSVersion = Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]


class Port(CheckedModel):
    """A gateway server's port: number, protocol and a name unique in the gateway."""

    number: UInt32
    protocol: str
    name: str
    target_port: UInt32 | None = None

    def problems(self) -> Iterator[Problem]:
        invalid = protocol_error(self.protocol)
        if invalid:
            yield ("protocol",), invalid
        if not self.name:
            yield ("name",), "a port name is required"
        if self.target_port:
            yield ("targetPort",), "targetPort has no effect on gateways"


class TLSCertificate(CheckedModel):
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None


class ServerTLSSettings(CheckedModel):
    """TLS that a gateway or sidecar listener terminates (or passes through)."""

    https_redirect: bool | None = None
    mode: (
        Literal[
            "PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"
        ]
        | None
    ) = None
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    ca_crl: str | None = None
    credential_name: str | None = None
    credential_names: Annotated[list[str], Field(min_length=1, max_length=2)] | None = None
    tls_certificates: Annotated[list[TLSCertificate], Field(min_length=1, max_length=2)] | None = (
        None
    )
    ca_cert_credential_name: str | None = None
    subject_alt_names: list[str] | None = None
    verify_certificate_spki: list[str] | None = None
    verify_certificate_hash: list[str] | None = None
    min_protocol_version: TLSVersion | None = None
    max_protocol_version: TLSVersion | None = None
    cipher_suites: list[str] | None = None
    ecdh_curves: list[str] | None = None
    insecure_skip_verify: bool | None = None

    @property
    def passthrough(self) -> bool:
        """PASSTHROUGH is the mode when none is given."""
        return self.mode in {None, "PASSTHROUGH", "AUTO_PASSTHROUGH"}

    @property
    def has_inline_certificates(self) -> bool:
        return bool(self.server_certificate or self.private_key or self.ca_certificates)

    def problems(self) -> Iterator[Problem]:
        yield from self.only_one_of("credential_name", "credential_names", "tls_certificates")
        if self.mode == "ISTIO_MUTUAL":
            for alias, value in (
                ("serverCertificate", self.server_certificate),
                ("privateKey", self.private_key),
                ("caCertificates", self.ca_certificates),
                ("credentialName", self.credential_name),
            ):
                if value:
                    yield (alias,), "cannot be set in ISTIO_MUTUAL mode (Istio provides it)"
            return
        remote = bool(self.credential_name or self.credential_names or self.tls_certificates)
        if self.mode in {"SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"} and not remote:
            if not self.server_certificate:
                yield ("serverCertificate",), f"is required in {self.mode} mode"
            if not self.private_key:
                yield ("privateKey",), f"is required in {self.mode} mode"
            if self.mode != "SIMPLE" and not self.ca_certificates:
                yield ("caCertificates",), f"is required in {self.mode} mode"
        if self.ca_crl:
            if self.credential_name:
                yield ("caCrl",), "cannot be used with credentialName; put the CRL in the secret"
            if self.mode == "SIMPLE":
                yield ("caCrl",), "is not supported in SIMPLE mode"


class Server(CheckedModel):
    """One listener of the gateway: a port, the hosts it serves, and its TLS."""

    port: Port
    bind: str | None = None
    hosts: list[str]
    tls: ServerTLSSettings | None = None
    default_endpoint: str | None = None
    name: str | None = None

    def problems(self) -> Iterator[Problem]:
        if not self.hosts:
            yield ("hosts",), "a server needs at least one host"
        for index, host in enumerate(self.hosts):
            for reason in namespaced_host_errors(host, gateway=True):
                yield ("hosts", index), reason
        bind = self.bind or ""
        if bind.startswith(UNIX_PREFIX):
            invalid = unix_path_error(bind.removeprefix(UNIX_PREFIX))
            if invalid:
                yield ("bind",), invalid
            if self.port.number != 0:
                yield ("port", "number"), "must be 0 when binding to a unix domain socket"
        else:
            if bind and not is_ip(bind):
                yield ("bind",), f"{bind!r} is not an IP address"
            if not 1 <= self.port.number <= 65535:
                yield ("port", "number"), f"port {self.port.number} is not in the range 1-65535"
        yield from self._tls_problems()

    def _tls_problems(self) -> Iterator[Problem]:
        protocol = self.port.protocol
        if protocol_error(protocol):
            return
        if is_tls_protocol(protocol):
            if self.tls is None:
                yield ("tls",), f"is required for {protocol} ports"
        elif self.tls is not None:
            if not is_http_protocol(protocol):
                yield ("tls",), f"cannot be set on a {protocol} port (only HTTPS and TLS)"
            elif not self.tls.passthrough or self.tls.has_inline_certificates:
                yield ("tls",), "a plain-text HTTP port only takes tls.httpsRedirect"


class Gateway(CheckedModel):
    """The spec of networking.istio.io Gateway."""

    servers: list[Server] | None = None
    selector: dict[str, str] | None = None

    def problems(self) -> Iterator[Problem]:
        if not self.servers:
            yield ("servers",), "a gateway needs at least one server"
        seen: set[str] = set()
        for index, server in enumerate(self.servers or []):
            if server.port.name in seen:
                yield (
                    ("servers", index, "port", "name"),
                    f"duplicate port name {server.port.name!r}; port names must be unique",
                )
            seen.add(server.port.name)
