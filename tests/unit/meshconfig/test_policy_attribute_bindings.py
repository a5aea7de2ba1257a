"""Attribute generators' bindings: `$out.<field>` typed by the template's outputs, compiled once
with the config, evaluated with an adapter's output; Istio's samples still compile unchanged."""

from __future__ import annotations

import ipaddress
import json
import textwrap
from pathlib import Path

import pytest

from meshconfig import Resource, load_documents, validate_document
from meshconfig.policy.attributes import AttributeBag, ValueType
from meshconfig.policy.compiled import compile_mixer_config
from meshconfig.policy.expr import ParseError, compile_expression
from meshconfig.policy.templates import TEMPLATES, Variety
from tests.support.shared import ISTIO_1_4

POLICY = ISTIO_1_4 / "samples" / "bookinfo" / "policy"
MIXER = Path(__file__).resolve().parents[3] / "mixer"

REGISTRY = """
apiVersion: v1
kind: Pod
metadata: {name: ratings-v1-7dc98c7588-x2xxl, namespace: default, labels: {app: ratings}}
spec: {containers: [{name: ratings}]}
status: {podIP: 10.1.0.9}
---
apiVersion: networking.istio.io/v1alpha3
kind: WorkloadEntry
metadata: {name: reviews-vm, namespace: default}
spec: {address: 10.2.0.7, labels: {app: reviews}}
"""


def resources(text: str) -> list[Resource]:
    return [validate_document(d) for d in load_documents(textwrap.dedent(text))]


def generator(**bindings: str) -> list[Resource]:
    """A kubernetes instance with `bindings` (`source__labels` for `source.labels`)."""
    document = {
        "apiVersion": "config.istio.io/v1alpha2",
        "kind": "instance",
        "metadata": {"name": "attributes", "namespace": "istio-system"},
        "spec": {
            "compiledTemplate": "kubernetes",
            "params": {"source_ip": 'source.ip | ip("0.0.0.0")'},
            "attributeBindings": {k.replace("__", "."): v for k, v in bindings.items()},
        },
    }
    return resources(json.dumps(document))


def test_the_sample_and_the_kubernetesenv_config_compile_beside_the_registry() -> None:
    config = compile_mixer_config(
        [
            *resources((POLICY / "mixer-rule-kubernetesenv-telemetry.yaml").read_text()),
            *resources((MIXER / "kubernetesenv.yaml").read_text()),
            *resources((MIXER / "telemetry.yaml").read_text()),
            *resources(REGISTRY),
        ]
    )
    assert config.problems == ()
    instance = config.instances["attributes.instance.istio-system"]
    assert instance.variety is Variety.ATTRIBUTE_GENERATOR
    assert instance.bindings["source.workload.name"].type is ValueType.STRING
    assert instance.bindings["source.labels"].type is ValueType.STRING_MAP
    assert instance.bindings["destination.ip"].type is ValueType.IP_ADDRESS
    assert instance.attribute_bindings["source.workload.name"] == "$out.source_workload_name"
    # The registry's kinds are not Mixer config: nothing of them in the compiled config.
    assert all(rule.resource.kind.group == "config.istio.io" for rule in config.rules)


def test_bindings_evaluate_with_the_output_bound() -> None:
    config = compile_mixer_config(
        generator(
            source__workload__name='$out.source_workload_name | "unknown"',
            source__labels="$out.source_labels",
            source__namespace='$out.source_labels["ns"] | source.namespace',
            destination__ip="$out.destination_pod_ip",
        )
    )
    assert config.problems == ()
    (instance,) = config.instances.values()
    bag = AttributeBag({"source.ip": ipaddress.ip_address("10.1.0.9"), "source.namespace": "x"})
    assert instance.build(bag) == {"source_ip": ipaddress.ip_address("10.1.0.9")}
    outputs = {"source_workload_name": "ratings-v1", "source_labels": {"app": "ratings"}}
    assert instance.bind(outputs, bag) == {
        "source.workload.name": "ratings-v1",
        "source.labels": {"app": "ratings"},
        "source.namespace": "x",  # no "ns" label: the default
    }
    # No output: defaults apply, and a binding without one sets nothing.
    assert instance.bind({}, bag) == {"source.workload.name": "unknown", "source.namespace": "x"}


@pytest.mark.parametrize(
    ("attribute", "expression", "message"),
    [
        ("source.workload.name", "$out.source_pod_ip", "expected STRING"),
        ("source.workload.name", "$out.no_such", "unknown attribute '$out.no_such'"),
        ("source.no_such_attribute", "$out.source_pod_name", "unknown attribute"),
        ("source.labels", "$out.source_labels | 1", "one type"),
    ],
)
def test_bindings_are_type_checked(attribute: str, expression: str, message: str) -> None:
    config = compile_mixer_config(generator(**{attribute.replace(".", "__"): expression}))
    (problem,) = config.problems
    assert "attributeBindings" in str(problem) and message in str(problem)
    assert config.instances == {}


def test_out_is_only_known_to_bindings() -> None:
    with pytest.raises(Exception, match="unknown attribute"):
        compile_expression("$out.source_pod_name")
    with pytest.raises(ParseError, match=r"'\$' must start a name"):
        compile_expression("$ == 1")


def test_the_kubernetes_template_declares_istios_outputs() -> None:
    outputs = TEMPLATES["kubernetes"].outputs
    assert outputs["source_pod_ip"] is ValueType.IP_ADDRESS
    assert outputs["destination_labels"] is ValueType.STRING_MAP
    assert {"source_workload_name", "destination_owner", "destination_container_name"} <= set(
        outputs
    )
    assert "source_container_name" not in outputs
    assert TEMPLATES["metric"].outputs == {}
