"""Analyzer of namespace injection labels: workloads in an unlabelled namespace get no sidecar.

Only meaningful when the input includes Namespaces (Kubernetes manifests); Istio's and
Kubernetes' own namespaces are never expected to be injected.
"""

from __future__ import annotations

from collections.abc import Iterator

from galley.analysis.context import NAMESPACE, Context
from galley.analysis.messages import NAMESPACE_NOT_INJECTED, Message
from meshconfig.kube import NamespaceSpec

INJECTION_LABEL = "istio-injection"
REVISION_LABEL = "istio.io/rev"
SYSTEM_NAMESPACES = frozenset(
    {"istio-system", "kube-system", "kube-public", "kube-node-lease", "local-path-storage"}
)


def namespace_injection(context: Context) -> Iterator[Message]:
    """IST0102: a namespace has neither an `istio-injection` nor an `istio.io/rev` label."""
    for resource, _ in context.of(NAMESPACE, NamespaceSpec):
        name = resource.metadata.name
        labels = resource.metadata.labels
        if name in SYSTEM_NAMESPACES or labels.get(INJECTION_LABEL) or REVISION_LABEL in labels:
            continue
        yield NAMESPACE_NOT_INJECTED.at(resource, name)
