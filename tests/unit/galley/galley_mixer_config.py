"""Mixer config documents (config.istio.io/v1alpha2) for galley's tests: a denier handler, a
checknothing instance and a rule sending one to the other, each as one YAML document.

Together they are what Istio's bookinfo deny-label sample is: requests from reviews v3 to
ratings are denied. Pass other values to break them (a missing handler, a bad expression).
"""

from __future__ import annotations

import json
from typing import Any

API_VERSION = "config.istio.io/v1alpha2"
DENY_V3 = 'destination.labels["app"] == "ratings" && source.labels["version"] == "v3"'


def _document(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> str:
    return (
        json.dumps(
            {
                "apiVersion": API_VERSION,
                "kind": kind,
                "metadata": {"name": name, "namespace": namespace},
                "spec": spec,
            }
        )
        + "\n"
    )


def handler(name: str = "deny", ns: str = "default", adapter: str = "denier") -> str:
    params = {"status": {"code": 7, "message": "Not allowed"}} if adapter == "denier" else {}
    return _document("handler", name, ns, {"compiledAdapter": adapter, "params": params})


def instance(
    name: str = "nothing",
    ns: str = "default",
    template: str = "checknothing",
    params: dict[str, Any] | None = None,
) -> str:
    spec: dict[str, Any] = {"compiledTemplate": template}
    if params:
        spec["params"] = params
    return _document("instance", name, ns, spec)


def rule(
    name: str = "deny-v3",
    ns: str = "default",
    match: str = DENY_V3,
    handler: str = "deny",
    instances: tuple[str, ...] = ("nothing",),
) -> str:
    action = {"handler": handler, "instances": list(instances)}
    return _document("rule", name, ns, {"match": match, "actions": [action]})
