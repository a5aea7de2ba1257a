"""Snapshot generation: per-view sharing, per-proxy parts, endpoint-only updates."""

from __future__ import annotations

import gc

import pytest

from meshcore.xds import types
from meshcore.xds.resource import TypeSnapshot
from pilot.config_files import load_config_directory
from pilot.generators import clusters, listeners
from pilot.model import Proxy
from pilot.push_context import PushContext
from pilot.server import classify_change
from pilot.snapshots import SnapshotGenerator
from tests.unit.pilot.conftest import (
    SAMPLE_MESH,
    BuildContext,
    MakeProxy,
    WriteConfig,
    load_directory,
)
from tests.unit.pilot.vs_support import virtual_service

REVIEWS_9080 = "outbound|9080||reviews.default.svc.cluster.local"
RATINGS_9080 = "outbound|9080||ratings.shop.svc.cluster.local"
RATINGS_HOST = "ratings.shop.svc.cluster.local"
CLIENT_A = "sidecar~127.0.3.1~a.default~default.svc.cluster.local"
CLIENT_B = "sidecar~127.0.3.2~b.default~default.svc.cluster.local"


def test_equal_views_share_generated_resources(ctx: PushContext, make_proxy: MakeProxy) -> None:
    generator = SnapshotGenerator()
    one = generator.full(ctx, make_proxy(CLIENT_A))
    two = generator.full(ctx, make_proxy(CLIENT_B))
    assert one.types[types.ROUTE] is two.types[types.ROUTE]
    assert one.types[types.ENDPOINT] is two.types[types.ENDPOINT]
    shared = one.types[types.CLUSTER].resources[REVIEWS_9080]
    assert two.types[types.CLUSTER].resources[REVIEWS_9080] is shared


def test_per_proxy_parts_differ(ctx: PushContext, sidecar: Proxy, make_proxy: MakeProxy) -> None:
    generator = SnapshotGenerator()
    backend = generator.full(ctx, sidecar)
    client = generator.full(ctx, make_proxy(CLIENT_A))
    assert "inbound|19080||" in backend.types[types.CLUSTER].resources
    assert "inbound|19080||" not in client.types[types.CLUSTER].resources
    assert backend.types[types.CLUSTER].version != client.types[types.CLUSTER].version


def test_a_new_context_is_generated_afresh(
    build_context: BuildContext, make_proxy: MakeProxy
) -> None:
    generator = SnapshotGenerator()
    first = generator.full(build_context(version="1"), make_proxy(CLIENT_A))
    changed = SAMPLE_MESH.replace("[{address: 127.0.2.1}]", "[{address: 127.0.2.9}]")
    second = generator.full(build_context(changed, version="2"), make_proxy(CLIENT_A))
    assert first.types[types.ENDPOINT].version != second.types[types.ENDPOINT].version
    assert first.types[types.CLUSTER].version == second.types[types.CLUSTER].version


def test_endpoint_only_update_touches_only_that_cluster(
    build_context: BuildContext, make_proxy: MakeProxy
) -> None:
    generator = SnapshotGenerator()
    proxy = make_proxy(CLIENT_A)
    before = generator.full(build_context(version="1"), proxy)
    changed = SAMPLE_MESH.replace("[{address: 127.0.2.1}]", "[{address: 127.0.2.9}]")
    after = generator.endpoints_only(
        before,
        build_context(changed, version="2"),
        proxy,
        frozenset({"ratings.shop.svc.cluster.local"}),
    )
    old_eds, new_eds = before.types[types.ENDPOINT], after.types[types.ENDPOINT]
    assert new_eds.resources[RATINGS_9080].version != old_eds.resources[RATINGS_9080].version
    assert new_eds.resources[REVIEWS_9080] is old_eds.resources[REVIEWS_9080]
    for other in (types.CLUSTER, types.LISTENER, types.ROUTE):
        assert after.types[other] is before.types[other]


def test_endpoint_only_update_without_change_keeps_the_snapshot(
    ctx: PushContext, make_proxy: MakeProxy
) -> None:
    generator = SnapshotGenerator()
    proxy = make_proxy(CLIENT_A)
    before = generator.full(ctx, proxy)
    after = generator.endpoints_only(
        before, ctx, proxy, frozenset({"ratings.shop.svc.cluster.local"})
    )
    assert after is before


def test_classify_change(write_config: WriteConfig) -> None:
    base = load_directory(write_config(SAMPLE_MESH, "a.yaml"))
    moved = load_directory(
        write_config(SAMPLE_MESH.replace("address: 127.0.1.3", "address: 127.0.1.4"), "a.yaml")
    )
    request = classify_change(base, moved)
    assert not request.full
    assert request.endpoints == {"reviews.default.svc.cluster.local"}
    assert request.workload_addresses == {"127.0.1.3", "127.0.1.4"}
    grown = load_directory(
        write_config(SAMPLE_MESH.replace("9080, name: http}", "9081, name: http}"), "a.yaml")
    )
    assert classify_change(base, grown).full


_REVIEWS_ROUTE = "\n---\n" + virtual_service(
    "reviews",
    """
    hosts: [reviews.default.svc.cluster.local]
    http: [{timeout: 7s, route: [{destination: {host: reviews.default.svc.cluster.local}}]}]
    """,
)


def test_a_full_push_after_an_endpoints_only_push_reuses_what_did_not_change(
    build_context: BuildContext,
    write_config: WriteConfig,
    sidecar: Proxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Routing edited after an endpoint moved: neither the clusters nor the proxy's own side
    are generated again, and the result is what a fresh generator makes."""
    generated: list[str] = []
    for module, function in (
        (clusters, "inbound_clusters"),
        (clusters, "outbound_clusters"),
        (listeners, "proxy_listeners"),
    ):
        real = getattr(module, function)
        monkeypatch.setattr(
            module,
            function,
            lambda *args, _real=real, _name=function: generated.append(_name) or _real(*args),
        )
    generator = SnapshotGenerator()
    first = generator.full(build_context(version="1"), sidecar)
    assert sorted(generated) == ["inbound_clusters", "outbound_clusters", "proxy_listeners"]
    moved = SAMPLE_MESH.replace("[{address: 127.0.2.1}]", "[{address: 127.0.2.9}]")
    eds = generator.endpoints_only(
        first, build_context(moved, version="2"), sidecar, frozenset({RATINGS_HOST})
    )
    loaded = load_config_directory(write_config(moved + _REVIEWS_ROUTE))
    routed = PushContext.build(loaded.registry, "3", loaded.istio)
    generated.clear()
    after = generator.full(routed, sidecar, eds)

    assert generated == []
    monkeypatch.undo()
    fresh = SnapshotGenerator().full(routed, sidecar)
    for type_url in (types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE):
        assert after.types[type_url].version == fresh.types[type_url].version
    assert after.types[types.ENDPOINT] is eds.types[types.ENDPOINT]
    assert after.types[types.ROUTE].version != first.types[types.ROUTE].version


def test_a_routing_change_extends_no_proxy_side_again(
    build_context: BuildContext,
    write_config: WriteConfig,
    sidecar: Proxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only routes changed: the view's clusters and listeners are the same, and so is each
    proxy's snapshot of them with its own side added, made once and found again."""
    generator = SnapshotGenerator()
    first = generator.full(build_context(version="1"), sidecar)
    loaded = load_config_directory(write_config(SAMPLE_MESH + _REVIEWS_ROUTE))
    extended: list[TypeSnapshot] = []
    real_extend = TypeSnapshot.extend
    monkeypatch.setattr(
        TypeSnapshot, "extend", lambda self, own: extended.append(self) or real_extend(self, own)
    )

    after = generator.full(PushContext.build(loaded.registry, "2", loaded.istio), sidecar, first)

    assert extended == []
    assert after.types[types.CLUSTER] is first.types[types.CLUSTER]
    assert after.types[types.LISTENER] is first.types[types.LISTENER]
    assert after.types[types.ROUTE].version != first.types[types.ROUTE].version


REVIEWS_V2 = "sidecar~127.0.1.3~reviews-v2.default~default.svc.cluster.local"


def test_kept_inbound_sides_survive_an_endpoints_push_that_rebuilt_another_proxy(
    build_context: BuildContext,
    write_config: WriteConfig,
    sidecar: Proxy,
    make_proxy: MakeProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An endpoints-only push regenerates in full the proxy whose own workload changed (as
    when a pod turns ready); the next full push still reuses every other proxy's inbound
    side, and the moved proxy's new one, and matches what a fresh generator makes."""
    generated: list[str] = []
    for module, function in ((clusters, "inbound_clusters"), (listeners, "proxy_listeners")):
        real = getattr(module, function)
        monkeypatch.setattr(
            module,
            function,
            lambda *args, _real=real, _name=function: generated.append(_name) or _real(*args),
        )
    other = make_proxy(REVIEWS_V2)
    generator = SnapshotGenerator()
    ctx = build_context(version="1")
    first = {p.id: generator.full(ctx, p) for p in (sidecar, other)}
    moved = SAMPLE_MESH.replace("weight: 3", "weight: 4")  # reviews-v2's own instances
    eds_ctx = build_context(moved, version="2")
    reviews = frozenset({"reviews.default.svc.cluster.local"})
    generated.clear()
    after_eds = {
        other.id: generator.full(eds_ctx, other, first[other.id]),
        sidecar.id: generator.endpoints_only(first[sidecar.id], eds_ctx, sidecar, reviews),
    }
    assert generated == ["inbound_clusters", "proxy_listeners"]  # reviews-v2's alone
    loaded = load_config_directory(write_config(moved + _REVIEWS_ROUTE))
    routed = PushContext.build(loaded.registry, "3", loaded.istio)
    generated.clear()
    after = {p.id: generator.full(routed, p, after_eds[p.id]) for p in (sidecar, other)}

    assert generated == []
    monkeypatch.undo()
    for proxy in (sidecar, other):
        fresh = SnapshotGenerator().full(routed, proxy)
        for type_url in (types.CLUSTER, types.LISTENER, types.ROUTE):
            assert after[proxy.id].types[type_url].version == fresh.types[type_url].version


def test_only_the_current_and_previous_contexts_stay_alive(
    build_context: BuildContext, sidecar: Proxy
) -> None:
    """However many pushes go by (full and endpoints-only), the generator holds at most the
    current and the previous push context (kept inbound sides hold their inputs, not the
    context they were made in), and no context keeps the one before it."""
    generator = SnapshotGenerator()
    snapshot = generator.full(build_context(version="0"), sidecar)
    moved = SAMPLE_MESH.replace("[{address: 127.0.2.1}]", "[{address: 127.0.2.9}]")
    for version in range(1, 9):
        ctx = build_context(moved if version % 2 else SAMPLE_MESH, version=str(version))
        if version % 3:
            snapshot = generator.full(ctx, sidecar, snapshot)
        else:
            snapshot = generator.endpoints_only(snapshot, ctx, sidecar, frozenset({RATINGS_HOST}))
    del ctx
    gc.collect()
    assert sum(isinstance(o, PushContext) for o in gc.get_objects()) <= 2
