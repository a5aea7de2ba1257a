"""VirtualService HTTP rules in the outbound route configs: which VirtualService applies, and
how each rule becomes Envoy routes (matches, destinations, redirects, rewrites, timeouts,
retries, faults, mirrors, CORS, headers), checked on the generated protobufs."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent, indent
from typing import TypeVar

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf.message import Message

from pilot.generators.route_policies import DEFAULT_RETRY_ON
from pilot.push_context import PushContext
from tests.unit.pilot.vs_support import (
    BOOKINFO,
    WriteConfig,
    build,
    route_configs,
    service,
    virtual_host,
    virtual_service,
    vs_routes,
)

M = TypeVar("M", bound=Message)
REVIEWS = "reviews.default.svc.cluster.local"
CLUSTER = f"outbound|9080||{REVIEWS}"
TO_REVIEWS = "route: [{destination: {host: reviews}}]"


def _one(write_config: WriteConfig, rule: str, *extra: str) -> rc.Route:
    """The single route of a VirtualService for reviews with one HTTP rule (YAML mapping)."""
    item = "- " + indent(dedent(rule), "  ").lstrip()
    spec = f"hosts: [reviews]\nhttp:\n{item}"
    ctx = build(write_config, BOOKINFO, virtual_service("reviews", spec), *extra)
    (route,) = vs_routes(ctx)
    return route


def _unpack(route: rc.Route, name: str, message: M) -> M:
    assert route.typed_per_filter_config[name].Unpack(message)
    return message


# --- which VirtualService applies --------------------------------------------------------------


def test_a_virtual_service_replaces_the_default_route_of_its_host(
    write_config: WriteConfig,
) -> None:
    vs = virtual_service(
        "reviews", "hosts: [reviews]\nhttp:\n- route: [{destination: {host: reviews, subset: v2}}]"
    )
    ctx = build(write_config, BOOKINFO, vs)
    (route,) = vs_routes(ctx)
    assert route.name == "reviews.default.0"
    assert route.match == rc.RouteMatch(prefix="/")
    assert route.route.cluster == f"outbound|9080|v2|{REVIEWS}"
    assert route.metadata.filter_metadata["istio"]["config"] == (
        "/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews"
    )
    assert route.decorator.operation == f"{REVIEWS}:9080/*"
    # Other services keep their default route, and the virtual host keeps Istio's name.
    (default,) = vs_routes(ctx, "ratings")
    assert default.name == "default"
    assert default.route.cluster == "outbound|9080||ratings.default.svc.cluster.local"
    assert virtual_host(ctx, f"{REVIEWS}:9080").domains[:2] == [REVIEWS, f"{REVIEWS}:9080"]


def test_route_names_come_from_the_rule_and_match(write_config: WriteConfig) -> None:
    spec = f"""\
        hosts: [reviews]
        http:
        - name: jason
          match:
          - {{name: header, headers: {{end-user: {{exact: jason}}}}}}
          - {{uri: {{prefix: /j}}}}
          {TO_REVIEWS}
        - {TO_REVIEWS}
        """
    ctx = build(write_config, BOOKINFO, virtual_service("reviews", spec))
    assert [r.name for r in vs_routes(ctx)] == ["jason.header", "jason", "reviews.default.1"]


def test_hosts_and_destinations_are_relative_to_the_virtual_service_namespace(
    write_config: WriteConfig,
) -> None:
    vs = virtual_service(
        "ratings", "hosts: [ratings]\nhttp:\n- route: [{destination: {host: ratings}}]", "shop"
    )
    ctx = build(write_config, BOOKINFO, service("ratings", namespace="shop"), vs)
    (route,) = vs_routes(ctx, "ratings.shop.svc.cluster.local")
    assert route.route.cluster == "outbound|9080||ratings.shop.svc.cluster.local"
    assert vs_routes(ctx, "ratings")[0].name == "default"


def test_only_mesh_bound_virtual_services_visible_to_the_namespace_apply(
    write_config: WriteConfig,
) -> None:
    gateway_only = virtual_service(
        "a", f"hosts: [reviews]\ngateways: [ingress]\nhttp:\n- {TO_REVIEWS}"
    )
    private = virtual_service(
        "b",
        f"hosts: [reviews.default.svc.cluster.local]\nexportTo: ['.']\nhttp:\n- {TO_REVIEWS}",
        "shop",
    )
    ctx = build(write_config, BOOKINFO, gateway_only, private)
    assert [r.name for r in vs_routes(ctx)] == ["default"]
    shop = route_configs(ctx, "shop")["9080"]
    assert {vh.name: vh for vh in shop.virtual_hosts}[f"{REVIEWS}:9080"].routes[0].name == (
        "b.shop.0"
    )


def test_one_virtual_service_per_host_exact_before_wildcard_then_oldest(
    write_config: WriteConfig,
) -> None:
    def vs(name: str, host: str) -> str:
        return virtual_service(name, f"hosts: ['{host}']\nhttp:\n- {TO_REVIEWS}")

    ctx = build(
        write_config,
        BOOKINFO,
        vs("a-wide", "*.svc.cluster.local"),
        vs("b-narrow", "*.default.svc.cluster.local"),
        vs("c-exact", "reviews"),
        vs("d-exact-again", REVIEWS),
    )
    assert vs_routes(ctx)[0].name == "c-exact.default.0"
    assert vs_routes(ctx, "ratings")[0].name == "b-narrow.default.0"


def test_a_host_that_is_not_a_service_gets_its_own_virtual_host(
    write_config: WriteConfig,
) -> None:
    with_service = virtual_service(
        "reviews", f"hosts: [reviews, reviews.example.com]\nhttp:\n- {TO_REVIEWS}"
    )
    alone = virtual_service("bookinfo", f"hosts: [bookinfo.example.com]\nhttp:\n- {TO_REVIEWS}")
    ctx = build(write_config, BOOKINFO, with_service, alone)
    example = virtual_host(ctx, "reviews.example.com:9080")
    assert list(example.domains) == ["reviews.example.com", "reviews.example.com:9080"]
    assert example.routes[0].route.cluster == CLUSTER
    proxy = {vh.name: vh for vh in route_configs(ctx)["http_proxy"].virtual_hosts}
    assert list(proxy["reviews.example.com:9080"].domains) == ["reviews.example.com:9080"]
    # A VirtualService routing no service lives on port 80, where absolute URIs omit the port.
    assert list(proxy["bookinfo.example.com:80"].domains) == [
        "bookinfo.example.com:80",
        "bookinfo.example.com",
    ]


def test_the_http_proxy_config_uses_the_same_routes(write_config: WriteConfig) -> None:
    vs = virtual_service(
        "reviews", "hosts: [reviews]\nhttp:\n- route: [{destination: {host: ratings}}]"
    )
    ctx = build(write_config, BOOKINFO, vs)
    (route,) = vs_routes(ctx, config="http_proxy")
    assert route.route.cluster == "outbound|9080||ratings.default.svc.cluster.local"


# --- matches -----------------------------------------------------------------------------------


def test_uri_matches_and_case(write_config: WriteConfig) -> None:
    spec = f"""\
        hosts: [reviews]
        http:
        - match:
          - {{uri: {{exact: /a}}}}
          - {{uri: {{prefix: /b}}, ignoreUriCase: true}}
          - {{uri: {{regex: '/c/[0-9]+'}}}}
          {TO_REVIEWS}
        """
    ctx = build(write_config, BOOKINFO, virtual_service("reviews", spec))
    exact, prefix, regex = (r.match for r in vs_routes(ctx))
    assert exact.path == "/a" and exact.case_sensitive.value
    assert prefix.prefix == "/b" and not prefix.case_sensitive.value
    assert regex.safe_regex.regex == "/c/[0-9]+"
    assert all(r.route.cluster == CLUSTER for r in vs_routes(ctx))


def test_header_query_method_authority_and_scheme_matches(write_config: WriteConfig) -> None:
    route = _one(
        write_config,
        f"""\
        match:
        - headers:
            x-b: {{prefix: pre}}
            x-a: {{exact: one}}
            x-c: {{regex: 'v[0-9]'}}
            x-d: {{}}
          withoutHeaders: {{x-e: {{exact: 'no'}}, x-f: {{regex: '*'}}}}
          queryParams: {{q: {{exact: '1'}}, p: {{}}}}
          method: {{exact: GET}}
          authority: {{prefix: reviews}}
          scheme: {{exact: http}}
        {TO_REVIEWS}
        """,
    )
    headers = {h.name: h for h in route.match.headers}
    assert [h.name for h in route.match.headers] == [
        "x-a", "x-b", "x-c", "x-d", "x-e", "x-f", ":method", ":authority", ":scheme"
    ]  # fmt: skip
    assert headers["x-a"].string_match.exact == "one"
    assert headers["x-b"].string_match.prefix == "pre"
    assert headers["x-c"].string_match.safe_regex.regex == "v[0-9]"
    assert headers["x-d"].present_match
    assert headers["x-e"].invert_match and headers["x-e"].treat_missing_header_as_empty
    assert headers["x-f"].invert_match and headers["x-f"].present_match
    assert not headers["x-f"].treat_missing_header_as_empty
    assert headers[":method"].string_match.exact == "GET"
    assert headers[":authority"].string_match.prefix == "reviews"
    assert headers[":scheme"].string_match.exact == "http"
    params = {p.name: p for p in route.match.query_parameters}
    assert params["q"].string_match.exact == "1"
    assert params["p"].present_match


def test_a_match_on_a_port_applies_only_on_that_port(write_config: WriteConfig) -> None:
    spec = """\
        hosts: [reviews]
        http:
        - match: [{port: 9080}]
          route: [{destination: {host: ratings}}]
        - match: [{port: 9090, uri: {prefix: /x}}]
          route: [{destination: {host: details}}]
        """
    ctx = build(
        write_config, service("reviews", 9080, 9090), service("ratings"), service("details"),
        virtual_service("reviews", spec),
    )  # fmt: skip
    (on_9080,) = vs_routes(ctx, port=9080)
    assert on_9080.route.cluster == "outbound|9080||ratings.default.svc.cluster.local"
    (on_9090,) = vs_routes(ctx, port=9090)
    assert on_9090.match.prefix == "/x"
    assert on_9090.route.cluster == "outbound|9080||details.default.svc.cluster.local"


def test_matches_that_cannot_apply_to_this_sidecar_are_left_out(
    write_config: WriteConfig,
) -> None:
    spec = f"""\
        hosts: [reviews]
        http:
        - match:
          - {{uri: {{prefix: /gw}}, gateways: [ingress]}}
          - {{uri: {{prefix: /mesh}}, gateways: [mesh]}}
          {TO_REVIEWS}
        - match: [{{uri: {{prefix: /labels}}, sourceLabels: {{app: x}}}}]
          {TO_REVIEWS}
        - match:
          - {{uri: {{prefix: /shop}}, sourceNamespace: shop}}
          - {{uri: {{prefix: /default}}, sourceNamespace: default}}
          {TO_REVIEWS}
        """
    ctx = build(write_config, BOOKINFO, virtual_service("reviews", spec))
    assert [r.match.prefix for r in vs_routes(ctx)] == ["/mesh", "/default"]


def test_a_virtual_service_whose_rules_all_skip_a_port_leaves_the_default_route(
    write_config: WriteConfig,
) -> None:
    spec = f"hosts: [reviews]\nhttp:\n- match: [{{port: 9090}}]\n  {TO_REVIEWS}"
    ctx = build(write_config, service("reviews", 9080, 9090), virtual_service("reviews", spec))
    assert vs_routes(ctx, port=9080)[0].name == "default"


def test_nothing_follows_a_catch_all(write_config: WriteConfig) -> None:
    spec = f"""\
        hosts: [reviews]
        http:
        - match: [{{uri: {{prefix: /a}}}}, {{uri: {{prefix: /}}}}, {{uri: {{prefix: /never}}}}]
          {TO_REVIEWS}
        - {TO_REVIEWS}
        """
    ctx = build(write_config, BOOKINFO, virtual_service("reviews", spec))
    assert [r.match.prefix for r in vs_routes(ctx)] == ["/a", "/"]


# --- destinations ------------------------------------------------------------------------------


def test_weighted_destinations(write_config: WriteConfig) -> None:
    route = _one(
        write_config,
        """\
        route:
        - {destination: {host: reviews, subset: v1}, weight: 80}
        - {destination: {host: ratings}, weight: 20, headers: {request: {set: {x-w: '1'}}}}
        - {destination: {host: details}, weight: 0}
        """,
    )
    first, second = route.route.weighted_clusters.clusters
    assert (first.name, first.weight.value) == (f"outbound|9080|v1|{REVIEWS}", 80)
    assert (second.name, second.weight.value) == (
        "outbound|9080||ratings.default.svc.cluster.local",
        20,
    )
    assert second.request_headers_to_add[0].header.key == "x-w"
    assert route.decorator.operation == "reviews:9080/*"


def test_destination_port_picks_the_cluster_of_a_multiport_service(
    write_config: WriteConfig,
) -> None:
    spec = """\
        hosts: [reviews]
        http:
        - match: [{uri: {prefix: /a}}]
          route: [{destination: {host: multi, port: {number: 8080}}}]
        - match: [{uri: {prefix: /b}}]
          route: [{destination: {host: multi}}]
        - route: [{destination: {host: ratings}}]
        """
    ctx = build(
        write_config, BOOKINFO, service("multi", 8080, 9080), virtual_service("reviews", spec)
    )
    clusters = [r.route.cluster for r in vs_routes(ctx)]
    assert clusters == [
        "outbound|8080||multi.default.svc.cluster.local",
        "outbound|9080||multi.default.svc.cluster.local",  # the port the request came on
        "outbound|9080||ratings.default.svc.cluster.local",
    ]


def test_a_single_port_destination_uses_its_only_port(write_config: WriteConfig) -> None:
    route = _one(write_config, "route: [{destination: {host: web}}]", service("web", 8000))
    assert route.route.cluster == "outbound|8000||web.default.svc.cluster.local"


# --- redirects, direct responses, rewrites, timeouts -------------------------------------------


def test_redirects(write_config: WriteConfig) -> None:
    spec = """\
        hosts: [reviews]
        http:
        - match: [{uri: {prefix: /a}}]
          redirect:
            {uri: /new, authority: example.com, port: 8443, scheme: https, redirectCode: 308}
        - match: [{uri: {prefix: /b}}]
          redirect: {authority: example.com, derivePort: FROM_REQUEST_PORT}
        - match: [{uri: {prefix: /c}}]
          redirect: {uri: /c2, port: 80}
        """
    ctx = build(write_config, BOOKINFO, virtual_service("reviews", spec))
    full, derived, default_port = (r.redirect for r in vs_routes(ctx))
    assert full == rc.RedirectAction(
        path_redirect="/new",
        host_redirect="example.com",
        port_redirect=8443,
        scheme_redirect="https",
        response_code=rc.RedirectAction.PERMANENT_REDIRECT,
    )
    assert derived.port_redirect == 9080
    assert derived.response_code == rc.RedirectAction.MOVED_PERMANENTLY
    assert default_port.port_redirect == 0 and default_port.path_redirect == "/c2"


def test_direct_response(write_config: WriteConfig) -> None:
    route = _one(write_config, "directResponse: {status: 418, body: {string: teapot}}")
    assert route.direct_response.status == 418
    assert route.direct_response.body.inline_string == "teapot"
    config = route_configs(build(write_config, BOOKINFO))["9080"]
    assert config.max_direct_response_body_size_bytes.value == 1024 * 1024


def test_rewrites_and_authority(write_config: WriteConfig) -> None:
    prefix = _one(write_config, f"rewrite: {{uri: /v2/, authority: new.example.com}}\n{TO_REVIEWS}")
    assert prefix.route.prefix_rewrite == "/v2/"
    assert prefix.route.host_rewrite_literal == "new.example.com"
    regex = _one(
        write_config,
        "rewrite: {uriRegexRewrite: {match: '^/old/(.*)', rewrite: '/new/\\1'}}\n" + TO_REVIEWS,
    )
    assert regex.route.regex_rewrite.pattern.regex == "^/old/(.*)"
    assert regex.route.regex_rewrite.substitution == "/new/\\1"
    via_header = _one(
        write_config,
        f"headers: {{request: {{set: {{':authority': h.example.com}}}}}}\n{TO_REVIEWS}",
    )
    assert via_header.route.host_rewrite_literal == "h.example.com"
    assert not via_header.request_headers_to_add


def test_timeouts(write_config: WriteConfig) -> None:
    default = _one(write_config, TO_REVIEWS)
    assert default.route.HasField("timeout") and default.route.timeout.ToNanoseconds() == 0
    assert default.route.HasField("max_grpc_timeout")
    assert not default.route.HasField("max_stream_duration")  # it would disable `timeout`
    timed = _one(write_config, f"timeout: 1.5s\n{TO_REVIEWS}")
    assert timed.route.timeout.ToMilliseconds() == 1500
    assert timed.route.max_grpc_timeout.ToMilliseconds() == 1500


# --- retries -----------------------------------------------------------------------------------


def test_istios_default_retry_policy(write_config: WriteConfig) -> None:
    for route in (_one(write_config, TO_REVIEWS), vs_routes(build(write_config, BOOKINFO))[0]):
        policy = route.route.retry_policy
        assert policy.num_retries.value == 2
        assert policy.retry_on == DEFAULT_RETRY_ON
        assert not policy.retriable_status_codes  # 503 is not retried by default any more
        assert [p.name for p in policy.retry_host_predicate] == [
            "envoy.retry_host_predicates.previous_hosts"
        ]
        assert policy.host_selection_retry_max_attempts == 5


def test_configured_and_disabled_retries(write_config: WriteConfig) -> None:
    configured = _one(
        write_config,
        f"""\
        retries:
          attempts: 4
          perTryTimeout: 250ms
          retryOn: gateway-error,503,reset
          retryRemoteLocalities: true
          retryIgnorePreviousHosts: false
          backoff: 30ms
        {TO_REVIEWS}
        """,
    )
    policy = configured.route.retry_policy
    assert policy.num_retries.value == 4
    assert policy.retry_on == "gateway-error,reset,retriable-status-codes"
    assert list(policy.retriable_status_codes) == [503]
    assert policy.per_try_timeout.ToMilliseconds() == 250
    assert not policy.retry_host_predicate
    assert policy.retry_priority.name == "envoy.retry_priorities.previous_priorities"
    assert policy.retry_back_off.base_interval.ToMilliseconds() == 30
    disabled = _one(write_config, f"retries: {{attempts: 0}}\n{TO_REVIEWS}")
    assert not disabled.route.HasField("retry_policy")


def test_consistent_hashing_adds_a_hash_policy_and_keeps_retries_on_the_host(
    write_config: WriteConfig,
) -> None:
    rule = """\
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: reviews, namespace: default}
        spec:
          host: reviews
          trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
          subsets:
          - name: v1
            labels: {version: v1}
            trafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: c, ttl: 10s}}}}
        """
    route = _one(write_config, "route: [{destination: {host: reviews, subset: v1}}]", rule)
    (hash_policy,) = route.route.hash_policy
    assert hash_policy.cookie.name == "c" and hash_policy.cookie.ttl.seconds == 10
    assert not route.route.retry_policy.retry_host_predicate
    ctx = build(write_config, BOOKINFO, rule)
    (default,) = vs_routes(ctx)
    assert default.route.hash_policy[0].header.header_name == "x-user"


def test_views_share_a_default_route_only_under_the_same_destination_rule(
    write_config: WriteConfig,
) -> None:
    rule = """\
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: reviews, namespace: shop}
        spec:
          host: reviews.default.svc.cluster.local
          trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
        """
    ctx = build(write_config, BOOKINFO, rule)
    name = f"{REVIEWS}:9080"
    (hashed,) = virtual_host(ctx, name, namespace="shop").routes
    (plain,) = virtual_host(ctx, name, namespace="default").routes
    (other,) = virtual_host(ctx, name, namespace="other").routes
    assert hashed.route.hash_policy[0].header.header_name == "x-user"
    assert not plain.route.hash_policy and plain.route.retry_policy.retry_host_predicate
    assert other == plain


# --- faults, mirrors, CORS, headers ------------------------------------------------------------


def test_fault_injection(write_config: WriteConfig) -> None:
    route = _one(
        write_config,
        f"""\
        fault:
          delay: {{fixedDelay: 7s, percentage: {{value: 12.5}}}}
          abort: {{httpStatus: 503, percentage: {{value: 100}}}}
        {TO_REVIEWS}
        """,
    )
    fault = _unpack(route, "envoy.filters.http.fault", fault_pb2.HTTPFault())
    assert fault.delay.fixed_delay.seconds == 7
    assert fault.delay.percentage == percent_pb2.FractionalPercent(
        numerator=125_000, denominator=percent_pb2.FractionalPercent.MILLION
    )
    assert fault.abort.http_status == 503
    assert fault.abort.percentage.numerator == 1_000_000
    grpc = _one(write_config, f"fault: {{abort: {{grpcStatus: UNAVAILABLE}}}}\n{TO_REVIEWS}")
    abort = _unpack(grpc, "envoy.filters.http.fault", fault_pb2.HTTPFault()).abort
    assert abort.grpc_status == 14
    assert not abort.HasField("percentage")  # Istio: none unless a percentage is given


def test_mirrors(write_config: WriteConfig) -> None:
    route = _one(
        write_config,
        f"""\
        mirror: {{host: ratings}}
        mirrorPercentage: {{value: 50}}
        {TO_REVIEWS}
        """,
    )
    (mirror,) = route.route.request_mirror_policies
    assert mirror.cluster == "outbound|9080||ratings.default.svc.cluster.local"
    assert mirror.runtime_fraction.default_value.numerator == 500_000
    assert not mirror.trace_sampled.value and mirror.HasField("trace_sampled")
    several = _one(
        write_config,
        f"""\
        mirrors:
        - {{destination: {{host: ratings}}}}
        - {{destination: {{host: details}}, percentage: {{value: 0}}}}
        {TO_REVIEWS}
        """,
    )
    (everything,) = several.route.request_mirror_policies
    assert everything.runtime_fraction.default_value == percent_pb2.FractionalPercent(
        numerator=100, denominator=percent_pb2.FractionalPercent.HUNDRED
    )


def test_cors_policy(write_config: WriteConfig) -> None:
    route = _one(
        write_config,
        f"""\
        corsPolicy:
          allowOrigins: [{{exact: 'https://a.example'}}, {{regex: 'https://.*[.]b[.]example'}}]
          allowMethods: [GET, POST]
          allowHeaders: [x-a, x-b]
          exposeHeaders: [x-c]
          maxAge: 24h
          allowCredentials: true
        {TO_REVIEWS}
        """,
    )
    cors = _unpack(route, "envoy.filters.http.cors", cors_pb2.CorsPolicy())
    assert [m.exact or m.safe_regex.regex for m in cors.allow_origin_string_match] == [
        "https://a.example",
        "https://.*[.]b[.]example",
    ]
    assert (cors.allow_methods, cors.allow_headers, cors.expose_headers) == (
        "GET,POST",
        "x-a,x-b",
        "x-c",
    )
    assert cors.max_age == "86400"
    assert cors.allow_credentials.value
    assert cors.forward_not_matching_preflights.value
    assert cors.filter_enabled.default_value.numerator == 100


def test_header_operations(write_config: WriteConfig) -> None:
    route = _one(
        write_config,
        f"""\
        headers:
          request: {{set: {{x-b: '2', x-a: '1'}}, add: {{x-c: '3'}}, remove: [x-d]}}
          response: {{set: {{x-e: '5'}}, remove: [x-f]}}
        {TO_REVIEWS}
        """,
    )
    added = [(h.header.key, h.header.value, h.append_action) for h in route.request_headers_to_add]
    overwrite = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    append = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
    assert added == [("x-a", "1", overwrite), ("x-b", "2", overwrite), ("x-c", "3", append)]
    assert list(route.request_headers_to_remove) == ["x-d"]
    assert route.response_headers_to_add[0].header.key == "x-e"
    assert list(route.response_headers_to_remove) == ["x-f"]


def test_equal_config_in_any_order_gives_equal_bytes(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    documents = [
        BOOKINFO,
        virtual_service("b", "hosts: ['*.default.svc.cluster.local']\nhttp:\n- " + TO_REVIEWS),
        virtual_service(
            "a",
            f"""\
            hosts: [ratings]
            http:
            - match: [{{headers: {{x-b: {{exact: '1'}}, x-a: {{}}}}}}]
              headers: {{request: {{set: {{x-z: '1', x-y: '2'}}}}}}
              fault: {{abort: {{httpStatus: 500}}}}
              corsPolicy: {{allowOrigins: [{{exact: x}}]}}
              {TO_REVIEWS}
            """,
        ),
    ]
    first = build(write_config, *documents)
    (tmp_path / "mesh.yaml").unlink()
    second = build(write_config, *documents[::-1])

    def encoded(ctx: PushContext) -> list[bytes]:
        return [c.SerializeToString(deterministic=True) for c in route_configs(ctx).values()]

    assert encoded(first) == encoded(second)
