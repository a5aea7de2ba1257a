"""The ports a proxy receives traffic on for its own workload, shared by inbound CDS and LDS.

A workload can back several services; each service port becomes an inbound port named by the
port the workload listens on. Inbound clusters and inbound listeners must agree on that set,
so both derive it here.

A Sidecar with `ingress` listeners replaces that set, as in Istio: each entry is an inbound
port with the protocol it declares, delivered to its `defaultEndpoint` (the application's
address and the port itself when it has none). `127.0.0.1:<port>` (`[::1]:<port>`,
`:<port>`) is the pod's loopback, which in the local mesh is the proxy's APP_ADDRESS;
`0.0.0.0:<port>` (`[::]:<port>`) is the proxy's own IP; `unix://<path>` a Unix domain
socket. Without capture (INTERCEPTION_MODE NONE) the entry's listener binds its `bind`
address, the proxy's IP by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from meshconfig.networking.checks import UNIX_PREFIX
from meshconfig.networking.sidecar import IstioIngressListener
from pilot.model import NodeType, Protocol, Proxy
from pilot.push_context import PushContext

RESERVED_PORTS: Final = frozenset({15000, 15001, 15006, 15008, 15020, 15021, 15090})
"""Ports the sidecar itself uses; a workload port among them gets no inbound config."""
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1", ""})  # `:<port>` is the loopback too


@dataclass(frozen=True, slots=True)
class InboundPort:
    port: int  # where the proxy receives for the workload
    protocol: Protocol
    bind: str  # the address of its listener without capture
    app_address: str  # where the application listens ("" when it is a Unix socket)
    app_port: int
    app_socket: str = ""  # the application's Unix socket path, if it listens on one


def inbound_ports(ctx: PushContext, proxy: Proxy) -> tuple[InboundPort, ...]:
    """Sorted by port. When services disagree on a port's protocol, the first service by
    hostname decides. Gateways have no inbound ports."""
    if proxy.type is not NodeType.SIDECAR:
        return ()
    taken = RESERVED_PORTS | {proxy.http_proxy_port}
    ingress = ctx.scope(ctx.view_for(proxy)).ingress
    if ingress:
        by_port = {entry.port.number or 0: entry for entry in ingress}
        return tuple(
            _from_ingress(proxy, by_port[port]) for port in sorted(by_port) if port not in taken
        )
    protocols: dict[int, Protocol] = {}
    for instance in ctx.instances_for(proxy):
        port = instance.endpoint.port
        if port not in taken:
            protocols.setdefault(port, instance.port.protocol)
    return tuple(
        InboundPort(port, protocols[port], proxy.ip, proxy.app_address, port)
        for port in sorted(protocols)
    )


def _from_ingress(proxy: Proxy, entry: IstioIngressListener) -> InboundPort:
    port = entry.port.number or 0
    protocol = Protocol.for_port(entry.port.protocol, entry.port.name or "")
    bind = entry.bind or proxy.ip
    endpoint = entry.default_endpoint or ""
    if endpoint.startswith(UNIX_PREFIX):
        return InboundPort(port, protocol, bind, "", 0, endpoint.removeprefix(UNIX_PREFIX))
    if not endpoint:
        return InboundPort(port, protocol, bind, proxy.app_address, port)
    host, _, target = endpoint.rpartition(":")
    address = proxy.app_address if host.strip("[]") in _LOOPBACK else proxy.ip
    return InboundPort(port, protocol, bind, address, int(target))
