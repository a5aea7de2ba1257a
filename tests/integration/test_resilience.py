"""Retries and mirroring through real Envoy sidecars, and no NACK anywhere along the way.

Services `a` and `b` (HTTP 8080) each run one workload behind a sidecar; `client` sends
requests through its sidecar as an HTTP proxy. The applications are small recording backends
defined here: `a` can fail every other request, `b` counts the copies a mirror sends it. After
each scenario pilot's `/debug/syncz` must show no NACK for any proxy, `pilot_total_xds_rejects`
must be absent or 0, and the Envoys' own `update_rejected` counters must be 0. Every test runs
for state-of-the-world and delta xDS.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from textwrap import dedent, indent
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.mesh import Mesh, eventually, service_entry, workload_entry

pytestmark = pytest.mark.envoy

A = "http://a.default.svc.cluster.local:8080"
A_CLUSTER = "outbound|8080||a.default.svc.cluster.local"
B_CLUSTER = "outbound|8080||b.default.svc.cluster.local"
REQUESTS = 50


@dataclass
class Backend:
    """An application on `host:port` that records each request and answers with the status
    `status_of(n)` for its n-th request (1-based)."""

    name: str
    host: str
    port: int
    status_of: Callable[[int], int] = lambda _: 200
    seen: list[dict[str, str]] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _answer(self, request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.seen.append({**headers, "host": request.host, "path": request.path_qs})
        status = self.status_of(len(self.seen))
        return web.Response(status=status, text=f"{self.name} {status}\n")


def _every_other_fails(n: int) -> int:
    return 503 if n % 2 else 200


@pytest.fixture
async def backends(mesh: Mesh) -> AsyncIterator[dict[str, Backend]]:
    """The applications of a (.2, failing every odd request) and b (.3), on .102 and .103
    (Mesh.add_sidecar puts the application of workload .N on .N+100)."""
    found = {
        "a": Backend("a-v1", f"{mesh.block}.102", 8080, _every_other_fails),
        "b": Backend("b-v1", f"{mesh.block}.103", 8080),
    }
    for backend in found.values():
        await backend.start()
    try:
        yield found
    finally:
        for backend in found.values():
            await backend.stop()


def _virtual_service(spec: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: a, namespace: default}\nspec:\n" + indent(dedent(spec), "  ")
    )


async def _mesh_with(mesh: Mesh, spec: str | None) -> None:
    """a, b and client with their sidecars (and the VirtualService for host a), all synced."""
    a_ip, b_ip, client_ip = mesh.next_ip(), mesh.next_ip(), mesh.next_ip()
    assert (a_ip, b_ip) == (f"{mesh.block}.2", f"{mesh.block}.3")
    documents = [
        service_entry("a", 8080),
        service_entry("b", 8080),
        workload_entry("a-v1", a_ip, "a"),
        workload_entry("b-v1", b_ip, "b"),
        workload_entry("client", client_ip, "client"),
    ]
    if spec is not None:
        documents.append(_virtual_service(spec))
    mesh.write("mesh", *documents)
    await mesh.start_pilot()
    await mesh.add_sidecar("a-v1", a_ip, labels={"app": "a"})
    await mesh.add_sidecar("b-v1", b_ip, labels={"app": "b"})
    await mesh.add_sidecar("client", client_ip)
    await mesh.synced({"a-v1", "b-v1", "client"})


async def _statuses(mesh: Mesh, count: int = REQUESTS) -> Counter[int]:
    """Statuses of `count` sequential GETs to a through the client sidecar."""
    client = mesh.sidecars["client"]
    seen: Counter[int] = Counter()
    for n in range(count):
        async with mesh.http().get(f"{A}/r{n}", proxy=client.http_proxy) as response:
            await response.read()
            seen[response.status] += 1
    return seen


async def _cluster_stat(mesh: Mesh, cluster: str, stat: str) -> int:
    stats = await mesh.stats(mesh.sidecars["client"], f"{stat}$")
    return stats.get(f"cluster.{cluster}.{stat}", 0)


async def _route_of_a(mesh: Mesh) -> dict[str, Any]:
    """The single route of host a in the client's `http_proxy` route config."""
    dump = await mesh.admin_json(
        mesh.sidecars["client"], "/config_dump?resource=dynamic_route_configs"
    )
    (config,) = [
        e["route_config"] for e in dump["configs"] if e["route_config"]["name"] == "http_proxy"
    ]
    (host,) = [
        vh for vh in config["virtual_hosts"] if vh["name"] == "a.default.svc.cluster.local:8080"
    ]
    (route,) = host["routes"]
    result: dict[str, Any] = route["route"]
    return result


def _rejects(metrics: str) -> float:
    """The sum of pilot_total_xds_rejects over its labels; 0 when the counter is absent."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "pilot_total_xds_rejects"
        for sample in family.samples
        if sample.name == "pilot_total_xds_rejects_total"
    )


async def assert_no_nack(mesh: Mesh) -> None:
    """No proxy NACKed anything: pilot's syncz and metrics, and each Envoy's own counters."""
    entries = await mesh.syncz()
    assert {e["proxy"].split(".")[0] for e in entries} >= set(mesh.sidecars), entries
    for entry in entries:
        for short in ("cds", "eds", "lds", "rds"):
            status = entry.get(short, {})
            assert status.get("state") != "NACK", (entry["proxy"], short, status)
            assert not status.get("nack_error"), (entry["proxy"], short, status)
    assert _rejects(await mesh.pilot_metrics()) == 0
    for sidecar in mesh.sidecars.values():
        rejected = await mesh.stats(sidecar, r"update_rejected$")
        assert rejected and not any(rejected.values()), (sidecar.name, rejected)


HALF_FAIL = {200: REQUESTS // 2, 503: REQUESTS // 2}
ISTIO_DEFAULT_RETRY_ON = (
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
)


@pytest.mark.parametrize(
    ("retries", "expected", "retry_on"),
    [
        pytest.param(
            "retries: {attempts: 3, retryOn: 5xx}", {200: REQUESTS}, "5xx", id="attempts-3-5xx"
        ),
        pytest.param("retries: {attempts: 0}", HALF_FAIL, None, id="attempts-0"),
        # Istio's default (2 attempts) no longer retries a 503 from the application
        # (EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY, on by default since Istio 1.24).
        pytest.param(None, HALF_FAIL, ISTIO_DEFAULT_RETRY_ON, id="istio-default"),
    ],
)
async def test_retries_against_a_backend_failing_every_other_request(
    mesh: Mesh,
    backends: dict[str, Backend],
    retries: str | None,
    expected: dict[int, int],
    retry_on: str | None,
) -> None:
    rule = "- route: [{destination: {host: a}}]\n" + (f"  {retries}\n" if retries else "")
    await _mesh_with(mesh, "hosts: [a]\nhttp:\n" + rule)
    assert await _statuses(mesh) == expected
    policy = (await _route_of_a(mesh)).get("retry_policy")
    assert (policy or {}).get("retry_on") == retry_on, policy
    retried = await _cluster_stat(mesh, A_CLUSTER, "upstream_rq_retry")
    if 503 in expected:
        assert len(backends["a"].seen) == REQUESTS
        assert retried == 0
    else:
        assert policy is not None and policy["num_retries"] == 3
        # Each odd request failed once and its first retry was answered.
        assert len(backends["a"].seen) == 2 * REQUESTS
        assert retried == REQUESTS
    await assert_no_nack(mesh)


async def test_mirror_sends_copies_to_another_service(
    mesh: Mesh, backends: dict[str, Backend]
) -> None:
    backends["a"].status_of = lambda _: 200
    await _mesh_with(
        mesh,
        """\
        hosts: [a]
        http:
        - route: [{destination: {host: a}}]
          mirror: {host: b}
          mirrorPercentage: {value: 100}
        """,
    )
    assert await _statuses(mesh) == {200: REQUESTS}
    assert len(backends["a"].seen) == REQUESTS

    async def mirrored() -> list[dict[str, str]] | None:
        """b's copies, once b got them all and the client's Envoy saw all their answers
        (mirroring is fire-and-forget: both lag behind the answers from a)."""
        copies = backends["b"].seen
        if len(copies) < REQUESTS:
            return None
        done = await _cluster_stat(mesh, B_CLUSTER, "upstream_rq_completed")
        return copies if done >= REQUESTS else None

    copies = await eventually(mirrored, f"{REQUESTS} mirrored requests done", attempts=100)
    assert len(copies) == REQUESTS
    assert await _cluster_stat(mesh, B_CLUSTER, "upstream_rq_completed") == REQUESTS
    assert {c["host"] for c in copies} == {"a.default.svc.cluster.local-shadow:8080"}
    assert sorted(c["path"] for c in copies) == sorted(f"/r{n}" for n in range(REQUESTS))
    originals = {c["x-request-id"] for c in backends["a"].seen}
    assert {c["x-request-id"] for c in copies} == originals
    assert {c["host"] for c in backends["a"].seen} == {"a.default.svc.cluster.local:8080"}
    route = await _route_of_a(mesh)
    (policy,) = route["request_mirror_policies"]
    assert policy["cluster"] == B_CLUSTER
    assert policy["runtime_fraction"]["default_value"] == {
        "numerator": 1_000_000,
        "denominator": "MILLION",
    }
    await assert_no_nack(mesh)
