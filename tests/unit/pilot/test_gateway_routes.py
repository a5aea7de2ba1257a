"""Gateway route configs: which VirtualServices a server takes, host intersection, merging,
per-gateway matches, HTTPS redirect, and Istio's names (`http.<port>`, `https.<port>...`)."""

from __future__ import annotations

from envoy.config.route.v3.route_components_pb2 import VirtualHost

from pilot.generators import routes
from pilot.model import NodeType, ProxyView
from tests.support.shared import BOOKINFO_NETWORKING
from tests.unit.pilot.gateway_support import (
    gateway,
    route_configs,
    router_view,
    virtual_hosts,
)
from tests.unit.pilot.vs_support import (
    BOOKINFO,
    WriteConfig,
    build,
    service,
    virtual_service,
)

PRODUCTPAGE = "outbound|9080||productpage.default.svc.cluster.local"
REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"
HTTP_8080 = """\
- port: {number: 8080, name: http, protocol: HTTP}
  hosts: ["*"]
"""


def test_bookinfo_gateway_routes_the_five_productpage_paths(write_config: WriteConfig) -> None:
    ctx = build(write_config, BOOKINFO, (BOOKINFO_NETWORKING / "bookinfo-gateway.yaml").read_text())
    assert list(route_configs(ctx)) == ["http.8080"]
    (host,) = route_configs(ctx)["http.8080"].virtual_hosts
    assert host.name == "*:8080"
    assert list(host.domains) == ["*"]
    assert host.include_request_attempt_count
    matches = [
        (route.match.WhichOneof("path_specifier"), route.match.path or route.match.prefix)
        for route in host.routes
    ]
    assert matches == [
        ("path", "/productpage"),
        ("prefix", "/static"),
        ("path", "/login"),
        ("path", "/logout"),
        ("prefix", "/api/v1/products"),
    ]
    assert {route.route.cluster for route in host.routes} == {PRODUCTPAGE}


def test_routers_get_only_the_gateways_their_labels_select(write_config: WriteConfig) -> None:
    ctx = build(write_config, BOOKINFO, (BOOKINFO_NETWORKING / "bookinfo-gateway.yaml").read_text())
    assert route_configs(ctx, router_view({"istio": "egressgateway"})) == {}
    extra_labels = router_view({"istio": "ingressgateway", "app": "x"}, namespace="edge")
    assert list(route_configs(ctx, extra_labels)) == ["http.8080"]
    # Sidecars never see gateway-bound VirtualServices.
    sidecar = routes.outbound_routes(ctx, ProxyView(NodeType.SIDECAR, "default"))
    assert all(vh.name != "*:8080" for config in sidecar for vh in config.virtual_hosts)


def test_an_empty_selector_selects_every_router(write_config: WriteConfig) -> None:
    ctx = build(
        write_config,
        BOOKINFO,
        gateway("any", HTTP_8080, selector="{}"),
        virtual_service(
            "vs", "hosts: ['*']\ngateways: [any]\nhttp: [{route: [{destination: {host: reviews}}]}]"
        ),
    )
    assert list(route_configs(ctx, router_view({}))) == ["http.8080"]


def test_server_hosts_intersect_virtual_service_hosts_by_namespace(
    write_config: WriteConfig,
) -> None:
    servers = """\
    - port: {number: 8080, name: http, protocol: HTTP}
      hosts: ["shop/*.example.com", "./own.example.com", "*/any.example.org"]
    """
    route = "http: [{route: [{destination: {host: reviews.default.svc.cluster.local}}]}]"
    ctx = build(
        write_config,
        BOOKINFO,
        gateway("gw", servers),
        virtual_service(
            "shop-a", f"hosts: [a.example.com]\ngateways: [default/gw]\n{route}", "shop"
        ),
        virtual_service(
            "other-b", f"hosts: [b.example.com]\ngateways: [default/gw]\n{route}", "other"
        ),
        virtual_service(
            "own", f"hosts: [own.example.com, any.example.org]\ngateways: [gw]\n{route}"
        ),
        virtual_service("wild", f"hosts: ['*']\ngateways: [default/gw]\n{route}", "shop"),
    )
    hosts = virtual_hosts(ctx, "http.8080")
    assert sorted(hosts) == [
        "*.example.com:8080",
        "a.example.com:8080",
        "any.example.org:8080",
        "own.example.com:8080",
    ]
    assert list(hosts["a.example.com:8080"].domains) == ["a.example.com", "a.example.com:8080"]
    # A VirtualService host `*` meets the server's `*.example.com` as the narrower name.
    assert list(hosts["*.example.com:8080"].domains) == ["*.example.com", "*.example.com:8080"]


def test_virtual_services_for_one_host_merge_with_catch_alls_last(
    write_config: WriteConfig,
) -> None:
    first = """\
    hosts: [shop.example.com]
    gateways: [gw]
    http:
    - route: [{destination: {host: reviews}}]
    """
    second = """\
    hosts: [shop.example.com]
    gateways: [gw]
    http:
    - match: [{uri: {prefix: /products}}]
      route: [{destination: {host: productpage}}]
    """
    ctx = build(
        write_config,
        BOOKINFO,
        gateway("gw", HTTP_8080),
        virtual_service("a-first", first),
        virtual_service("b-second", second),
    )
    (host,) = route_configs(ctx)["http.8080"].virtual_hosts
    assert [(r.match.prefix, r.route.cluster) for r in host.routes] == [
        ("/products", PRODUCTPAGE),
        ("/", REVIEWS),
    ]


def test_matches_select_by_gateway_and_router_labels(write_config: WriteConfig) -> None:
    spec = """\
    hosts: [shop.example.com]
    gateways: [mesh, gw]
    http:
    - match: [{gateways: [mesh]}]
      route: [{destination: {host: productpage}}]
    - match: [{sourceLabels: {istio: ingressgateway}, uri: {prefix: /labelled}}]
      route: [{destination: {host: productpage}}]
    - match: [{gateways: [default/gw], port: 8080}]
      route: [{destination: {host: reviews}}]
    """
    ctx = build(write_config, BOOKINFO, gateway("gw", HTTP_8080), virtual_service("shop", spec))
    (host,) = route_configs(ctx)["http.8080"].virtual_hosts
    assert [(r.match.prefix, r.route.cluster) for r in host.routes] == [
        ("/labelled", PRODUCTPAGE),
        ("/", REVIEWS),
    ]


def test_https_redirect_requires_tls_with_or_without_a_virtual_service(
    write_config: WriteConfig,
) -> None:
    servers = """\
    - port: {number: 8080, name: http, protocol: HTTP}
      hosts: [routed.example.com, bare.example.com]
      tls: {httpsRedirect: true}
    """
    ctx = build(
        write_config,
        BOOKINFO,
        gateway("gw", servers),
        virtual_service(
            "routed",
            "hosts: [routed.example.com]\ngateways: [gw]\n"
            "http: [{route: [{destination: {host: reviews}}]}]",
        ),
    )
    hosts = virtual_hosts(ctx, "http.8080")
    assert sorted(hosts) == ["bare.example.com:8080", "routed.example.com:8080"]
    assert all(vh.require_tls == VirtualHost.ALL for vh in hosts.values())
    assert not hosts["bare.example.com:8080"].routes
    assert hosts["routed.example.com:8080"].routes[0].route.cluster == REVIEWS


def test_a_server_without_virtual_services_answers_404(write_config: WriteConfig) -> None:
    ctx = build(write_config, BOOKINFO, gateway("gw", HTTP_8080))
    (host,) = route_configs(ctx)["http.8080"].virtual_hosts
    assert (host.name, list(host.domains), len(host.routes)) == ("blackhole:8080", ["*"], 0)


def test_http_servers_of_several_gateways_share_one_route_config(
    write_config: WriteConfig,
) -> None:
    one = "- port: {number: 8080, name: http, protocol: HTTP}\n  hosts: [one.example.com]\n"
    two = "- port: {number: 8080, name: web, protocol: HTTP}\n  hosts: [two.example.com]\n"
    route = "http: [{route: [{destination: {host: reviews}}]}]"
    ctx = build(
        write_config,
        BOOKINFO,
        gateway("one", one),
        gateway("two", two, namespace="edge"),
        virtual_service("one", f"hosts: [one.example.com]\ngateways: [one]\n{route}"),
        virtual_service("two", f"hosts: [two.example.com]\ngateways: [edge/two]\n{route}"),
    )
    assert sorted(virtual_hosts(ctx, "http.8080")) == [
        "one.example.com:8080",
        "two.example.com:8080",
    ]


def test_https_servers_get_a_route_config_each(write_config: WriteConfig) -> None:
    servers = """\
    - port: {number: 8443, name: https-a, protocol: HTTPS}
      hosts: [a.example.com]
      tls: {mode: SIMPLE, serverCertificate: /a.pem, privateKey: /a.key}
    - port: {number: 8443, name: https-b, protocol: HTTPS}
      hosts: [b.example.com]
      tls: {mode: SIMPLE, serverCertificate: /b.pem, privateKey: /b.key}
    """
    route = "http: [{route: [{destination: {host: reviews}}]}]"
    ctx = build(
        write_config,
        BOOKINFO,
        gateway("gw", servers),
        virtual_service("both", f"hosts: [a.example.com, b.example.com]\ngateways: [gw]\n{route}"),
    )
    configs = route_configs(ctx)
    assert sorted(configs) == ["https.8443.https-a.gw.default", "https.8443.https-b.gw.default"]
    assert [vh.name for vh in configs["https.8443.https-a.gw.default"].virtual_hosts] == [
        "a.example.com:8443"
    ]


def test_destinations_need_a_port_when_the_service_has_several(write_config: WriteConfig) -> None:
    spec = """\
    hosts: ['*']
    gateways: [gw]
    http:
    - match: [{uri: {prefix: /named}}]
      route: [{destination: {host: multi, port: {number: 9090}, subset: v1}}]
    - route: [{destination: {host: multi}}]
    """
    ctx = build(
        write_config,
        service("multi", 9080, 9090),
        gateway("gw", HTTP_8080),
        virtual_service("vs", spec),
    )
    (host,) = route_configs(ctx)["http.8080"].virtual_hosts
    assert [r.route.cluster for r in host.routes] == [
        "outbound|9090|v1|multi.default.svc.cluster.local",
        # Istio falls back to the gateway port, which names no cluster of the service.
        "outbound|8080||multi.default.svc.cluster.local",
    ]
