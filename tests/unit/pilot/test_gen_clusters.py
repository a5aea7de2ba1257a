"""CDS generation: Istio's cluster names and types, HTTP/2 upstreams, inbound delivery."""

from __future__ import annotations

from collections.abc import Callable

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from pilot.generators.clusters import HTTP_PROTOCOL_OPTIONS, inbound_clusters, outbound_clusters
from pilot.model import NodeType, Proxy, ProxyView
from pilot.push_context import PushContext

Cluster = cluster_pb2.Cluster
MakeProxy = Callable[..., Proxy]
BuildContext = Callable[..., PushContext]
VIEW = ProxyView(NodeType.SIDECAR, "default")


def _by_name(clusters: list[cluster_pb2.Cluster]) -> dict[str, cluster_pb2.Cluster]:
    return {c.name: c for c in clusters}


def _endpoints(cluster: cluster_pb2.Cluster) -> list[tuple[str, int]]:
    return [
        (lb.endpoint.address.socket_address.address, lb.endpoint.address.socket_address.port_value)
        for locality in cluster.load_assignment.endpoints
        for lb in locality.lb_endpoints
    ]


def test_outbound_names_and_types(ctx: PushContext, sidecar: Proxy) -> None:
    clusters = outbound_clusters(ctx, sidecar.view)
    assert [c.name for c in clusters] == [
        "BlackHoleCluster",
        "PassthroughCluster",
        "outbound|3306||reviews.default.svc.cluster.local",
        "outbound|443||www.googleapis.com",
        "outbound|8000||passthrough.example.com",
        "outbound|80||www.googleapis.com",
        "outbound|9080||ratings.shop.svc.cluster.local",
        "outbound|9080||reviews.default.svc.cluster.local",
        "outbound|9090||reviews.default.svc.cluster.local",
    ]
    types = {c.name: c.type for c in clusters}
    assert types["outbound|9080||reviews.default.svc.cluster.local"] == Cluster.EDS
    assert types["outbound|80||www.googleapis.com"] == Cluster.STRICT_DNS
    assert types["outbound|8000||passthrough.example.com"] == Cluster.ORIGINAL_DST
    assert all(c.connect_timeout.seconds == 10 for c in clusters)


def test_eds_cluster_fetches_its_own_name_over_ads(ctx: PushContext, sidecar: Proxy) -> None:
    name = "outbound|9080||reviews.default.svc.cluster.local"
    cluster = _by_name(outbound_clusters(ctx, sidecar.view))[name]
    eds = cluster.eds_cluster_config
    assert eds.service_name == name
    assert eds.eds_config.HasField("ads")
    assert eds.eds_config.resource_api_version == config_source_pb2.ApiVersion.V3
    assert not cluster.HasField("load_assignment")


def test_dns_clusters_resolve_endpoints_or_the_host(build_context: BuildContext) -> None:
    ctx = build_context(
        """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: bare}
        spec:
          hosts: [api.example.com]
          resolution: DNS
          ports: [{number: 443, name: tls, targetPort: 8443}]
        ---
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: listed}
        spec:
          hosts: [db.example.com]
          resolution: DNS
          ports: [{number: 5432, name: tcp}]
          endpoints: [{address: db2.example.com}, {address: 10.0.0.1, ports: {tcp: 6432}}]
        ---
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: logical}
        spec:
          hosts: [one.example.com]
          resolution: DNS_ROUND_ROBIN
          ports: [{number: 80, name: http}]
        """
    )
    clusters = _by_name(outbound_clusters(ctx, VIEW))
    bare = clusters["outbound|443||api.example.com"]
    assert bare.type == Cluster.STRICT_DNS
    assert bare.load_assignment.cluster_name == bare.name
    assert _endpoints(bare) == [("api.example.com", 8443)]
    assert bare.dns_lookup_family == Cluster.V4_PREFERRED
    listed = clusters["outbound|5432||db.example.com"]
    assert _endpoints(listed) == [("10.0.0.1", 6432), ("db2.example.com", 5432)]
    logical = clusters["outbound|80||one.example.com"]
    assert logical.type == Cluster.LOGICAL_DNS
    assert _endpoints(logical) == [("one.example.com", 80)]


def test_passthrough_and_blackhole(ctx: PushContext, sidecar: Proxy) -> None:
    clusters = _by_name(outbound_clusters(ctx, sidecar.view))
    passthrough = clusters["PassthroughCluster"]
    assert (passthrough.type, passthrough.lb_policy) == (
        Cluster.ORIGINAL_DST,
        Cluster.CLUSTER_PROVIDED,
    )
    blackhole = clusters["BlackHoleCluster"]
    assert blackhole.type == Cluster.STATIC
    assert not blackhole.HasField("load_assignment")
    none = clusters["outbound|8000||passthrough.example.com"]
    assert none.lb_policy == Cluster.CLUSTER_PROVIDED


def test_http2_upstream_only_for_http2_and_grpc_ports(ctx: PushContext, sidecar: Proxy) -> None:
    clusters = outbound_clusters(ctx, sidecar.view)
    with_h2 = [
        c.name for c in clusters if HTTP_PROTOCOL_OPTIONS in c.typed_extension_protocol_options
    ]
    assert with_h2 == ["outbound|9090||reviews.default.svc.cluster.local"]
    options = http_protocol_options_pb2.HttpProtocolOptions()
    assert (
        _by_name(clusters)[with_h2[0]]
        .typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS]
        .Unpack(options)
    )
    assert options.explicit_http_config.HasField("http2_protocol_options")


def test_inbound_clusters_deliver_to_the_app_address(ctx: PushContext, sidecar: Proxy) -> None:
    clusters = inbound_clusters(ctx, sidecar)
    assert [c.name for c in clusters] == ["inbound|3306||", "inbound|19080||", "inbound|19090||"]
    for cluster in clusters:
        assert cluster.type == Cluster.STATIC
        port = int(cluster.name.split("|")[1])
        assert _endpoints(cluster) == [("127.0.100.2", port)]
        assert cluster.load_assignment.cluster_name == cluster.name
    grpc = clusters[2]
    assert HTTP_PROTOCOL_OPTIONS in grpc.typed_extension_protocol_options


def test_inbound_skips_reserved_and_http_proxy_ports(
    build_context: BuildContext, make_proxy: MakeProxy
) -> None:
    ctx = build_context(
        """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: app}
        spec:
          hosts: [app.default.svc.cluster.local]
          resolution: STATIC
          ports: [{number: 15001, name: a}, {number: 8080, name: b}, {number: 9000, name: c}]
          endpoints: [{address: 127.0.1.2}]
        """
    )
    proxy = make_proxy(HTTP_PROXY_PORT="8080", INTERCEPTION_MODE="NONE")
    assert [c.name for c in inbound_clusters(ctx, proxy)] == ["inbound|9000||"]
    assert [c.name for c in inbound_clusters(ctx, make_proxy(INTERCEPTION_MODE="NONE"))] == [
        "inbound|8080||",
        "inbound|9000||",
    ]


def test_captured_proxy_gets_the_inbound_passthrough_cluster(
    ctx: PushContext, make_proxy: MakeProxy
) -> None:
    """Istio's InboundPassthroughClusterIpv4: to where the connection was headed, from
    127.0.0.6, which the capture rules let through instead of redirecting it to inbound."""
    *_, passthrough = inbound_clusters(ctx, make_proxy(INTERCEPTION_MODE="REDIRECT"))
    assert passthrough.name == "InboundPassthroughClusterIpv4"
    assert passthrough.type == passthrough.ORIGINAL_DST
    assert passthrough.lb_policy == passthrough.CLUSTER_PROVIDED
    source = passthrough.upstream_bind_config.source_address
    assert (source.address, source.port_value) == ("127.0.0.6", 0)
    names = [c.name for c in inbound_clusters(ctx, make_proxy(INTERCEPTION_MODE="NONE"))]
    assert "InboundPassthroughClusterIpv4" not in names


def test_gateways_have_outbound_but_no_inbound_clusters(
    ctx: PushContext, make_proxy: MakeProxy
) -> None:
    gateway = make_proxy("router~127.0.1.2~gw.default~default.svc.cluster.local")
    assert len(outbound_clusters(ctx, gateway.view)) == 9
    assert inbound_clusters(ctx, gateway) == []
