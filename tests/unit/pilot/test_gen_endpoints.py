"""EDS generation: localities with weights (as gRPC clients need), lookup by cluster name."""

from __future__ import annotations

from collections.abc import Callable

from envoy.config.cluster.v3 import cluster_pb2

from pilot.generators.clusters import outbound_clusters
from pilot.generators.endpoints import (
    cluster_load_assignment,
    load_assignment,
    load_assignments,
    parse_locality,
)
from pilot.model import Endpoint, NodeType, Proxy, ProxyView
from pilot.push_context import PushContext

BuildContext = Callable[..., PushContext]
REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"
VIEW = ProxyView(NodeType.SIDECAR, "default")


def test_endpoints_grouped_by_locality_with_weights(ctx: PushContext) -> None:
    assignment = load_assignment(ctx, REVIEWS, VIEW)
    assert assignment is not None
    assert assignment.cluster_name == REVIEWS
    no_locality, east = assignment.endpoints
    assert no_locality.HasField("locality")  # present though empty: gRPC requires it
    assert (no_locality.locality.region, no_locality.load_balancing_weight.value) == ("", 3)
    (lb,) = no_locality.lb_endpoints
    assert lb.endpoint.address.socket_address.address == "127.0.1.3"
    assert lb.load_balancing_weight.value == 3
    assert (east.locality.region, east.locality.zone, east.locality.sub_zone) == (
        "us-east",
        "zone-a",
        "",
    )
    assert east.load_balancing_weight.value == 1
    assert east.lb_endpoints[0].endpoint.address.socket_address.port_value == 19080


def test_locality_weight_is_the_sum_and_order_is_sorted() -> None:
    endpoints = [
        Endpoint("10.0.0.3", 80, weight=2, locality="r/z"),
        Endpoint("10.0.0.1", 80, weight=5, locality="r/z"),
        Endpoint("10.0.0.2", 80, locality="a"),
    ]
    assignment = cluster_load_assignment("c", endpoints)
    forward = assignment.SerializeToString(deterministic=True)
    assert cluster_load_assignment("c", endpoints[::-1]).SerializeToString(deterministic=True) == (
        forward
    )
    first, second = assignment.endpoints
    assert first.locality.region == "a"
    assert second.load_balancing_weight.value == 7
    assert [e.endpoint.address.socket_address.address for e in second.lb_endpoints] == [
        "10.0.0.1",
        "10.0.0.3",
    ]


def test_parse_locality() -> None:
    assert parse_locality("") == ("", "", "")
    assert parse_locality("us") == ("us", "", "")
    assert parse_locality("us/east") == ("us", "east", "")
    assert parse_locality("us/east/a/b") == ("us", "east", "a/b")


def test_only_eds_clusters_have_assignments(ctx: PushContext) -> None:
    assert load_assignment(ctx, "outbound|80||www.googleapis.com", VIEW) is None  # DNS
    assert load_assignment(ctx, "outbound|8000||passthrough.example.com", VIEW) is None  # NONE
    assert load_assignment(ctx, "outbound|9|sub|reviews.default.svc.cluster.local", VIEW) is None
    assert load_assignment(ctx, "outbound|1||reviews.default.svc.cluster.local", VIEW) is None
    assert load_assignment(ctx, "outbound|9080||nope.example.com", VIEW) is None
    assert load_assignment(ctx, "inbound|9080||", VIEW) is None
    assert load_assignment(ctx, "outbound|x||reviews", VIEW) is None
    assert load_assignment(ctx, "BlackHoleCluster", VIEW) is None


def test_an_assignment_for_every_eds_cluster(ctx: PushContext, sidecar: Proxy) -> None:
    eds = {
        c.name for c in outbound_clusters(ctx, sidecar.view) if c.type == cluster_pb2.Cluster.EDS
    }
    assignments = load_assignments(ctx, sidecar.view)
    assert {a.cluster_name for a in assignments} == eds
    assert all(a == load_assignment(ctx, a.cluster_name, VIEW) for a in assignments)


def test_empty_service_still_gets_an_assignment(build_context: BuildContext) -> None:
    ctx = build_context(
        """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: empty}
        spec: {hosts: [e.example.com], resolution: STATIC, ports: [{number: 80, name: http}]}
        """
    )
    assignment = load_assignment(ctx, "outbound|80||e.example.com", VIEW)
    assert assignment is not None
    assert list(assignment.endpoints) == []
