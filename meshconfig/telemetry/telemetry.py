"""Telemetry (telemetry.istio.io): which metrics, traces and access logs proxies produce.

Pilot turns these models into the stats, tracing and access log configuration of each proxy.
Fields follow Istio's CRD schema; the checks are its CEL rules and Istio's webhook checks
(override tags, custom tag sources, provider names, one way of targeting workloads).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from meshconfig.base import (
    AtLeastOneMillisecond,
    CheckedModel,
    NonEmpty,
    Percent,
    Problem,
    SpecModel,
)
from meshconfig.selector import TargetedSpec

WorkloadMode = Literal["CLIENT_AND_SERVER", "CLIENT", "SERVER"]
StandardMetric = Literal[
    "ALL_METRICS",
    "REQUEST_COUNT",
    "REQUEST_DURATION",
    "REQUEST_SIZE",
    "RESPONSE_SIZE",
    "TCP_OPENED_CONNECTIONS",
    "TCP_CLOSED_CONNECTIONS",
    "TCP_SENT_BYTES",
    "TCP_RECEIVED_BYTES",
    "GRPC_REQUEST_MESSAGES",
    "GRPC_RESPONSE_MESSAGES",
]


class ProviderRef(SpecModel):
    """A provider named in the mesh config's extensionProviders (or a built-in one)."""

    name: NonEmpty


class ModeSelector(SpecModel):
    mode: WorkloadMode | None = None


class MetricSelector(CheckedModel):
    """The metrics an override applies to: one standard metric, one custom metric, or all."""

    metric: StandardMetric | None = None
    custom_metric: NonEmpty | None = None
    mode: WorkloadMode | None = None

    def problems(self) -> Iterator[Problem]:
        if self.metric is not None and self.custom_metric is not None:
            yield (), "only one of metric or customMetric can be set"


class TagOverride(CheckedModel):
    operation: Literal["UPSERT", "REMOVE"] | None = None
    value: str | None = None

    def problems(self) -> Iterator[Problem]:
        # An unset operation means UPSERT, as in Istio's API.
        if self.operation == "REMOVE" and self.value is not None:
            yield ("value",), "value must not be set when operation is REMOVE"
        elif self.operation != "REMOVE" and not self.value:
            yield ("value",), "value must be set when operation is UPSERT"


class MetricsOverrides(SpecModel):
    match: MetricSelector | None = None
    disabled: bool | None = None
    tag_overrides: dict[str, TagOverride] | None = None


class Metrics(SpecModel):
    providers: list[ProviderRef] | None = None
    overrides: list[MetricsOverrides] | None = None
    reporting_interval: AtLeastOneMillisecond | None = None


class LiteralTag(SpecModel):
    value: NonEmpty


class EnvironmentTag(SpecModel):
    name: NonEmpty
    default_value: str | None = None


class HeaderTag(SpecModel):
    name: NonEmpty
    default_value: str | None = None


class FormatterTag(SpecModel):
    value: NonEmpty


class CustomTag(CheckedModel):
    """Where a span tag's value comes from: exactly one source at most."""

    literal: LiteralTag | None = None
    environment: EnvironmentTag | None = None
    header: HeaderTag | None = None
    formatter: FormatterTag | None = None

    def problems(self) -> Iterator[Problem]:
        if len(self.set_fields("literal", "environment", "header", "formatter")) > 1:
            yield (), "only one of literal, environment, header or formatter can be set"


class Tracing(CheckedModel):
    match: ModeSelector | None = None
    providers: list[ProviderRef] | None = None
    random_sampling_percentage: Percent | None = None
    disable_span_reporting: bool | None = None
    custom_tags: dict[str, CustomTag] | None = None
    use_request_id_for_trace_sampling: bool | None = None
    enable_istio_tags: bool | None = None
    disable_context_propagation: bool | None = None

    def problems(self) -> Iterator[Problem]:
        if "" in (self.custom_tags or {}):
            yield (), "custom tag names must not be empty"


class AccessLogFilter(SpecModel):
    """A CEL expression choosing the requests or connections to log (compiled later)."""

    expression: str | None = None


class AccessLogging(SpecModel):
    match: ModeSelector | None = None
    providers: list[ProviderRef] | None = None
    disabled: bool | None = None
    filter: AccessLogFilter | None = None


class TelemetrySpec(TargetedSpec):
    """Telemetry for the mesh (root namespace), a namespace, or selected workloads."""

    tracing: list[Tracing] | None = None
    metrics: list[Metrics] | None = None
    access_logging: list[AccessLogging] | None = None
