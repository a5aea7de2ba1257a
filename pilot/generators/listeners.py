"""LDS for sidecars: outbound listeners shared by a view, and the listeners of one proxy.

Outbound listeners (`0.0.0.0_<port>` for HTTP, `<vip>_<port>` or `0.0.0.0_<port>` for TCP)
never bind: `virtualOutbound` accepts captured traffic and hands each connection to the one
matching its original destination. They depend only on the view, so proxies share them. The
filter chains of TCP and TLS listeners follow VirtualService tcp/tls routes (`tcp_routes`); a
listener whose chains all match on SNI or destination prefixes passes other connections
through (Istio's fallthrough chain) and inspects TLS to read SNI. Services come from the
view's Sidecar scope; unknown destinations (those fallthrough chains and `virtualOutbound`'s
default chain) pass through, or go to BlackHoleCluster under REGISTRY_ONLY.

The listeners of one proxy: `virtualOutbound` (15001), `virtualInbound` (15006, filter chains
per inbound port, as its PeerAuthentication mode asks: `inbound_tls`), on 0.0.0.0 with traffic
capture and on the proxy's own address without, and, without traffic capture
(INTERCEPTION_MODE=NONE, the local mesh), one `<ip>_<port>` listener per inbound port (a
Sidecar ingress listener's `bind` address instead of the IP) plus the explicit HTTP proxy
listener on HTTP_PROXY_PORT that applications use as HTTP_PROXY.
Routers (gateways) get none of these: their listeners come from Gateway resources (`gateways`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import wrappers_pb2

from pilot.generators import inbound_policy, mixer, names, tcp_routes
from pilot.generators.clusters import catch_all_cluster
from pilot.generators.filters import http_connection_manager, tcp_proxy
from pilot.generators.inbound import InboundPort, inbound_ports
from pilot.generators.inbound_tls import inbound_chains, needs_tls_inspector
from pilot.generators.proto import pack, socket_address
from pilot.generators.routes import inbound_route
from pilot.generators.virtual_services import mesh_virtual_services
from pilot.model import InterceptionMode, NodeType, Proxy, ProxyView, Service, ServicePort
from pilot.push_context import PushContext
from pilot.security_policies import MtlsMode

ORIGINAL_DST_FILTER: Final = "envoy.filters.listener.original_dst"
TLS_INSPECTOR_FILTER: Final = "envoy.filters.listener.tls_inspector"
PASSTHROUGH_CHAIN: Final = "PassthroughFilterChain"
INBOUND_BLACKHOLE_CHAIN: Final = "virtualInbound-blackhole"

Listener = listener_pb2.Listener
FilterChain = listener_components_pb2.FilterChain
OUTBOUND: Final = base_pb2.TrafficDirection.OUTBOUND
INBOUND: Final = base_pb2.TrafficDirection.INBOUND


def outbound_listeners(ctx: PushContext, view: ProxyView) -> list[listener_pb2.Listener]:
    """Sorted by name. HTTP takes `0.0.0.0_<port>` before any TCP service without a VIP
    could; among TCP services the first by hostname keeps a contested listener, unless it is
    a TLS listener, which all TLS services claiming it share by SNI."""
    if view.type is not NodeType.SIDECAR:
        return []
    services = ctx.services_for(view)
    unknown = catch_all_cluster(ctx, view)
    listeners: dict[str, listener_pb2.Listener] = {}
    http_ports = {p.number for s in services for p in s.ports if p.protocol.is_http}
    for number in sorted(http_ports):
        name = names.listener(names.WILDCARD_ADDRESS, number)
        manager = http_connection_manager(f"outbound_{name}", rds=str(number))
        chain = FilterChain(filters=[manager])
        listeners[name] = _unbound(name, names.WILDCARD_ADDRESS, number, [chain], unknown)
    claims: dict[tuple[str, int], list[tuple[Service, ServicePort]]] = {}
    for service in services:
        for port in service.ports:
            if port.protocol.is_http:
                continue
            for address in service.vips or (names.WILDCARD_ADDRESS,):
                if names.listener(address, port.number) not in listeners:
                    claims.setdefault((address, port.number), []).append((service, port))
    virtual_services = mesh_virtual_services(ctx, view)
    for (address, number), claimants in claims.items():
        chains = tcp_routes.outbound_chains(ctx, view, virtual_services, claimants, address)
        name = names.listener(address, number)
        listeners[name] = _unbound(name, address, number, chains, unknown)
    return [listeners[name] for name in sorted(listeners)]


def proxy_listeners(ctx: PushContext, proxy: Proxy) -> list[listener_pb2.Listener]:
    """The listeners bound to the proxy's own address, sorted by name."""
    if proxy.type is not NodeType.SIDECAR:
        return []
    policy_http = inbound_policy.http_filters(ctx, proxy)
    check = mixer.check_filter(ctx.mesh)
    if check is not None:  # Mixer's Check after the mesh's own authentication and RBAC
        policy_http.append(check)
    policy_network = inbound_policy.network_filters(ctx, proxy)
    inbound = [
        _Inbound(
            port,
            _inbound_filters(ctx, proxy, port, policy_http, policy_network),
            _mtls_mode(ctx, proxy, port),
        )
        for port in inbound_ports(ctx, proxy)
    ]
    unknown = catch_all_cluster(ctx, ctx.view_for(proxy))
    passthrough = inbound_chains(
        _mtls_mode(ctx, proxy, None),
        [*policy_network, tcp_proxy(names.INBOUND_PASSTHROUGH_CLUSTER)],
        http=False,
        name=names.INBOUND_PASSTHROUGH_CLUSTER,
    )
    listeners = [_virtual_outbound(proxy, unknown), _virtual_inbound(proxy, inbound, passthrough)]
    if proxy.interception_mode is InterceptionMode.NONE:
        for entry in inbound:
            port = entry.port
            listener = Listener(
                name=names.listener(port.bind, port.port),
                address=socket_address(port.bind, port.port),
                traffic_direction=INBOUND,
                filter_chains=inbound_chains(entry.mode, entry.filters, http=port.protocol.is_http),
            )
            _inspect_tls(listener)
            listeners.append(listener)
    if proxy.http_proxy_port is not None:
        source = mixer.source_header_filter(ctx.mesh, proxy)
        listeners.append(_http_proxy(proxy.ip, proxy.http_proxy_port, source))
    return sorted(listeners, key=lambda listener: listener.name)


@dataclass(frozen=True, slots=True)
class _Inbound:
    """One inbound port with its network filters and PeerAuthentication mode."""

    port: InboundPort
    filters: list[listener_components_pb2.Filter]
    mode: MtlsMode


def _mtls_mode(ctx: PushContext, proxy: Proxy, port: InboundPort | None) -> MtlsMode:
    """The port's PeerAuthentication mode (the workload's for None); DISABLE for a proxy
    without a workload certificate."""
    if not proxy.sds:
        return MtlsMode.DISABLE
    peer = ctx.config.security.peer_mtls(proxy.namespace, proxy.labels)
    return peer.mode if port is None else peer.for_port(port.port)


def _inspect_tls(listener: listener_pb2.Listener) -> None:
    if needs_tls_inspector(listener.filter_chains):
        listener.listener_filters.add(
            name=TLS_INSPECTOR_FILTER, typed_config=pack(tls_inspector_pb2.TlsInspector())
        )


def _unbound(
    name: str,
    address: str,
    port: int,
    chains: list[listener_components_pb2.FilterChain],
    unknown: str,
) -> listener_pb2.Listener:
    """An outbound listener that only receives connections `virtualOutbound` hands over;
    what none of its chains matches goes to `unknown` (`catch_all_cluster`)."""
    listener = Listener(
        name=name,
        address=socket_address(address, port),
        bind_to_port=wrappers_pb2.BoolValue(value=False),
        traffic_direction=OUTBOUND,
        filter_chains=chains,
    )
    if any(chain.filter_chain_match.server_names for chain in chains):
        listener.listener_filters.add(
            name=TLS_INSPECTOR_FILTER, typed_config=pack(tls_inspector_pb2.TlsInspector())
        )
    if all(chain.HasField("filter_chain_match") for chain in chains):
        listener.default_filter_chain.CopyFrom(_catch_all_chain(unknown))
    return listener


def _catch_all_chain(cluster: str) -> listener_components_pb2.FilterChain:
    """Istio's chain for unknown destinations, named for passing through whatever `cluster`
    it really goes to (BlackHoleCluster under REGISTRY_ONLY)."""
    return FilterChain(name=PASSTHROUGH_CHAIN, filters=[tcp_proxy(cluster)])


def _virtual_address(proxy: Proxy) -> str:
    """Where the virtual listeners bind: with capture, every address of the pod, as in Istio,
    since iptables' REDIRECT sends locally made connections to 127.0.0.1 (outbound, and the
    proxy's own connections to its pod address) and others to the pod address (inbound);
    without capture, only the proxy's own address, so proxies can share a host."""
    if proxy.interception_mode is InterceptionMode.NONE:
        return proxy.ip
    return names.WILDCARD_ADDRESS


def _virtual_outbound(proxy: Proxy, unknown: str) -> listener_pb2.Listener:
    return Listener(
        name=names.VIRTUAL_OUTBOUND,
        address=socket_address(_virtual_address(proxy), names.VIRTUAL_OUTBOUND_PORT),
        use_original_dst=wrappers_pb2.BoolValue(value=True),
        traffic_direction=OUTBOUND,
        default_filter_chain=_catch_all_chain(unknown),
    )


def _virtual_inbound(
    proxy: Proxy, inbound: list[_Inbound], passthrough: list[listener_components_pb2.FilterChain]
) -> listener_pb2.Listener:
    """Chains per inbound port (matched on the destination port the original_dst filter
    recovers); with capture, other ports pass through to the application (Istio's inbound
    passthrough, as the workload's PeerAuthentication mode asks: chains without a port
    match); what matches nothing, like plaintext under STRICT, is dropped."""
    listener = Listener(
        name=names.VIRTUAL_INBOUND,
        address=socket_address(_virtual_address(proxy), names.VIRTUAL_INBOUND_PORT),
        traffic_direction=INBOUND,
        # Recover the port a redirected connection was headed for, to pick its filter chain.
        listener_filters=[
            listener_components_pb2.ListenerFilter(
                name=ORIGINAL_DST_FILTER, typed_config=pack(original_dst_pb2.OriginalDst())
            )
        ],
        filter_chains=[
            chain
            for entry in inbound
            for chain in inbound_chains(
                entry.mode,
                entry.filters,
                http=entry.port.protocol.is_http,
                name=names.inbound_cluster(entry.port.port),
                port=entry.port.port,
            )
        ],
        default_filter_chain=FilterChain(
            name=INBOUND_BLACKHOLE_CHAIN, filters=[tcp_proxy(names.BLACKHOLE_CLUSTER)]
        ),
    )
    if proxy.interception_mode is not InterceptionMode.NONE:
        listener.filter_chains.extend(passthrough)
    _inspect_tls(listener)
    if proxy.interception_mode is InterceptionMode.TPROXY:
        listener.transparent.value = True
    return listener


def _inbound_filters(
    ctx: PushContext,
    proxy: Proxy,
    inbound: InboundPort,
    policy_http: list[hcm_pb2.HttpFilter],
    policy_network: list[listener_components_pb2.Filter],
) -> list[listener_components_pb2.Filter]:
    """The HTTP connection manager with the workload's policy filters (and Mixer's check
    attributes and report log, when the mesh uses Mixer) for an HTTP port; the network policy
    (RBAC) filters and a TCP proxy otherwise."""
    if inbound.protocol.is_http:
        stat_prefix = f"inbound_{names.listener(names.WILDCARD_ADDRESS, inbound.port)}"
        attributes = mixer.destination_attributes(ctx, proxy, inbound.port)
        checks = mixer.route_check_settings(ctx, proxy, inbound.port, attributes)
        route = inbound_route(inbound.port, checks)
        manager = http_connection_manager(
            stat_prefix,
            route_config=route,
            inbound=True,
            policy_filters=policy_http,
            access_logs=mixer.access_logs(ctx.mesh, attributes, "inbound"),
        )
        return [manager]
    return [*policy_network, tcp_proxy(names.inbound_cluster(inbound.port))]


def _http_proxy(
    ip: str, port: int, source_header: hcm_pb2.HttpFilter | None
) -> listener_pb2.Listener:
    name = names.listener(ip, port)
    manager = http_connection_manager(
        f"outbound_{name}",
        rds=names.HTTP_PROXY_ROUTE,
        absolute_urls=True,
        policy_filters=[source_header] if source_header is not None else [],
    )
    return Listener(
        name=name,
        address=socket_address(ip, port),
        traffic_direction=OUTBOUND,
        filter_chains=[FilterChain(filters=[manager])],
    )
