"""The registry's immutable output, and the collector that checks resources against each other.

Each resource is converted on its own in `convert`; what needs all of them at once (the same
resource twice, the same host in two ServiceEntries) is checked here. Whatever delivers the
resources (a directory, galley) feeds them to a `SnapshotBuilder` and hands the resulting
`RegistrySnapshot` to pilot, which rebuilds its push context from it.

The builder also merges the Kubernetes registry (`pilot.registry.kubernetes`) with the
ServiceEntry one by hostname. When a Kubernetes Service and a ServiceEntry declare the same host,
the Kubernetes Service wins and the ServiceEntry's service for that host is dropped: Istio
resolves such duplicates by preferring the Kubernetes Service, so that nobody can squat a
Service's name with a ServiceEntry (istio/istio#32966; among ServiceEntries it keeps the oldest,
which this mesh refuses instead, as it cannot tell their age). Pods join the WorkloadEntries as
workloads, so a ServiceEntry's workloadSelector picks both, as in Istio.

WorkloadGroups are carried along unconverted: they become workloads only when a proxy announces
itself as a member (`pilot.registry.autoregister`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshconfig.networking.service_entry import ServiceEntry
from meshconfig.networking.workload_entry import WorkloadEntry, WorkloadGroup
from pilot.model import Service, WorkloadInstance
from pilot.registry import convert
from pilot.registry.errors import ConfigError, Source
from pilot.registry.kubernetes import KubernetesRegistry

RegistrySpec = ServiceEntry | WorkloadEntry | WorkloadGroup


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """A WorkloadGroup resource: the template of the entries its proxies register."""

    namespace: str
    name: str
    spec: WorkloadGroup


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    """Every service (sorted by hostname) and workload: WorkloadEntries and Kubernetes pods
    (sorted by namespace/name), and the WorkloadGroups (sorted by namespace/name)."""

    services: tuple[Service, ...] = ()
    workloads: tuple[WorkloadInstance, ...] = ()
    groups: tuple[GroupConfig, ...] = ()


# What one resource becomes: a ServiceEntry's services, a WorkloadGroup, a workload.
Converted = tuple[Service, ...] | GroupConfig | WorkloadInstance


def convert_resource(
    source: Source, spec: RegistrySpec, annotations: Mapping[str, str] | None = None
) -> Converted:
    """One validated registry resource in pilot's model, checked on its own (what needs the
    others too is `SnapshotBuilder`'s); raises ConfigError naming `source`."""
    if isinstance(spec, ServiceEntry):
        return convert.service_entry(spec, source, annotations)
    if isinstance(spec, WorkloadGroup):
        return GroupConfig(source.namespace, source.name, spec)
    return convert.workload_entry(spec, source)


class SnapshotBuilder:
    """Collects resources in any order; `build` sorts, so order never matters."""

    def __init__(self) -> None:
        self._resources: dict[tuple[str, str, str], Source] = {}
        self._hosts: dict[str, tuple[Service, Source]] = {}
        self._workloads: list[WorkloadInstance] = []
        self._groups: list[GroupConfig] = []
        self._kubernetes = KubernetesRegistry()

    def add(
        self, source: Source, spec: RegistrySpec, annotations: Mapping[str, str] | None = None
    ) -> None:
        """Convert and add one validated resource, named by `source` in any error."""
        self.add_converted(source, convert_resource(source, spec, annotations))

    def add_converted(self, source: Source, converted: Converted) -> None:
        """Add one resource already converted (`convert_resource`), named by `source`."""
        key = (source.kind, source.namespace, source.name)
        if key in self._resources:
            raise ConfigError(
                source, "metadata.name", f"also defined in {self._resources[key].file}"
            )
        if isinstance(converted, tuple):
            for service in converted:
                if service.hostname in self._hosts:
                    other = self._hosts[service.hostname][1]
                    raise ConfigError(
                        source,
                        "spec.hosts",
                        f"host {service.hostname!r} is also declared by {other}",
                    )
            self._hosts.update((s.hostname, (s, source)) for s in converted)
        elif isinstance(converted, GroupConfig):
            self._groups.append(converted)
        else:
            self._workloads.append(converted)
        self._resources[key] = source

    def add_kubernetes(self, registry: KubernetesRegistry) -> None:
        """The Kubernetes registry to merge with the ServiceEntries (its Services win a host)."""
        self._kubernetes = registry

    def build(self) -> RegistrySnapshot:
        hosts = {host: service for host, (service, _) in self._hosts.items()}
        hosts.update((s.hostname, s) for s in self._kubernetes.services)
        workloads = [*self._workloads, *self._kubernetes.workloads]
        return RegistrySnapshot(
            services=tuple(hosts[h] for h in sorted(hosts)),
            workloads=tuple(sorted(workloads, key=lambda w: (w.namespace, w.name))),
            groups=tuple(sorted(self._groups, key=lambda g: (g.namespace, g.name))),
        )
