"""Delegate VirtualServices: a root's `delegate` rule stands for the delegate's rules, merged with
it as istiod merges them (matches combined or dropped on conflict, unset fields inherited), for
sidecars and gateways; checked on the generated routes and by real Envoy."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
from pathlib import Path

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format, wrappers_pb2

from meshconfig.networking.virtual_service import HTTPRoute, VirtualService
from meshcore.envoy_binary import envoy_path
from pilot.config_files import load_config_directory
from pilot.generators.filters import http_connection_manager
from pilot.generators.proto import socket_address
from pilot.push_context import PushContext
from tests.unit.pilot import gateway_support
from tests.unit.pilot.vs_support import (
    BOOKINFO,
    WriteConfig,
    build,
    route_configs,
    service,
    virtual_service,
    vs_routes,
)

LOGGER = "pilot.virtual_service_rules"
RATINGS = "outbound|9080||ratings.default.svc.cluster.local"
REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"
DETAILS = "outbound|9080||details.default.svc.cluster.local"
ROOT = """\
hosts: [reviews]
http:
- name: api
  match: [{uri: {prefix: /api}}]
  delegate: {name: reviews-api}
- route: [{destination: {host: details}}]
"""


def _delegate(http: str, name: str = "reviews-api", namespace: str = "default") -> str:
    return virtual_service(name, f"http:\n{http}", namespace)


def _paths(routes: list[rc.Route]) -> list[tuple[str, str]]:
    """(path specifier, value) of each route, in order."""
    out = []
    for route in routes:
        which = route.match.WhichOneof("path_specifier") or ""
        value = (
            route.match.safe_regex.regex if which == "safe_regex" else getattr(route.match, which)
        )
        out.append((which, value))
    return out


def _clusters(routes: list[rc.Route]) -> list[str]:
    return [route.route.cluster for route in routes]


def test_delegate_rules_take_the_place_of_the_delegating_rule(write_config: WriteConfig) -> None:
    delegate = _delegate("""\
    - match: [{uri: {prefix: /api/v2}}]
      route: [{destination: {host: ratings}}]
    - route: [{destination: {host: reviews}}]
    """)
    ctx = build(write_config, BOOKINFO, virtual_service("reviews", ROOT), delegate)
    routes = vs_routes(ctx)
    assert _paths(routes) == [("prefix", "/api/v2"), ("prefix", "/api"), ("prefix", "/")]
    assert _clusters(routes) == [RATINGS, REVIEWS, DETAILS]
    # Delegated routes carry the root's config path, as istiod's merged VirtualService does.
    config = routes[0].metadata.filter_metadata["istio"].fields["config"].string_value
    assert config.endswith("/namespaces/default/virtual-service/reviews")


def test_conflicting_matches_drop_the_delegate_rule(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    delegate = _delegate("""\
    - match: [{uri: {prefix: /other}}]
      route: [{destination: {host: ratings}}]
    - match: [{uri: {regex: "/api/.*"}}]
      route: [{destination: {host: ratings}}]
    - match: [{uri: {exact: /api/exact}}, {uri: {prefix: /elsewhere}}]
      route: [{destination: {host: ratings}}]
    - match: [{uri: {exact: /api/x}}]
      route: [{destination: {host: reviews}}]
    """)
    ctx = build(write_config, BOOKINFO, virtual_service("reviews", ROOT), delegate)
    with caplog.at_level(logging.WARNING, LOGGER):
        routes = vs_routes(ctx)
    # A prefix outside the root's, any regex, and a rule with one misfit match are dropped.
    assert _paths(routes) == [("path", "/api/x"), ("prefix", "/")]
    assert _clusters(routes) == [REVIEWS, DETAILS]
    conflicts = [r.getMessage() for r in caplog.records if "conflicts" in r.getMessage()]
    assert len(set(conflicts)) == 3, conflicts  # the scope and the routes both read the rules


def test_matches_combine_with_every_compatible_root_match(write_config: WriteConfig) -> None:
    root = """\
    hosts: [reviews]
    http:
    - match:
      - {name: v1, uri: {prefix: /v1}, headers: {x-team: {exact: blue}}}
      - {name: v2, uri: {prefix: /v2}, queryParams: {debug: {exact: "1"}}}
      - {name: red, headers: {x-team: {exact: red}}}
      delegate: {name: reviews-api}
    """
    delegate = _delegate("""\
    - match: [{name: user, uri: {prefix: /v2/user}, headers: {x-user: {exact: jason}}}]
      route: [{destination: {host: ratings}}]
    - match: [{method: {exact: POST}}]
      route: [{destination: {host: reviews}}]
    """)
    ctx = build(write_config, BOOKINFO, virtual_service("reviews", root), delegate)
    routes = vs_routes(ctx)
    assert [r.name for r in routes] == [
        "reviews.default.0.v2-user",  # /v1 does not contain /v2/user
        "reviews.default.0.red-user",
        "reviews.default.1.v1",
        "reviews.default.1.v2",
        "reviews.default.1.red",
    ]
    v2_user, red_user, v1_post = routes[:3]
    assert v2_user.match.prefix == "/v2/user"
    assert [h.name for h in v2_user.match.headers] == ["x-user"]
    assert [q.name for q in v2_user.match.query_parameters] == ["debug"]
    assert red_user.match.prefix == "/v2/user"
    assert {h.name: h.string_match.exact for h in red_user.match.headers} == {
        "x-team": "red",
        "x-user": "jason",
    }
    assert v1_post.match.prefix == "/v1"
    assert {h.name: h.string_match.exact for h in v1_post.match.headers} == {
        "x-team": "blue",
        ":method": "POST",
    }
    assert _clusters(routes) == [RATINGS, RATINGS, REVIEWS, REVIEWS, REVIEWS]


def test_the_delegates_actions_apply_and_unset_fields_come_from_the_root(
    write_config: WriteConfig,
) -> None:
    root = """\
    hosts: [reviews]
    http:
    - name: api
      match: [{uri: {prefix: /api}}]
      delegate: {name: reviews-api}
      timeout: 3s
      retries: {attempts: 4, retryOn: 5xx}
      headers: {request: {set: {x-root: "yes"}}}
    """
    delegate = _delegate("""\
    - name: fast
      match: [{uri: {prefix: /api/fast}}]
      timeout: 1s
      route: [{destination: {host: ratings}}]
    - match: [{uri: {prefix: /api/moved}}]
      redirect: {uri: /new}
    - headers: {request: {set: {x-delegate: "yes"}}}
      route: [{destination: {host: reviews}}]
    """)
    ctx = build(write_config, BOOKINFO, virtual_service("reviews", root), delegate)
    fast, moved, rest = vs_routes(ctx)
    assert fast.name == "api-fast"
    assert fast.route.timeout.seconds == 1
    assert fast.route.retry_policy.num_retries.value == 4
    assert [h.header.key for h in fast.request_headers_to_add] == ["x-root"]
    assert moved.name == "api"
    assert moved.redirect.path_redirect == "/new"
    assert rest.match.prefix == "/api"  # the root's match, the delegate rule having none
    assert rest.route.timeout.seconds == 3
    assert rest.route.cluster == REVIEWS
    assert [h.header.key for h in rest.request_headers_to_add] == ["x-delegate"]


def test_delegate_references_resolve_in_the_delegates_namespace(
    write_config: WriteConfig,
) -> None:
    root = """\
    hosts: [reviews]
    http:
    - match: [{uri: {prefix: /team}}]
      delegate: {name: routes, namespace: team}
    - route: [{destination: {host: details}}]
    """
    delegate = _delegate(
        "- route: [{destination: {host: backend}}]\n  mirror: {host: backend}\n",
        name="routes",
        namespace="team",
    )
    ctx = build(
        write_config,
        BOOKINFO,
        service("backend", namespace="team"),
        virtual_service("reviews", root),
        delegate,
    )
    team, rest = vs_routes(ctx)
    backend = "outbound|9080||backend.team.svc.cluster.local"
    assert team.route.cluster == backend
    assert [m.cluster for m in team.route.request_mirror_policies] == [backend]
    assert rest.route.cluster == DETAILS


def test_unusable_delegates_skip_the_rule(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    root = """\
    hosts: [reviews]
    http:
    - match: [{uri: {prefix: /missing}}]
      delegate: {name: nowhere}
    - match: [{uri: {prefix: /private}}]
      delegate: {name: private, namespace: team}
    - match: [{uri: {prefix: /hosted}}]
      delegate: {name: ratings}
    - route: [{destination: {host: details}}]
    """
    private = virtual_service(
        "private", "exportTo: [.]\nhttp:\n- route: [{destination: {host: ratings.default}}]", "team"
    )
    hosted = virtual_service(
        "ratings", "hosts: [ratings]\nhttp:\n- route: [{destination: {host: ratings}}]"
    )
    ctx = build(write_config, BOOKINFO, virtual_service("reviews", root), private, hosted)
    with caplog.at_level(logging.WARNING, LOGGER):
        routes = vs_routes(ctx)
    assert _clusters(routes) == [DETAILS]
    messages = [r.getMessage() for r in caplog.records]
    assert any("default/nowhere not found" in m for m in messages)
    assert any("team/private is not exported to default" in m for m in messages)
    assert any("default/ratings has hosts" in m for m in messages)


def test_a_delegate_cannot_delegate_again(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """Validation refuses such a delegate; translation skips its rule should one get through."""
    delegate = _delegate("- route: [{destination: {host: ratings}}]")
    loaded = load_config_directory(
        write_config("\n---\n".join((BOOKINFO, virtual_service("reviews", ROOT), delegate)))
    )
    nested = HTTPRoute.model_validate(
        {"match": [{"uri": {"prefix": "/api/deeper"}}], "delegate": {"name": "x"}}
    )
    resources = []
    for resource in loaded.istio.virtual_services:
        spec = resource.spec
        if resource.metadata.name == "reviews-api" and isinstance(spec, VirtualService):
            changed = spec.model_copy(update={"http": [nested, *(spec.http or ())]})
            resource = dataclasses.replace(resource, spec=changed)
        resources.append(resource)
    config = dataclasses.replace(loaded.istio, virtual_services=tuple(resources))
    ctx = PushContext.build(loaded.registry, "1", config)
    with caplog.at_level(logging.WARNING, LOGGER):
        routes = vs_routes(ctx)
    assert _paths(routes) == [("prefix", "/api"), ("prefix", "/")]
    assert _clusters(routes) == [RATINGS, DETAILS]
    assert any("http[0] delegates again" in r.getMessage() for r in caplog.records)


def test_a_delegate_is_never_routed_on_its_own(write_config: WriteConfig) -> None:
    without = route_configs(build(write_config, BOOKINFO))
    delegate = _delegate("- route: [{destination: {host: ratings}}]")
    with_delegate = route_configs(build(write_config, BOOKINFO, delegate))
    assert with_delegate == without


GATEWAY_ROOT = """\
hosts: [bookinfo.example.com]
gateways: [bookinfo]
http:
- match: [{uri: {prefix: /reviews}, gateways: [bookinfo]}]
  delegate: {name: reviews-api}
- route: [{destination: {host: productpage}}]
"""


def _gateway_ctx(write_config: WriteConfig) -> PushContext:
    delegate = _delegate("""\
    - match: [{uri: {prefix: /reviews/ratings}}]
      route: [{destination: {host: ratings}}]
    - route: [{destination: {host: reviews}}]
    """)
    servers = "- port: {number: 8080, name: http, protocol: HTTP}\n  hosts: ['*']\n"
    return build(
        write_config,
        BOOKINFO,
        gateway_support.gateway("bookinfo", servers),
        virtual_service("bookinfo", GATEWAY_ROOT),
        delegate,
    )


def test_gateways_merge_delegates_too(write_config: WriteConfig) -> None:
    ctx = _gateway_ctx(write_config)
    hosts = gateway_support.virtual_hosts(ctx, "http.8080")
    assert list(hosts) == ["bookinfo.example.com:8080"]
    routes = list(hosts["bookinfo.example.com:8080"].routes)
    assert _paths(routes) == [
        ("prefix", "/reviews/ratings"),
        ("prefix", "/reviews"),
        ("prefix", "/"),
    ]
    assert _clusters(routes) == [
        RATINGS,
        REVIEWS,
        "outbound|9080||productpage.default.svc.cluster.local",
    ]


@pytest.mark.envoy
def test_envoy_accepts_merged_routes(write_config: WriteConfig, tmp_path: Path) -> None:
    delegate = _delegate("""\
    - name: v2
      match: [{uri: {prefix: /api/v2}, headers: {x-user: {exact: jason}}}]
      route: [{destination: {host: ratings}, headers: {response: {add: {x-via: v2}}}}]
      fault: {abort: {httpStatus: 418, percentage: {value: 1}}}
    - match: [{uri: {exact: /api/moved}}]
      redirect: {uri: /new, redirectCode: 302}
    - route:
      - {destination: {host: reviews}, weight: 90}
      - {destination: {host: ratings}, weight: 10}
    """)
    root = ROOT.replace(
        "  delegate:", "  corsPolicy: {allowOrigins: [{exact: example.com}]}\n  delegate:"
    )
    ctx = build(write_config, BOOKINFO, virtual_service("reviews", root), delegate)
    sidecar = list(route_configs(ctx).values())
    gateway = list(gateway_support.route_configs(_gateway_ctx(write_config)).values())
    bootstrap = bootstrap_pb2.Bootstrap()
    for port, config in enumerate([*sidecar, *gateway], start=30000):
        bootstrap.static_resources.listeners.add(
            name=f"check:{config.name}",
            address=socket_address("127.0.0.1", port),
            bind_to_port=wrappers_pb2.BoolValue(value=False),
            filter_chains=[_inline(config)],
        )
    path = tmp_path / "bootstrap.json"
    path.write_text(json_format.MessageToJson(bootstrap))
    result = subprocess.run(
        [envoy_path(), "--mode", "validate", "-c", path, "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _inline(config: route_pb2.RouteConfiguration) -> listener_components_pb2.FilterChain:
    return listener_components_pb2.FilterChain(
        filters=[http_connection_manager("check", route_config=config)]
    )
