"""The ports a proxy receives traffic on for its own workload, shared by inbound CDS and LDS.

A workload can back several services; each service port becomes an inbound port named by the
port the workload listens on. Inbound clusters and inbound listeners must agree on that set,
so both derive it here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pilot.model import NodeType, Protocol, Proxy
from pilot.push_context import PushContext

RESERVED_PORTS: Final = frozenset({15000, 15001, 15006, 15008, 15020, 15021, 15090})
"""Ports the sidecar itself uses; a workload port among them gets no inbound config."""


@dataclass(frozen=True, slots=True)
class InboundPort:
    port: int  # where the workload listens, and where the proxy receives for it
    protocol: Protocol


def inbound_ports(ctx: PushContext, proxy: Proxy) -> tuple[InboundPort, ...]:
    """Sorted by port. When services disagree on a port's protocol, the first service by
    hostname decides. Gateways have no inbound ports."""
    if proxy.type is not NodeType.SIDECAR:
        return ()
    taken = RESERVED_PORTS | {proxy.http_proxy_port}
    protocols: dict[int, Protocol] = {}
    for instance in ctx.instances_for(proxy):
        port = instance.endpoint.port
        if port not in taken:
            protocols.setdefault(port, instance.port.protocol)
    return tuple(InboundPort(port, protocols[port]) for port in sorted(protocols))
