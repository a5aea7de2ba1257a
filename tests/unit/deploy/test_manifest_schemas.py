"""Every rendered manifest is valid against Kubernetes' own OpenAPI schemas, offline.

kubernetes-validate ships the JSON schemas of each Kubernetes release; strict mode also
refuses fields the API does not have (a misspelt key would otherwise be dropped silently by the
API server). The oldest and newest releases checked bound what the base claims to support.
"""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_matches_the_kubernetes_schema(
    manifests: list[dict[str, Any]], version: str
) -> None:
    failures = []
    for document in manifests:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(step) for step in error.path)
            failures.append(f"{document['kind']} {document['metadata']['name']}: {path}: {error}")
    assert not failures, "\n".join(failures)


def test_the_validator_refuses_a_misspelt_field(manifests: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(next(doc for doc in manifests if doc["kind"] == "Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "IfNotPresent"

    with pytest.raises(kubernetes_validate.ValidationError, match="imagePullPolcy"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_each_control_plane_service_has_a_deployment_and_a_service(
    manifests: list[dict[str, Any]],
) -> None:
    names: dict[str, set[str]] = {"Deployment": set(), "Service": set()}
    for document in manifests:
        names.get(document["kind"], set()).add(document["metadata"]["name"])
    expected = {"istio-galley", "istiod", "istio-citadel", "istio-mixer", "istio-sidecar-injector"}
    assert names["Deployment"] == expected
    assert names["Service"] == expected
