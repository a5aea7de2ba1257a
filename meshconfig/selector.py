"""How a resource names the workloads it applies to: label selectors and policy target references.

Istio defines `WorkloadSelector` (`matchLabels`) and `PolicyTargetReference` once, in
istio.type.v1beta1 (type/v1beta1/selector.proto), and embeds them in DestinationRule, the
security kinds and Telemetry; so they live here once too. Sidecar and ServiceEntry embed an
older selector of their own (networking.v1alpha3, `labels`), defined with the networking kinds
but checked by the same `selector_errors` rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated

from pydantic import Field

from meshconfig.base import CheckedModel, Problem

LabelValue = Annotated[str, Field(max_length=63)]


def selector_errors(labels: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """(key, reason) for workload selector entries: no empty keys, no wildcards."""
    for key, value in labels.items():
        if not key:
            yield key, "label key must not be empty"
        if "*" in key or "*" in value:
            yield key, f"wildcards are not supported in selectors ({key}={value})"


class WorkloadSelector(CheckedModel):
    """The workloads (pods, VMs) a resource applies to, by label equality."""

    match_labels: Annotated[dict[str, LabelValue], Field(max_length=4096)] | None = None

    def problems(self) -> Iterator[Problem]:
        for key, reason in selector_errors(self.match_labels or {}):
            yield ("matchLabels", key), reason


_GROUP_PATTERN = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_KIND_PATTERN = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"

# (group, kind) a policy may target; Istio checks group and kind, not the version.
TARGETABLE = frozenset(
    {
        ("", "Service"),
        ("networking.istio.io", "ServiceEntry"),
        ("gateway.networking.k8s.io", "Gateway"),
        ("gateway.networking.k8s.io", "GatewayClass"),
    }
)


class PolicyTargetReference(CheckedModel):
    """A resource in the policy's own namespace that the policy attaches to."""

    group: Annotated[str, Field(max_length=253, pattern=_GROUP_PATTERN)] | None = None
    kind: Annotated[str, Field(min_length=1, max_length=63, pattern=_KIND_PATTERN)]
    name: Annotated[str, Field(min_length=1, max_length=253)]
    namespace: str | None = None

    def problems(self) -> Iterator[Problem]:
        if self.namespace:
            yield ("namespace",), "cross namespace referencing is not currently supported"
        if (self.group or "", self.kind) not in TARGETABLE:
            allowed = ", ".join(f"{g or 'core'}/{k}" for g, k in sorted(TARGETABLE))
            yield ("kind",), f"a policy can only target one of {allowed}"


class TargetedSpec(CheckedModel):
    """Base of specs that pick their workloads by selector, targetRef or targetRefs (one only)."""

    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: Annotated[list[PolicyTargetReference], Field(max_length=16)] | None = None

    def problems(self) -> Iterator[Problem]:
        chosen = [self.selector is not None, self.target_ref is not None, bool(self.target_refs)]
        if sum(chosen) > 1:
            yield (), "only one of targetRefs or selector can be set"
