"""Analyzers of Sidecar workload selectors: every workload must get at most one Sidecar.

A namespace takes one Sidecar without a selector as its default, and a workload takes the one
Sidecar selecting it; two candidates at either level leave the proxy's configuration to chance.
Selectors are matched against the Pods and WorkloadEntries in the input; a selector matching
none of them is reported only when the input has workloads at all.
"""

from __future__ import annotations

from collections.abc import Iterator

from galley.analysis.context import SIDECAR, Context
from galley.analysis.messages import (
    CONFLICTING_SIDECAR_SELECTORS,
    REFERENCED_RESOURCE_NOT_FOUND,
    SIDECARS_WITHOUT_SELECTORS,
    Message,
)
from galley.analysis.registry import selector_text, selects, workloads
from meshconfig import Resource
from meshconfig.networking import Sidecar


def _names(resources: list[Resource]) -> str:
    return "[" + " ".join(resource.metadata.name for resource in resources) + "]"


def sidecar_selectors(context: Context) -> Iterator[Message]:
    """IST0111 for several namespace defaults; IST0110 for a workload several Sidecars select."""
    defaults: dict[str, list[Resource]] = {}
    selected: list[tuple[Resource, dict[str, str]]] = []
    for resource, sidecar in context.of(SIDECAR, Sidecar):
        labels = sidecar.workload_selector.labels if sidecar.workload_selector else None
        if labels:
            selected.append((resource, labels))
        else:
            defaults.setdefault(resource.metadata.namespace, []).append(resource)
    for namespace, group in sorted(defaults.items()):
        if len(group) > 1:
            for resource in group:
                yield SIDECARS_WITHOUT_SELECTORS.at(resource, _names(group), namespace)
    candidates = workloads(context)
    if not candidates:
        return
    by_workload: dict[tuple[str, str], list[Resource]] = {}
    for resource, labels in selected:
        namespace = resource.metadata.namespace
        matched = [w for w in candidates if w.namespace == namespace and selects(labels, w.labels)]
        if not matched:
            yield REFERENCED_RESOURCE_NOT_FOUND.at(resource, "selector", selector_text(labels))
        for workload in matched:
            by_workload.setdefault((namespace, workload.name), []).append(resource)
    for (namespace, workload_name), group in sorted(by_workload.items()):
        if len(group) > 1:
            for resource in group:
                yield CONFLICTING_SIDECAR_SELECTORS.at(
                    resource, _names(group), namespace, workload_name
                )
