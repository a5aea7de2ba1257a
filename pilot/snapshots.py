"""From (push context, proxy) to the `Snapshot` a proxy is served, without repeating work.

Generation is per proxy *view*, not per proxy: the outbound side (clusters, routes, listeners,
endpoints) depends only on `PushContext.view_for(proxy)` (type, namespace, the Sidecar that
applies), so proxies with equal views share one generated and serialized result for the life
of a push context. Only the small per-proxy part (inbound
clusters, listeners bound to the proxy's own address) is built for each proxy. An endpoints-
only change regenerates just the affected ClusterLoadAssignments, once for all proxies.

Routers (gateways) share clusters and endpoints the same way; their route configs come from
the Gateways their labels select (`gateway_routes`), and their listeners are translated once
per view (`gateways`) and only copied onto each router's own address. Routers alone get SDS:
the Secrets of their namespace that their Gateways name as credentials (`secrets`), also per
view.

Proxyless gRPC clients get config of their own (`grpc_proxyless`), also per view; their
endpoints are the sidecars' and are updated the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType

from envoy.config.listener.v3 import listener_pb2
from google.protobuf.message import Message

from meshcore.xds import types
from meshcore.xds.resource import Resource, Snapshot, TypeSnapshot
from pilot.generators import (
    clusters,
    endpoints,
    gateway_routes,
    gateways,
    grpc_proxyless,
    listeners,
    names,
    routes,
    secrets,
)
from pilot.model import NodeType, Proxy, ProxyView
from pilot.push_context import PushContext


def _resources(messages: Iterable[Message], attribute: str = "name") -> list[Resource]:
    return [Resource.from_message(getattr(m, attribute), m) for m in messages]


@dataclass(frozen=True, slots=True)
class _ViewConfig:
    clusters: tuple[Resource, ...]
    listeners: tuple[Resource, ...]
    routes: TypeSnapshot
    endpoints: TypeSnapshot
    unbound_listeners: tuple[listener_pb2.Listener, ...]  # a router's, bound per proxy
    secrets: TypeSnapshot | None  # a router's; sidecars take theirs from the agent


class SnapshotGenerator:
    """Caches per-view output for the current push context; a new context empties the cache."""

    def __init__(self) -> None:
        self._context_version: str | None = None
        self._views: dict[ProxyView, _ViewConfig] = {}
        # Keyed by name, and for subset clusters by view too (the view picks the rule that
        # defines the subset); other clusters' assignments are shared by every view.
        self._load_assignments: dict[tuple[str, ProxyView | None], Resource | None] = {}
        self._grpc = grpc_proxyless.GrpcSnapshots()

    def full(self, ctx: PushContext, proxy: Proxy) -> Snapshot:
        if proxy.proxyless_grpc:
            return self._grpc.snapshot(ctx, ctx.view_for(proxy))
        shared = self._view(ctx, ctx.view_for(proxy))
        own_clusters = _resources(clusters.inbound_clusters(ctx, proxy))
        own_listeners = _resources(
            (
                *listeners.proxy_listeners(ctx, proxy),
                *gateways.bind(shared.unbound_listeners, proxy.ip),
            )
        )
        by_type = {
            types.CLUSTER: TypeSnapshot.of((*shared.clusters, *own_clusters)),
            types.ENDPOINT: shared.endpoints,
            types.LISTENER: TypeSnapshot.of((*shared.listeners, *own_listeners)),
            types.ROUTE: shared.routes,
        }
        if shared.secrets is not None:
            by_type[types.SECRET] = shared.secrets
        return Snapshot(MappingProxyType(by_type))

    def endpoints_only(
        self, previous: Snapshot, ctx: PushContext, proxy: Proxy, hostnames: frozenset[str]
    ) -> Snapshot:
        """`previous` with fresh endpoints for `hostnames`; `previous` itself if none changed."""
        self._use(ctx)
        current = previous.get(types.ENDPOINT)
        if current is None:
            return self.full(ctx, proxy)
        updated = dict(current.resources)
        changed = False
        for name, old in current.resources.items():
            parsed = names.parse_outbound_cluster(name)
            if parsed is None or parsed.hostname not in hostnames:
                continue
            fresh = self._load_assignment(ctx, name, ctx.view_for(proxy), bool(parsed.subset))
            if fresh is None:
                del updated[name]
                changed = True
            elif fresh.version != old.version:
                updated[name] = fresh
                changed = True
        if not changed:
            return previous
        return previous.replace(types.ENDPOINT, TypeSnapshot.of(updated.values()))

    def _use(self, ctx: PushContext) -> None:
        if ctx.version != self._context_version:
            self._context_version = ctx.version
            self._views.clear()
            self._load_assignments.clear()

    def _view(self, ctx: PushContext, view: ProxyView) -> _ViewConfig:
        self._use(ctx)
        found = self._views.get(view)
        if found is None:
            eds = _resources(endpoints.load_assignments(ctx, view), "cluster_name")
            unbound: list[listener_pb2.Listener] = []
            sds = None
            if view.type is NodeType.ROUTER:
                merged = gateways.merge(ctx, view)
                unbound = gateways.gateway_listeners(ctx, view, merged)
                route_configs = gateway_routes.gateway_routes(ctx, view, merged)
                credentials = secrets.gateway_secrets(ctx.config, view.namespace, merged)
                sds = TypeSnapshot.of(_resources(credentials))
            else:
                route_configs = routes.outbound_routes(ctx, view)
            found = self._views[view] = _ViewConfig(
                clusters=tuple(_resources(clusters.outbound_clusters(ctx, view))),
                listeners=tuple(_resources(listeners.outbound_listeners(ctx, view))),
                routes=TypeSnapshot.of(_resources(route_configs)),
                endpoints=TypeSnapshot.of(eds),
                unbound_listeners=tuple(unbound),
                secrets=sds,
            )
        return found

    def _load_assignment(
        self, ctx: PushContext, cluster_name: str, view: ProxyView, subset: bool
    ) -> Resource | None:
        key = (cluster_name, view if subset else None)
        if key not in self._load_assignments:
            message = endpoints.load_assignment(ctx, cluster_name, view)
            self._load_assignments[key] = (
                None if message is None else Resource.from_message(cluster_name, message)
            )
        return self._load_assignments[key]
