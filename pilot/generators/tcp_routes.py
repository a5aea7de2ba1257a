"""The filter chains of outbound TCP and TLS listeners, shaped by VirtualService tcp/tls routes.

istiod's `buildSidecarOutboundTCPFilterChainOpts` and `...TLSFilterChainOpts`, for one listener:

- TCP: each `tcp` rule of the VirtualServices covering the service (in order) gives a chain; a
  rule without matches, or a match without `destinationSubnets`, is the last one (it takes every
  connection); matches with subnets become a chain matching those destination prefixes. Without
  such a terminal rule, the service's own cluster ends the list.
- TLS (HTTPS and TLS ports): each `tls` match gives a chain matching its SNI names (and
  subnets); the first chain for an SNI/subnet combination wins. A service without TLS rules gets
  a chain to its own cluster, matching its hostname as SNI when the listener is the shared
  `0.0.0.0_<port>` one, so several TLS services can share it as in Istio.

Several destinations split connections by weight (`weighted_clusters`, stat prefix
`<vs name>.<namespace>` as istiod names it). A match with `sourceLabels` applies to the
views whose labels carry them (the push context splits views by the label keys such matches
read). A chain whose match repeats an earlier one is dropped, as Envoy rejects duplicate
matches.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Final

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import wrappers_pb2

from meshconfig.networking.virtual_service import (
    L4MatchAttributes,
    RouteDestination,
    TLSMatchAttributes,
)
from pilot.generators import names
from pilot.generators.filters import TCP_PROXY, tcp_proxy
from pilot.generators.proto import pack
from pilot.generators.virtual_services import destination_cluster
from pilot.istio_config import MESH_GATEWAY, qualify
from pilot.model import Protocol, ProxyView, Service, ServicePort
from pilot.push_context import PushContext
from pilot.virtual_service_rules import BoundVirtualService

FilterChain = listener_components_pb2.FilterChain
TLS_PROTOCOLS: Final = frozenset({Protocol.HTTPS, Protocol.TLS})


def outbound_chains(
    ctx: PushContext,
    view: ProxyView,
    virtual_services: Sequence[BoundVirtualService],
    claimants: Sequence[tuple[Service, ServicePort]],
    address: str,
) -> list[listener_components_pb2.FilterChain]:
    """The chains of the listener on `address` for the service ports that claim it (in
    hostname order). A TCP listener belongs to the first claimant; a TLS listener is shared by
    all TLS claimants."""
    first_service, first_port = claimants[0]
    chains: list[listener_components_pb2.FilterChain]
    if first_port.protocol in TLS_PROTOCOLS:
        shared = address == names.WILDCARD_ADDRESS
        chains = [
            chain
            for service, port in claimants
            if port.protocol in TLS_PROTOCOLS
            for chain in _tls_chains(ctx, view, virtual_services, service, port, shared)
        ]
    else:
        chains = _tcp_chains(ctx, view, virtual_services, first_service, first_port)
    return without_repeated_matches(chains)


def _tcp_chains(
    ctx: PushContext,
    view: ProxyView,
    virtual_services: Sequence[BoundVirtualService],
    service: Service,
    port: ServicePort,
) -> list[listener_components_pb2.FilterChain]:
    chains: list[listener_components_pb2.FilterChain] = []
    for vs in virtual_services:
        if not vs.covers(service.hostname):
            continue
        for rule in vs.spec.tcp or ():
            route = rule.route or []
            if not rule.match:
                return [*chains, route_chain(ctx, vs, route, port.number)]
            subnets: list[str] = []
            for match in rule.match:
                if not _applies(match, port.number, view):
                    continue
                if not match.destination_subnets:
                    return [*chains, route_chain(ctx, vs, route, port.number)]
                subnets += match.destination_subnets
            if subnets:
                chains.append(route_chain(ctx, vs, route, port.number, subnets=subnets))
    chains.append(_default_chain(service, port, sni=False))
    return chains


def _tls_chains(
    ctx: PushContext,
    view: ProxyView,
    virtual_services: Sequence[BoundVirtualService],
    service: Service,
    port: ServicePort,
    shared: bool,
) -> list[listener_components_pb2.FilterChain]:
    chains: list[listener_components_pb2.FilterChain] = []
    for vs in virtual_services:
        if not vs.covers(service.hostname):
            continue
        for rule in vs.spec.tls or ():
            for match in rule.match:
                if _applies(match, port.number, view):
                    sni = [qualify(host, vs.namespace) for host in match.sni_hosts]
                    subnets = match.destination_subnets or []
                    chains.append(
                        route_chain(
                            ctx, vs, rule.route or [], port.number, sni=sni, subnets=subnets
                        )
                    )
    return chains or [_default_chain(service, port, sni=shared)]


def _applies(match: L4MatchAttributes | TLSMatchAttributes, port: int, view: ProxyView) -> bool:
    """istiod's `matchTCP`/`matchTLS`: the conditions known when generating config."""
    if match.port is not None and match.port != port:
        return False
    if match.gateways and MESH_GATEWAY not in match.gateways:
        return False
    labels = dict(view.labels)
    if any(labels.get(key) != value for key, value in (match.source_labels or {}).items()):
        return False
    return match.source_namespace is None or match.source_namespace == view.namespace


def route_chain(
    ctx: PushContext,
    vs: BoundVirtualService,
    route: Sequence[RouteDestination],
    port: int,
    *,
    sni: Sequence[str] = (),
    subnets: Sequence[str] = (),
) -> listener_components_pb2.FilterChain:
    """A chain proxying to the rule's destinations (split by weight if several), matching
    the `sni` names and `subnets` given; the sidecar and gateway listeners both use it."""
    chain = FilterChain(filter_chain_match=_match(sni, subnets))
    chain.metadata.filter_metadata["istio"].update({"config": vs.config_path})
    if len(route) == 1:
        chain.filters.append(
            tcp_proxy(destination_cluster(ctx, route[0].destination, vs.namespace, port))
        )
        return chain
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=f"{vs.name}.{vs.namespace}")
    for destination in route:
        if destination.weight:
            proxy.weighted_clusters.clusters.add(
                name=destination_cluster(ctx, destination.destination, vs.namespace, port),
                weight=destination.weight,
            )
    chain.filters.add(name=TCP_PROXY, typed_config=pack(proxy))
    return chain


def _default_chain(
    service: Service, port: ServicePort, *, sni: bool
) -> listener_components_pb2.FilterChain:
    return FilterChain(
        filter_chain_match=_match([service.hostname] if sni else [], []),
        filters=[tcp_proxy(names.outbound_cluster(port.number, service.hostname))],
    )


def _match(
    sni: Sequence[str], subnets: Sequence[str]
) -> listener_components_pb2.FilterChainMatch | None:
    """The chain's match on SNI and destination prefixes; None (any connection) if neither."""
    if not sni and not subnets:
        return None
    match = listener_components_pb2.FilterChainMatch(server_names=sni)
    for subnet in subnets:
        network = ipaddress.ip_network(subnet, strict=False)
        match.prefix_ranges.append(
            address_pb2.CidrRange(
                address_prefix=str(network.network_address),
                prefix_len=wrappers_pb2.UInt32Value(value=network.prefixlen),
            )
        )
    return match


def without_repeated_matches(
    chains: Iterable[listener_components_pb2.FilterChain],
) -> list[listener_components_pb2.FilterChain]:
    """Envoy files a chain under every (destination prefix, SNI name) it matches and refuses a
    pair filed twice; so the first chain keeps a pair, later chains lose the prefixes and names
    already taken, and a chain left with none of its own is dropped."""
    claimed: set[tuple[str, str]] = set()
    kept = []
    for chain in chains:
        match = chain.filter_chain_match
        prefixes = {
            f"{r.address_prefix}/{r.prefix_len.value}": _copy(r) for r in match.prefix_ranges
        }
        server_names = list(match.server_names)
        fresh_prefixes = [
            p for p in prefixes or [""] if all((p, n) not in claimed for n in server_names or [""])
        ]
        fresh_names = [
            n for n in server_names or [""] if all((p, n) not in claimed for p in fresh_prefixes)
        ]
        if not fresh_prefixes or not fresh_names:
            continue
        claimed.update((p, n) for p in fresh_prefixes for n in fresh_names)
        if prefixes:
            kept_ranges = [prefixes[p] for p in fresh_prefixes]
            del match.prefix_ranges[:]
            match.prefix_ranges.extend(kept_ranges)
        if server_names:
            del match.server_names[:]
            match.server_names.extend(fresh_names)
        kept.append(chain)
    return kept


def _copy(cidr: address_pb2.CidrRange) -> address_pb2.CidrRange:
    copied = address_pb2.CidrRange()
    copied.CopyFrom(cidr)
    return copied
