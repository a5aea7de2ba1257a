"""prometheus: metric instances become Prometheus series, served by Mixer on 42422.

Params as Istio's prometheus adapter: `metrics`, each with `name` (exposed as
`<namespace>_<name>`, namespace `istio` by default: `istio_requests_total`), `instanceName`
(the fully qualified metric instance it counts), `kind` (COUNTER adds the instance's value,
GAUGE sets it, DISTRIBUTION observes it into `buckets`: explicit, linear or exponential),
`labelNames` (taken from the instance's dimensions; a missing one is "unknown"); and
`metricsExpirationPolicy` (series not updated for `metricsExpiryDuration` are dropped).

Duration values count in seconds, as in Istio, except for metrics whose name ends in
`_milliseconds` (`istio_request_duration_milliseconds`), which count milliseconds.

Series live in plain dicts behind one collector per metric, registered in the Environment's
registry: a report is a dict lookup and an addition, with no per-series objects or locks
(everything runs on the event loop; scrapes read from it too). The collectors outlive handler
rebuilds, so counters keep counting when unrelated configuration changes; a metric whose
definition changed starts afresh. Template: metric.
"""

from __future__ import annotations

import bisect
import datetime
import ipaddress
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from pydantic import BaseModel, model_validator

from mixer.adapters.base import (
    PARAMS_CONFIG,
    DurationParam,
    Environment,
    Handler,
    Instance,
    parse_params,
)

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Kind(StrEnum):
    GAUGE = "GAUGE"
    COUNTER = "COUNTER"
    DISTRIBUTION = "DISTRIBUTION"


class ExplicitBuckets(BaseModel):
    model_config = PARAMS_CONFIG
    bounds: list[float]


class LinearBuckets(BaseModel):
    model_config = PARAMS_CONFIG
    num_finite_buckets: int
    width: float
    offset: float = 0.0


class ExponentialBuckets(BaseModel):
    model_config = PARAMS_CONFIG
    num_finite_buckets: int
    growth_factor: float
    scale: float


class Buckets(BaseModel):
    model_config = PARAMS_CONFIG
    explicit_buckets: ExplicitBuckets | None = None
    linear_buckets: LinearBuckets | None = None
    exponential_buckets: ExponentialBuckets | None = None

    def bounds(self) -> tuple[float, ...]:
        if self.explicit_buckets is not None:
            return tuple(sorted(self.explicit_buckets.bounds))
        if self.linear_buckets is not None:
            b = self.linear_buckets
            return tuple(b.offset + i * b.width for i in range(b.num_finite_buckets + 1))
        if self.exponential_buckets is not None:
            e = self.exponential_buckets
            return tuple(e.scale * e.growth_factor**i for i in range(e.num_finite_buckets + 1))
        return DEFAULT_BUCKETS


class MetricParams(BaseModel):
    model_config = PARAMS_CONFIG
    name: str
    instance_name: str
    kind: Kind
    label_names: list[str] = []
    buckets: Buckets | None = None
    description: str = ""
    namespace: str = "istio"

    @model_validator(mode="after")
    def _one_bucket_kind(self) -> MetricParams:
        if self.buckets is not None:
            given = [
                name
                for name in ("explicit_buckets", "linear_buckets", "exponential_buckets")
                if getattr(self.buckets, name) is not None
            ]
            if len(given) > 1:
                raise ValueError(f"only one of {', '.join(given)} may be set")
        return self

    @property
    def full_name(self) -> str:
        return f"{self.namespace}_{self.name}" if self.namespace else self.name


class ExpirationParams(BaseModel):
    model_config = PARAMS_CONFIG
    metrics_expiry_duration: DurationParam
    expiry_check_interval_duration: DurationParam | None = None


class PrometheusParams(BaseModel):
    model_config = PARAMS_CONFIG
    metrics: list[MetricParams] = []
    metrics_expiration_policy: ExpirationParams | None = None


@dataclass(frozen=True)
class Definition:
    """What a series store was made for; a different definition needs a new store."""

    name: str
    kind: Kind
    labels: tuple[str, ...]
    bounds: tuple[float, ...]
    description: str


class SeriesStore(Collector):
    """The series of one metric, keyed by label values; a prometheus_client collector."""

    def __init__(self, definition: Definition) -> None:
        self.definition = definition
        self.values: dict[tuple[str, ...], float] = {}
        # DISTRIBUTION: per series, a count per bucket (non-cumulative) plus +Inf, and the sum.
        self.histograms: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        self.touched: dict[tuple[str, ...], float] = {}

    def add(self, labels: tuple[str, ...], value: float) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + value

    def set(self, labels: tuple[str, ...], value: float) -> None:
        self.values[labels] = value

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        found = self.histograms.get(labels)
        if found is None:
            found = self.histograms[labels] = ([0] * (len(self.definition.bounds) + 1), [0.0])
        counts, total = found
        counts[bisect.bisect_left(self.definition.bounds, value)] += 1
        total[0] += value

    def expire(self, before: float) -> None:
        for labels in [k for k, at in self.touched.items() if at < before]:
            del self.touched[labels]
            self.values.pop(labels, None)
            self.histograms.pop(labels, None)

    def collect(self) -> Iterator[Metric]:
        d = self.definition
        if d.kind is Kind.COUNTER:
            counter = CounterMetricFamily(d.name, d.description, labels=d.labels)
            for labels, value in self.values.items():
                counter.add_metric(labels, value)
            yield counter
        elif d.kind is Kind.GAUGE:
            gauge = GaugeMetricFamily(d.name, d.description, labels=d.labels)
            for labels, value in self.values.items():
                gauge.add_metric(labels, value)
            yield gauge
        else:
            histogram = HistogramMetricFamily(d.name, d.description, labels=d.labels)
            for labels, (counts, total) in self.histograms.items():
                cumulative, running = [], 0
                for bound, count in zip((*d.bounds, float("inf")), counts, strict=True):
                    running += count
                    cumulative.append((_bound_text(bound), float(running)))
                histogram.add_metric(labels, cumulative, total[0])
            yield histogram


def _bound_text(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class Collectors:
    """The stores registered in one registry, by metric name; kept across handler rebuilds."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._stores: dict[str, SeriesStore] = {}

    def store(self, definition: Definition) -> SeriesStore:
        current = self._stores.get(definition.name)
        if current is not None and current.definition == definition:
            return current
        if current is not None:
            log.info("metric %s changed definition; its series start afresh", definition.name)
            self._registry.unregister(current)
        store = self._stores[definition.name] = SeriesStore(definition)
        self._registry.register(store)
        return store


def number(value: Any, milliseconds: bool) -> float:
    """A metric value as a float: durations in seconds (or milliseconds), strings parsed."""
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
        return seconds * 1000.0 if milliseconds else seconds
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return float(str(value))


def label_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes) and len(value) in (4, 16):
        return str(ipaddress.ip_address(value))
    if value is None:
        return UNKNOWN
    return str(value)


@dataclass(frozen=True, slots=True)
class _Metric:
    store: SeriesStore
    labels: tuple[str, ...]
    record: Callable[[tuple[str, ...], float], None]
    milliseconds: bool


class PrometheusHandler(Handler):
    def __init__(self, params: PrometheusParams, env: Environment) -> None:
        collectors = env.shared.setdefault(Prometheus.name, Collectors(env.registry))
        self._clock = env.clock
        policy = params.metrics_expiration_policy
        self._expiry: float | None = None
        self._expiry_interval = 0.0
        self._next_expiry = 0.0
        if policy is not None:
            self._expiry = policy.metrics_expiry_duration.total_seconds()
            interval = policy.expiry_check_interval_duration
            self._expiry_interval = (
                interval.total_seconds() if interval is not None else self._expiry / 2
            )
            self._next_expiry = self._clock() + self._expiry_interval
        self._by_instance: dict[str, list[_Metric]] = {}
        for metric in params.metrics:
            definition = Definition(
                metric.full_name,
                metric.kind,
                tuple(metric.label_names),
                (metric.buckets or Buckets()).bounds() if metric.kind is Kind.DISTRIBUTION else (),
                metric.description or metric.name,
            )
            store = collectors.store(definition)
            record = {Kind.COUNTER: store.add, Kind.GAUGE: store.set}.get(
                metric.kind, store.observe
            )
            self._by_instance.setdefault(metric.instance_name, []).append(
                _Metric(store, definition.labels, record, metric.name.endswith("_milliseconds"))
            )

    def report(self, instances: Sequence[Instance]) -> None:
        now = self._clock() if self._expiry is not None else 0.0
        for instance in instances:
            for metric in self._by_instance.get(instance.name, ()):
                fields = instance.fields
                dimensions = fields.get("dimensions") or {}
                labels = tuple(label_text(dimensions.get(name)) for name in metric.labels)
                try:
                    value = number(fields.get("value", 1), metric.milliseconds)
                except (TypeError, ValueError):
                    log.debug("metric %s: value %r is not a number", instance.name, fields)
                    continue
                metric.record(labels, value)
                if self._expiry is not None:
                    metric.store.touched[labels] = now
        if self._expiry is not None and now >= self._next_expiry:
            self._next_expiry = now + self._expiry_interval
            for metrics in self._by_instance.values():
                for metric in metrics:
                    metric.store.expire(now - self._expiry)


class Prometheus:
    name: ClassVar[str] = "prometheus"
    templates: ClassVar[frozenset[str]] = frozenset({"metric"})

    def build(self, params: Mapping[str, Any], env: Environment) -> Handler:
        return PrometheusHandler(parse_params(PrometheusParams, params), env)


ADAPTER = Prometheus()
