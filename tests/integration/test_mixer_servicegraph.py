"""The service graph over real gRPC: Reports through Mixer's API become edges on /debug/graph.

Mixer reads the standard telemetry config plus a `servicegraph` handler fed Istio's
`requestduration` instance, on the test's own loopback block.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from mixer import compressed
from mixer.server import Mixer, MixerOptions
from tests.integration.mesh import allocate_block
from tests.integration.test_mixer_api import TELEMETRY, Client, no_tasks_left

SERVICE_GRAPH = """\
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata:
  name: servicegraph
  namespace: istio-system
spec:
  compiledAdapter: servicegraph
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata:
  name: servicegraph
  namespace: istio-system
spec:
  match: context.protocol == "http"
  actions:
  - handler: servicegraph
    instances: [requestduration]
"""


@pytest.fixture
async def mixer(tmp_path: Path) -> AsyncIterator[Mixer]:
    config = tmp_path / "config"
    config.mkdir()
    (config / TELEMETRY.name).write_text(TELEMETRY.read_text())
    (config / "servicegraph.yaml").write_text(SERVICE_GRAPH)
    options = MixerOptions(
        config_dir=config,
        host=f"{allocate_block()}.1",
        port=0,
        monitoring_port=0,
        telemetry_port=0,
    )
    async with Mixer(options) as running:
        yield running
    await no_tasks_left()


def call(
    source: str, destination: str, milliseconds: int, code: int = 200, **extra: Any
) -> dict[str, Any]:
    """One request from workload `source` to `destination` in `default`, as reported."""
    return {
        "source.workload.name": source,
        "source.workload.namespace": "default",
        "destination.workload.name": destination,
        "destination.workload.namespace": "default",
        "destination.service.host": f"{destination}.default.svc.cluster.local",
        "context.protocol": "http",
        "context.reporter.kind": "inbound",
        "connection.mtls": True,
        "response.code": code,
        "response.duration": datetime.timedelta(milliseconds=milliseconds),
        **extra,
    }


async def graph(mixer: Mixer) -> dict[str, Any]:
    url = f"http://{mixer.monitoring.host}:{mixer.monitoring.port}/debug/graph"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        found: dict[str, Any] = await response.json()
        return found


async def test_reports_become_edges_with_counts_latencies_and_mtls(mixer: Mixer) -> None:
    assert (await graph(mixer))["edges"] == []
    reviews = [call("productpage-v1", "reviews-v2", ms) for ms in range(1, 101)]
    reviews[0]["response.code"] = 503
    ratings = [
        call("reviews-v2", "ratings-v1", 7, **{"connection.mtls": False}),
        call("reviews-v2", "ratings-v1", 9, code=404, **{"connection.mtls": False}),
        # The calling sidecar's report of the same request is not counted twice.
        call("reviews-v2", "ratings-v1", 9, **{"context.reporter.kind": "outbound"}),
        # Not HTTP: the rule does not match.
        call("reviews-v2", "ratings-v1", 9, **{"context.protocol": "tcp"}),
    ]
    async with grpc.aio.insecure_channel(mixer.address) as channel:
        client = Client(channel)
        await client.report_call(compressed.encode_report(reviews[:50]), timeout=5)
        await client.report_call(compressed.encode_report(reviews[50:] + ratings), timeout=5)
    found = await graph(mixer)
    assert [node["workload"] for node in found["nodes"]] == [
        "productpage-v1",
        "ratings-v1",
        "reviews-v2",
    ]
    edges = {(e["source"]["workload"], e["destination"]["workload"]): e for e in found["edges"]}
    to_reviews = edges["productpage-v1", "reviews-v2"]
    assert (to_reviews["requests"], to_reviews["errors"]) == (100, 1)
    assert (to_reviews["mtls"], to_reviews["mtls_requests"]) == (True, 100)
    assert to_reviews["latency_ms"] == {"p50": 50.0, "p90": 90.0, "p99": 99.0}
    to_ratings = edges["reviews-v2", "ratings-v1"]
    assert (to_ratings["requests"], to_ratings["errors"], to_ratings["mtls"]) == (2, 0, False)
    assert to_ratings["latency_ms"]["p99"] == 9.0
    assert to_ratings["source"] == {"namespace": "default", "workload": "reviews-v2"}
