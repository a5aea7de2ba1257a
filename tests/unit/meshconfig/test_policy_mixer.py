"""Mixer's config.istio.io kinds: Istio 1.4's bookinfo policy samples validate, mistakes don't."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import yaml

from meshconfig import ConfigValidationError, load_documents, validate_document
from meshconfig.policy import HandlerSpec, InstanceSpec, QuotaSpecBindingSpec, RuleSpec
from tests.support.shared import ISTIO, ISTIO_1_4

SAMPLE_ROOTS = [(ISTIO_1_4 / "samples"), (ISTIO / "samples")]


def mixer_documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for root in SAMPLE_ROOTS:
        for path in sorted(root.rglob("*.yaml")):
            for document in load_documents(path.read_text(), str(path)):
                if str(document.get("apiVersion", "")).startswith("config.istio.io/"):
                    found.append((f"{path.name}:{document['kind']}", dict(document)))
    return found


def test_every_sample_document_validates() -> None:
    kinds: Counter[str] = Counter()
    for source, document in mixer_documents():
        resource = validate_document(document, source)
        kinds[resource.kind.kind] += 1
    # Each file of the policy samples is covered, legacy kinds included.
    assert kinds["handler"] == 14 and kinds["instance"] == 14 and kinds["rule"] == 18
    assert kinds["QuotaSpec"] == 7 and kinds["QuotaSpecBinding"] == 7
    assert {"denier", "checknothing", "listchecker", "listentry", "memquota", "quota"} <= set(kinds)


def test_sample_models_carry_the_values() -> None:
    by_kind = {}
    for source, document in mixer_documents():
        if source.startswith("prometheus-oop-rule.yaml") or "productpage-ratelimit.yaml" in source:
            by_kind[document["kind"]] = validate_document(document).spec
    handler, instance, rule = by_kind["handler"], by_kind["instance"], by_kind["rule"]
    assert isinstance(handler, HandlerSpec) and handler.connection is not None
    assert handler.adapter == "prometheus-nosession"
    assert handler.connection.address == "prometheusadapter:8080"
    assert isinstance(instance, InstanceSpec) and instance.params is not None
    assert instance.params["dimensions"]["response_code"] == "response.code | 200"
    assert isinstance(rule, RuleSpec) and rule.actions is not None
    assert rule.actions[0].instances == ["requestcount-oop"]
    binding = by_kind["QuotaSpecBinding"]
    assert isinstance(binding, QuotaSpecBindingSpec)
    assert binding.quota_specs[0].name == "request-count"


HANDLER = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: h, namespace: istio-system}
spec:
  compiledAdapter: denier
  params: {status: {code: 7, message: Not allowed}}
  connection:
    address: adapter:8080
    timeout: 5s
    authentication:
      tls: {caCertificates: /etc/ca.pem, tokenPath: /var/token, authHeader: BEARER}
"""
INSTANCE = """
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: i, namespace: istio-system}
spec:
  compiledTemplate: metric
  params:
    value: "1"
    dimensions: {source: source.workload.name | "unknown"}
  attributeBindings: {source.namespace: $out.source_namespace}
"""
RULE = """
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: r, namespace: istio-system}
spec:
  match: destination.labels["app"] == "ratings"
  actions: [{handler: h, instances: [i], name: a}]
  requestHeaderOperations: [{name: x-checked, values: [a.output.value], operation: APPEND}]
  sampling:
    random: {percentSampled: {numerator: 5, denominator: TEN_THOUSAND}}
    rateLimit: {samplingDuration: 1s, maxUnsampledEntries: 100, samplingRate: 10}
"""
QUOTA_SPEC = """
apiVersion: config.istio.io/v1alpha2
kind: QuotaSpec
metadata: {name: q}
spec:
  rules:
  - match: [{clause: {request.path: {prefix: /books}, request.method: {exact: POST}}}]
    quotas: [{quota: requestcount, charge: 2}]
"""
BINDING = """
apiVersion: config.istio.io/v1alpha2
kind: QuotaSpecBinding
metadata: {name: b}
spec:
  services: [{service: "*"}]
  quotaSpecs: [{name: q}]
"""
LEGACY_LISTENTRY = """
apiVersion: config.istio.io/v1alpha2
kind: listentry
metadata: {name: l}
spec:
  value: source.labels["version"]
"""

DOCUMENTS = {
    "handler": HANDLER,
    "instance": INSTANCE,
    "rule": RULE,
    "quotaspec": QUOTA_SPEC,
    "binding": BINDING,
    "listentry": LEGACY_LISTENTRY,
}


def document(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENTS[name])
    return loaded


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_full_documents_validate(name: str) -> None:
    resource = validate_document(document(name))
    assert validate_document(resource.to_document()).spec == resource.spec


CASES: list[tuple[str, str, Any, str, str]] = [
    (
        "handler",
        "compiledAdapter",
        None,
        "spec.compiledAdapter",
        "one of compiledAdapter or adapter",
    ),
    ("handler", "adapter", "oop", "spec.adapter", "only one of compiledAdapter or adapter"),
    ("handler", "params", ["status"], "spec.params", "valid dictionary"),
    ("handler", "connection.timeout", "5", "spec.connection.timeout", "invalid duration"),
    ("handler", "connection.port", 8080, "spec.connection.port", "Extra"),
    (
        "handler",
        "connection.authentication.mutual",
        {},
        "spec.connection.authentication",
        "only one of tls or mutual",
    ),
    (
        "handler",
        "connection.authentication.tls.oauth",
        {"clientId": "m"},
        "spec.connection.authentication.tls.oauth",
        "only one of tokenPath or oauth",
    ),
    (
        "handler",
        "connection.authentication.tls.customHeader",
        "x-key",
        "spec.connection.authentication.tls.customHeader",
        "only one of authHeader",
    ),
    (
        "handler",
        "connection.authentication.tls.authHeader",
        "BASIC",
        "spec.connection.authentication.tls.authHeader",
        "'PLAIN' or 'BEARER'",
    ),
    (
        "instance",
        "compiledTemplate",
        None,
        "spec.compiledTemplate",
        "one of compiledTemplate or template",
    ),
    ("instance", "template", "metric", "spec.template", "only one of compiledTemplate or template"),
    ("instance", "params.value", 1, "spec.params.value", "expression string, got int"),
    (
        "instance",
        "params.dimensions.source",
        ["a"],
        "spec.params.dimensions.source",
        "expression string, got list",
    ),
    (
        "instance",
        "attributeBindings.source.namespace",
        3,
        "spec.attributeBindings.source.namespace",
        "string",
    ),
    ("rule", "match", True, "spec.match", "valid string"),
    (
        "rule",
        "match",
        'destination.labels["app"] ==',
        "spec.match",
        "line 1, column 29: expected an operand, found end of expression",
    ),
    (
        "rule",
        "requestHeaderOperations.0.values",
        ["a.output.value", "source.ip +"],
        "spec.requestHeaderOperations[0].values[1]",
        "line 1, column 12: expected an operand",
    ),
    (
        "instance",
        "params.dimensions.source",
        "source.workload.name | ",
        "spec.params.dimensions.source",
        "line 1, column 24: expected an operand",
    ),
    ("listentry", "value", 'source.labels["version"', "spec.value", "line 1, column 24: expected"),
    ("rule", "actions", {"handler": "h"}, "spec.actions", "valid list"),
    ("rule", "actions.0.handler", None, "spec.actions[0].handler", "valid string"),
    ("rule", "actions.0.instances", [], "spec.actions[0].instances", "at least 1"),
    ("rule", "actions.0.instance", ["i"], "spec.actions[0].instance", "Extra"),
    (
        "rule",
        "requestHeaderOperations.0.operation",
        "SET",
        "spec.requestHeaderOperations[0].operation",
        "'REPLACE'",
    ),
    (
        "rule",
        "sampling.random.percentSampled.numerator",
        -1,
        "spec.sampling.random.percentSampled.numerator",
        "greater than or equal to 0",
    ),
    (
        "rule",
        "sampling.random.percentSampled.denominator",
        "MILLION",
        "spec.sampling.random.percentSampled.denominator",
        "'HUNDRED'",
    ),
    (
        "quotaspec",
        "rules.0.quotas.0.charge",
        "2",
        "spec.rules[0].quotas[0].charge",
        "valid integer",
    ),
    ("quotaspec", "rules.0.quotas.0.quota", "", "spec.rules[0].quotas[0].quota", "at least 1"),
    (
        "quotaspec",
        "rules.0.match.0.clause.request.path.exact",
        "/b",
        "spec.rules[0].match[0].clause.request.path",
        "only one of exact, prefix or regex",
    ),
    ("binding", "services", [], "spec.services", "at least 1"),
    ("binding", "quotaSpecs.0.name", None, "spec.quotaSpecs[0].name", "valid string"),
    ("listentry", "value", 42, "spec.value", "expression string, got int"),
    ("listentry", "extra", {"nested": False}, "spec.extra.nested", "expression string, got bool"),
]


def set_at(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set a value at a dotted path under spec; map keys may contain dots (request.path)."""
    node: Any = doc["spec"]
    parts = path.split(".")
    while len(parts) > 1:
        part = parts.pop(0)
        if isinstance(node, list):
            node = node[int(part)]
        elif part in node:
            node = node[part]
        elif f"{part}.{parts[0]}" in node:  # a dotted map key
            parts[0] = f"{part}.{parts[0]}"
        else:
            node = node.setdefault(part, {})
    node[int(parts[0]) if isinstance(node, list) else parts[0]] = value


@pytest.mark.parametrize(("name", "path", "value", "where", "reason"), CASES)
def test_broken_variants_name_the_field(
    name: str, path: str, value: Any, where: str, reason: str
) -> None:
    doc = document(name)
    set_at(doc, path, value)
    with pytest.raises(ConfigValidationError) as caught:
        validate_document(doc, "mixer.yaml")
    found = [str(error) for error in caught.value.errors]
    assert [e for e in found if e.startswith(f"{where}: ") and reason in e], found
