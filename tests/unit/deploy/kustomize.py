"""Render a kustomization the way `kubectl kustomize` does, in Python, so the manifests can be
checked offline without the kustomize binary.

Only the fields deploy/ uses are understood: `resources` (files beside the kustomization),
`namespace`, `labels` (metadata labels only), `images` and `replacements` (a field copied to
other fields, paths with `[key=value]` list selectors). Any other field is refused, so the base
cannot start relying on a transformer this renderer would silently skip; a test compares the
result with kubectl's own kustomize where kubectl is installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = frozenset(
    {"apiVersion", "kind", "namespace", "labels", "resources", "images", "replacements"}
)
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    }
)


def render(directory: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    assert not unsupported, f"the test renderer does not know {sorted(unsupported)}"
    documents: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        text = (directory / name).read_text()
        documents += [document for document in yaml.safe_load_all(text) if document]
    namespace = kustomization.get("namespace")
    for document in documents:
        metadata = document["metadata"]
        if namespace and document["kind"] not in CLUSTER_SCOPED:
            metadata["namespace"] = namespace
        for entry in kustomization.get("labels", ()):
            assert set(entry) == {"pairs"}, "only metadata labels are supported"
            metadata.setdefault("labels", {}).update(entry["pairs"])
        for image in kustomization.get("images", ()):
            for container in _containers(document):
                container["image"] = _new_image(container["image"], image)
    for replacement in kustomization.get("replacements", ()):
        source = replacement["source"]
        value = _get(_select(documents, source), source["fieldPath"])
        for target in replacement["targets"]:
            for path in target["fieldPaths"]:
                _set(_select(documents, target["select"]), path, value)
    return documents


def _containers(node: Any) -> Iterator[dict[str, Any]]:
    """Every container and init container anywhere in `node`, as kustomize's images finds."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (item for item in value if isinstance(item, dict) and "image" in item)
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def _new_image(current: str, image: dict[str, str]) -> str:
    name = image["name"]
    if current != name and not current.startswith((f"{name}:", f"{name}@")):
        return current
    tag = current[len(name) :]
    return image.get("newName", name) + (f":{image['newTag']}" if "newTag" in image else tag)


def _select(documents: list[dict[str, Any]], selector: dict[str, str]) -> dict[str, Any]:
    matches = [
        document
        for document in documents
        if document["kind"] == selector["kind"] and document["metadata"]["name"] == selector["name"]
    ]
    assert len(matches) == 1, f"{selector} selects {len(matches)} resources"
    return matches[0]


def _child(node: Any, step: str) -> Any:
    if step.startswith("[") and step.endswith("]"):
        key, _, value = step[1:-1].partition("=")
        found = [item for item in node if item.get(key) == value]
        assert len(found) == 1, f"{step} selects {len(found)} items"
        return found[0]
    return node[step]


def _get(document: dict[str, Any], path: str) -> Any:
    node: Any = document
    for step in path.split("."):
        node = _child(node, step)
    return node


def _set(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = document
    for step in parents:
        node = _child(node, step)
    assert last in node, f"{path} does not exist (the renderer does not create fields)"
    node[last] = value
