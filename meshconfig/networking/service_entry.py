"""ServiceEntry: services that are not in the platform registry (external APIs, VMs, local ones).

With WorkloadEntry it is the service registry of the local mesh: pilot reads hosts, ports and
resolution from here and endpoints from `endpoints` or from WorkloadEntries the
`workloadSelector` picks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field

from meshconfig.base import CheckedModel, Problem, UInt32
from meshconfig.networking.checks import (
    export_to_problems,
    fqdn_error,
    ip_or_cidr_error,
    is_http_protocol,
    is_ip,
    is_tls_protocol,
    wildcard_domain_error,
)
from meshconfig.networking.common import WorkloadSelector, port_problems
from meshconfig.networking.workload_entry import WorkloadEntry

Resolution = Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"]


class ServicePort(CheckedModel):
    number: UInt32
    protocol: Annotated[str, Field(max_length=256)] | None = None
    name: Annotated[str, Field(max_length=256)]
    target_port: UInt32 | None = None

    def problems(self) -> Iterator[Problem]:
        for alias, number in (("number", self.number), ("targetPort", self.target_port)):
            if number is not None and not 1 <= number <= 65535:
                yield (alias,), f"port {number} is not in the range 1-65535"
        yield from port_problems(self.name, self.protocol)


class ServiceEntry(CheckedModel):
    """The spec of networking.istio.io ServiceEntry."""

    hosts: Annotated[list[str], Field(min_length=1, max_length=256)]
    addresses: (
        Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=256)] | None
    ) = None
    ports: Annotated[list[ServicePort], Field(max_length=256)] | None = None
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"] | None = None
    resolution: Resolution | None = None
    endpoints: Annotated[list[WorkloadEntry], Field(max_length=4096)] | None = None
    workload_selector: WorkloadSelector | None = None
    export_to: list[str] | None = None
    subject_alt_names: list[str] | None = None

    def problems(self) -> Iterator[Problem]:
        resolution = self.resolution or "NONE"
        yield from self._host_problems(resolution)
        for index, address in enumerate(self.addresses or []):
            invalid = ip_or_cidr_error(address)
            if invalid:
                yield ("addresses", index), invalid
            elif "/" in address and resolution not in {"NONE", "STATIC"}:
                yield ("addresses", index), "CIDR addresses need resolution NONE or STATIC"
        yield from self._port_problems(resolution)
        yield from self._endpoint_problems(resolution)
        yield from export_to_problems(self.export_to or [], allow_nobody=True)

    def _host_problems(self, resolution: str) -> Iterator[Problem]:
        dns_without_endpoints = resolution in {"DNS", "DNS_ROUND_ROBIN"} and not self.endpoints
        for index, host in enumerate(self.hosts):
            if host == "*":
                yield ("hosts", index), "a ServiceEntry host cannot be '*'"
                continue
            invalid = wildcard_domain_error(host)
            if invalid:
                yield ("hosts", index), invalid
            elif dns_without_endpoints and fqdn_error(host):
                yield ("hosts", index), f"must not be a wildcard for {resolution} without endpoints"

    def _port_problems(self, resolution: str) -> Iterator[Problem]:
        numbers: set[int] = set()
        names: set[str] = set()
        for index, port in enumerate(self.ports or []):
            if port.number in numbers:
                yield ("ports", index, "number"), f"port {port.number} is defined twice"
            if port.name in names:
                yield ("ports", index, "name"), f"port name {port.name!r} is defined twice"
            numbers.add(port.number)
            names.add(port.name)
            # Plain TCP has nothing (no Host header, no SNI) to tell several hosts apart.
            several_hosts = len(self.hosts) > 1 and resolution != "NONE"
            protocol = port.protocol or ""
            if several_hosts and not (is_http_protocol(protocol) or is_tls_protocol(protocol)):
                yield (
                    ("ports", index, "protocol"),
                    "several hosts need HTTP or TLS ports (or resolution NONE)",
                )

    def _endpoint_problems(self, resolution: str) -> Iterator[Problem]:
        if self.endpoints is None:
            return
        if self.workload_selector is not None:
            yield ("endpoints",), "cannot be used together with workloadSelector"
        if resolution == "NONE" and self.endpoints:
            yield ("endpoints",), "must be empty when resolution is NONE"
        if resolution == "DNS_ROUND_ROBIN" and len(self.endpoints) > 1:
            yield ("endpoints",), "DNS_ROUND_ROBIN allows at most one endpoint"
        port_names = {port.name for port in self.ports or []}
        for index, endpoint in enumerate(self.endpoints):
            address = endpoint.address or ""
            if resolution == "STATIC" and address and not endpoint.is_unix and not is_ip(address):
                yield ("endpoints", index, "address"), f"{address!r} is not an IP address"
            if resolution == "STATIC" and endpoint.is_unix and len(port_names) != 1:
                yield (
                    ("endpoints", index, "address"),
                    "a unix domain socket endpoint needs exactly one service port",
                )
            for name in endpoint.ports or {}:
                if name not in port_names:
                    yield ("endpoints", index, "ports", name), f"no service port named {name!r}"
