"""RDS generation: route configs per port, Istio's domains, allow_any, and the HTTP proxy's."""

from __future__ import annotations

from collections.abc import Callable

from envoy.config.route.v3 import route_pb2

from meshcore.xds import types
from pilot.generators.routes import inbound_route, outbound_routes
from pilot.model import NodeType, Proxy, ProxyView
from pilot.push_context import PushContext
from pilot.snapshots import SnapshotGenerator

BuildContext = Callable[..., PushContext]
MakeProxy = Callable[..., Proxy]
DEFAULT = ProxyView(NodeType.SIDECAR, "default")
HTTP_PROXY = ProxyView(NodeType.SIDECAR, "default", http_proxy=True)  # HTTP_PROXY_PORT set


def _configs(
    ctx: PushContext, view: ProxyView = DEFAULT
) -> dict[str, route_pb2.RouteConfiguration]:
    return {c.name: c for c in outbound_routes(ctx, view)}


def _domains(config: route_pb2.RouteConfiguration) -> dict[str, list[str]]:
    return {vh.name: list(vh.domains) for vh in config.virtual_hosts}


def test_one_config_per_http_port_plus_http_proxy(ctx: PushContext) -> None:
    assert list(_configs(ctx, HTTP_PROXY)) == ["80", "9080", "9090", "http_proxy"]
    assert all(
        not c.validate_clusters.value and c.HasField("validate_clusters")
        for c in _configs(ctx, HTTP_PROXY).values()
    )


def test_http_proxy_config_only_for_sidecars_with_that_listener(
    ctx: PushContext, make_proxy: MakeProxy
) -> None:
    assert list(_configs(ctx)) == ["80", "9080", "9090"]
    generator = SnapshotGenerator()
    plain = generator.full(ctx, make_proxy()).types[types.ROUTE].resources
    explicit = generator.full(ctx, make_proxy(HTTP_PROXY_PORT="15080")).types[types.ROUTE].resources
    assert set(plain) == {"80", "9080", "9090"}
    assert set(explicit) == {*plain, "http_proxy"}
    assert all(plain[name].any_bytes == explicit[name].any_bytes for name in plain)


def test_virtual_hosts_route_to_the_outbound_cluster(ctx: PushContext) -> None:
    config = _configs(ctx)["9080"]
    assert [vh.name for vh in config.virtual_hosts] == [
        "ratings.shop.svc.cluster.local:9080",
        "reviews.default.svc.cluster.local:9080",
        "allow_any",
    ]
    (route,) = config.virtual_hosts[1].routes
    assert route.name == "default"
    assert route.match.prefix == "/"
    assert route.route.cluster == "outbound|9080||reviews.default.svc.cluster.local"
    assert route.route.timeout.ToSeconds() == 0 and route.route.HasField("timeout")


def test_domains_for_the_proxys_namespace_and_others(ctx: PushContext) -> None:
    domains = _domains(_configs(ctx)["9080"])
    assert domains["reviews.default.svc.cluster.local:9080"] == [
        "reviews.default.svc.cluster.local",
        "reviews.default.svc.cluster.local:9080",
        "reviews",
        "reviews:9080",
        "reviews.default",
        "reviews.default:9080",
        "reviews.default.svc",
        "reviews.default.svc:9080",
        "240.0.0.10",
        "240.0.0.10:9080",
    ]
    # No short name from another namespace.
    assert domains["ratings.shop.svc.cluster.local:9080"] == [
        "ratings.shop.svc.cluster.local",
        "ratings.shop.svc.cluster.local:9080",
        "ratings.shop",
        "ratings.shop:9080",
        "ratings.shop.svc",
        "ratings.shop.svc:9080",
    ]
    assert (
        "ratings"
        in _domains(_configs(ctx, ProxyView(NodeType.SIDECAR, "shop"))["9080"])[
            "ratings.shop.svc.cluster.local:9080"
        ]
    )
    assert _domains(_configs(ctx)["80"])["www.googleapis.com:80"] == [
        "www.googleapis.com",
        "www.googleapis.com:80",
    ]


def test_allow_any_passes_unknown_hosts_through(ctx: PushContext) -> None:
    allow_any = _configs(ctx)["9080"].virtual_hosts[-1]
    assert (allow_any.name, list(allow_any.domains)) == ("allow_any", ["*"])
    assert allow_any.routes[0].route.cluster == "PassthroughCluster"


def test_http_proxy_config_names_every_port(ctx: PushContext) -> None:
    domains = _domains(_configs(ctx, HTTP_PROXY)["http_proxy"])
    assert list(domains) == [
        "ratings.shop.svc.cluster.local:9080",
        "reviews.default.svc.cluster.local:9080",
        "reviews.default.svc.cluster.local:9090",
        "www.googleapis.com:80",
    ]
    assert domains["reviews.default.svc.cluster.local:9090"] == [
        "reviews.default.svc.cluster.local:9090",
        "reviews:9090",
        "reviews.default:9090",
        "reviews.default.svc:9090",
        "240.0.0.10:9090",
    ]
    # An absolute URI on port 80 may leave the port out.
    assert domains["www.googleapis.com:80"] == ["www.googleapis.com:80", "www.googleapis.com"]
    assert all(d != "*" for ds in domains.values() for d in ds)


def test_a_domain_is_listed_once_first_host_wins(build_context: BuildContext) -> None:
    entry = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: %s}
        spec:
          hosts: [%s]
          addresses: [10.0.0.1, "fd00::1"]
          ports: [{number: 80, name: http}]
        ---
    """
    ctx = build_context(entry % ("a", "a.example.com") + entry % ("b", "b.example.com"))
    for config in outbound_routes(ctx, HTTP_PROXY):
        listed = [d for vh in config.virtual_hosts for d in vh.domains]
        assert len(listed) == len(set(listed)), config.name
    domains = _domains(_configs(ctx)["80"])
    assert domains["a.example.com:80"][2:] == [
        "10.0.0.1",
        "10.0.0.1:80",
        "[fd00::1]",
        "[fd00::1]:80",
    ]
    assert domains["b.example.com:80"] == ["b.example.com", "b.example.com:80"]


def test_gateways_get_no_routes_yet(ctx: PushContext) -> None:
    assert outbound_routes(ctx, ProxyView(NodeType.ROUTER, "default")) == []


def test_inbound_route_delivers_everything_to_the_inbound_cluster() -> None:
    config = inbound_route(19080)
    assert config.name == "inbound|19080||"
    (vhost,) = config.virtual_hosts
    assert (vhost.name, list(vhost.domains)) == ("inbound|http|19080", ["*"])
    assert vhost.routes[0].route.cluster == "inbound|19080||"
