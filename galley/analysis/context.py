"""What the analyzers see: the accepted resources by kind, and the documents that were rejected.

A `Context` is immutable and built once per analysis; analyzers only read it. Resources of a kind
come back in (namespace, name) order with their typed spec, so every analyzer iterates the same
way and reports in a stable order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel

from meshconfig import ConfigValidationError, Resource

VIRTUAL_SERVICE = "networking.istio.io/VirtualService"
DESTINATION_RULE = "networking.istio.io/DestinationRule"
GATEWAY = "networking.istio.io/Gateway"
SERVICE_ENTRY = "networking.istio.io/ServiceEntry"
WORKLOAD_ENTRY = "networking.istio.io/WorkloadEntry"
SIDECAR = "networking.istio.io/Sidecar"
PEER_AUTHENTICATION = "security.istio.io/PeerAuthentication"
NAMESPACE = "core/Namespace"
SERVICE = "core/Service"
POD = "core/Pod"

SpecT = TypeVar("SpecT", bound=BaseModel)


@dataclass(frozen=True)
class Context:
    resources: tuple[Resource, ...]
    rejected: tuple[ConfigValidationError, ...] = ()
    _by_kind: dict[str, list[Resource]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_kind: dict[str, list[Resource]] = {}
        for resource in sorted(self.resources, key=lambda r: r.key):
            by_kind.setdefault(resource.kind.id, []).append(resource)
        object.__setattr__(self, "_by_kind", by_kind)

    @classmethod
    def build(
        cls, resources: Iterable[Resource], rejected: Iterable[ConfigValidationError] = ()
    ) -> Context:
        """A context where a later resource with the same kind, namespace and name wins."""
        latest = {resource.key: resource for resource in resources}
        return cls(tuple(latest.values()), tuple(rejected))

    def of(self, kind_id: str, model: type[SpecT]) -> list[tuple[Resource, SpecT]]:
        """Every resource of a kind with its spec, in (namespace, name) order."""
        return [
            (resource, resource.spec)
            for resource in self._by_kind.get(kind_id, [])
            if isinstance(resource.spec, model)
        ]
