"""A validated configuration resource: its kind, Kubernetes metadata, typed spec and status."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from meshconfig.kinds import Kind


@dataclass(frozen=True, slots=True)
class Metadata:
    name: str
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    resource_version: str = ""
    generation: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.resource_version:
            out["resourceVersion"] = self.resource_version
        if self.generation:
            out["generation"] = self.generation
        return out


@dataclass(frozen=True, slots=True)
class Resource:
    """One accepted resource. `spec` is the kind's validated model; equal content compares equal.

    `status` is the validated status of kinds that have a status model (Pod, Service), when the
    document had one; None otherwise.
    """

    kind: Kind
    metadata: Metadata
    spec: BaseModel
    source: str = ""
    status: BaseModel | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind.id, self.metadata.namespace, self.metadata.name)

    @property
    def label(self) -> str:
        """How messages name it: "VirtualService default/reviews"."""
        ns = f"{self.metadata.namespace}/" if self.metadata.namespace else ""
        return f"{self.kind.kind} {ns}{self.metadata.name}"

    def spec_dict(self) -> dict[str, Any]:
        """The spec as Istio JSON (camelCase, only fields that were set)."""
        return _as_json(self.spec)

    def status_dict(self) -> dict[str, Any] | None:
        """The status as Kubernetes JSON, like `spec_dict`; None when there is no status."""
        return None if self.status is None else _as_json(self.status)

    def to_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "apiVersion": self.kind.preferred_api_version,
            "kind": self.kind.kind,
            "metadata": self.metadata.to_dict(),
        }
        if self.kind.spec_is_whole_object:
            document.update(self.spec_dict())
        else:
            document["spec"] = self.spec_dict()
        status = self.status_dict()
        if status is not None:
            document["status"] = status
        return document


def _as_json(model: BaseModel) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return dumped
