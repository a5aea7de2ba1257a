"""Pilot's Prometheus metrics, named as Istio names them so existing dashboards keep working.

One `PilotMetrics` per pilot instance, on its own registry (several control planes may share a
process in tests and in the local mesh).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from meshcore.xds import types

_PUSH_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 3, 5, 10, 20, 30)


class PilotMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connected = Gauge(
            "pilot_xds",
            "Number of endpoints connected to this pilot using XDS.",
            registry=self.registry,
        )
        self.pushes = Counter(
            "pilot_xds_pushes",
            "Pilot build and send counts for lds, rds, cds and eds.",
            ["type"],
            registry=self.registry,
        )
        self.push_time = Histogram(
            "pilot_xds_push_time",
            "Total time in seconds Pilot takes to push lds, rds, cds and eds.",
            ["type"],
            buckets=_PUSH_BUCKETS,
            registry=self.registry,
        )
        self.convergence = Histogram(
            "pilot_proxy_convergence_time",
            "Delay in seconds between a config change and a proxy receiving its configuration.",
            buckets=_PUSH_BUCKETS,
            registry=self.registry,
        )
        self.rejects = Counter(
            "pilot_total_xds_rejects",
            "Total number of XDS responses from pilot rejected by proxy.",
            ["type"],
            registry=self.registry,
        )
        self.debounce = Histogram(
            "pilot_debounce_time",
            "Delay in seconds between the first config event and the merged push.",
            buckets=_PUSH_BUCKETS,
            registry=self.registry,
        )
        self.services = Gauge(
            "pilot_services", "Total services known to pilot.", registry=self.registry
        )
        self.full_pushes = Counter(
            "pilot_push_triggers",
            "Total number of times a push was triggered, labeled by reason.",
            ["type"],
            registry=self.registry,
        )
        # type URL -> its children of `pushes` and `push_time`, looked up once rather than for
        # each of the thousands of responses a push sends.
        self._sent_by_type: dict[str, tuple[Counter, Histogram]] = {}

    def response_sent(self, type_url: str, seconds: float) -> None:
        """Count one response of `type_url`, and the `seconds` its push took until it was
        written."""
        children = self._sent_by_type.get(type_url)
        if children is None:
            label = types.short_name(type_url)
            children = self._sent_by_type[type_url] = (
                self.pushes.labels(label),
                self.push_time.labels(label),
            )
        children[0].inc()
        children[1].observe(seconds)
