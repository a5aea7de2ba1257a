"""Mixer in front of real Envoys: ext_authz Check and access-log Report, with Istio's policies.

Each test runs Mixer (reading a config directory) and one Envoy playing a workload's inbound
sidecar, in front of a demo backend, all on the test's own loopback block: Mixer on .1, Envoy
on .2 (inbound listener 15006, admin 15000), the backend on .102. The Envoy config is the one
pilot is to generate (see `sidecar_bootstrap`): the ext_authz filter and an http_grpc access
logger both pointing at Mixer's 9091 cluster, the workload's own attributes in the route's
`context_extensions` and the logger's `custom_tags`. A request says who its source is the
way a client sidecar would, with an `x-istio-attributes` header.

Istio 1.4's bookinfo policy samples are read unchanged from ../shared/istio-1.4.
"""

from __future__ import annotations

import asyncio
import shutil
import textwrap
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.envoy_process import EnvoyOptions, EnvoyProcess
from localmesh.demo_app import DemoApp
from mixer.envoy_attributes import FORWARDED_ATTRIBUTES_HEADER, forward_header
from mixer.server import Mixer, MixerOptions
from tests.integration.mesh import allocate_block, eventually
from tests.support.shared import ISTIO_1_4

pytestmark = pytest.mark.envoy

POLICY = ISTIO_1_4 / "samples" / "bookinfo" / "policy"
ENVOY_OPTIONS = EnvoyOptions(
    drain_seconds=0.2, stop_timeout=3.0, concurrency=1, log_level="warning"
)
MIXER_CLUSTER = "outbound|9091||mixer.istio-system.svc.cluster.local"
APP_PORT = 9080
INBOUND_PORT = 15006
TELEMETRY = Path(__file__).resolve().parents[2] / "mixer" / "telemetry.yaml"


def _typed(type_name: str, **fields: Any) -> dict[str, Any]:
    return {"@type": f"type.googleapis.com/{type_name}", **fields}


def extensions(attributes: Mapping[str, Any]) -> dict[str, str]:
    """Attributes as pilot writes them into context extensions and custom tags."""
    return {
        name: ",".join(f"{k}={v}" for k, v in value.items())
        if isinstance(value, Mapping)
        else str(value)
        for name, value in attributes.items()
    }


def sidecar_bootstrap(
    ip: str,
    app: str,
    mixer: str,
    workload: Mapping[str, Any],
    *,
    fail_open: bool = True,
    timeout: str = "0.5s",
    policy: bool = True,
    telemetry: bool = True,
) -> dict[str, Any]:
    """An inbound sidecar whose policy and telemetry go to Mixer (pilot's target config)."""
    destination = extensions(workload)
    route: dict[str, Any] = {
        "match": {"prefix": "/"},
        "route": {"cluster": f"inbound|{APP_PORT}||"},
    }
    http_filters: list[dict[str, Any]] = []
    if policy:
        http_filters.append(
            {
                "name": "envoy.filters.http.ext_authz",
                "typed_config": _typed(
                    "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
                    grpc_service={
                        "envoy_grpc": {"cluster_name": MIXER_CLUSTER},
                        "timeout": timeout,
                    },
                    transport_api_version="V3",
                    failure_mode_allow=fail_open,
                ),
            }
        )
        route["typed_per_filter_config"] = {
            "envoy.filters.http.ext_authz": _typed(
                "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
                check_settings={"context_extensions": destination},
            )
        }
    http_filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": _typed("envoy.extensions.filters.http.router.v3.Router"),
        }
    )
    manager: dict[str, Any] = {
        "stat_prefix": f"inbound_{APP_PORT}",
        "route_config": {
            "name": f"inbound|{APP_PORT}||",
            "virtual_hosts": [{"name": "inbound", "domains": ["*"], "routes": [route]}],
        },
        "http_filters": http_filters,
    }
    if telemetry:
        manager["access_log"] = [
            {
                "name": "envoy.access_loggers.http_grpc",
                "typed_config": _typed(
                    "envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
                    common_config={
                        "log_name": "inbound",
                        "transport_api_version": "V3",
                        "grpc_service": {"envoy_grpc": {"cluster_name": MIXER_CLUSTER}},
                        "buffer_flush_interval": "0.1s",
                        "custom_tags": [
                            {"tag": name, "literal": {"value": value}}
                            for name, value in destination.items()
                        ],
                    },
                    additional_request_headers_to_log=[
                        FORWARDED_ATTRIBUTES_HEADER,
                        "content-type",
                    ],
                ),
            }
        ]
    mixer_host, mixer_port = mixer.rsplit(":", 1)
    pod = workload["destination.workload.name"]
    return {
        "node": {
            "id": f"sidecar~{ip}~{pod}.default~default.svc.cluster.local",
            "cluster": f"{workload['destination.service.name']}.default",
            "metadata": {
                "NAMESPACE": "default",
                "NAME": workload["destination.workload.name"],
                "LABELS": dict(workload["destination.labels"]),
            },
        },
        "admin": {"address": {"socket_address": {"address": ip, "port_value": 15000}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "virtualInbound",
                    "address": {"socket_address": {"address": ip, "port_value": INBOUND_PORT}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": _typed(
                                        "envoy.extensions.filters.network.http_connection_manager"
                                        ".v3.HttpConnectionManager",
                                        **manager,
                                    ),
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                _static_cluster(f"inbound|{APP_PORT}||", app, APP_PORT, http2=False),
                _static_cluster(MIXER_CLUSTER, mixer_host, int(mixer_port), http2=True),
            ],
        },
    }


def _static_cluster(name: str, host: str, port: int, *, http2: bool) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "0.25s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": host, "port_value": port}}
                            }
                        }
                    ]
                }
            ],
        },
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _typed(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config={"http2_protocol_options": {}},
            )
        }
    return cluster


def workload(app: str, version: str = "v1") -> dict[str, Any]:
    """The destination attributes of bookinfo's workload app-version in `default`."""
    return {
        "destination.labels": {"app": app, "version": version},
        "destination.workload.name": f"{app}-{version}",
        "destination.workload.namespace": "default",
        "destination.service.host": f"{app}.default.svc.cluster.local",
        "destination.service.name": app,
        "destination.service.namespace": "default",
    }


RATINGS = workload("ratings")


def source(app: str, version: str, **extra: str) -> dict[str, str]:
    """The header a client sidecar of workload app-version adds."""
    labels = {"app": app, "version": version, **extra}
    return {
        FORWARDED_ATTRIBUTES_HEADER: forward_header(
            {
                "source.labels": labels,
                "source.workload.name": f"{app}-{version}",
                "source.workload.namespace": "default",
                "source.namespace": "default",
            }
        )
    }


@dataclass
class Setup:
    block: str
    config_dir: Path
    run_dir: Path
    mixer: Mixer | None = None
    envoy: EnvoyProcess | None = None
    app: DemoApp | None = None
    session: aiohttp.ClientSession | None = None

    @property
    def mixer_ip(self) -> str:
        return f"{self.block}.1"

    @property
    def envoy_ip(self) -> str:
        return f"{self.block}.2"

    @property
    def url(self) -> str:
        return f"http://{self.envoy_ip}:{INBOUND_PORT}/ratings/0"

    def install(self, *files: Path | str) -> None:
        """Copy policy files (or write YAML text) into Mixer's config directory."""
        for number, item in enumerate(files):
            if isinstance(item, Path):
                shutil.copy(item, self.config_dir / item.name)
            else:
                (self.config_dir / f"inline-{number}.yaml").write_text(textwrap.dedent(item))

    async def start_mixer(self, **options: Any) -> Mixer:
        self.mixer = Mixer(
            MixerOptions(
                config_dir=self.config_dir,
                host=self.mixer_ip,
                monitoring_port=0,
                **options,
            )
        )
        await self.mixer.start()
        return self.mixer

    async def stop_mixer(self) -> None:
        if self.mixer is not None:
            await self.mixer.stop()
            self.mixer = None

    async def start_envoy(self, destination: Mapping[str, Any] = RATINGS, **options: Any) -> None:
        self.app = DemoApp(destination["destination.workload.name"], f"{self.block}.102", APP_PORT)
        await self.app.start()
        bootstrap = sidecar_bootstrap(
            self.envoy_ip, f"{self.block}.102", f"{self.mixer_ip}:9091", destination, **options
        )
        self.envoy = EnvoyProcess(
            bootstrap, f"http://{self.envoy_ip}:15000", self.run_dir, ENVOY_OPTIONS
        )
        await self.envoy.start()
        await eventually(self._serving, "envoy serving the inbound listener")

    async def _serving(self) -> bool | None:
        assert self.session is not None
        async with self.session.get(f"http://{self.envoy_ip}:15000/ready") as response:
            return True if response.status == 200 else None

    async def get(self, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
        assert self.session is not None
        async with self.session.get(self.url, headers=dict(headers or {})) as response:
            return response.status, await response.text()

    async def statuses(self, count: int, headers: Mapping[str, str] | None = None) -> list[int]:
        return [(await self.get(headers))[0] for _ in range(count)]

    async def telemetry(self) -> str:
        assert self.session is not None and self.mixer is not None
        url = f"http://{self.mixer_ip}:{self.mixer.telemetry.port}/metrics"
        async with self.session.get(url) as response:
            return await response.text()

    async def close(self) -> None:
        if self.envoy is not None:
            await self.envoy.stop()
        if self.app is not None:
            await self.app.stop()
        await self.stop_mixer()
        if self.session is not None:
            await self.session.close()


async def no_tasks_left() -> None:
    """Every task has ended; grpc's own call tasks may take a few loop turns after stop()."""
    current = asyncio.current_task()
    leftover: list[asyncio.Task[object]] = []
    for _ in range(100):
        leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if not leftover:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"tasks left pending after mixer stopped: {leftover}")


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    built = Setup(allocate_block(), config_dir, tmp_path / "run")
    built.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
    try:
        yield built
    finally:
        await built.close()
        await no_tasks_left()


async def test_deny_label_sample_denies_reviews_v3_only(setup: Setup) -> None:
    setup.install(POLICY / "mixer-rule-deny-label.yaml")
    await setup.start_mixer()
    await setup.start_envoy()
    status, body = await setup.get(source("reviews", "v3"))
    assert (status, body) == (403, "PERMISSION_DENIED:Not allowed")
    assert (await setup.get(source("reviews", "v2")))[0] == 200
    assert (await setup.get(source("productpage", "v1")))[0] == 200


async def test_whitelist_sample_admits_only_listed_versions(setup: Setup) -> None:
    setup.install(POLICY / "mixer-rule-deny-whitelist.yaml")
    await setup.start_mixer()
    await setup.start_envoy()
    assert (await setup.get(source("reviews", "v1")))[0] == 200
    assert (await setup.get(source("reviews", "v2")))[0] == 200
    assert await setup.get(source("reviews", "v3")) == (
        403,
        "PERMISSION_DENIED:v3 is not whitelisted",
    )


async def test_ingress_denial_sample_denies_john_through_the_gateway(setup: Setup) -> None:
    setup.install(POLICY / "mixer-rule-ingress-denial.yaml")
    await setup.start_mixer()
    await setup.start_envoy(workload("productpage"))
    gateway = source("istio-ingressgateway", "v1", istio="ingressgateway")
    assert (await setup.get({**gateway, "x-user": "john"}))[0] == 403
    assert (await setup.get({**gateway, "x-user": "jane"}))[0] == 200
    assert (await setup.get({**source("reviews", "v1"), "x-user": "john"}))[0] == 200


async def test_deny_ip_sample_admits_gateway_traffic_only_from_its_range(setup: Setup) -> None:
    setup.install(POLICY / "mixer-rule-deny-ip.yaml")
    await setup.start_mixer()
    await setup.start_envoy(workload("productpage"))
    gateway = source("istio-ingressgateway", "v1", istio="ingressgateway")
    status, body = await setup.get(gateway)
    # The test client's loopback address is not in 10.57.0.0/16.
    assert status == 403 and body.endswith("is not whitelisted")
    assert (await setup.get(source("reviews", "v1")))[0] == 200


async def test_productpage_ratelimit_sample_gives_429_past_two(setup: Setup) -> None:
    setup.install(POLICY / "mixer-rule-productpage-ratelimit.yaml")
    await setup.start_mixer()
    await setup.start_envoy(workload("productpage"))
    statuses = await setup.statuses(4, source("istio-ingressgateway", "v1"))
    assert statuses == [200, 200, 429, 429]
    _, body = await setup.get()
    assert body.startswith("RESOURCE_EXHAUSTED:")


async def test_ratings_ratelimit_sample_limits_reviews_and_recovers(setup: Setup) -> None:
    setup.install(POLICY / "mixer-rule-ratings-ratelimit.yaml")
    await setup.start_mixer()
    await setup.start_envoy()
    assert await setup.statuses(2, source("reviews", "v2")) == [200, 429]
    # Other sources have their own allowance (100 a second).
    assert await setup.statuses(3, source("productpage", "v1")) == [200, 200, 200]

    async def recovered() -> bool | None:
        return True if (await setup.get(source("reviews", "v2")))[0] == 200 else None

    await eventually(recovered, "the 1s window to let reviews through again", attempts=40)


async def test_denier_for_one_source_and_an_allow_list_from_a_file(setup: Setup) -> None:
    allowed = setup.run_dir / "allowed-sources.txt"
    allowed.parent.mkdir(parents=True, exist_ok=True)
    allowed.write_text("# workloads that may call ratings\nreviews-v1\nreviews-v2\nsleep-v1\n")
    setup.install(
        f"""
        apiVersion: config.istio.io/v1alpha2
        kind: handler
        metadata: {{name: denysleep, namespace: default}}
        spec:
          compiledAdapter: denier
          params: {{status: {{code: 7, message: sleep may not call ratings}}}}
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: instance
        metadata: {{name: nothing, namespace: default}}
        spec: {{compiledTemplate: checknothing}}
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: rule
        metadata: {{name: denysleep, namespace: default}}
        spec:
          match: source.labels["app"] == "sleep"
          actions: [{{handler: denysleep, instances: [nothing]}}]
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: handler
        metadata: {{name: callers, namespace: default}}
        spec:
          compiledAdapter: listchecker
          params: {{providerUrl: "file://{allowed}", refreshInterval: 60s}}
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: instance
        metadata: {{name: caller, namespace: default}}
        spec:
          compiledTemplate: listentry
          params: {{value: source.workload.name | "unknown"}}
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: rule
        metadata: {{name: callers, namespace: default}}
        spec:
          actions: [{{handler: callers, instances: [caller]}}]
        """
    )
    await setup.start_mixer()
    await setup.start_envoy()
    assert await setup.get(source("sleep", "v1")) == (
        403,
        "PERMISSION_DENIED:sleep may not call ratings",
    )
    assert (await setup.get(source("reviews", "v1")))[0] == 200
    assert await setup.get(source("reviews", "v3")) == (
        403,
        "PERMISSION_DENIED:reviews-v3 is not whitelisted",
    )


def requests_total(metrics: str, code: int) -> float:
    """istio_requests_total summed over every series with that response code."""
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("istio_requests_total{") and f'response_code="{code}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_requests_total_on_42422_counts_what_was_sent(setup: Setup) -> None:
    setup.install(TELEMETRY, POLICY / "mixer-rule-deny-label.yaml")
    await setup.start_mixer()
    await setup.start_envoy()
    sent = {200: 0, 403: 0}
    for _ in range(5):
        for app, version in (("reviews", "v2"), ("reviews", "v3"), ("productpage", "v1")):
            status, _ = await setup.get(source(app, version))
            sent[status] += 1
    assert sent == {200: 10, 403: 5}

    async def counted() -> str | None:
        metrics = await setup.telemetry()
        done = all(requests_total(metrics, code) == n for code, n in sent.items())
        return metrics if done else None

    metrics = await eventually(counted, "istio_requests_total to count every request")
    series = next(
        line
        for line in metrics.splitlines()
        if line.startswith("istio_requests_total{") and 'source_version="v3"' in line
    )
    for label in (
        'reporter="destination"',
        'source_workload="reviews-v3"',
        'source_workload_namespace="default"',
        'destination_service="ratings.default.svc.cluster.local"',
        'destination_workload="ratings-v1"',
        'destination_version="v1"',
        'request_protocol="http"',
        'response_code="403"',
        'connection_security_policy="none"',
    ):
        assert label in series, f"{label} missing from {series}"
    assert "istio_request_duration_milliseconds_bucket{" in metrics
    assert "istio_response_bytes_bucket{" in metrics


async def test_mixer_down_fail_open_lets_traffic_through_and_mixer_is_used_again(
    setup: Setup,
) -> None:
    setup.install(POLICY / "mixer-rule-deny-label.yaml")
    await setup.start_mixer()
    await setup.start_envoy(fail_open=True)
    assert (await setup.get(source("reviews", "v3")))[0] == 403
    await setup.stop_mixer()
    assert (await setup.get(source("reviews", "v3")))[0] == 200
    await setup.start_mixer()

    async def enforced() -> bool | None:
        return True if (await setup.get(source("reviews", "v3")))[0] == 403 else None

    await eventually(enforced, "envoy to use mixer again")


async def test_mixer_down_fail_closed_denies(setup: Setup) -> None:
    setup.install(POLICY / "mixer-rule-deny-label.yaml")
    await setup.start_mixer()
    await setup.start_envoy(fail_open=False)
    assert (await setup.get(source("reviews", "v2")))[0] == 200
    await setup.stop_mixer()
    assert (await setup.get(source("reviews", "v2")))[0] == 403
    await setup.start_mixer()

    async def allowed() -> bool | None:
        return True if (await setup.get(source("reviews", "v2")))[0] == 200 else None

    await eventually(allowed, "envoy to use mixer again")


async def test_bad_rule_is_refused_and_the_previous_rules_stay(setup: Setup) -> None:
    setup.install(POLICY / "mixer-rule-deny-label.yaml")
    mixer = await setup.start_mixer()
    await setup.start_envoy()
    assert (await setup.get(source("reviews", "v3")))[0] == 403
    (setup.config_dir / "broken.yaml").write_text(
        textwrap.dedent(
            """
            apiVersion: config.istio.io/v1alpha2
            kind: rule
            metadata: {name: broken, namespace: default}
            spec:
              match: source.labels["app"] === "reviews"
              actions: [{handler: denyreviewsv3handler, instances: [denyreviewsv3request]}]
            """
        )
    )

    async def refused() -> str | None:
        return mixer.config_error or None

    error = await eventually(refused, "mixer to refuse the broken rule")
    assert "broken" in error
    assert (await setup.get(source("reviews", "v3")))[0] == 403
    assert (await setup.get(source("reviews", "v2")))[0] == 200
    # A document that is not even a valid rule is refused the same way.
    (setup.config_dir / "broken.yaml").write_text(
        "apiVersion: config.istio.io/v1alpha2\nkind: rule\nmetadata: {name: broken}\n"
        "spec: {actions: [{handler: denyreviewsv3handler}]}\n"
    )

    async def invalid() -> str | None:
        return mixer.config_error if "instances" in mixer.config_error else None

    await eventually(invalid, "mixer to refuse the invalid document")
    assert (await setup.get(source("reviews", "v3")))[0] == 403
