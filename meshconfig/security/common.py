"""Pieces the policy kinds share: workload selectors, target references and located problems.

Istio defines `WorkloadSelector` and `PolicyTargetReference` once (type.istio.io) and every
policy kind (AuthorizationPolicy, RequestAuthentication, PeerAuthentication, Telemetry) embeds
them, so they live here once too; telemetry imports them from this module.

`Problems` is how a rule that spans several fields reports an error at the exact nested field a
person has to fix (`rules[0].from[0].source.namespaces`) rather than at the object that owns the
rule: raising a pydantic `ValidationError` from a validator keeps each error's location, relative
to the model being validated. The Mixer policy kinds use it for the same reason.
"""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

from pydantic import AfterValidator, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from meshconfig.base import Duration, SpecModel, duration_seconds

Location = tuple[str | int, ...]


class Problems:
    """Errors found by a cross-field rule, each at a location relative to the validated model."""

    def __init__(self) -> None:
        self._found: list[InitErrorDetails] = []

    def add(self, location: Location, message: str, value: Any = None) -> None:
        self._found.append(
            InitErrorDetails(
                type=PydanticCustomError("semantic", message), loc=location, input=value
            )
        )

    def error(self) -> ValidationError:
        return ValidationError.from_exception_data("spec", self._found)

    def raise_any(self) -> None:
        """Raise every problem found at once, if there is any."""
        if self._found:
            raise self.error()


def fail_at(location: Location, message: str, value: Any = None) -> NoReturn:
    """Reject the model being validated with one error at `location`."""
    problems = Problems()
    problems.add(location, message, value)
    raise problems.error()


def _at_least_a_millisecond(value: str) -> str:
    if duration_seconds(value) < 0.001:
        raise ValueError("must be a valid duration greater than 1ms")
    return value


# Timeouts and intervals that Envoy cannot honour below a millisecond.
AtLeastOneMillisecond = Annotated[Duration, AfterValidator(_at_least_a_millisecond)]

LabelValue = Annotated[str, Field(max_length=63)]


class WorkloadSelector(SpecModel):
    """The workloads (pods, VMs) a policy applies to, by label equality."""

    match_labels: Annotated[dict[str, LabelValue], Field(max_length=4096)] | None = None

    @model_validator(mode="after")
    def _no_wildcards(self) -> WorkloadSelector:
        problems = Problems()
        for key, value in (self.match_labels or {}).items():
            where = ("matchLabels", key)
            if not key:
                problems.add(where, "label key must not be empty", key)
            elif "*" in key:
                problems.add(where, "wildcard not allowed in label key match", key)
            if "*" in value:
                problems.add(where, "wildcard not allowed in label value match", value)
        problems.raise_any()
        return self


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


class PolicyTargetReference(SpecModel):
    """A resource in the policy's own namespace that the policy attaches to."""

    group: Annotated[str, Field(max_length=253, pattern=_GROUP_PATTERN)] | None = None
    kind: Annotated[str, Field(min_length=1, max_length=63, pattern=_KIND_PATTERN)]
    name: Annotated[str, Field(min_length=1, max_length=253)]
    namespace: str | None = None

    @model_validator(mode="after")
    def _supported_target(self) -> PolicyTargetReference:
        problems = Problems()
        if self.namespace:
            problems.add(("namespace",), "cross namespace referencing is not currently supported")
        if (self.group or "", self.kind) not in TARGETABLE:
            allowed = ", ".join(f"{g or 'core'}/{k}" for g, k in sorted(TARGETABLE))
            problems.add(("kind",), f"a policy can only target one of {allowed}", self.kind)
        problems.raise_any()
        return self


class TargetedSpec(SpecModel):
    """Base of specs that pick their workloads by selector, targetRef or targetRefs (one only)."""

    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: Annotated[list[PolicyTargetReference], Field(max_length=16)] | None = None

    @model_validator(mode="after")
    def _one_way_to_target(self) -> TargetedSpec:
        chosen = [self.selector is not None, self.target_ref is not None, bool(self.target_refs)]
        if sum(chosen) > 1:
            raise ValueError("only one of targetRefs or selector can be set")
        return self
