"""The service registry and workloads as the analyzers understand them, built from the input.

Istio knows services from the platform (Kubernetes Services) and from ServiceEntries, and
workloads from Pods and WorkloadEntries; the mesh accepts both models, so analysis does too.
A host is looked up the way a VirtualService's destination is resolved: short names belong to the
referring resource's namespace (`reviews` in `default` is `reviews.default.svc.cluster.local`),
only services exported to that namespace count, and wildcard ServiceEntry hosts cover the names
they match.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from galley.analysis.context import POD, SERVICE, SERVICE_ENTRY, WORKLOAD_ENTRY, Context
from meshconfig.kube import PodSpec, ServiceSpec
from meshconfig.networking import ServiceEntry, WorkloadEntry
from meshconfig.networking.checks import hosts_overlap

CLUSTER_SUFFIX = "svc.cluster.local"
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"
EVERYWHERE = "*"


def to_fqdn(host: str, namespace: str) -> str:
    """A short name (`reviews`) as the FQDN it means in `namespace`; other hosts as they are."""
    if host.startswith("*") or "." in host:
        return host
    return f"{host}.{namespace}.{CLUSTER_SUFFIX}"


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Label-equality selection; an empty selector selects everything."""
    return all(labels.get(key) == value for key, value in selector.items())


def selector_text(selector: Mapping[str, str]) -> str:
    """Kubernetes' way of writing a selector: `app=reviews,version=v1`."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector.items()))


def visibility(export_to: Iterable[str], namespace: str) -> frozenset[str]:
    """The namespaces an `exportTo` list makes a resource visible in; `*` means all of them."""
    values = list(export_to) or [EVERYWHERE]
    return frozenset(namespace if value == "." else value for value in values)


@dataclass(frozen=True, slots=True)
class Service:
    host: str  # FQDN; a ServiceEntry host may be a wildcard
    namespace: str
    ports: tuple[int, ...]
    target_ports: tuple[int, ...]  # numeric ports on the workloads, where they differ
    visible_in: frozenset[str]
    selector: Mapping[str, str] | None  # the workloads behind it; None selects none

    def visible_from(self, namespace: str) -> bool:
        return EVERYWHERE in self.visible_in or namespace in self.visible_in

    def fronts(self, workload: Workload) -> bool:
        """Whether the workload is one of this service's endpoints."""
        return (
            self.selector is not None
            and workload.namespace == self.namespace
            and selects(self.selector, workload.labels)
        )


@dataclass(frozen=True, slots=True)
class Workload:
    kind: str  # "Pod" or "WorkloadEntry"
    name: str
    namespace: str
    labels: Mapping[str, str]


def services(context: Context) -> list[Service]:
    """Every service the input defines: one per ServiceEntry host, one per Kubernetes Service."""
    found = []
    for resource, entry in context.of(SERVICE_ENTRY, ServiceEntry):
        namespace = resource.metadata.namespace
        entry_ports = entry.ports or []
        for host in entry.hosts:
            found.append(
                Service(
                    host=to_fqdn(host, namespace),
                    namespace=namespace,
                    ports=tuple(port.number for port in entry_ports),
                    target_ports=tuple(p.target_port for p in entry_ports if p.target_port),
                    visible_in=visibility(entry.export_to or [], namespace),
                    selector=entry.workload_selector.labels if entry.workload_selector else None,
                )
            )
    for resource, spec in context.of(SERVICE, ServiceSpec):
        namespace = resource.metadata.namespace
        export_to = resource.metadata.annotations.get(EXPORT_TO_ANNOTATION, "")
        ports = spec.ports or []
        found.append(
            Service(
                host=f"{resource.metadata.name}.{namespace}.{CLUSTER_SUFFIX}",
                namespace=namespace,
                ports=tuple(port.port for port in ports),
                target_ports=tuple(p.target_port for p in ports if isinstance(p.target_port, int)),
                visible_in=visibility(filter(None, export_to.split(",")), namespace),
                selector=spec.selector,
            )
        )
    return found


def workloads(context: Context) -> list[Workload]:
    """Every workload the input defines: Pods and WorkloadEntries."""
    pods = [
        Workload("Pod", r.metadata.name, r.metadata.namespace, r.metadata.labels)
        for r, _ in context.of(POD, PodSpec)
    ]
    entries = [
        Workload("WorkloadEntry", r.metadata.name, r.metadata.namespace, entry.labels or {})
        for r, entry in context.of(WORKLOAD_ENTRY, WorkloadEntry)
    ]
    return pods + entries


class ServiceIndex:
    """Host lookups against the input's services."""

    def __init__(self, context: Context) -> None:
        self.services = services(context)

    def lookup(self, host: str, namespace: str) -> Service | None:
        """The service a host names from `namespace`: an exact host, else the closest wildcard."""
        name = to_fqdn(host, namespace)
        visible = [service for service in self.services if service.visible_from(namespace)]
        for service in visible:
            if service.host == name:
                return service
        bare = name.removeprefix("*")
        covering = [
            service
            for service in visible
            if service.host.startswith("*") and bare.endswith(service.host[1:])
        ]
        return max(covering, key=lambda service: len(service.host), default=None)

    def matches_any(self, host: str, namespace: str) -> bool:
        """Whether a host, possibly a wildcard, names at least one service visible from there."""
        name = to_fqdn(host, namespace)
        if not name.startswith("*"):
            return self.lookup(name, namespace) is not None
        return any(
            hosts_overlap(name, service.host)
            for service in self.services
            if service.visible_from(namespace)
        )
