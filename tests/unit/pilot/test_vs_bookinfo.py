"""Istio's own bookinfo VirtualServices (and one using every translated feature) become route
configs and listeners that real Envoy accepts (`envoy --mode validate`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from envoy.extensions.filters.http.fault.v3 import fault_pb2

from pilot.model import Proxy
from pilot.push_context import PushContext
from tests.support.shared import BOOKINFO_NETWORKING
from tests.unit.pilot.test_gen_whole_config import _bootstrap, _envoy_validate, _generate
from tests.unit.pilot.vs_support import (
    BOOKINFO,
    WriteConfig,
    build,
    service,
    virtual_service,
    vs_routes,
)

MakeProxy = Callable[..., Proxy]
SAMPLES = sorted(BOOKINFO_NETWORKING.glob("*.yaml"))
NO_CAPTURE = {"INTERCEPTION_MODE": "NONE", "HTTP_PROXY_PORT": "15080", "APP_ADDRESS": "127.0.100.2"}
PRODUCTPAGE = "sidecar~127.0.1.2~productpage-v1.default~default.svc.cluster.local"

EVERYTHING = """\
hosts: [reviews, reviews.example.com]
http:
- name: everything
  match:
  - name: m
    uri: {regex: '/api/v[0-9]+/.*'}
    headers: {end-user: {exact: jason}, x-any: {}}
    withoutHeaders: {x-debug: {prefix: '1'}}
    queryParams: {q: {exact: x}}
    method: {exact: GET}
    authority: {prefix: reviews}
    scheme: {exact: http}
    ignoreUriCase: true
    port: 9080
    sourceNamespace: default
  rewrite: {uri: /v2/, authority: reviews.internal}
  timeout: 3s
  retries: {attempts: 3, perTryTimeout: 1s, retryOn: '5xx,503,reset', retryRemoteLocalities: true}
  fault:
    delay: {fixedDelay: 1s, percentage: {value: 0.5}}
    abort: {grpcStatus: UNAVAILABLE, percentage: {value: 1}}
  mirror: {host: ratings}
  mirrorPercentage: {value: 10}
  corsPolicy:
    allowOrigins: [{exact: 'https://a.example'}, {prefix: 'https://b'}]
    allowMethods: [GET, POST]
    allowHeaders: [x-a]
    exposeHeaders: [x-b]
    maxAge: 1h
    allowCredentials: true
    unmatchedPreflights: IGNORE
  headers:
    request: {set: {x-a: '1'}, add: {x-b: '2'}, remove: [x-c]}
    response: {set: {x-d: '3'}, remove: [x-e]}
  route:
  - destination: {host: reviews, subset: v1}
    weight: 60
    headers: {request: {set: {':authority': weighted.example.com}}}
  - destination: {host: ratings, port: {number: 9080}}
    weight: 40
- match: [{uri: {prefix: /old}}]
  redirect: {uri: /new, authority: example.com, derivePort: FROM_REQUEST_PORT, redirectCode: 307}
- match: [{uri: {exact: /teapot}}]
  directResponse: {status: 418, body: {bytes: dGVhcG90}}
- match: [{uri: {prefix: /regex}}]
  rewrite: {uriRegexRewrite: {match: '^/regex/(.*)', rewrite: '/\\1'}}
  mirrors: [{destination: {host: details}, percentage: {value: 25}}]
  route: [{destination: {host: reviews}}]
- route: [{destination: {host: reviews}}]
"""
TCP_AND_TLS = """\
hosts: [db, secure]
tcp:
- match: [{destinationSubnets: [10.0.0.0/8]}]
  route: [{destination: {host: db}, weight: 50}, {destination: {host: reviews}, weight: 50}]
- route: [{destination: {host: db}}]
tls:
- match: [{sniHosts: [secure], destinationSubnets: [10.0.0.0/8]}, {sniHosts: [secure]}]
  route: [{destination: {host: secure}}]
"""


def _validate(ctx: PushContext, proxy: Proxy, tmp_path: Path) -> None:
    result = _envoy_validate(_bootstrap(proxy, _generate(ctx, proxy)), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.envoy
@pytest.mark.parametrize("sample", SAMPLES, ids=[path.stem for path in SAMPLES])
def test_envoy_accepts_routes_for_every_bookinfo_sample(
    sample: Path, write_config: WriteConfig, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    ctx = build(write_config, BOOKINFO, sample.read_text())
    _validate(ctx, make_proxy(PRODUCTPAGE, **NO_CAPTURE), tmp_path)


@pytest.mark.envoy
def test_envoy_accepts_every_translated_feature(
    write_config: WriteConfig, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    ctx = build(
        write_config,
        BOOKINFO,
        service("db", 5432, protocol="TCP", addresses=["240.0.0.5"]),
        service("secure", 443, protocol="TLS"),
        service("other-secure", 443, protocol="HTTPS"),
        virtual_service("reviews", EVERYTHING),
        virtual_service("l4", TCP_AND_TLS),
    )
    assert [r.name for r in vs_routes(ctx)] == [
        "everything.m",
        "reviews.default.1",
        "reviews.default.2",
        "reviews.default.3",
        "reviews.default.4",
    ]
    for metadata in (NO_CAPTURE, {}):
        _validate(ctx, make_proxy(PRODUCTPAGE, **metadata), tmp_path)


def _sample(write_config: WriteConfig, name: str) -> PushContext:
    return build(write_config, BOOKINFO, (BOOKINFO_NETWORKING / f"{name}.yaml").read_text())


def _cluster(subset: str, app: str = "reviews") -> str:
    return f"outbound|9080|{subset}|{app}.default.svc.cluster.local"


def test_bookinfo_routing_samples(write_config: WriteConfig) -> None:
    all_v1 = _sample(write_config, "virtual-service-all-v1")
    for app in ("productpage", "reviews", "ratings", "details"):
        assert [r.route.cluster for r in vs_routes(all_v1, app)] == [_cluster("v1", app)]

    jason = vs_routes(_sample(write_config, "virtual-service-reviews-jason-v2-v3"))
    assert jason[0].match.headers[0].name == "end-user"
    assert jason[0].match.headers[0].string_match.exact == "jason"
    assert [r.route.cluster for r in jason] == [_cluster("v2"), _cluster("v3")]

    for name, split in (
        ("virtual-service-reviews-90-10", {"v1": 90, "v2": 10}),
        ("virtual-service-reviews-50-v3", {"v1": 50, "v3": 50}),
    ):
        (route,) = vs_routes(_sample(write_config, name))
        weights = {c.name: c.weight.value for c in route.route.weighted_clusters.clusters}
        assert weights == {_cluster(subset): weight for subset, weight in split.items()}

    (details,) = vs_routes(_sample(write_config, "virtual-service-details-v2"), "details")
    assert details.route.cluster == _cluster("v2", "details")


def test_bookinfo_fault_samples(write_config: WriteConfig) -> None:
    def fault(name: str) -> fault_pb2.HTTPFault:
        jason, everyone = vs_routes(_sample(write_config, name), "ratings")
        assert "envoy.filters.http.fault" not in everyone.typed_per_filter_config
        found = fault_pb2.HTTPFault()
        assert jason.typed_per_filter_config["envoy.filters.http.fault"].Unpack(found)
        return found

    delay = fault("virtual-service-ratings-test-delay")
    assert delay.delay.fixed_delay.seconds == 7
    assert delay.delay.percentage.numerator == 1_000_000
    abort = fault("virtual-service-ratings-test-abort")
    assert abort.abort.http_status == 500
    assert abort.abort.percentage.numerator == 1_000_000
