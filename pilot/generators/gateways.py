"""LDS for routers: the Gateways that select a router, merged and turned into its listeners.

A router serves every Gateway whose `selector` matches its labels (an empty selector matches
every router), from any namespace, as istiod does by default; the labels are in the router's
`ProxyView`, so routers with equal labels share one result. `merge` is istiod's
`MergeGateways`: servers are grouped by port, and a port is either plain text (HTTP servers
merge into one `http.<port>` route config; a TCP server has the port to itself) or TLS (servers
told apart by SNI, each HTTPS server terminating TLS with a route config of its own named
`https.<port>.<port name>.<gateway>.<namespace>`). A server conflicting with the port's kind,
or repeating a TLS host already served on the port, is dropped.

Listeners are named `0.0.0.0_<port>` as Istio names them, but each router binds its own
address (the local mesh gives every pod a loopback address of its own), so `gateway_listeners`
builds them once per view unbound and `bind` places a copy on each router's IP. Per server:

- HTTP: one HCM (edge settings) with RDS `http.<port>`; routes come from `gateway_routes`;
- HTTPS with SIMPLE/MUTUAL/ISTIO_MUTUAL/OPTIONAL_MUTUAL: a chain matching the server's hosts as
  SNI (none for `*`), terminating TLS (`gateway_tls`) into an HCM with the server's RDS;
- TLS with termination, or TCP: the first `tcp` rule of the bound VirtualServices whose hosts
  meet the server's and whose matches name this gateway and port (istiod's `l4MultiMatch`);
- PASSTHROUGH: one chain per `tls` match of the bound VirtualServices, matching its SNI hosts,
  proxying the connection unopened; listeners with SNI chains inspect TLS to read SNI.

Not translated: AUTO_PASSTHROUGH (it routes by SNI-named `outbound_.<port>_.<subset>_.<host>`
clusters that pilot does not generate), `bind` (listeners bind the router's own address), unix
domain socket servers, and the Service-port to targetPort translation of Kubernetes gateways.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2

from meshconfig import Resource
from meshconfig.networking.gateway import Gateway, Server
from meshconfig.networking.virtual_service import L4MatchAttributes, TLSMatchAttributes
from pilot.generators import names
from pilot.generators.filters import http_connection_manager
from pilot.generators.gateway_tls import downstream_tls_context
from pilot.generators.listeners import TLS_INSPECTOR_FILTER
from pilot.generators.proto import pack, socket_address
from pilot.generators.tcp_routes import route_chain, without_repeated_matches
from pilot.generators.traffic_policy import TLS_TRANSPORT_SOCKET
from pilot.istio_config import hosts_match, qualify_gateway
from pilot.model import NodeType, Protocol, ProxyView
from pilot.push_context import PushContext
from pilot.virtual_service_rules import BoundVirtualService

WILDCARD_HOST: Final = "*"

FilterChain = listener_components_pb2.FilterChain


@dataclass(frozen=True, slots=True)
class GatewayServer:
    """One server of a Gateway, with what merging and translation keep asking about it."""

    gateway: str  # "<namespace>/<name>"
    server: Server
    hosts: tuple[str, ...]  # istiod's sanitized hosts: "<namespace>/<host>" or "<host>"
    route_name: str  # "" for servers without HTTP routes (TCP, TLS, passthrough)

    @classmethod
    def of(cls, resource: Resource, server: Server) -> GatewayServer:
        namespace, name = resource.metadata.namespace, resource.metadata.name
        return cls(
            gateway=f"{namespace}/{name}",
            server=server,
            hosts=_sanitized_hosts(server.hosts, namespace),
            route_name=_route_name(server, name, namespace),
        )

    @property
    def port(self) -> int:
        return self.server.port.number

    @property
    def protocol(self) -> Protocol:
        return Protocol.parse(self.server.port.protocol)

    @property
    def is_tls(self) -> bool:
        """istiod's `IsTLSServer`: TLS settings on a port that is not plain HTTP (an HTTP
        server's settings can only ask for an HTTPS redirect)."""
        return self.server.tls is not None and not self.protocol.is_http

    @property
    def passthrough(self) -> bool:
        return self.server.tls is not None and self.server.tls.passthrough

    @property
    def sni_hosts(self) -> list[str]:
        """The hosts as SNI names; none (any SNI) if the server takes every host."""
        found = sorted({host.rpartition("/")[2] for host in self.hosts})
        return [] if WILDCARD_HOST in found else found

    def hosts_for(self, namespace: str) -> list[str]:
        """istiod's `NamesForNamespace`: the server's hosts a VirtualService in `namespace`
        may bind to, without their namespace part."""
        found = []
        for host in self.hosts:
            scope, slash, name = host.rpartition("/")
            if not slash or scope in (namespace, WILDCARD_HOST):
                found.append(name)
        return found


@dataclass(frozen=True, slots=True)
class MergedPort:
    """The servers on one port, all plain text or all TLS (told apart by SNI)."""

    number: int
    plaintext: bool
    servers: tuple[GatewayServer, ...]


@dataclass(frozen=True, slots=True)
class MergedGateway:
    """Every server of a router's Gateways, by port in the order they were first seen."""

    ports: tuple[MergedPort, ...] = ()

    def servers_by_route(self) -> dict[str, list[GatewayServer]]:
        """The servers behind each HTTP route config (several only for `http.<port>`)."""
        found: dict[str, list[GatewayServer]] = {}
        for port in self.ports:
            for server in port.servers:
                if server.route_name:
                    found.setdefault(server.route_name, []).append(server)
        return found


def selected_gateways(ctx: PushContext, view: ProxyView) -> list[Resource]:
    """The Gateways whose selector matches the router's labels, in key order."""
    if view.type is not NodeType.ROUTER:
        return []
    labels = dict(view.labels)
    return [
        gateway
        for gateway in ctx.config.gateways
        if isinstance(gateway.spec, Gateway)
        and all(labels.get(k) == v for k, v in (gateway.spec.selector or {}).items())
    ]


def merge(ctx: PushContext, view: ProxyView) -> MergedGateway:
    """istiod's `MergeGateways` over the Gateways selecting the view's routers."""
    ports: dict[int, list[GatewayServer]] = {}
    plaintext: dict[int, bool] = {}
    tls_hosts: dict[int, set[str]] = {}
    for resource in selected_gateways(ctx, view):
        assert isinstance(resource.spec, Gateway), resource.label
        for server in resource.spec.servers or ():
            candidate = GatewayServer.of(resource, server)
            number = candidate.port
            if server.tls is not None:
                # Envoy refuses two filter chains with the same SNI match.
                taken = tls_hosts.setdefault(number, set())
                if taken.intersection(candidate.hosts):
                    continue
                taken.update(candidate.hosts)
            servers = ports.get(number)
            if servers is None:
                ports[number] = [candidate]
                plaintext[number] = not candidate.is_tls
            elif _can_join(servers, plaintext[number], candidate):
                servers.append(candidate)
    return MergedGateway(
        tuple(MergedPort(n, plaintext[n], tuple(servers)) for n, servers in ports.items())
    )


def _can_join(servers: Sequence[GatewayServer], plaintext: bool, candidate: GatewayServer) -> bool:
    """Plain-text ports merge HTTP servers only; TLS ports take TLS servers whose HTTPS route
    name (which carries the port name) is still free."""
    if plaintext:
        return candidate.protocol.is_http and servers[0].protocol.is_http
    if not candidate.is_tls:
        return False
    return not candidate.route_name or all(s.route_name != candidate.route_name for s in servers)


def gateway_listeners(
    ctx: PushContext, view: ProxyView, merged: MergedGateway
) -> list[listener_pb2.Listener]:
    """One listener per merged port, sorted by name, bound to 0.0.0.0 until `bind` places it;
    a port whose servers yield no filter chain (a TCP server without routes) gets none."""
    planner = _ChainPlanner(ctx, view)
    listeners = []
    for port in merged.ports:
        chains = without_repeated_matches(
            chain for server in port.servers for chain in planner.chains(server, port)
        )
        if not chains:
            continue
        name = names.listener(names.WILDCARD_ADDRESS, port.number)
        listener = listener_pb2.Listener(
            name=name,
            address=socket_address(names.WILDCARD_ADDRESS, port.number),
            traffic_direction=base_pb2.TrafficDirection.OUTBOUND,
            filter_chains=chains,
        )
        if any(chain.filter_chain_match.server_names for chain in chains):
            listener.listener_filters.add(
                name=TLS_INSPECTOR_FILTER, typed_config=pack(tls_inspector_pb2.TlsInspector())
            )
        listeners.append(listener)
    return sorted(listeners, key=lambda listener: listener.name)


def bind(listeners: Iterable[listener_pb2.Listener], ip: str) -> list[listener_pb2.Listener]:
    """Copies of the view's gateway listeners on the router's own address."""
    bound = []
    for template in listeners:
        listener = listener_pb2.Listener()
        listener.CopyFrom(template)
        listener.address.socket_address.address = ip
        bound.append(listener)
    return bound


def gateway_virtual_services(
    ctx: PushContext, view: ProxyView, gateway: str
) -> list[BoundVirtualService]:
    """The VirtualServices bound to `gateway` (`<namespace>/<name>`) and visible from the
    router's namespace, oldest first."""
    return [
        BoundVirtualService.of(vs)
        for vs in ctx.config.virtual_services_for(view.namespace, gateway)
    ]


class _ChainPlanner:
    """The filter chains of one view's servers."""

    def __init__(self, ctx: PushContext, view: ProxyView) -> None:
        self.ctx = ctx
        self.view = view

    def chains(
        self, server: GatewayServer, port: MergedPort
    ) -> list[listener_components_pb2.FilterChain]:
        stat_prefix = f"outbound_{names.listener(names.WILDCARD_ADDRESS, port.number)}"
        tls = server.server.tls
        if port.plaintext and server.protocol.is_http:
            if server is not port.servers[0]:
                return []  # the port's one HCM routes for all of its HTTP servers
            manager = http_connection_manager(stat_prefix, rds=server.route_name, edge=True)
            return [FilterChain(filters=[manager])]
        if server.passthrough:
            return self._passthrough_chains(server)
        if server.route_name:
            manager = http_connection_manager(
                server.server.name or stat_prefix, rds=server.route_name, edge=True
            )
            chain = FilterChain(filters=[manager])
        else:
            found = self._tcp_chain(server)
            if found is None:
                return []
            chain = found
        if tls is not None:
            if server.sni_hosts:
                chain.filter_chain_match.server_names.extend(server.sni_hosts)
            context = downstream_tls_context(tls, http=bool(server.route_name))
            chain.transport_socket.CopyFrom(
                base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))
            )
        return [chain]

    def _tcp_chain(self, server: GatewayServer) -> listener_components_pb2.FilterChain | None:
        """istiod's `buildGatewayNetworkFiltersFromTCPRoutes`: the first applicable tcp rule."""
        for vs in self._matching(server):
            for rule in vs.spec.tcp or ():
                if not rule.match or any(_l4_applies(m, vs, server) for m in rule.match):
                    return route_chain(self.ctx, vs, rule.route or [], server.port)
        return None

    def _passthrough_chains(
        self, server: GatewayServer
    ) -> list[listener_components_pb2.FilterChain]:
        """istiod's `buildGatewayNetworkFiltersFromTLSRoutes`: a chain per applicable match."""
        if server.server.tls is not None and server.server.tls.mode == "AUTO_PASSTHROUGH":
            return []
        return [
            route_chain(self.ctx, vs, rule.route or [], server.port, sni=match.sni_hosts)
            for vs in self._matching(server)
            for rule in vs.spec.tls or ()
            for match in rule.match
            if _l4_applies(match, vs, server)
        ]

    def _matching(self, server: GatewayServer) -> Iterable[BoundVirtualService]:
        """istiod's `pickMatchingGatewayHosts`: bound VirtualServices sharing a host with it."""
        for vs in gateway_virtual_services(self.ctx, self.view, server.gateway):
            hosts = server.hosts_for(vs.namespace)
            if any(hosts_match(host, vs_host) for host in hosts for vs_host in vs.hosts):
                yield vs


def _l4_applies(
    match: L4MatchAttributes | TLSMatchAttributes, vs: BoundVirtualService, server: GatewayServer
) -> bool:
    """istiod's `l4SingleMatch`: on gateways only the port and the gateway names count."""
    if match.port is not None and match.port != server.port:
        return False
    return not match.gateways or server.gateway in {
        qualify_gateway(g, vs.namespace) for g in match.gateways
    }


def _sanitized_hosts(hosts: Sequence[str], namespace: str) -> tuple[str, ...]:
    """istiod's `sanitizeServerHostNamespace`: `./h` is in the Gateway's namespace, `*/h` is
    `h`, and `*/*` stands for every host."""
    found = []
    for host in hosts:
        scope, slash, name = host.partition("/")
        if not slash:
            found.append(host)
        elif scope == ".":
            found.append(f"{namespace}/{name}")
        elif scope == WILDCARD_HOST:
            if name == WILDCARD_HOST:
                return (WILDCARD_HOST,)
            found.append(name)
        else:
            found.append(host)
    return tuple(found)


def _route_name(server: Server, gateway: str, namespace: str) -> str:
    """istiod's `gatewayRDSRouteName`."""
    protocol = Protocol.parse(server.port.protocol)
    if protocol.is_http:
        return f"http.{server.port.number}"
    if protocol is Protocol.HTTPS and server.tls is not None and not server.tls.passthrough:
        return f"https.{server.port.number}.{server.port.name}.{gateway}.{namespace}"
    return ""
