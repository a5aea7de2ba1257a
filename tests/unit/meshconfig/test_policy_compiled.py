"""Compiling Mixer config: Istio 1.4's bookinfo policy samples load through meshconfig, compile,
and evaluate end to end; broken config is reported with the resource, field and position."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from meshconfig import Kind, Metadata, Resource, load_documents, validate_document
from meshconfig.policy import AdapterParams
from meshconfig.policy.attributes import AttributeBag, Reference, ValueType
from meshconfig.policy.compiled import (
    CompiledRule,
    MixerConfig,
    compile_mixer_config,
    identity_namespace,
    validate_mixer_resources,
)
from meshconfig.policy.expr import EvaluationError
from meshconfig.policy.templates import Variety
from tests.support.shared import ISTIO_1_4

POLICY = ISTIO_1_4 / "samples" / "bookinfo" / "policy"


def load(path: Path) -> list[Resource]:
    text = path.read_text()
    return [
        validate_document(document, str(path))
        for document in load_documents(text, str(path))
        if str(document.get("apiVersion", "")).startswith("config.istio.io/")
    ]


def mixer_samples() -> list[Path]:
    """Every policy sample that uses compiledAdapter or a legacy per-adapter kind (`-crd`)."""
    return sorted(
        path
        for path in POLICY.glob("*.yaml")
        if "compiledAdapter" in path.read_text() or path.stem.endswith("-crd")
    )


def sample(name: str) -> MixerConfig:
    config = compile_mixer_config(load(POLICY / name))
    assert config.problems == ()
    return config


def resources(text: str) -> list[Resource]:
    return [validate_document(document) for document in load_documents(text)]


def only_rule(config: MixerConfig) -> CompiledRule:
    (rule,) = config.rules
    return rule


def test_the_samples_are_there() -> None:
    names = {path.name for path in mixer_samples()}
    assert len(names) == 17
    assert {"mixer-rule-deny-label-crd.yaml", "mixer-rule-kubernetesenv-telemetry.yaml"} <= names


@pytest.mark.parametrize("path", mixer_samples(), ids=lambda path: path.name)
def test_every_sample_compiles(path: Path) -> None:
    found = load(path)
    assert found, path
    config = compile_mixer_config(found)
    assert config.problems == ()
    assert validate_mixer_resources(found) == []
    assert len(config.rules) == 1 and len(config.handlers) == 1 and len(config.instances) == 1
    for rule in config.rules:
        for action in rule.actions:
            assert action.instances and all(i.name in config.instances for i in action.instances)
            assert config.handlers[action.handler.name] is action.handler


def test_out_of_process_sample_compiles() -> None:
    config = sample("prometheus-oop-rule.yaml")
    (handler,) = config.handlers.values()
    assert handler.adapter == "prometheus-nosession" and not handler.compiled
    (instance,) = config.instances.values()
    assert instance.template == "metric" and instance.variety is Variety.REPORT


def bookinfo_bag(**extra: Any) -> AttributeBag:
    values: dict[str, Any] = {
        "source.labels": {"app": "reviews", "version": "v3"},
        "destination.labels": {"app": "ratings", "version": "v1"},
        "source.ip": ipaddress.ip_address("10.57.3.4"),
        "destination.service.host": "ratings.default.svc.cluster.local",
        "destination.service.name": "ratings",
        "destination.service.namespace": "default",
        "request.headers": {"x-forwarded-for": "10.28.11.20"},
        "response.code": 200,
    }
    values.update(extra)
    return AttributeBag(values)


@pytest.mark.parametrize("name", ["mixer-rule-deny-label.yaml", "mixer-rule-deny-label-crd.yaml"])
def test_deny_label_end_to_end(name: str) -> None:
    config = sample(name)
    rule = only_rule(config)
    (action,) = rule.actions
    assert action.handler.adapter == "denier"
    assert action.handler.params["status"] == {"code": 7, "message": "Not allowed"}
    (instance,) = action.instances
    assert instance.template == "checknothing" and instance.variety is Variety.CHECK
    recording = bookinfo_bag().recording()
    assert rule.matches(recording) and instance.build(recording) == {}
    assert Reference("source.labels", "version") in recording.referenced
    v2 = bookinfo_bag(**{"source.labels": {"app": "reviews", "version": "v2"}})
    assert not rule.matches(v2)
    assert not rule.matches(bookinfo_bag(**{"source.labels": {}}))
    with pytest.raises(EvaluationError, match=r"'destination\.labels' is absent"):
        rule.matches(AttributeBag({}))


@pytest.mark.parametrize("name", ["mixer-rule-deny-ip.yaml", "mixer-rule-deny-ip-crd.yaml"])
def test_whitelist_ip_end_to_end(name: str) -> None:
    config = sample(name)
    rule = only_rule(config)
    (action,) = rule.actions
    assert action.handler.adapter == "listchecker"
    assert action.handler.params["entryType"] == "IP_ADDRESSES"
    (instance,) = action.instances
    gateway = bookinfo_bag(**{"source.labels": {"istio": "ingressgateway"}})
    assert rule.matches(gateway) and not rule.matches(bookinfo_bag())
    # The IP_ADDRESS expression feeds listentry's string `value` as text.
    assert instance.build(gateway) == {"value": "10.57.3.4"}
    assert instance.build(AttributeBag({})) == {"value": "0.0.0.0"}


@pytest.mark.parametrize(
    "name", ["mixer-rule-deny-whitelist.yaml", "mixer-rule-deny-whitelist-crd.yaml"]
)
def test_whitelist_version_end_to_end(name: str) -> None:
    rule = only_rule(sample(name))
    (action,) = rule.actions
    (instance,) = action.instances
    assert rule.matches(bookinfo_bag())
    assert instance.build(bookinfo_bag()) == {"value": "v3"}
    assert action.handler.params["overrides"] == ["v1", "v2"]


def test_ingress_denial_end_to_end() -> None:
    config = sample("mixer-rule-ingress-denial.yaml")
    rule = only_rule(config)
    john = AttributeBag(
        {"source.labels": {"istio": "ingressgateway"}, "request.headers": {"x-user": "john"}}
    )
    assert rule.matches(john)
    assert not rule.matches(AttributeBag({"source.labels": {"istio": "ingressgateway"}}))
    assert not rule.matches(AttributeBag({}))
    assert rule.actions[0].handler.name == "handler.handler.istio-system"


def test_deny_serviceaccount_uses_source_user() -> None:
    rule = only_rule(sample("mixer-rule-deny-serviceaccount.yaml"))
    productpage = AttributeBag(
        {
            "destination.labels": {"app": "details"},
            "source.user": "cluster.local/ns/default/sa/bookinfo-productpage",
        }
    )
    assert rule.matches(productpage)


@pytest.mark.parametrize(
    ("name", "dimensions"),
    [
        (
            "mixer-rule-productpage-ratelimit.yaml",
            {"source": "10.28.11.20", "destination": "ratings", "destinationVersion": "v1"},
        ),
        (
            "mixer-rule-productpage-ratelimit-crd.yaml",
            {"source": "10.28.11.20", "destination": "ratings", "destinationVersion": "v1"},
        ),
        (
            "mixer-rule-ratings-redis-quota-rolling-window.yaml",
            {
                "source": "reviews",
                "sourceVersion": "v3",
                "destination": "ratings",
                "destinationVersion": "v1",
            },
        ),
    ],
)
def test_quota_instances_end_to_end(name: str, dimensions: dict[str, str]) -> None:
    config = sample(name)
    rule = only_rule(config)
    (instance,) = rule.actions[0].instances
    assert instance.variety is Variety.QUOTA and rule.matches(bookinfo_bag())
    assert instance.build(bookinfo_bag()) == {"dimensions": dimensions}
    bare = AttributeBag({"destination.service.name": "details"})
    assert instance.build(bare)["dimensions"]["destination"] in ("details", "unknown")


def test_kubernetesenv_metric_end_to_end() -> None:
    config = sample("mixer-rule-kubernetesenv-telemetry.yaml")
    rule = only_rule(config)
    (instance,) = rule.actions[0].instances
    assert instance.variety is Variety.REPORT and rule.matches(AttributeBag({}))
    built = instance.build(
        AttributeBag({"response.code": 503, "source.name": "reviews-v3-abc", "source.owner": "o"})
    )
    assert built["value"] == 1 and built["monitored_resource_type"] == "UNSPECIFIED"
    assert built["dimensions"]["response_code"] == 503
    assert built["dimensions"]["source_pod"] == "reviews-v3-abc"
    assert built["dimensions"]["destination_container"] == "unknown"
    assert instance.expressions["dimensions.response_code"].type is ValueType.INT64


def test_out_of_process_metric_end_to_end() -> None:
    (instance,) = sample("prometheus-oop-rule.yaml").instances.values()
    outbound = AttributeBag({"context.reporter.kind": "outbound", "connection.mtls": True})
    built = instance.build(outbound)["dimensions"]
    assert built["reporter"] == "source" and built["connection_security_policy"] == "unknown"
    inbound = instance.build(AttributeBag({"connection.mtls": True}))["dimensions"]
    assert inbound["reporter"] == "destination"
    assert inbound["connection_security_policy"] == "mutual_tls"
    assert inbound["request_protocol"] == "unknown" and inbound["response_code"] == 200


def test_instance_build_errors_name_the_field() -> None:
    config = compile_mixer_config(
        resources(
            """
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: i, namespace: default}
spec:
  compiledTemplate: metric
  params: {value: "1", dimensions: {a: source.name | "x", b: source.principal}}
"""
        )
    )
    (instance,) = config.instances.values()
    with pytest.raises(EvaluationError) as caught:
        instance.build(AttributeBag({}))
    assert "instance i.instance.default, field dimensions.b: attribute 'source.principal'" in str(
        caught.value
    )


HEADER_RULE = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: keyval, namespace: istio-system}
spec:
  adapter: keyval
  connection: {address: "keyval:9070"}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: keyval, namespace: istio-system}
spec:
  template: keyval
  params:
    key: request.headers["user"] | ""
    default: '"unknown"'
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: keyval, namespace: default}
spec:
  actions:
  - handler: keyval.istio-system
    instances: [keyval.instance.istio-system]
    name: x
  requestHeaderOperations:
  - name: user-group
    values: [x.output.value]
  responseHeaderOperations:
  - {name: x-checked, values: ['"yes"', 'source.ip | ip("0.0.0.0")'], operation: APPEND}
  - {name: server, operation: REMOVE}
  sampling:
    random: {percentSampled: {numerator: 5, denominator: HUNDRED}}
"""


def test_header_operations_read_action_outputs() -> None:
    config = compile_mixer_config(resources(HEADER_RULE))
    assert config.problems == ()
    rule = only_rule(config)
    (action,) = rule.actions
    assert action.name == "x" and action.handler.name == "keyval.handler.istio-system"
    (instance,) = action.instances
    assert instance.variety is None and instance.template == "keyval"
    assert instance.build(AttributeBag({"request.headers": {"user": "jason"}})) == {
        "key": "jason",
        "default": "unknown",
    }
    (request_op,) = rule.request_header_operations
    assert request_op.name == "user-group" and request_op.operation == "REPLACE"
    assert request_op.values[0].evaluate(AttributeBag({"x.output.value": "admins"})) == "admins"
    checked, server = rule.response_header_operations
    assert checked.operation == "APPEND" and checked.values[0].text == '"yes"'
    assert server.operation == "REMOVE" and server.values == ()
    assert rule.sampling == {
        "random": {"percentSampled": {"numerator": 5, "denominator": "HUNDRED"}}
    }


RULE_NAMES = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: h, namespace: istio-system}
spec: {compiledAdapter: denier}
---
apiVersion: config.istio.io/v1alpha2
kind: denier
metadata: {name: legacy, namespace: default}
spec: {status: {code: 7}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: i, namespace: istio-system}
spec: {compiledTemplate: checknothing}
---
apiVersion: config.istio.io/v1alpha2
kind: checknothing
metadata: {name: old, namespace: default}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: everything, namespace: istio-system}
spec:
  actions:
  - {handler: h, instances: [i]}
  - handler: h.handler.istio-system
    instances: [i.instance.istio-system, old.checknothing.default]
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: mine, namespace: default}
spec:
  match: destination.labels["app"] == "ratings"
  actions:
  - {handler: h.istio-system, instances: [i.istio-system]}
  - {handler: legacy.denier, instances: [old.checknothing]}
"""


def test_names_resolve_like_istio() -> None:
    config = compile_mixer_config(resources(RULE_NAMES))
    assert config.problems == ()
    everything, mine = sorted(config.rules, key=lambda rule: rule.name)
    assert everything.name == "everything.rule.istio-system" and everything.match is None
    assert [a.handler.name for a in everything.actions] == ["h.handler.istio-system"] * 2
    assert [i.name for i in everything.actions[1].instances] == [
        "i.instance.istio-system",
        "old.checknothing.default",
    ]
    assert [a.handler.name for a in mine.actions] == [
        "h.handler.istio-system",
        "legacy.denier.default",
    ]
    assert config.handlers["legacy.denier.default"].params == {"status": {"code": 7}}
    # The default namespace's rules apply everywhere; a namespace's own only to it.
    assert config.rules_for("default") == (everything, mine)
    assert config.rules_for("istio-system") == (everything,)
    assert config.rules_for("other") == (everything,)
    bag = AttributeBag({"destination.service.host": "ratings.default.svc.cluster.local"})
    assert identity_namespace(bag) == "default"
    assert identity_namespace(AttributeBag({})) == ""


def problems_of(text: str) -> dict[str, list[str]]:
    """Resource label -> ["path: message", ...] for every problem."""
    return {
        error.resource: [str(field_error) for field_error in error.errors]
        for error in validate_mixer_resources(resources(text))
    }


BROKEN = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: deny, namespace: default}
spec: {compiledAdapter: denier}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: bad, namespace: default}
spec:
  compiledTemplate: metric
  params:
    value: "1"
    monitoredResourceType: response.code
    dimensions: {a: source.nope}
    extra: '"x"'
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: metric, namespace: default}
spec:
  compiledTemplate: metric
  params: {value: "1"}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: unknown, namespace: default}
spec: {compiledTemplate: nosuch}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: r, namespace: default}
spec:
  match: destination.labels["app"] == 3
  actions:
  - {handler: deny, instances: [bad, missing]}
  - {handler: nohandler, instances: [metric]}
  - {handler: deny, instances: [metric]}
  - {handler: deny, instances: [unknown]}
  requestHeaderOperations:
  - {name: x, values: ['y.output.value', 'source.ip + 1']}
---
apiVersion: config.istio.io/v1alpha2
kind: listentry
metadata: {name: le, namespace: default}
spec: {value: "source.labels[\\"version\\"] == 1"}
---
apiVersion: config.istio.io/v1alpha2
kind: QuotaSpec
metadata: {name: q, namespace: default}
spec:
  rules:
  - match: [{clause: {request.size: {exact: "1"}, request.path: {regex: "("}, a.b: {}}}]
"""


def test_problems_name_resource_field_and_position() -> None:
    found = problems_of(BROKEN)
    assert set(found) == {
        "instance default/bad",
        "instance default/unknown",
        "rule default/r",
        "listentry default/le",
        "QuotaSpec default/q",
    }
    bad = found["instance default/bad"]
    assert any(
        p.startswith(
            "spec.params.monitoredResourceType: line 1, column 1: expression has type INT64"
        )
        for p in bad
    )
    assert any(
        p.startswith("spec.params.dimensions.a: line 1, column 1: unknown attribute 'source.nope'")
        for p in bad
    )
    assert any(
        p.startswith("spec.params.extra: unknown field (the fields: dimensions") for p in bad
    )
    assert found["instance default/unknown"] == [
        "spec.compiledTemplate: unknown template 'nosuch' (Mixer compiles in apikey, "
        "authorization, checknothing, edge, kubernetes, listentry, logentry, metric, quota, "
        "reportnothing, tracespan)"
    ]
    rule = found["rule default/r"]
    assert rule[0].startswith(
        "spec.match: line 1, column 27: '==' needs operands of one type, got STRING and INT64"
    )
    assert "spec.actions[0].instances[0]: instance 'bad' is invalid (see its errors)" in rule
    assert (
        "spec.actions[0].instances[1]: instance 'missing' not found "
        "(as missing.instance.default)" in rule
    )
    assert (
        "spec.actions[1].handler: handler 'nohandler' not found (as nohandler.handler.default)"
        in rule
    )
    assert (
        "spec.actions[2].instances[0]: adapter 'denier' of handler deny.handler.default does not "
        "support template 'metric' (it supports checknothing, listentry, quota)" in rule
    )
    assert "spec.actions[3].instances[0]: instance 'unknown' is invalid (see its errors)" in rule
    assert any(
        p.startswith(
            "spec.requestHeaderOperations[0].values[0]: line 1, column 1: unknown attribute"
        )
        for p in rule
    )
    assert any(
        p.startswith(
            "spec.requestHeaderOperations[0].values[1]: line 1, column 11: '+' needs operands"
        )
        for p in rule
    )
    assert found["listentry default/le"][0].startswith(
        "spec.value: line 1, column 26: '==' needs operands of one type"
    )
    quota = found["QuotaSpec default/q"]
    assert any("clause.request.size: a INT64: clauses match STRING" in p for p in quota)
    assert any("clause.request.path.regex: invalid regex" in p for p in quota)
    assert any("clause.a.b: unknown attribute: clauses match STRING" in p for p in quota)
    # The broken resources are left out; the rest is in force.
    config = compile_mixer_config(resources(BROKEN))
    assert config.rules == () and set(config.instances) == {"metric.instance.default"}
    assert {e.resource for e in config.problems} == set(found)


ATTRIBUTE_MANIFEST = Kind(
    "config.istio.io", "attributemanifest", "attributemanifests", ("v1alpha2",), AdapterParams
)


def manifest(attributes: dict[str, Any]) -> Resource:
    return Resource(
        ATTRIBUTE_MANIFEST,
        Metadata("extra", "istio-system"),
        AdapterParams.model_validate({"attributes": attributes}),
    )


def test_attribute_manifests_extend_the_vocabulary() -> None:
    rule = resources(
        """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: h, namespace: istio-system}
spec: {compiledAdapter: denier}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: r, namespace: istio-system}
spec:
  match: my.score > 0.5
  actions: [{handler: h, instances: [i]}]
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: i, namespace: istio-system}
spec: {compiledTemplate: checknothing}
"""
    )
    (error,) = validate_mixer_resources(rule)
    assert "unknown attribute 'my.score'" in str(error)
    config = compile_mixer_config([*rule, manifest({"my.score": {"valueType": "DOUBLE"}})])
    assert config.problems == () and config.vocabulary["my.score"] is ValueType.DOUBLE
    assert only_rule(config).matches(AttributeBag({"my.score": 0.7}))
    (bad,) = validate_mixer_resources([manifest({"x": {"valueType": "NOPE"}})])
    assert bad.resource == "attributemanifest istio-system/extra"
    assert "attributes.x.valueType: 'NOPE' is not one of" in str(bad)


def test_other_resources_are_ignored() -> None:
    service = {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "ServiceEntry",
        "metadata": {"name": "s", "namespace": "default"},
        "spec": {
            "hosts": ["a.example.com"],
            "resolution": "DNS",
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
        },
    }
    config = compile_mixer_config([validate_document(service)])
    assert config.rules == () and config.problems == () and not config.handlers
