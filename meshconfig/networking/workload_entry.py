"""WorkloadEntry and WorkloadGroup: workloads that are not Kubernetes pods (VMs, local processes).

In the local mesh every workload is one of these, so pilot's service registry reads them
together with ServiceEntry. A WorkloadEntry is also the shape of a ServiceEntry endpoint and of
a WorkloadGroup's template, which is why the address and port rules live on shared classes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from pydantic import Field

from meshconfig.base import CheckedModel, Count, NonEmpty, Problem, UInt32
from meshconfig.networking.checks import (
    UNIX_PREFIX,
    fqdn_error,
    is_ip,
    label_errors,
    port_name_error,
    unix_path_error,
)


class WorkloadTemplate(CheckedModel):
    """A workload's address, ports and identity, as a WorkloadGroup templates it.

    Unlike a WorkloadEntry, the address may be missing: it is filled in when the workload
    registers itself.
    """

    address: Annotated[str, Field(max_length=256)] | None = None
    ports: Annotated[dict[str, UInt32], Field(max_length=128)] | None = None
    labels: Annotated[dict[str, str], Field(max_length=256)] | None = None
    network: Annotated[str, Field(max_length=2048)] | None = None
    locality: Annotated[str, Field(max_length=2048)] | None = None
    weight: UInt32 | None = None
    service_account: Annotated[str, Field(max_length=253)] | None = None

    @property
    def is_unix(self) -> bool:
        return (self.address or "").startswith(UNIX_PREFIX)

    def problems(self) -> Iterator[Problem]:
        if self.is_unix:
            invalid = unix_path_error((self.address or "").removeprefix(UNIX_PREFIX))
            if invalid:
                yield ("address",), invalid
            if self.ports:
                yield ("ports",), "a unix domain socket address cannot have ports"
        for name, number in (self.ports or {}).items():
            invalid = port_name_error(name)
            if invalid:
                yield ("ports", name), invalid
            if not 1 <= number <= 65535:
                yield ("ports", name), f"port {number} is not in the range 1-65535"
        for key, reason in label_errors(self.labels or {}):
            yield ("labels", key), reason


class WorkloadEntry(WorkloadTemplate):
    """The spec of networking.istio.io WorkloadEntry (and a ServiceEntry endpoint)."""

    def problems(self) -> Iterator[Problem]:
        yield from super().problems()
        if not self.address and not self.network:
            yield ("address",), "is required (unless network is set)"
        elif (
            self.address and not (self.is_unix or is_ip(self.address)) and fqdn_error(self.address)
        ):
            yield ("address",), f"{self.address!r} is neither an IP address nor a DNS name"


class ObjectMeta(CheckedModel):
    labels: Annotated[dict[str, str], Field(max_length=256)] | None = None
    annotations: Annotated[dict[str, str], Field(max_length=256)] | None = None

    def problems(self) -> Iterator[Problem]:
        for key, reason in label_errors(self.labels or {}):
            yield ("labels", key), reason


class HTTPHeader(CheckedModel):
    name: Annotated[str, Field(pattern=r"^[-_A-Za-z0-9]+$")] | None = None
    value: str | None = None

    def problems(self) -> Iterator[Problem]:
        if not self.name:
            yield ("name",), "a header name is required"


def _port_problems(port: int) -> Iterator[Problem]:
    if not 1 <= port <= 65535:
        yield ("port",), f"port {port} is not in the range 1-65535"


class HTTPHealthCheckConfig(CheckedModel):
    path: str | None = None
    port: UInt32
    host: str | None = None
    scheme: str | None = None
    http_headers: list[HTTPHeader] | None = None

    def problems(self) -> Iterator[Problem]:
        yield from _port_problems(self.port)
        if self.scheme not in {None, "", "HTTP", "HTTPS"}:
            yield ("scheme",), "scheme must be HTTP or HTTPS"


class TCPHealthCheckConfig(CheckedModel):
    host: str | None = None
    port: UInt32

    def problems(self) -> Iterator[Problem]:
        yield from _port_problems(self.port)


class ExecHealthCheckConfig(CheckedModel):
    command: list[NonEmpty]

    def problems(self) -> Iterator[Problem]:
        if not self.command:
            yield ("command",), "a command is required"


class GrpcHealthCheckConfig(CheckedModel):
    port: UInt32 | None = None
    service: str | None = None

    def problems(self) -> Iterator[Problem]:
        if self.port is not None:
            yield from _port_problems(self.port)


class ReadinessProbe(CheckedModel):
    """How the agent decides the workload is ready: exactly one check method."""

    initial_delay_seconds: Count | None = None
    timeout_seconds: Count | None = None
    period_seconds: Count | None = None
    success_threshold: Count | None = None
    failure_threshold: Count | None = None
    http_get: HTTPHealthCheckConfig | None = None
    tcp_socket: TCPHealthCheckConfig | None = None
    exec: ExecHealthCheckConfig | None = None
    grpc: GrpcHealthCheckConfig | None = None

    def problems(self) -> Iterator[Problem]:
        methods = ("http_get", "tcp_socket", "exec", "grpc")
        if not self.set_fields(*methods):
            yield (), "one of httpGet, tcpSocket, exec or grpc is required"
        yield from self.only_one_of(*methods)


class WorkloadGroup(CheckedModel):
    """The spec of networking.istio.io WorkloadGroup."""

    metadata: ObjectMeta | None = None
    template: WorkloadTemplate
    probe: ReadinessProbe | None = None
