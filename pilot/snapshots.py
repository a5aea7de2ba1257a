"""From (push context, proxy) to the `Snapshot` a proxy is served, without repeating work.

Generation is per proxy *view*, not per proxy: the outbound side (clusters, routes, listeners,
endpoints) depends only on `PushContext.view_for(proxy)` (type, namespace, the Sidecar that
applies), so proxies with equal views share one generated and serialized result for the life
of a push context. Only the small per-proxy part (inbound clusters, listeners bound to the
proxy's own address) is built per proxy, once for all the proxies that cannot tell it apart
(replicas, by `own_side.sharing_key`), and added onto the view's snapshot without copying or
re-digesting it (`TypeSnapshot.extend`). An endpoints-only change regenerates just the
affected ClusterLoadAssignments, once for all proxies that share the same endpoints snapshot.

Nothing is regenerated that cannot have changed since the previous push context: a proxy
keeps its inbound side while its inputs are equal (`PushContext.inbound_inputs` and its
instances: a service added elsewhere, a VirtualService edited), and when a change touches only
VirtualServices and Gateways (`PushContext.differs_only_in_routing`) a view whose Sidecar scope
imports the same services keeps its clusters and endpoints too; routes and outbound listeners
are built anew.

Equal content is one object, across views and across push contexts: a view's type snapshot
whose version an earlier one already had is that earlier object (`_intern`), and a proxy's new
snapshot keeps the type snapshots of its previous one whose versions did not change, or is the
previous snapshot itself when nothing changed. Streams then skip unchanged types at once, and
encoded bodies and diffs computed for one stream serve all the others.

Routers (gateways) share clusters and endpoints the same way; their route configs come from
the Gateways their labels select (`gateway_routes`), and their listeners are translated once
per view (`gateways`) and only copied onto each router's own address. Routers alone get SDS:
the Secrets of their namespace that their Gateways name as credentials (`secrets`), also per
view.

Proxyless gRPC clients get config of their own (`grpc_proxyless`), also per view; their
endpoints are the sidecars' and are updated the same way.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from envoy.config.listener.v3 import listener_pb2
from google.protobuf.message import Message

from meshcore.xds import types
from meshcore.xds.resource import Resource, Snapshot, TypeSnapshot
from pilot import own_side
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
from pilot.model import NodeType, Proxy, ProxyView, ServiceInstance
from pilot.push_context import InboundInputs, PushContext


def _resources(messages: Iterable[Message], attribute: str = "name") -> list[Resource]:
    return [Resource.from_message(getattr(m, attribute), m) for m in messages]


def _reuse(previous: Snapshot | None, fresh: Snapshot) -> Snapshot:
    """`fresh`, keeping each type snapshot of `previous` with an unchanged version, or
    `previous` itself if every type is unchanged."""
    if previous is None:
        return fresh
    old = previous.types
    if old.keys() != fresh.types.keys():
        return fresh
    kept = {}
    for type_url, snapshot in fresh.types.items():
        before = old[type_url]
        kept[type_url] = before if before.version == snapshot.version else snapshot
    if all(kept[t] is old[t] for t in kept):
        return previous
    return Snapshot(MappingProxyType(kept))


@dataclass(frozen=True, slots=True)
class _OwnResources:
    """A generated own side: inbound clusters and the listeners bound to the proxy's own
    address, shared by the proxies whose `own_side.sharing_key` is equal."""

    clusters: list[Resource]
    listeners: list[Resource]
    # type URL -> (a view's snapshot, it extended with these resources)
    extended: dict[str, tuple[TypeSnapshot, TypeSnapshot]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def over(self, type_url: str, shared: TypeSnapshot) -> TypeSnapshot:
        """`shared` (clusters or listeners) extended with these resources of its type: the
        same object again for the same `shared` (a push that changed only routes builds every
        proxy's snapshot anew, with clusters and listeners as they were)."""
        found = self.extended.get(type_url)
        if found is None or found[0] is not shared:
            own = self.clusters if type_url == types.CLUSTER else self.listeners
            found = self.extended[type_url] = (shared, shared.extend(own))
        return found[1]


@dataclass(frozen=True, slots=True)
class _OwnSide:
    """A proxy's own side (before any listeners bound to a router's address), with the inputs
    it was made from, so any later context can tell whether it still holds."""

    proxy: Proxy
    resources: _OwnResources
    inputs: InboundInputs
    instances: tuple[ServiceInstance, ...]


@dataclass(frozen=True, slots=True)
class _ViewConfig:
    clusters: TypeSnapshot
    listeners: TypeSnapshot
    routes: TypeSnapshot
    endpoints: TypeSnapshot
    unbound_listeners: tuple[listener_pb2.Listener, ...]  # a router's, bound per proxy
    secrets: TypeSnapshot | None  # a router's; sidecars take theirs from the agent


class SnapshotGenerator:
    """Caches per-view output for the current push context; a new context empties the cache."""

    def __init__(self) -> None:
        self._context_version: str | None = None
        self._context: PushContext | None = None
        self._previous_context: PushContext | None = None
        # (None: not known yet) Only routing differs between the previous and this context.
        self._routing_only: bool | None = None
        self._views: dict[ProxyView, _ViewConfig] = {}
        self._previous_views: dict[ProxyView, _ViewConfig] = {}
        # Proxies' own sides by id of the proxy: this context's, and earlier ones to reuse.
        # A context that pushed endpoints only made the sides of a few proxies (new ones,
        # moved ones): the sides kept from before it stay too. One that pushed in full made
        # every connected proxy's, and only those are kept from it (the departed drop out).
        self._own: dict[int, _OwnSide] = {}
        self._kept_own: dict[int, _OwnSide] = {}
        # This context's generated own sides by `own_side.sharing_key`.
        self._own_by_key: dict[Hashable, _OwnResources] = {}
        self._endpoints_pushed = False  # `endpoints_only` was called in this context
        # Whether kept inputs equal this context's, by id of the kept (kept alive here too).
        self._inputs_equal: dict[int, tuple[InboundInputs, bool]] = {}
        # Keyed by name, and for subset clusters by view too (the view picks the rule that
        # defines the subset); other clusters' assignments are shared by every view.
        self._load_assignments: dict[tuple[str, ProxyView | None], Resource | None] = {}
        # Messages the context memoizes for several views (clusters, endpoints), encoded once;
        # keyed by id, the message kept alive alongside.
        self._encoded: dict[int, tuple[Message, Resource]] = {}
        # Type snapshots by version: this context's, and the previous context's to reuse.
        self._interned: dict[str, TypeSnapshot] = {}
        self._previous_interned: dict[str, TypeSnapshot] = {}
        # Endpoint updates per (endpoints snapshot, view, hostnames) for the current context.
        self._eds_updates: dict[
            tuple[int, ProxyView, frozenset[str]], tuple[TypeSnapshot, TypeSnapshot]
        ] = {}
        self._grpc = grpc_proxyless.GrpcSnapshots()

    def full(self, ctx: PushContext, proxy: Proxy, previous: Snapshot | None = None) -> Snapshot:
        """The proxy's snapshot; with `previous`, sharing what did not change (`previous`
        itself if nothing did)."""
        if proxy.proxyless_grpc:
            return _reuse(previous, self._grpc.snapshot(ctx, ctx.view_for(proxy)))
        shared = self._view(ctx, ctx.view_for(proxy))
        own = self._own_config(ctx, proxy)
        if shared.unbound_listeners:
            bound = gateways.bind(shared.unbound_listeners, proxy.ip)
            listeners = shared.listeners.extend([*own.resources.listeners, *_resources(bound)])
        else:
            listeners = own.resources.over(types.LISTENER, shared.listeners)
        by_type = {
            types.CLUSTER: own.resources.over(types.CLUSTER, shared.clusters),
            types.ENDPOINT: shared.endpoints,
            types.LISTENER: listeners,
            types.ROUTE: shared.routes,
        }
        if shared.secrets is not None:
            by_type[types.SECRET] = shared.secrets
        return _reuse(previous, Snapshot(MappingProxyType(by_type)))

    def endpoints_only(
        self, previous: Snapshot, ctx: PushContext, proxy: Proxy, hostnames: frozenset[str]
    ) -> Snapshot:
        """`previous` with fresh endpoints for `hostnames`; `previous` itself if none changed.
        Proxies sharing an endpoints snapshot (a view) share the work and the result."""
        self._use(ctx)
        self._endpoints_pushed = True
        current = previous.get(types.ENDPOINT)
        if current is None:
            return self.full(ctx, proxy)
        view = ctx.view_for(proxy)
        key = (id(current), view, hostnames)
        found = self._eds_updates.get(key)
        if found is None or found[0] is not current:
            found = self._eds_updates[key] = (
                current,
                self._updated_endpoints(ctx, current, view, hostnames),
            )
        updated = found[1]
        self._carry_forward(view, current, updated)
        return previous if updated is current else previous.replace(types.ENDPOINT, updated)

    def _carry_forward(
        self,
        view: ProxyView,
        endpoints_before: TypeSnapshot,
        endpoints_after: TypeSnapshot,
    ) -> None:
        """Make the previous context's config for this view this context's too, as an
        endpoints-only push leaves it (with its new endpoints), so that the next context
        compares with this one and can still reuse its clusters."""
        if view not in self._views:
            prior = self._previous_views.get(view)
            if prior is not None and prior.endpoints is endpoints_before:
                self._views[view] = replace(prior, endpoints=endpoints_after)

    def _updated_endpoints(
        self, ctx: PushContext, current: TypeSnapshot, view: ProxyView, hostnames: frozenset[str]
    ) -> TypeSnapshot:
        updated = dict(current.resources)
        changed = False
        for name, old in current.resources.items():
            parsed = names.parse_outbound_cluster(name)
            if parsed is None or parsed.hostname not in hostnames:
                continue
            fresh = self._load_assignment(ctx, name, view, bool(parsed.subset))
            if fresh is None:
                del updated[name]
                changed = True
            elif fresh.version != old.version:
                updated[name] = fresh
                changed = True
        return self._intern(TypeSnapshot.of(updated.values())) if changed else current

    def _own_config(self, ctx: PushContext, proxy: Proxy) -> _OwnSide:
        """The proxy's own side (inbound clusters, its own listeners), kept from an earlier
        context when its inputs did not change."""
        found = self._own.get(id(proxy))
        if found is None or found.proxy is not proxy:
            inputs, instances = ctx.inbound_inputs(), ctx.instances_for(proxy)
            prior = self._kept_own.get(id(proxy))
            if (
                prior is not None
                and prior.proxy is proxy
                and prior.instances == instances
                and self._same_inputs(prior.inputs, inputs)
            ):
                found = replace(prior, inputs=inputs)
            else:
                resources = self._own_resources(ctx, proxy, instances)
                found = _OwnSide(proxy, resources, inputs, instances)
            self._own[id(proxy)] = found
        return found

    def _own_resources(
        self, ctx: PushContext, proxy: Proxy, instances: tuple[ServiceInstance, ...]
    ) -> _OwnResources:
        """Generated once in a context for all the proxies that share a key."""
        key = own_side.sharing_key(ctx, proxy, instances)
        found = self._own_by_key.get(key)
        if found is None:
            found = self._own_by_key[key] = _OwnResources(
                _resources(clusters.inbound_clusters(ctx, proxy)),
                _resources(listeners.proxy_listeners(ctx, proxy)),
            )
        return found

    def _same_inputs(self, kept: InboundInputs, current: InboundInputs) -> bool:
        """`kept == current`, compared once per kept inputs in a context (they are large)."""
        if kept is current:
            return True
        found = self._inputs_equal.get(id(kept))
        if found is None or found[0] is not kept:
            found = self._inputs_equal[id(kept)] = (kept, kept == current)
        return found[1]

    def _only_routing_changed(self) -> bool:
        """Whether the current context differs from the previous one in routing alone."""
        if self._routing_only is None:
            before, now = self._previous_context, self._context
            self._routing_only = (
                before is not None and now is not None and now.differs_only_in_routing(before)
            )
        return self._routing_only

    def _use(self, ctx: PushContext) -> None:
        if ctx.version != self._context_version:
            self._context_version = ctx.version
            self._previous_context, self._context = self._context, ctx
            self._routing_only = None
            self._previous_views, self._views = self._views, {}
            if self._endpoints_pushed:
                self._kept_own.update(self._own)
            elif self._own:
                self._kept_own = self._own
            self._own, self._endpoints_pushed = {}, False
            self._own_by_key.clear()
            self._inputs_equal.clear()
            self._load_assignments.clear()
            self._encoded.clear()
            self._eds_updates.clear()
            self._previous_interned, self._interned = self._interned, {}

    def _intern(self, snapshot: TypeSnapshot) -> TypeSnapshot:
        """The snapshot of this version already made in this or the previous context, if any."""
        version = snapshot.version
        found = self._interned.get(version) or self._previous_interned.get(version) or snapshot
        self._interned[version] = found
        return found

    def _encode_shared(self, messages: Iterable[Message], attribute: str) -> list[Resource]:
        """Resources of messages the context memoizes for several views, each encoded once."""
        out = []
        for message in messages:
            found = self._encoded.get(id(message))
            if found is None or found[0] is not message:
                resource = Resource.from_message(getattr(message, attribute), message)
                found = self._encoded[id(message)] = (message, resource)
            out.append(found[1])
        return out

    def _view(self, ctx: PushContext, view: ProxyView) -> _ViewConfig:
        self._use(ctx)
        found = self._views.get(view)
        if found is None:
            unbound: list[listener_pb2.Listener] = []
            sds = None
            if view.type is NodeType.ROUTER:
                merged = gateways.merge(ctx, view)
                unbound = gateways.gateway_listeners(ctx, view, merged)
                route_configs = gateway_routes.gateway_routes(ctx, view, merged)
                credentials = secrets.gateway_secrets(ctx.config, view.namespace, merged)
                sds = self._intern(TypeSnapshot.of(_resources(credentials)))
            else:
                route_configs = routes.outbound_routes(ctx, view)
            cluster_snapshot, endpoint_snapshot = self._clusters(ctx, view)
            found = self._views[view] = _ViewConfig(
                clusters=cluster_snapshot,
                listeners=self._intern(
                    TypeSnapshot.of(_resources(listeners.outbound_listeners(ctx, view)))
                ),
                routes=self._intern(TypeSnapshot.of(_resources(route_configs))),
                endpoints=endpoint_snapshot,
                unbound_listeners=tuple(unbound),
                secrets=sds,
            )
        return found

    def _clusters(self, ctx: PushContext, view: ProxyView) -> tuple[TypeSnapshot, TypeSnapshot]:
        """The view's outbound clusters and their endpoints, kept from the previous context
        when only routing changed and the view's scope imports the same services."""
        prior = self._previous_views.get(view)
        before = self._previous_context
        if (
            prior is not None
            and before is not None
            and self._only_routing_changed()
            and ctx.services_for(view) == before.services_for(view)
        ):
            return prior.clusters, prior.endpoints
        outbound = self._encode_shared(clusters.outbound_clusters(ctx, view), "name")
        eds = self._encode_shared(endpoints.load_assignments(ctx, view), "cluster_name")
        return self._intern(TypeSnapshot.of(outbound)), self._intern(TypeSnapshot.of(eds))

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
