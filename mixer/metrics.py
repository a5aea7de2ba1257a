"""Mixer's own metrics on its monitoring port (15014), apart from the telemetry it serves on
42422: checks by front and outcome, cache hits, reported entries, configuration in force."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class MixerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.checks = Counter(
            "mixer_checks",
            "Checks answered, by front (mixer, ext_authz) and google.rpc code.",
            ["front", "code"],
            registry=self.registry,
        )
        self.check_cache_hits = Counter(
            "mixer_check_cache_hits",
            "Checks whose preconditions were answered from the check cache.",
            registry=self.registry,
        )
        self.reports = Counter(
            "mixer_reported_attribute_sets",
            "Attribute sets reported, by front (mixer, access_log).",
            ["front"],
            registry=self.registry,
        )
        self.config_errors = Counter(
            "mixer_config_errors",
            "Configurations refused; the previous one stayed in force.",
            registry=self.registry,
        )
        self.config_version = Gauge(
            "mixer_config_version",
            "How many configurations Mixer has accepted.",
            registry=self.registry,
        )

    def checked(self, front: str, code: int, cache_hit: bool) -> None:
        self.checks.labels(front, str(code)).inc()
        if cache_hit:
            self.check_cache_hits.inc()

    def reported(self, front: str, count: int) -> None:
        self.reports.labels(front).inc(count)
