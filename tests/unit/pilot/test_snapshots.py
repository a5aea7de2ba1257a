"""Snapshot generation: per-view sharing, per-proxy parts, endpoint-only updates."""

from __future__ import annotations

from meshcore.xds import types
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

REVIEWS_9080 = "outbound|9080||reviews.default.svc.cluster.local"
RATINGS_9080 = "outbound|9080||ratings.shop.svc.cluster.local"
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
