"""The service graph: who calls whom, how often, how badly, how fast and whether over mTLS.

Istio's servicegraph add-on drew this from Prometheus; here the `servicegraph` adapter feeds
it from the reports Mixer already gets, and Mixer's monitoring server serves it as JSON on
`/debug/graph`. An edge is source workload -> destination workload (each with its namespace)
and keeps cumulative request and error counts (an error is a 5xx, as the add-on counted), how
many requests came over mutual TLS, and the latencies of the last `LATENCY_WINDOW` requests,
from which p50/p90/p99 are computed when the graph is read (reads are rare, reports are not).

Memory is bounded: a fixed window per edge and at most `MAX_EDGES` edges (later new edges are
dropped and counted). One graph lives per Mixer, in `Environment.shared`, so it survives the
handler being rebuilt on a config change. Owned by the event loop.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import Any

LATENCY_WINDOW = 1024  # latencies kept per edge
MAX_EDGES = 10_000
PERCENTILES = (50, 90, 99)
SHARED_KEY = "servicegraph"


@dataclass(frozen=True, slots=True)
class Workload:
    namespace: str
    name: str


@dataclass(slots=True)
class EdgeStats:
    requests: int = 0
    errors: int = 0
    mtls_requests: int = 0
    latencies: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW)
    )

    def as_json(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "mtls_requests": self.mtls_requests,
            "mtls": self.requests > 0 and self.mtls_requests == self.requests,
            "latency_ms": {
                f"p{p}": round(percentile(ordered, p) * 1000.0, 3) if ordered else None
                for p in PERCENTILES
            },
            "latency_samples": len(ordered),
        }


def percentile(ordered: list[float], p: int) -> float:
    """Nearest-rank percentile of a sorted, non-empty list."""
    rank = max(math.ceil(p / 100 * len(ordered)), 1)
    return ordered[rank - 1]


class ServiceGraph:
    def __init__(self) -> None:
        self._edges: dict[tuple[Workload, Workload], EdgeStats] = {}
        self.dropped_edges = 0

    def record(
        self, source: Workload, destination: Workload, code: int, seconds: float, mtls: bool
    ) -> None:
        key = (source, destination)
        stats = self._edges.get(key)
        if stats is None:
            if len(self._edges) >= MAX_EDGES:
                self.dropped_edges += 1
                return
            stats = self._edges[key] = EdgeStats()
        stats.requests += 1
        stats.errors += code >= 500
        stats.mtls_requests += mtls
        stats.latencies.append(seconds)

    def as_json(self) -> dict[str, Any]:
        nodes = sorted({w for edge in self._edges for w in edge}, key=_order)
        return {
            "nodes": [_workload(w) for w in nodes],
            "edges": [
                {"source": _workload(s), "destination": _workload(d), **stats.as_json()}
                for (s, d), stats in sorted(
                    self._edges.items(), key=lambda item: (_order(item[0][0]), _order(item[0][1]))
                )
            ],
            "dropped_edges": self.dropped_edges,
        }


def _order(workload: Workload) -> tuple[str, str]:
    return (workload.namespace, workload.name)


def _workload(workload: Workload) -> dict[str, str]:
    return {"namespace": workload.namespace, "workload": workload.name}


def graph(shared: dict[str, Any]) -> ServiceGraph:
    """The Mixer's one graph, kept in its `Environment.shared` (created on first use)."""
    found = shared.get(SHARED_KEY)
    if found is None:
        found = shared[SHARED_KEY] = ServiceGraph()
    assert isinstance(found, ServiceGraph)
    return found
