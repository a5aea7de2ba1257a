"""The webhook's verdicts without a socket: AdmissionReview in, AdmissionReview out, judged
alone or, with a ChangeValidator, together with galley's snapshot (Mixer rules and handlers)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from galley.store import ConfigStore
from galley.validation import ChangeValidator
from galley.webhook import admission_response, write_self_signed
from meshconfig import kind_for, load_documents, validate_document
from meshcore.admission import MalformedReview
from tests.unit.galley.galley_mixer_config import handler, instance, rule
from tests.unit.galley.galley_test_kind import widget


def review(operation: str = "CREATE", document: Any = None, **request: Any) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "705ab4f5", "operation": operation, "object": document, **request},
    }


def test_a_valid_object_is_allowed() -> None:
    answer = admission_response(review(document=yaml.safe_load(widget("one"))))

    assert answer == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "705ab4f5", "allowed": True},
    }


def test_an_invalid_object_is_denied_with_the_validation_message() -> None:
    answer = admission_response(review("UPDATE", yaml.safe_load(widget("one", port=0))))

    response = answer["response"]
    assert response["uid"] == "705ab4f5"
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    assert response["status"]["message"].startswith("admission: Widget default/one: spec.port: ")


def test_an_unknown_kind_is_denied() -> None:
    if kind_for("apps/v1", "Deployment") is not None:
        pytest.skip("the mesh accepts Deployments now")
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}

    response = admission_response(review(document=deployment))["response"]

    assert response["allowed"] is False
    assert "apps/v1 Deployment is not a kind this mesh accepts" in response["status"]["message"]


def test_the_request_namespace_fills_in_a_missing_one() -> None:
    document = yaml.safe_load(widget("one", port=0))
    del document["metadata"]["namespace"]

    response = admission_response(review(document=document, namespace="prod"))["response"]

    assert "Widget prod/one: spec.port" in response["status"]["message"]


def test_a_deletion_is_allowed_without_an_object() -> None:
    response = admission_response(review("DELETE", None, oldObject={"kind": "anything"}))

    assert response["response"] == {"uid": "705ab4f5", "allowed": True}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "expected a JSON object"),
        ({**review(), "apiVersion": "admission.k8s.io/v1beta1"}, "expected apiVersion"),
        ({**review(), "request": None}, "request is required"),
        (review(uid=""), "request.uid is required"),
        (review("CREATE", None), "request.object is required"),
    ],
)
def test_a_malformed_review_is_refused(body: Any, reason: str) -> None:
    with pytest.raises(MalformedReview, match=reason):
        admission_response(body)


@pytest.mark.parametrize(
    ("host", "dns", "ips"),
    [
        ("127.0.0.1", ["localhost"], ["127.0.0.1"]),
        ("0.0.0.0", ["localhost"], ["127.0.0.1"]),
        ("127.0.3.4", ["localhost"], ["127.0.0.1", "127.0.3.4"]),
        ("galley.istio-system.svc", ["localhost", "galley.istio-system.svc"], ["127.0.0.1"]),
    ],
)
def test_the_self_signed_certificate_names_its_host(
    tmp_path: Path, host: str, dns: list[str], ips: list[str]
) -> None:
    cert_file, key_file = tmp_path / "c.pem", tmp_path / "k.pem"

    write_self_signed(host, cert_file, key_file)

    certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == dns
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(i) for i in ips]
    key = load_pem_private_key(key_file.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert key.public_key() == certificate.public_key()
    assert key_file.stat().st_mode & 0o777 == 0o600


# -- judged with galley's snapshot: Mixer rules and what they name ---------------------------


def mixer_store(*texts: str) -> ConfigStore:
    """A store holding `texts` (Mixer documents) as if from a file."""
    store = ConfigStore()
    store.apply(
        "file:/etc/mesh/mixer.yaml",
        [validate_document(d, "/etc/mesh/mixer.yaml") for t in texts for d in load_documents(t)],
    )
    return store


def mixer_review(operation: str, text: str | None = None, **request: Any) -> dict[str, Any]:
    document = yaml.safe_load(text) if text is not None else None
    return review(operation, document, **request)


def denial(answer: dict[str, Any]) -> str:
    response = answer["response"]
    assert response["allowed"] is False, response
    message: str = response["status"]["message"]
    return message


def test_a_rule_naming_a_missing_handler_is_denied() -> None:
    validator = ChangeValidator(mixer_store(instance()))

    answer = admission_response(mixer_review("CREATE", rule()), validator)

    assert denial(answer) == (
        "admission: rule default/deny-v3: spec.actions[0].handler: handler 'deny' not found "
        "(as deny.handler.default)"
    )


def test_a_rule_whose_handler_is_in_the_snapshot_is_allowed() -> None:
    validator = ChangeValidator(mixer_store(handler(), instance()))

    answer = admission_response(mixer_review("CREATE", rule()), validator)

    assert answer["response"] == {"uid": "705ab4f5", "allowed": True}


def test_a_rule_with_a_type_error_is_denied_naming_the_position() -> None:
    validator = ChangeValidator(mixer_store(handler(), instance()))
    bad = rule(match='source.labels["version"] == 3')

    message = denial(admission_response(mixer_review("UPDATE", bad), validator))

    assert message.startswith(
        "admission: rule default/deny-v3: spec.match: line 1, column 26: '==' needs operands"
    )


def test_without_a_validator_only_the_document_is_judged() -> None:
    answer = admission_response(mixer_review("CREATE", rule()))

    assert answer["response"]["allowed"] is True


def test_changing_a_handler_a_rule_uses_so_it_breaks_is_denied() -> None:
    validator = ChangeValidator(mixer_store(handler(), instance(), rule()))

    message = denial(
        admission_response(mixer_review("UPDATE", handler(adapter="prometheus")), validator)
    )

    assert message == (
        "admission: this change breaks rule default/deny-v3 (from /etc/mesh/mixer.yaml): "
        "spec.actions[0].instances[0]: adapter 'prometheus' of handler deny.handler.default "
        "does not support template 'checknothing' (it supports metric)"
    )


def deletion(kind: str, name: str, namespace: str = "default") -> dict[str, Any]:
    group = {"group": "config.istio.io", "version": "v1alpha2", "kind": kind}
    return mixer_review("DELETE", None, kind=group, name=name, namespace=namespace)


def test_deleting_a_handler_a_rule_uses_is_denied() -> None:
    validator = ChangeValidator(mixer_store(handler(), instance(), rule()))

    message = denial(admission_response(deletion("handler", "deny"), validator))

    assert message == (
        "admission: deleting handler default/deny breaks rule default/deny-v3 "
        "(from /etc/mesh/mixer.yaml): spec.actions[0].handler: handler 'deny' not found "
        "(as deny.handler.default)"
    )


@pytest.mark.parametrize(
    ("kind", "name"),
    [("rule", "deny-v3"), ("handler", "unused"), ("handler", "absent"), ("nosuchkind", "x")],
)
def test_other_deletions_are_allowed(kind: str, name: str) -> None:
    validator = ChangeValidator(mixer_store(handler(), handler("unused"), instance(), rule()))

    answer = admission_response(deletion(kind, name), validator)

    assert answer["response"] == {"uid": "705ab4f5", "allowed": True}
