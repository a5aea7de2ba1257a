"""The registry from validated `meshconfig` resources, whether read from a directory or galley.

ServiceEntries, WorkloadEntries and WorkloadGroups, and the Kubernetes Services, EndpointSlices,
Endpoints and Pods, whichever are present: a mesh without Kubernetes simply has none of the latter.

The resources' specs are already checked as Istio would check them; the registry still applies
its own rules (the same host declared twice, for example) through the shared `SnapshotBuilder`,
so a directory and galley give pilot exactly the same registry for the same input.

Pilot reads its whole input again on every change, and both of its sources hand back the very
same resource objects for what did not change (the directory reader keeps each unchanged
file's, galley's client each resource whose bytes it has seen). A `RegistryReader` keeps each
resource's conversion while it is handed over, so a change converts only what changed: with
thousands of WorkloadEntries that was most of the time between a file's write and the push.
"""

from __future__ import annotations

from collections.abc import Iterable

from meshconfig import Resource
from meshconfig.networking.service_entry import ServiceEntry
from meshconfig.networking.workload_entry import WorkloadEntry, WorkloadGroup
from pilot.registry import kubernetes
from pilot.registry.errors import Source
from pilot.registry.snapshot import Converted, RegistrySnapshot, SnapshotBuilder, convert_resource


class RegistryReader:
    """Builds registry snapshots from successive inputs, converting only new resources."""

    def __init__(self) -> None:
        # id(resource) -> (the resource, kept alive so its id stays its own; its conversion)
        self._converted: dict[int, tuple[Resource, Converted]] = {}

    def read(self, resources: Iterable[Resource]) -> RegistrySnapshot:
        """The registry kinds among `resources`; other kinds are ignored. Raises ConfigError;
        what a rejected read converted is not kept."""
        builder = SnapshotBuilder()
        kube: list[Resource] = []
        converted: dict[int, tuple[Resource, Converted]] = {}
        for resource in sorted(resources, key=lambda r: r.key):
            spec = resource.spec
            if isinstance(spec, ServiceEntry | WorkloadEntry | WorkloadGroup):
                meta = resource.metadata
                source = Source(
                    resource.source or "galley", resource.kind.kind, meta.namespace, meta.name
                )
                kept = self._converted.get(id(resource))
                if kept is None or kept[0] is not resource:
                    kept = (resource, convert_resource(source, spec, meta.annotations))
                converted[id(resource)] = kept
                builder.add_converted(source, kept[1])
            elif kubernetes.reads(resource):
                kube.append(resource)
        builder.add_kubernetes(kubernetes.build(kube))
        snapshot = builder.build()
        self._converted = converted
        return snapshot


def from_resources(resources: Iterable[Resource]) -> RegistrySnapshot:
    """The registry kinds among `resources`, read once."""
    return RegistryReader().read(resources)
