"""Telemetry (telemetry.istio.io): valid resources are accepted, broken ones name their field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from meshconfig import ConfigValidationError, validate_document
from meshconfig.telemetry import TelemetrySpec

MESH_DEFAULT = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - providers: [{name: zipkin}]
    randomSamplingPercentage: 10
    match: {mode: CLIENT_AND_SERVER}
    customTags:
      cluster: {literal: {value: east}}
      pod: {environment: {name: POD_NAME, defaultValue: unknown}}
      user: {header: {name: x-user}}
      route: {formatter: {value: "%ROUTE_NAME%"}}
    disableSpanReporting: false
    useRequestIdForTraceSampling: true
    enableIstioTags: true
    disableContextPropagation: null
  metrics:
  - providers: [{name: prometheus}]
    reportingInterval: 15s
    overrides:
    - match: {metric: REQUEST_COUNT, mode: SERVER}
      tagOverrides:
        request_protocol: {operation: REMOVE}
        destination_port: {value: upstream_peer.port}
    - match: {customMetric: my_metric}
      disabled: true
  accessLogging:
  - providers: [{name: envoy}]
    match: {mode: SERVER}
    filter: {expression: "response.code >= 400"}
  - disabled: true
"""

WORKLOAD = """
apiVersion: telemetry.istio.io/v1alpha1
kind: Telemetry
metadata: {name: reviews, namespace: bookinfo}
spec:
  selector:
    matchLabels: {app: reviews}
  tracing: [{randomSamplingPercentage: 0.5}]
"""


def document(text: str = MESH_DEFAULT) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(text)
    return copy.deepcopy(loaded)


def test_valid_resources_are_accepted_and_typed() -> None:
    mesh = validate_document(document(), "telemetry.yaml")
    spec = mesh.spec
    assert isinstance(spec, TelemetrySpec)
    assert spec.tracing is not None and spec.tracing[0].random_sampling_percentage == 10.0
    assert spec.metrics is not None and spec.metrics[0].overrides is not None
    assert spec.metrics[0].overrides[0].tag_overrides is not None
    assert validate_document(mesh.to_document()).spec == spec
    workload = validate_document(document(WORKLOAD))
    assert workload.kind.kind == "Telemetry"


def errors_of(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigValidationError) as caught:
        validate_document(doc, "telemetry.yaml")
    return [str(error) for error in caught.value.errors]


TRACING = "spec.tracing[0]"
OVERRIDE = "spec.metrics[0].overrides[0]"

CASES: list[tuple[str, Any, str, str]] = [
    ("tracing.0.randomSamplingPercentage", 101, f"{TRACING}.randomSamplingPercentage", "100"),
    ("tracing.0.randomSamplingPercentage", "10", f"{TRACING}.randomSamplingPercentage", "number"),
    ("tracing.0.match.mode", "BOTH", f"{TRACING}.match.mode", "'CLIENT_AND_SERVER'"),
    ("tracing.0.providers.0", {}, f"{TRACING}.providers[0].name", "required"),
    ("tracing.0.providers.0.name", "", f"{TRACING}.providers[0].name", "at least 1"),
    ("tracing.0.sampling", 1, f"{TRACING}.sampling", "Extra"),
    (
        "tracing.0.customTags.cluster.literal",
        {},
        f"{TRACING}.customTags.cluster.literal.value",
        "required",
    ),
    (
        "tracing.0.customTags.cluster.header",
        {"name": "x-cluster"},
        f"{TRACING}.customTags.cluster",
        "only one of literal, environment, header or formatter",
    ),
    ("tracing.0.customTags", {"": {"literal": {"value": "x"}}}, TRACING, "tag names"),
    ("metrics.0.overrides.0.match.metric", "REQUESTS", f"{OVERRIDE}.match.metric", "'ALL_METRICS'"),
    (
        "metrics.0.overrides.0.match.customMetric",
        "mine",
        f"{OVERRIDE}.match",
        "only one of metric or customMetric",
    ),
    (
        "metrics.0.overrides.0.tagOverrides.request_protocol.value",
        "x",
        f"{OVERRIDE}.tagOverrides.request_protocol.value",
        "must not be set when operation is REMOVE",
    ),
    (
        "metrics.0.overrides.0.tagOverrides.destination_port",
        {"operation": "UPSERT"},
        f"{OVERRIDE}.tagOverrides.destination_port.value",
        "must be set when operation is UPSERT",
    ),
    (
        "metrics.0.overrides.0.tagOverrides.destination_port",
        {"operation": "SET", "value": "x"},
        f"{OVERRIDE}.tagOverrides.destination_port.operation",
        "'UPSERT' or 'REMOVE'",
    ),
    ("metrics.0.overrides.1.disabled", "yes", "spec.metrics[0].overrides[1].disabled", "boolean"),
    ("metrics.0.reportingInterval", "0s", "spec.metrics[0].reportingInterval", "1ms"),
    ("metrics.0.reportingInterval", "fast", "spec.metrics[0].reportingInterval", "duration"),
    (
        "accessLogging.0.filter",
        {"expression": 400},
        "spec.accessLogging[0].filter.expression",
        "string",
    ),
    ("accessLogging", {"disabled": True}, "spec.accessLogging", "valid list"),
    ("targetRef", {"kind": "Pod", "name": "reviews"}, "spec.targetRef.kind", "can only target"),
    ("targetRefs", [{"kind": "Service"}], "spec.targetRefs[0].name", "required"),
]


@pytest.mark.parametrize(("path", "value", "where", "reason"), CASES)
def test_broken_variants_name_the_field(path: str, value: Any, where: str, reason: str) -> None:
    doc = document()
    *parents, last = path.split(".")
    node: Any = doc["spec"]
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    found = errors_of(doc)
    assert [e for e in found if e.startswith(f"{where}: ") and reason in e], found


def test_selector_and_target_ref_exclude_each_other() -> None:
    doc = document(WORKLOAD)
    doc["spec"]["targetRef"] = {"kind": "Service", "name": "reviews"}
    assert errors_of(doc) == ["spec: only one of targetRefs or selector can be set"]
