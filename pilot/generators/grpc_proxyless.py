"""Config for proxyless gRPC clients (node metadata `GENERATOR: grpc`), as istiod's grpcgen.

A gRPC application dialling `xds:///<host>:<port>` runs its own xDS client: it asks for the
Listener named exactly `<host>:<port>`, the RouteConfiguration that listener names, then the
clusters the routes name and their endpoints, each by name. What it needs differs from an Envoy:

- LDS: one Listener per service port and per name a client in the view's namespace may dial
  (`<fqdn>:<port>`, and for `<name>.<ns>.svc.cluster.local` hosts `<name>.<ns>.svc:<port>`,
  `<name>.<ns>:<port>`, and `<name>:<port>` from the service's own namespace). None binds an
  address: each carries an `api_listener` HttpConnectionManager taking its routes over RDS,
  with the fault filter and the router (gRPC rejects filters it does not know).
- RDS: one RouteConfiguration per service port, named as istiod names it, like the port's
  cluster (`outbound|<port>||<fqdn>`), with one virtual host answering to every dial name with
  and without the port. Its routes are the sidecar's (`http_routes`): the VirtualService that
  routes the service, else the default route; `_fit_for_grpc` adapts them.
- CDS: an EDS cluster per service port and DestinationRule subset, named as for sidecars
  (`outbound|<port>|<subset>|<fqdn>`) so EDS (`endpoints`) is shared with them. gRPC balances
  round robin, or with a ring hash when the rule asks for consistent hashing (Maglev too). The
  sidecar clusters are not reused: grpcio 1.85 rejects their LEAST_REQUEST policy ("LB policy
  is not supported", checked), and Maglev and SDS-based TLS are not gRPC's either.

Only STATIC (EDS) services are served: a gRPC client cannot pass traffic through to an original
destination, and resolves DNS names only with LOGICAL_DNS clusters, not generated yet. Neither
are the server side (`xds.istio.io/grpc/lds/inbound/...` listeners) nor mTLS, which needs
certificate providers in the client's bootstrap.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, TypeAlias

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from meshconfig.networking.destination_rule import Subset
from meshcore.xds import types
from meshcore.xds.resource import Resource, Snapshot
from pilot.generators import endpoints, names, traffic_policy
from pilot.generators.filters import FAULT, ROUTER
from pilot.generators.http_routes import RouteContext, default_route, virtual_service_routes
from pilot.generators.proto import ads, pack
from pilot.generators.virtual_services import http_owner, mesh_virtual_services
from pilot.model import CLUSTER_DOMAIN, ProxyView, Resolution, Service
from pilot.push_context import PushContext

DEFAULT_MINIMUM_RING_SIZE: Final = traffic_policy.DEFAULT_MINIMUM_RING_SIZE

Cluster = cluster_pb2.Cluster
_Named: TypeAlias = listener_pb2.Listener | route_pb2.RouteConfiguration | cluster_pb2.Cluster


def _http_filters() -> list[hcm_pb2.HttpFilter]:
    return [
        hcm_pb2.HttpFilter(name=FAULT, typed_config=pack(fault_pb2.HTTPFault())),
        hcm_pb2.HttpFilter(name=ROUTER, typed_config=pack(router_pb2.Router())),
    ]


def grpc_services(ctx: PushContext, view: ProxyView) -> list[Service]:
    """The services a gRPC client of the view can reach: the visible STATIC ones."""
    return [s for s in ctx.services_for(view) if s.resolution is Resolution.STATIC]


def dial_names(service: Service, namespace: str) -> list[str]:
    """The host names (without port) a client in `namespace` may dial the service by."""
    result = [service.hostname]
    short = service.hostname.removesuffix(f".{service.namespace}.svc.{CLUSTER_DOMAIN}")
    if short != service.hostname and "." not in short:
        result += [f"{short}.{service.namespace}.svc", f"{short}.{service.namespace}"]
        if namespace == service.namespace:
            result.append(short)
    return result


def listeners(ctx: PushContext, view: ProxyView) -> list[listener_pb2.Listener]:
    """`<dial name>:<port>` for every port of every service, sorted by name. A service's FQDN
    beats another's short name; among short names, the first service by hostname wins."""
    exact: dict[str, listener_pb2.Listener] = {}
    aliases: dict[str, listener_pb2.Listener] = {}
    for service in grpc_services(ctx, view):
        for port in service.ports:
            manager = hcm_pb2.HttpConnectionManager(
                http_filters=_http_filters(),
                rds=hcm_pb2.Rds(
                    config_source=ads(),
                    route_config_name=names.outbound_cluster(port.number, service.hostname),
                ),
            )
            api_listener = api_listener_pb2.ApiListener(api_listener=pack(manager))
            fqdn, *short = (f"{h}:{port.number}" for h in dial_names(service, view.namespace))
            exact[fqdn] = listener_pb2.Listener(name=fqdn, api_listener=api_listener)
            for name in short:
                aliases.setdefault(
                    name, listener_pb2.Listener(name=name, api_listener=api_listener)
                )
    merged = {**aliases, **exact}
    return [merged[name] for name in sorted(merged)]


def route_configs(ctx: PushContext, view: ProxyView) -> list[route_pb2.RouteConfiguration]:
    """`outbound|<port>||<fqdn>` for every port of every service, sorted by name."""
    virtual_services = mesh_virtual_services(ctx, view)
    out = []
    for service in grpc_services(ctx, view):
        owner = http_owner(service.hostname, virtual_services)
        hosts = dial_names(service, view.namespace)
        for port in service.ports:
            routes: list[rc.Route] = []
            if owner is not None:
                at = RouteContext(ctx, view.namespace, port.number, labels=dict(view.labels))
                # A query parameter match can never match a gRPC call.
                routes = [
                    _fit_for_grpc(r)
                    for r in virtual_service_routes(owner, at)
                    if not r.match.query_parameters
                ]
            if not routes:
                routes = [default_route(ctx, view.namespace, service.hostname, port.number)]
            virtual_host = rc.VirtualHost(
                name=f"{service.hostname}:{port.number}",
                domains=[form for h in hosts for form in (f"{h}:{port.number}", h)],
                routes=routes,
            )
            out.append(
                route_pb2.RouteConfiguration(
                    name=names.outbound_cluster(port.number, service.hostname),
                    virtual_hosts=[virtual_host],
                )
            )
    return sorted(out, key=lambda config: config.name)


def _fit_for_grpc(route: rc.Route) -> rc.Route:
    """The route, changed in place where gRPC reads it otherwise than Envoy.

    gRPC rejects per-route config of a filter it lacks (CORS), and bounds a call's deadline by
    `max_stream_duration` rather than the route `timeout`. What it ignores stays (rewrites,
    mirrors, header changes); a redirect or direct response fails the calls it matches.
    """
    for name in [n for n in route.typed_per_filter_config if n != FAULT]:
        del route.typed_per_filter_config[name]
    action = route.route
    if route.HasField("route") and (action.timeout.seconds or action.timeout.nanos):
        action.max_stream_duration.grpc_timeout_header_max.CopyFrom(action.timeout)
    return route


def clusters(ctx: PushContext, view: ProxyView) -> list[cluster_pb2.Cluster]:
    """An EDS cluster per service port and per subset of the applying rule, sorted by name."""
    out = []
    for service in grpc_services(ctx, view):
        rule = traffic_policy.destination_rule(ctx, service.hostname, view.namespace)
        subsets: tuple[Subset | None, ...] = (None,)
        if rule is not None:
            subsets += tuple(rule.spec.subsets or ())
        for port in service.ports:
            for subset in subsets:
                name = names.outbound_cluster(
                    port.number, service.hostname, subset.name if subset is not None else ""
                )
                cluster = Cluster(name=name, type=Cluster.EDS, lb_policy=Cluster.ROUND_ROBIN)
                cluster.eds_cluster_config.eds_config.CopyFrom(ads())
                cluster.eds_cluster_config.service_name = name
                spec = rule.spec if rule is not None else None
                _ring_hash(cluster, traffic_policy.resolve(spec, port.number, subset))
                out.append(cluster)
    return sorted(out, key=lambda cluster: cluster.name)


def _ring_hash(cluster: cluster_pb2.Cluster, policy: traffic_policy.Policy) -> None:
    """Consistent hashing (Maglev too: gRPC has only the ring) as a RING_HASH cluster."""
    balancer = policy.load_balancer
    consistent = balancer.consistent_hash if balancer is not None else None
    if consistent is None:
        return
    cluster.lb_policy = Cluster.RING_HASH
    ring = consistent.ring_hash
    size = (ring.minimum_ring_size if ring is not None else None) or consistent.minimum_ring_size
    cluster.ring_hash_lb_config.minimum_ring_size.value = size or DEFAULT_MINIMUM_RING_SIZE


def _resources(messages: Iterable[_Named]) -> list[Resource]:
    return [Resource.from_message(m.name, m) for m in messages]


class GrpcSnapshots:
    """The snapshot of each view for the current push context; a new context empties it."""

    def __init__(self) -> None:
        self._version: str | None = None
        self._views: dict[ProxyView, Snapshot] = {}

    def snapshot(self, ctx: PushContext, view: ProxyView) -> Snapshot:
        if ctx.version != self._version:
            self._version = ctx.version
            self._views.clear()
        found = self._views.get(view)
        if found is None:
            assignments = endpoints.load_assignments(ctx, view)
            found = self._views[view] = Snapshot.of(
                {
                    types.CLUSTER: _resources(clusters(ctx, view)),
                    types.ENDPOINT: [Resource.from_message(a.cluster_name, a) for a in assignments],
                    types.LISTENER: _resources(listeners(ctx, view)),
                    types.ROUTE: _resources(route_configs(ctx, view)),
                }
            )
        return found
