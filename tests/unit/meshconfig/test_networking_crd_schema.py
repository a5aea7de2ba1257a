"""The networking models agree with Istio's CRD schemas, field by field, at every served version.

For each kind, the CRD's `openAPIV3Schema.properties.spec` is walked beside the spec model: at
every level the field names (aliases, including alternative spellings the model accepts), the
required fields, the JSON types and the enum values must be the same. Every field that carries
the CRD's "duration >= 1ms" CEL rule must use the model's `Timeout` type. Differences are
collected with their paths so one run shows all of them.

Deliberate deviations: none at the field, type or enum level. Semantic rules the model adds on
top of the schema (weights, hosts, ports 1-65535 where the CRD says uint32, ...) are covered by
test_networking_rejects.py.
"""

from __future__ import annotations

import types
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
import yaml
from pydantic import AliasChoices, BaseModel
from pydantic.fields import FieldInfo

from meshconfig import kind_for
from meshconfig.networking import KINDS
from meshconfig.networking.checks import Timeout
from tests.support.shared import CRDS

CRDS = CRDS
GROUP = "networking.istio.io"
DURATION_RULE = "must be a valid duration greater than 1ms"
JSON_TYPES = {str: "string", int: "integer", bool: "boolean", float: "number"}


@cache
def _crds() -> dict[str, dict[str, Any]]:
    found = {}
    for crd in yaml.load_all(CRDS.read_text(), Loader=yaml.CSafeLoader):  # C parser: fast
        if crd and crd["spec"]["group"] == GROUP:
            found[crd["spec"]["names"]["kind"]] = crd
    return found


def _strip_annotated(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _without_none(annotation: Any) -> Any:
    annotation = _strip_annotated(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        assert len(members) == 1, f"unexpected union {annotation}"
        return _strip_annotated(members[0])
    return annotation


def _names(name: str, field: FieldInfo) -> set[str]:
    names = {field.alias or name}
    if isinstance(field.validation_alias, AliasChoices):
        names |= {choice for choice in field.validation_alias.choices if isinstance(choice, str)}
    return names


def _is_timeout(field: FieldInfo | None, annotation: Any) -> bool:
    # a required field carries the Annotated metadata on the FieldInfo instead
    if field is not None and tuple(field.metadata) == get_args(Timeout)[1:]:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return any(arg == Timeout for arg in get_args(annotation))
    return bool(annotation == Timeout)


def _compare(
    schema: dict[str, Any],
    annotation: Any,
    path: str,
    problems: list[str],
    field: FieldInfo | None = None,
) -> None:
    rules = {rule["message"] for rule in schema.get("x-kubernetes-validations", [])}
    if DURATION_RULE in rules and not _is_timeout(field, annotation):
        problems.append(f"{path}: CRD requires a duration >= 1ms, model type is not Timeout")
    model = _without_none(annotation)
    crd_type = schema.get("type")
    if "properties" in schema:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            problems.append(f"{path}: CRD has an object, model has {model}")
            return
        _compare_object(schema, model, path, problems)
    elif crd_type == "array":
        if get_origin(model) is not list:
            problems.append(f"{path}: CRD has an array, model has {model}")
            return
        _compare(schema["items"], get_args(model)[0], f"{path}[]", problems)
    elif crd_type == "object":
        if get_origin(model) is not dict:
            problems.append(f"{path}: CRD has a map, model has {model}")
            return
        _compare(schema["additionalProperties"], get_args(model)[1], f"{path}{{}}", problems)
    elif get_origin(model) is Literal:
        if crd_type != "string" or set(schema.get("enum", [])) != set(get_args(model)):
            problems.append(
                f"{path}: CRD enum {schema.get('enum')} ({crd_type}), model {get_args(model)}"
            )
    elif "enum" in schema:
        problems.append(f"{path}: CRD has enum {schema['enum']}, model has {model}")
    elif JSON_TYPES.get(model) != crd_type:
        problems.append(f"{path}: CRD type {crd_type}, model type {model}")


def _compare_object(
    schema: dict[str, Any], model: type[BaseModel], path: str, problems: list[str]
) -> None:
    fields = {
        alias: field for name, field in model.model_fields.items() for alias in _names(name, field)
    }
    crd_names = set(schema["properties"])
    if set(fields) != crd_names:
        problems.append(
            f"{path}: only in CRD {sorted(crd_names - set(fields))}, "
            f"only in model {sorted(set(fields) - crd_names)}"
        )
    required = {
        field.alias or name for name, field in model.model_fields.items() if field.is_required()
    }
    if required != set(schema.get("required", [])):
        problems.append(
            f"{path}: CRD requires {sorted(schema.get('required', []))}, model {sorted(required)}"
        )
    for name in sorted(crd_names & set(fields)):
        field = fields[name]
        _compare(schema["properties"][name], field.annotation, f"{path}.{name}", problems, field)


@pytest.mark.parametrize("kind", KINDS, ids=[kind.kind for kind in KINDS])
def test_model_matches_crd_schema_at_every_served_version(kind: Any) -> None:
    crd = _crds()[kind.kind]
    served = [version for version in crd["spec"]["versions"] if version["served"]]
    assert {version["name"] for version in served} == set(kind.versions)
    assert crd["spec"]["names"]["plural"] == kind.plural
    assert (crd["spec"]["scope"] == "Namespaced") == kind.namespaced
    storage = next(version["name"] for version in served if version.get("storage"))
    assert kind.versions[0] == storage
    for version in served:
        assert kind_for(f"{GROUP}/{version['name']}", kind.kind) is kind
        problems: list[str] = []
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        _compare(spec, kind.spec_model, "spec", problems)
        assert not problems, f"{kind.kind} {version['name']}:\n" + "\n".join(problems)


def test_the_walk_notices_differences() -> None:
    """The comparison itself reports a missing field, a wrong enum and a wrong type."""
    schema = {
        "type": "object",
        "properties": {
            "mode": {"type": "string", "enum": ["A", "B"]},
            "count": {"type": "integer"},
            "extra": {"type": "string"},
        },
    }

    class Model(BaseModel):
        mode: Literal["A"] | None = None
        count: str | None = None

    problems: list[str] = []
    _compare(schema, Model, "spec", problems)
    assert len(problems) == 3, problems
    assert any("only in CRD ['extra']" in problem for problem in problems)
    assert any(problem.startswith("spec.count: CRD type integer") for problem in problems)
    assert any(problem.startswith("spec.mode: CRD enum") for problem in problems)
