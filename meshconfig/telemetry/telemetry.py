"""Telemetry (telemetry.istio.io): which metrics, traces and access logs proxies produce.

Pilot turns these models into the stats, tracing and access log configuration of each proxy.
Fields follow Istio's CRD schema; the checks are its CEL rules and Istio's webhook checks
(override tags, custom tag sources, provider names, one way of targeting workloads).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from meshconfig.base import Percent, SpecModel
from meshconfig.security.common import AtLeastOneMillisecond, Problems, TargetedSpec

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
NonEmpty = Annotated[str, Field(min_length=1)]


class ProviderRef(SpecModel):
    """A provider named in the mesh config's extensionProviders (or a built-in one)."""

    name: NonEmpty


class ModeSelector(SpecModel):
    mode: WorkloadMode | None = None


class MetricSelector(SpecModel):
    """The metrics an override applies to: one standard metric, one custom metric, or all."""

    metric: StandardMetric | None = None
    custom_metric: NonEmpty | None = None
    mode: WorkloadMode | None = None

    @model_validator(mode="after")
    def _one_metric(self) -> MetricSelector:
        if self.metric is not None and self.custom_metric is not None:
            raise ValueError("only one of metric or customMetric can be set")
        return self


class TagOverride(SpecModel):
    operation: Literal["UPSERT", "REMOVE"] | None = None
    value: str | None = None

    @model_validator(mode="after")
    def _value_fits_operation(self) -> TagOverride:
        # An unset operation means UPSERT, as in Istio's API.
        problems = Problems()
        if self.operation == "REMOVE" and self.value is not None:
            problems.add(("value",), "value must not be set when operation is REMOVE", self.value)
        elif self.operation != "REMOVE" and not self.value:
            problems.add(("value",), "value must be set when operation is UPSERT", self.value)
        problems.raise_any()
        return self


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


class CustomTag(SpecModel):
    """Where a span tag's value comes from: exactly one source at most."""

    literal: LiteralTag | None = None
    environment: EnvironmentTag | None = None
    header: HeaderTag | None = None
    formatter: FormatterTag | None = None

    @model_validator(mode="after")
    def _one_source(self) -> CustomTag:
        sources = [self.literal, self.environment, self.header, self.formatter]
        if sum(source is not None for source in sources) > 1:
            raise ValueError("only one of literal, environment, header or formatter can be set")
        return self


class Tracing(SpecModel):
    match: ModeSelector | None = None
    providers: list[ProviderRef] | None = None
    random_sampling_percentage: Percent | None = None
    disable_span_reporting: bool | None = None
    custom_tags: dict[str, CustomTag] | None = None
    use_request_id_for_trace_sampling: bool | None = None
    enable_istio_tags: bool | None = None
    disable_context_propagation: bool | None = None

    @model_validator(mode="after")
    def _tag_names(self) -> Tracing:
        if "" in (self.custom_tags or {}):
            raise ValueError("custom tag names must not be empty")
        return self


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
