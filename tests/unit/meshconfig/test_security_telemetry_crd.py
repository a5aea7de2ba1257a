"""The security and telemetry models agree with Istio's CRD schemas, field by field.

Walks each CRD's `openAPIV3Schema.properties.spec` beside the model: at every level the field
names (aliases), the required fields, the enum values and the JSON types must match. The CEL
rules of the CRD are listed too, so a rule added upstream fails here until the model has it.
"""

from __future__ import annotations

import types
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from meshconfig import kind_for
from tests.support.shared import CRDS

CRDS = CRDS

KINDS = [
    ("security.istio.io", "AuthorizationPolicy"),
    ("security.istio.io", "PeerAuthentication"),
    ("security.istio.io", "RequestAuthentication"),
    ("telemetry.istio.io", "Telemetry"),
]

# Deliberate differences, by kind and path: the CRD side is not a model field of its own.
DEVIATIONS = {
    "RequestAuthentication": {
        # The protobuf name of jwksUri; the model takes it as that field's name (populate by
        # name) and rejects a rule that spells it both ways, as the CRD's CEL rule does.
        "spec.jwtRules[].jwks_uri",
    },
}

# Every CEL rule (by schema path and message) in the CRDs, all enforced by the models and
# covered by test_security_policies.py / test_telemetry_spec.py.
CEL_RULES = {
    "AuthorizationPolicy": {
        ("spec", "only one of targetRefs or selector can be set"),
        ("spec.rules[].from[].source", "Cannot set serviceAccounts with namespaces or principals"),
        ("spec.selector.matchLabels", "wildcard not allowed in label key match"),
        ("spec.selector.matchLabels", "key must not be empty"),
        ("spec.selector.matchLabels{}", "wildcard not allowed in label value match"),
        ("spec.targetRef.namespace", "cross namespace referencing is not currently supported"),
        ("spec.targetRefs[].namespace", "cross namespace referencing is not currently supported"),
    },
    "PeerAuthentication": {
        ("spec", "portLevelMtls requires selector"),
        ("spec.portLevelMtls", "port must be between 1-65535"),
        ("spec.selector.matchLabels", "wildcard not allowed in label key match"),
        ("spec.selector.matchLabels", "key must not be empty"),
        ("spec.selector.matchLabels{}", "wildcard not allowed in label value match"),
    },
    "RequestAuthentication": {
        ("spec", "only one of targetRefs or selector can be set"),
        ("spec.jwtRules[]", "only one of jwks or jwksUri can be set"),
        ("spec.jwtRules[].jwksUri", "url must have scheme http:// or https://"),
        ("spec.jwtRules[].jwks_uri", "url must have scheme http:// or https://"),
        ("spec.jwtRules[].timeout", "must be a valid duration greater than 1ms"),
        ("spec.selector.matchLabels", "wildcard not allowed in label key match"),
        ("spec.selector.matchLabels", "key must not be empty"),
        ("spec.selector.matchLabels{}", "wildcard not allowed in label value match"),
        ("spec.targetRef.namespace", "cross namespace referencing is not currently supported"),
        ("spec.targetRefs[].namespace", "cross namespace referencing is not currently supported"),
    },
    "Telemetry": {
        ("spec", "only one of targetRefs or selector can be set"),
        ("spec.metrics[].overrides[].tagOverrides{}", "value must be set when operation is UPSERT"),
        (
            "spec.metrics[].overrides[].tagOverrides{}",
            "value must not be set when operation is REMOVE",
        ),
        ("spec.metrics[].reportingInterval", "must be a valid duration greater than 1ms"),
        ("spec.selector.matchLabels", "wildcard not allowed in label key match"),
        ("spec.selector.matchLabels", "key must not be empty"),
        ("spec.selector.matchLabels{}", "wildcard not allowed in label value match"),
        ("spec.targetRef.namespace", "cross namespace referencing is not currently supported"),
        ("spec.targetRefs[].namespace", "cross namespace referencing is not currently supported"),
    },
}

JSON_TYPES: dict[str, type] = {"string": str, "boolean": bool, "number": float, "integer": int}


@cache
def crds() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (crd["spec"]["group"], crd["spec"]["names"]["kind"]): crd
        for crd in yaml.load_all(CRDS.read_text(), Loader=yaml.CSafeLoader)
        if crd
    }


def crd_spec(group: str, kind: str) -> dict[str, Any]:
    """The spec schema of a kind; every served version must carry the same one."""
    versions = crds()[group, kind]["spec"]["versions"]
    schemas: list[dict[str, Any]] = [
        v["schema"]["openAPIV3Schema"]["properties"]["spec"] for v in versions
    ]
    assert all(schema == schemas[0] for schema in schemas)
    return schemas[0]


def unwrap(annotation: Any) -> Any:
    """The JSON shape of an annotation: without Annotated metadata and without `| None`."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return unwrap(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return unwrap(members[0])
    return annotation


def compare(schema: dict[str, Any], annotation: Any, path: str, diffs: list[str]) -> None:
    shape = unwrap(annotation)
    origin = get_origin(shape)
    json_type = schema.get("type")
    if "enum" in schema:
        model_values = set(get_args(shape)) if origin is Literal else set()
        if model_values != set(schema["enum"]):
            diffs.append(f"{path}: enum {sorted(schema['enum'])} vs model {sorted(model_values)}")
    elif json_type == "object" and "properties" in schema:
        if isinstance(shape, type) and issubclass(shape, BaseModel):
            compare_model(schema, shape, path, diffs)
        else:
            diffs.append(f"{path}: object with properties vs model {shape}")
    elif json_type == "object" and "additionalProperties" in schema:
        if origin is dict:
            compare(schema["additionalProperties"], get_args(shape)[1], f"{path}{{}}", diffs)
        else:
            diffs.append(f"{path}: map vs model {shape}")
    elif json_type == "array":
        if origin is list:
            compare(schema["items"], get_args(shape)[0], f"{path}[]", diffs)
        else:
            diffs.append(f"{path}: array vs model {shape}")
    elif JSON_TYPES.get(json_type or "") is not shape:
        diffs.append(f"{path}: {json_type} vs model {shape}")


def compare_model(
    schema: dict[str, Any], model: type[BaseModel], path: str, diffs: list[str]
) -> None:
    fields = {info.alias or name: info for name, info in model.model_fields.items()}
    properties = schema.get("properties", {})
    for name in sorted(set(properties) - set(fields)):
        diffs.append(f"{path}.{name}: in the CRD, not in {model.__name__}")
    for name in sorted(set(fields) - set(properties)):
        diffs.append(f"{path}.{name}: in {model.__name__}, not in the CRD")
    required = {name for name, info in fields.items() if info.is_required()}
    if required != set(schema.get("required", [])):
        diffs.append(f"{path}: required {sorted(schema.get('required', []))} vs {sorted(required)}")
    for name in sorted(set(properties) & set(fields)):
        compare(properties[name], fields[name].annotation, f"{path}.{name}", diffs)


def cel_rules(schema: dict[str, Any], path: str = "spec") -> set[tuple[str, str]]:
    found = {(path, rule["message"]) for rule in schema.get("x-kubernetes-validations", [])}
    for name, child in schema.get("properties", {}).items():
        found |= cel_rules(child, f"{path}.{name}")
    if "items" in schema:
        found |= cel_rules(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found |= cel_rules(schema["additionalProperties"], f"{path}{{}}")
    return found


@pytest.mark.parametrize(("group", "kind"), KINDS, ids=[k for _, k in KINDS])
def test_model_fields_match_the_crd(group: str, kind: str) -> None:
    model = kind_for(f"{group}/v1", kind)
    assert model is not None
    diffs: list[str] = []
    compare_model(crd_spec(group, kind), model.spec_model, "spec", diffs)
    deliberate = DEVIATIONS.get(kind, set())
    unexpected = [d for d in diffs if d.split(":")[0] not in deliberate]
    print("\n".join(diffs))
    assert not unexpected, "model and CRD differ:\n" + "\n".join(unexpected)
    assert {d.split(":")[0] for d in diffs} == deliberate


@pytest.mark.parametrize(("group", "kind"), KINDS, ids=[k for _, k in KINDS])
def test_every_cel_rule_is_known(group: str, kind: str) -> None:
    assert cel_rules(crd_spec(group, kind)) == CEL_RULES[kind]


@pytest.mark.parametrize(("group", "kind"), KINDS, ids=[k for _, k in KINDS])
def test_served_versions_match_the_crd(group: str, kind: str) -> None:
    found = kind_for(f"{group}/v1", kind)
    assert found is not None
    served = {v["name"] for v in crds()[group, kind]["spec"]["versions"] if v["served"]}
    assert set(found.versions) == served
