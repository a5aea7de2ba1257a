"""The service graph store on its own: percentiles over a bounded window, bounded edges,
and the servicegraph adapter reading Istio's requestduration dimensions."""

from __future__ import annotations

import datetime

import pytest

from mixer import service_graph
from mixer.adapters import ADAPTERS
from mixer.adapters.base import Environment, Instance, ParamsError
from mixer.service_graph import LATENCY_WINDOW, ServiceGraph, Workload, percentile

A, B = Workload("default", "a"), Workload("default", "b")


def test_percentiles_are_nearest_rank() -> None:
    ordered = [float(n) for n in range(1, 11)]
    assert [percentile(ordered, p) for p in (50, 90, 99)] == [5.0, 9.0, 10.0]
    assert percentile([3.0], 99) == 3.0


def test_latency_window_keeps_the_latest_and_counts_everything() -> None:
    graph = ServiceGraph()
    for n in range(LATENCY_WINDOW + 100):
        graph.record(A, B, 200, 1.0 if n < 100 else 0.002, mtls=False)
    (edge,) = graph.as_json()["edges"]
    assert edge["requests"] == LATENCY_WINDOW + 100
    assert edge["latency_samples"] == LATENCY_WINDOW
    assert edge["latency_ms"]["p99"] == 2.0  # the 1 s latencies left the window


def test_edges_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_graph, "MAX_EDGES", 2)
    graph = ServiceGraph()
    for name in ("b", "c", "d"):
        graph.record(A, Workload("default", name), 200, 0.001, mtls=True)
    graph.record(A, B, 200, 0.001, mtls=True)  # known edges still count
    found = graph.as_json()
    assert [e["requests"] for e in found["edges"]] == [2, 1]
    assert found["dropped_edges"] == 1


def test_adapter_reads_requestduration_and_skips_source_reports() -> None:
    env = Environment()
    handler = ADAPTERS["servicegraph"].build({}, env)
    dims = {
        "source_workload": "a",
        "source_workload_namespace": "default",
        "destination_workload": "b",
        "destination_workload_namespace": "default",
        "response_code": 503,
        "connection_security_policy": "mutual_tls",
        "reporter": "destination",
    }
    duration = datetime.timedelta(milliseconds=4)
    handler.report(
        [
            Instance(
                "requestduration.instance.istio-system",
                "metric",
                {"value": duration, "dimensions": dims},
            ),
            Instance(
                "requestduration.instance.istio-system",
                "metric",
                {"value": duration, "dimensions": {**dims, "reporter": "source"}},
            ),
        ]
    )
    (edge,) = service_graph.graph(env.shared).as_json()["edges"]
    assert (edge["requests"], edge["errors"], edge["mtls"]) == (1, 1, True)
    assert edge["latency_ms"]["p50"] == 4.0
    with pytest.raises(ParamsError):
        ADAPTERS["servicegraph"].build({"window": 3}, env)
