"""VirtualService tcp and tls routes in the outbound TCP/TLS listeners' filter chains."""

from __future__ import annotations

from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from pilot.generators import listeners
from pilot.model import NodeType, Proxy
from tests.unit.pilot.vs_support import (
    WriteConfig,
    build,
    outbound_listener,
    service,
    virtual_service,
)

DB = "db.default.svc.cluster.local"


def _proxy(chain: listener_components_pb2.FilterChain) -> tcp_proxy_pb2.TcpProxy:
    (tcp,) = chain.filters
    proxy = tcp_proxy_pb2.TcpProxy()
    assert tcp.name == "envoy.filters.network.tcp_proxy" and tcp.typed_config.Unpack(proxy)
    return proxy


def _databases(write_config: WriteConfig, tcp: str) -> listener_components_pb2.FilterChain:
    """The chains of db's listener (VIP 240.0.0.5, port 5432) under a VirtualService."""
    ctx = build(
        write_config,
        service("db", 5432, protocol="TCP", addresses=["240.0.0.5"]),
        service("db-v2", 5432, protocol="TCP", addresses=["240.0.0.6"]),
        service("db-v3", 5432, protocol="TCP", addresses=["240.0.0.7"]),
        virtual_service("db", f"hosts: [db]\ntcp:\n{tcp}"),
    )
    return outbound_listener(ctx, "240.0.0.5_5432")


def test_a_tcp_route_sends_connections_to_its_destination(write_config: WriteConfig) -> None:
    listener = _databases(write_config, "- route: [{destination: {host: db-v2}}]")
    (chain,) = listener.filter_chains
    assert not chain.HasField("filter_chain_match")
    assert _proxy(chain).cluster == "outbound|5432||db-v2.default.svc.cluster.local"
    assert chain.metadata.filter_metadata["istio"]["config"].endswith("/virtual-service/db")
    assert not listener.HasField("default_filter_chain")


def test_weighted_tcp_routes(write_config: WriteConfig) -> None:
    listener = _databases(
        write_config,
        "- route:\n  - {destination: {host: db}, weight: 75}\n"
        "  - {destination: {host: db-v2}, weight: 25}",
    )
    proxy = _proxy(listener.filter_chains[0])
    assert proxy.stat_prefix == "db.default"
    assert [(c.name, c.weight) for c in proxy.weighted_clusters.clusters] == [
        (f"outbound|5432||{DB}", 75),
        ("outbound|5432||db-v2.default.svc.cluster.local", 25),
    ]


def test_destination_subnets_match_first_then_the_rest_falls_back(
    write_config: WriteConfig,
) -> None:
    listener = _databases(
        write_config,
        """\
- match: [{destinationSubnets: [10.1.0.0/16, 10.2.0.1]}, {port: 9999}]
  route: [{destination: {host: db-v2}}]
- match: [{destinationSubnets: [10.1.0.0/16]}]
  route: [{destination: {host: db-v3}}]
- match: [{destinationSubnets: [10.2.0.1/32, 10.3.0.0/16]}]
  route: [{destination: {host: db-v3}}]
""",
    )
    subnets, narrowed, service_default = listener.filter_chains
    ranges = [
        (r.address_prefix, r.prefix_len.value) for r in subnets.filter_chain_match.prefix_ranges
    ]
    assert ranges == [("10.1.0.0", 16), ("10.2.0.1", 32)]
    assert _proxy(subnets).cluster == "outbound|5432||db-v2.default.svc.cluster.local"
    # Envoy refuses a prefix matched twice: the second rule is dropped, the third narrowed.
    assert [r.address_prefix for r in narrowed.filter_chain_match.prefix_ranges] == ["10.3.0.0"]
    assert _proxy(service_default).cluster == f"outbound|5432||{DB}"
    assert not service_default.HasField("filter_chain_match")


def test_a_match_without_subnets_ends_the_chain_list(write_config: WriteConfig) -> None:
    listener = _databases(
        write_config,
        """\
- match: [{sourceLabels: {app: x}}, {port: 5432}]
  route: [{destination: {host: db-v2}}]
- route: [{destination: {host: db-v3}}]
""",
    )
    (chain,) = listener.filter_chains
    assert _proxy(chain).cluster == "outbound|5432||db-v2.default.svc.cluster.local"


def test_tls_routes_match_sni(write_config: WriteConfig) -> None:
    tls = """\
hosts: [secure, "*.secure.example.com"]
tls:
- match: [{sniHosts: [secure], port: 443}, {sniHosts: [a.secure.example.com]}]
  route: [{destination: {host: secure-v2}}]
- match: [{sniHosts: [secure]}]
  route: [{destination: {host: secure}}]
"""
    ctx = build(
        write_config,
        service("secure", 443, protocol="TLS", addresses=["240.0.0.9"]),
        service("secure-v2", 443, protocol="TLS", addresses=["240.0.0.10"]),
        virtual_service("secure", tls),
    )
    listener = outbound_listener(ctx, "240.0.0.9_443")
    assert [f.name for f in listener.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    by_sni = {tuple(c.filter_chain_match.server_names): _proxy(c) for c in listener.filter_chains}
    v2 = "outbound|443||secure-v2.default.svc.cluster.local"
    # The second rule's SNI was claimed by the first: its chain adds nothing and is dropped.
    assert {sni: p.cluster for sni, p in by_sni.items()} == {
        ("secure.default.svc.cluster.local",): v2,
        ("a.secure.example.com",): v2,
    }
    # Other SNI names pass through, as Istio's fallthrough chain does.
    assert listener.default_filter_chain.name == "PassthroughFilterChain"
    # Without a VirtualService a TLS service keeps one chain to itself on its VIP.
    plain = outbound_listener(ctx, "240.0.0.10_443")
    (chain,) = plain.filter_chains
    assert not chain.filter_chain_match.server_names and not plain.listener_filters


def test_tls_services_without_vips_share_the_wildcard_listener_by_sni(
    write_config: WriteConfig,
) -> None:
    ctx = build(
        write_config,
        service("a", 443, protocol="HTTPS", host="a.example.com"),
        service("b", 443, protocol="TLS", host="b.example.com"),
        service("c", 443, protocol="TCP", host="c.example.com"),
    )
    listener = outbound_listener(ctx, "0.0.0.0_443")
    assert [
        (list(c.filter_chain_match.server_names), _proxy(c).cluster) for c in listener.filter_chains
    ] == [
        (["a.example.com"], "outbound|443||a.example.com"),
        (["b.example.com"], "outbound|443||b.example.com"),
    ]
    assert listener.default_filter_chain.name == "PassthroughFilterChain"


def test_source_labels_route_only_the_sidecars_carrying_them(write_config: WriteConfig) -> None:
    ctx = build(
        write_config,
        service("db", 5432, protocol="TCP", addresses=["240.0.0.5"]),
        service("db-v2", 5432, protocol="TCP", addresses=["240.0.0.6"]),
        virtual_service(
            "db",
            "hosts: [db]\ntcp:\n- match: [{sourceLabels: {app: reports}}]\n"
            "  route: [{destination: {host: db-v2}}]",
        ),
    )

    def cluster_for(labels: dict[str, str]) -> str:
        proxy = Proxy(
            id="sidecar~10.0.0.9~p.default~default.svc.cluster.local",
            type=NodeType.SIDECAR,
            ip="10.0.0.9",
            pod_name="p",
            namespace="default",
            dns_domain="default.svc.cluster.local",
            labels=labels,
        )
        found = {x.name: x for x in listeners.outbound_listeners(ctx, ctx.view_for(proxy))}
        return _proxy(found["240.0.0.5_5432"].filter_chains[0]).cluster

    assert cluster_for({"app": "reports"}) == "outbound|5432||db-v2.default.svc.cluster.local"
    assert cluster_for({"app": "web"}) == f"outbound|5432||{DB}"
