"""The test renderer gives what kustomize gives, and refuses what it does not understand."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.conftest import BASE
from tests.unit.deploy.kustomize import render


def _key(document: dict[str, Any]) -> tuple[str, str, str]:
    metadata = document["metadata"]
    return document["kind"], metadata.get("namespace", ""), metadata["name"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) not here")
def test_the_renderer_agrees_with_kubectl_kustomize(manifests: list[dict[str, Any]]) -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(BASE)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    expected = {_key(doc): doc for doc in yaml.safe_load_all(built) if doc}

    assert {_key(doc): doc for doc in manifests} == expected


def test_every_resource_is_labelled_and_namespaced(manifests: list[dict[str, Any]]) -> None:
    for document in manifests:
        assert document["metadata"]["labels"]["app.kubernetes.io/part-of"] == "pymesh"
    namespaced = [doc for doc in manifests if "namespace" in doc["metadata"]]
    assert namespaced
    assert {doc["metadata"]["namespace"] for doc in namespaced} == {"istio-system"}


def test_the_replacement_hands_the_image_to_the_injector(tmp_path: Path) -> None:
    (tmp_path / "pod.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p"},
                "spec": {
                    "containers": [
                        {"name": "a", "image": "other:1", "env": [{"name": "X", "value": ""}]},
                        {"name": "b", "image": "pymesh/pymesh:old"},
                    ]
                },
            }
        )
    )
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": ["pod.yaml"],
                "images": [{"name": "pymesh/pymesh", "newName": "registry/pymesh", "newTag": "2"}],
                "replacements": [
                    {
                        "source": {
                            "kind": "Pod",
                            "name": "p",
                            "fieldPath": "spec.containers.[name=b].image",
                        },
                        "targets": [
                            {
                                "select": {"kind": "Pod", "name": "p"},
                                "fieldPaths": ["spec.containers.[name=a].env.[name=X].value"],
                            }
                        ],
                    }
                ],
            }
        )
    )

    [pod] = render(tmp_path)

    first, second = pod["spec"]["containers"]
    assert first["image"] == "other:1"
    assert second["image"] == "registry/pymesh:2"
    assert first["env"] == [{"name": "X", "value": "registry/pymesh:2"}]


def test_an_unknown_kustomization_field_is_refused(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonAnnotations: {a: b}\n")

    with pytest.raises(AssertionError, match="commonAnnotations"):
        render(tmp_path)
