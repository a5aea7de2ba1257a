"""validate_document's handling of the document around the spec, and how errors are worded.

Kinds whose CRD requires `spec` report a missing one; errors of several types at one path read
as one sentence.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from meshconfig import ConfigValidationError, UnknownKindError, kind_for, validate_document
from meshconfig.base import SpecModel
from meshconfig.paths import field_errors
from tests.support.shared import CRDS


def document(kind: str, spec: Any) -> dict[str, Any]:
    out = {"apiVersion": "networking.istio.io/v1", "kind": kind, "metadata": {"name": "x"}}
    if spec is not ...:
        out["spec"] = spec
    return out


@pytest.mark.parametrize("kind", ["ServiceEntry", "WorkloadEntry", "WorkloadGroup"])
@pytest.mark.parametrize("spec", [..., None], ids=["missing", "null"])
def test_a_kind_that_requires_spec_reports_it_missing(kind: str, spec: Any) -> None:
    with pytest.raises(ConfigValidationError) as raised:
        validate_document(document(kind, spec), "test.yaml")
    assert [str(error) for error in raised.value.errors] == ["spec: is required"]


def test_other_kinds_validate_a_missing_spec_as_an_empty_one() -> None:
    with pytest.raises(ConfigValidationError) as raised:
        validate_document(document("Sidecar", ...))
    assert [error.path for error in raised.value.errors] == ["spec"]
    assert "a Sidecar needs ingress" in raised.value.errors[0].message


def test_spec_is_required_exactly_where_the_crd_requires_it() -> None:
    compared = 0
    for crd in yaml.load_all(CRDS.read_text(), Loader=yaml.CSafeLoader):
        if not crd:
            continue
        names = crd["spec"]["names"]
        for version in crd["spec"]["versions"]:
            kind = kind_for(f"{crd['spec']['group']}/{version['name']}", names["kind"])
            if kind is None:
                continue
            required = version["schema"]["openAPIV3Schema"].get("required", [])
            assert kind.spec_required == ("spec" in required), kind.id
            compared += 1
    assert compared > 20


class Alternatives(SpecModel):
    two: int | str | None = None
    three: int | str | bool | None = None


class Lenient(BaseModel):
    port: int | str | None = None


def errors_of(model: type[BaseModel], body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as raised:
        model.model_validate(body)
    return {error.path: error.message for error in field_errors(raised.value, "spec")}


def test_alternative_types_at_one_path_read_as_one_sentence() -> None:
    assert errors_of(Alternatives, {"two": [], "three": []}) == {
        "spec.two": "Input should be a valid integer or string",
        "spec.three": "Input should be a valid integer, string or boolean",
    }


def test_a_detail_of_one_alternative_stays_with_its_type() -> None:
    assert errors_of(Lenient, {"port": 1.5}) == {
        "spec.port": "Input should be a valid integer (got a number with a fractional part) "
        "or string"
    }


def test_other_messages_at_one_path_are_still_joined() -> None:
    errors = errors_of(Alternatives, {"two": 1, "three": [], "other": 1})
    assert errors["spec.other"] == "Extra inputs are not permitted"
    assert errors["spec.three"] == "Input should be a valid integer, string or boolean"


def test_a_known_kind_at_an_unserved_version_is_an_error_not_an_unknown_kind() -> None:
    document = {
        "apiVersion": "networking.istio.io/v2",
        "kind": "ServiceEntry",
        "metadata": {"name": "se"},
        "spec": {"hosts": ["a.example.com"]},
    }
    with pytest.raises(ConfigValidationError) as caught:
        validate_document(document, "a.yaml")
    assert not isinstance(caught.value, UnknownKindError)
    assert "apiVersion: version 'v2' of ServiceEntry is not served (v1, v1beta1, v1alpha3)" in str(
        caught.value
    )


def test_a_field_beside_spec_is_refused_not_dropped() -> None:
    document = {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "deny", "namespace": "default"},
        "action": "DENY",  # belongs under spec: dropping it would turn DENY into deny-all
        "spec": {},
    }
    with pytest.raises(ConfigValidationError, match=r"action: unknown field"):
        validate_document(document, "policy.yaml")
