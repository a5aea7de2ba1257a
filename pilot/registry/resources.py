"""The registry from validated `meshconfig` resources, whether read from a directory or galley.

ServiceEntries, WorkloadEntries and WorkloadGroups, and the Kubernetes Services, EndpointSlices,
Endpoints and Pods, whichever are present: a mesh without Kubernetes simply has none of the latter.

The resources' specs are already checked as Istio would check them; the registry still applies
its own rules (the same host declared twice, for example) through the shared `SnapshotBuilder`,
so a directory and galley give pilot exactly the same registry for the same input.
"""

from __future__ import annotations

from collections.abc import Iterable

from meshconfig import Resource
from meshconfig.networking.service_entry import ServiceEntry
from meshconfig.networking.workload_entry import WorkloadEntry, WorkloadGroup
from pilot.registry import kubernetes
from pilot.registry.errors import Source
from pilot.registry.snapshot import RegistrySnapshot, SnapshotBuilder


def from_resources(resources: Iterable[Resource]) -> RegistrySnapshot:
    """The registry kinds among `resources`; other kinds are ignored."""
    builder = SnapshotBuilder()
    kube: list[Resource] = []
    for resource in sorted(resources, key=lambda r: r.key):
        spec = resource.spec
        if isinstance(spec, ServiceEntry | WorkloadEntry | WorkloadGroup):
            meta = resource.metadata
            source = Source(
                resource.source or "galley", resource.kind.kind, meta.namespace, meta.name
            )
            builder.add(source, spec, meta.annotations)
        elif kubernetes.reads(resource):
            kube.append(resource)
    builder.add_kubernetes(kubernetes.build(kube))
    return builder.build()
