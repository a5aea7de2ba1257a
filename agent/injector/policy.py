"""Whether a pod gets a sidecar, decided as Istio's injector decides it.

The webhook only sees pods of namespaces labelled `istio-injection=enabled` (its
namespaceSelector), and `meshctl kube-inject` injects whatever it is given, so the default is
to inject. A pod opts out with the label or annotation `sidecar.istio.io/inject` (the label
wins when both are set; "y", "yes", "true" and "on" mean inject, empty means the default, any
other value does not);
pods on the host's network are never injected (their iptables rules would be the node's), nor
are pods of Kubernetes' own namespaces, nor pods already injected. Pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

INJECT = "sidecar.istio.io/inject"
STATUS = "sidecar.istio.io/status"
PROXY_CONTAINER = "istio-proxy"
IGNORED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
_YES = frozenset({"y", "yes", "true", "on"})


def skip_reason(pod: Mapping[str, Any], namespace: str = "") -> str | None:
    """Why `pod` (a Pod or pod template) is not injected, or None if it is.

    `namespace` is the pod's, when its metadata does not say (an admission request's).
    """
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    namespace = metadata.get("namespace") or namespace
    if spec.get("hostNetwork"):
        return "the pod uses the host's network"
    if namespace in IGNORED_NAMESPACES:
        return f"namespace {namespace} is never injected"
    annotations = metadata.get("annotations") or {}
    if STATUS in annotations or any(
        container.get("name") == PROXY_CONTAINER for container in spec.get("containers") or ()
    ):
        return "the pod already has a sidecar"
    labels = metadata.get("labels") or {}
    choice = labels[INJECT] if INJECT in labels else annotations.get(INJECT, "")
    if choice and str(choice).lower() not in _YES:
        return f"{INJECT} is {choice!r}"
    return None
