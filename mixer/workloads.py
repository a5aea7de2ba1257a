"""The workloads Mixer knows, by address and by uid: its Pods and WorkloadEntries.

Mixer receives Kubernetes `Pod`s and Istio `WorkloadEntry`s with its configuration (from galley
or its directory); `Workloads.update(resources)` indexes them, replacing the previous index
whole. The `kubernetesenv` adapter answers from it: the workload at `source.ip`, or the pod
`kubernetes://<pod>.<namespace>`.

A pod's workload is named as Istio's kubernetesenv named it, after its controller: a
ReplicaSet's pod belongs to the ReplicaSet's Deployment (the ReplicaSet's name without its
`pod-template-hash`), a Job's pod to the CronJob that made the Job when the Job is named
`<cronjob>-<schedule time>`, other controllers' pods (StatefulSet, DaemonSet, ...) to the
controller, and a pod without one is its own workload. The controller comes from the pod's
ownerReferences when its metadata carries them; otherwise (this project's Resource metadata
does not keep them) from the labels Kubernetes' controllers put on their pods
(`pod-template-hash`, `controller-revision-hash`, `job-name`). A WorkloadEntry is its own
workload.

Immutable values; `Workloads` is replaced, not edited, so a reader never sees half an update.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from meshconfig import Kind, Resource
from meshconfig.kube import KINDS as KUBE_KINDS
from meshconfig.kube import PodSpec, PodStatus
from meshconfig.networking import KINDS as NETWORKING_KINDS
from meshconfig.networking import WorkloadEntry

POD_KIND = "Pod"
WORKLOAD_ENTRY_KIND = "WorkloadEntry"

# The registry kinds Mixer receives beside its own (config.istio.io) ones: Kubernetes' core
# Pod and Istio's WorkloadEntry. Not policy kinds: galley validates no Mixer config with them.
REGISTRY_KINDS: tuple[Kind, ...] = (
    *(k for k in KUBE_KINDS if k.group == "" and k.kind == POD_KIND),
    *(k for k in NETWORKING_KINDS if k.kind == WORKLOAD_ENTRY_KIND),
)
REGISTRY_KIND_IDS = frozenset(kind.id for kind in REGISTRY_KINDS)

# Where each controller kind lives in the Kubernetes API (Istio's owner URIs name it).
_API = {
    "Deployment": "apps/v1",
    "ReplicaSet": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1beta1",
    "ReplicationController": "v1",
    "Pod": "v1",
    "DeploymentConfig": "apps.openshift.io/v1",
    "WorkloadEntry": "networking.istio.io/v1alpha3",
}
_CRONJOB_JOB = re.compile(r"^(?P<cronjob>.+)-\d+$")  # a Job a CronJob made: <name>-<time>
_STATEFULSET_POD = re.compile(r"^(?P<set>.+)-\d+$")  # a StatefulSet's pod: <set>-<ordinal>
_GENERATED_SUFFIX = re.compile(r"-[a-z0-9]{5}$")  # what generateName adds
# A pod-template-hash: Kubernetes' safe-encoded hash (no vowels, no look-alike digits).
_TEMPLATE_HASH = re.compile(r"^[bcdfghjklmnpqrstvwxz2456789]{6,10}$")


@dataclass(frozen=True, slots=True)
class Owner:
    """A controller of a pod: its kind and name (an ownerReference with controller: true)."""

    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class Workload:
    """What the kubernetesenv adapter says of one pod or WorkloadEntry."""

    name: str  # the pod's (or entry's) own name
    namespace: str
    ip: str
    labels: Mapping[str, str]
    service_account: str
    workload_name: str
    workload_kind: str  # "Deployment", "Pod", "WorkloadEntry", ...
    host_ip: str = ""
    container_ports: Mapping[int, str] = field(default_factory=dict)  # port -> container
    containers: tuple[str, ...] = ()

    def container(self, port: int) -> str:
        """The container serving `port`: the one declaring it, else the pod's only one."""
        found = self.container_ports.get(port)
        if found is None and len(self.containers) == 1:
            return self.containers[0]
        return found or ""

    @property
    def uid(self) -> str:
        """The pod uid Istio's attributes use (`source.uid`)."""
        return f"kubernetes://{self.name}.{self.namespace}"

    @property
    def owner(self) -> str:
        """Istio's owner URI: `kubernetes://apis/apps/v1/namespaces/<ns>/deployments/<name>`."""
        api = _API.get(self.workload_kind, "v1")
        kind = self.workload_kind.lower()
        plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
        return f"kubernetes://apis/{api}/namespaces/{self.namespace}/{plural}/{self.workload_name}"

    @property
    def workload_uid(self) -> str:
        return f"istio://{self.namespace}/workloads/{self.workload_name}"


def controller_of(
    name: str, labels: Mapping[str, str], owner_references: Sequence[Any] = ()
) -> Owner | None:
    """A pod's controller: from its ownerReferences (dicts or objects with kind, name and
    controller), else inferred from the labels its controller gave it; None if it has none."""
    for reference in owner_references:
        get = reference.get if isinstance(reference, Mapping) else _attributes(reference)
        if get("controller"):
            return Owner(str(get("kind") or ""), str(get("name") or ""))
    template_hash = labels.get("pod-template-hash")
    if template_hash and f"-{template_hash}-" in name:
        return Owner("ReplicaSet", name[: name.rindex(f"-{template_hash}-")] + f"-{template_hash}")
    job = labels.get("job-name")
    if job:
        return Owner("Job", job)
    if labels.get("controller-revision-hash"):
        pod_name = labels.get("statefulset.kubernetes.io/pod-name")
        ordinal = _STATEFULSET_POD.match(name)
        if pod_name == name and ordinal is not None:
            return Owner("StatefulSet", ordinal.group("set"))
        if _GENERATED_SUFFIX.search(name):
            return Owner("DaemonSet", name[: -len("-xxxxx")])
    return None


def _attributes(reference: Any) -> Any:
    return lambda key: getattr(reference, key, None)


def workload_of(
    name: str, labels: Mapping[str, str], owner_references: Sequence[Any] = ()
) -> tuple[str, str]:
    """(workload kind, workload name) of a pod, as Istio's kubernetesenv derives them."""
    owner = controller_of(name, labels, owner_references)
    if owner is None or not owner.name:
        return "Pod", name
    if owner.kind == "ReplicaSet":
        template_hash = labels.get("pod-template-hash")
        if template_hash and owner.name.endswith(f"-{template_hash}"):
            return "Deployment", owner.name.removesuffix(f"-{template_hash}")
        # Without the label, a Deployment's ReplicaSet still ends in its template hash.
        deployment, _, suffix = owner.name.rpartition("-")
        if deployment and _TEMPLATE_HASH.match(suffix):
            return "Deployment", deployment
        return "ReplicaSet", owner.name
    if owner.kind == "Job":
        cronjob = _CRONJOB_JOB.match(owner.name)
        if cronjob is not None:
            return "CronJob", cronjob.group("cronjob")
        return "Job", owner.name
    if owner.kind == "ReplicationController" and labels.get("deploymentconfig"):
        return "DeploymentConfig", labels["deploymentconfig"]
    return owner.kind, owner.name


def _pod(resource: Resource) -> Workload | None:
    spec, status = resource.spec, resource.status
    if not isinstance(spec, PodSpec) or not isinstance(status, PodStatus):
        return None
    if not status.pod_ip or spec.host_network:
        return None  # a host-network pod's IP is its node's, not its own
    meta = resource.metadata
    owners: Sequence[Any] = getattr(meta, "owner_references", None) or ()
    kind, workload = workload_of(meta.name, meta.labels, owners)
    ports = {
        port.container_port: container.name
        for container in spec.containers
        for port in container.ports or ()
    }
    return Workload(
        name=meta.name,
        namespace=meta.namespace,
        ip=status.pod_ip,
        labels=MappingProxyType(dict(meta.labels)),
        service_account=spec.service_account_name or "default",
        workload_name=workload,
        workload_kind=kind,
        host_ip=status.host_ip or "",
        container_ports=MappingProxyType(ports),
        containers=tuple(container.name for container in spec.containers),
    )


def _entry(resource: Resource) -> Workload | None:
    spec = resource.spec
    if not isinstance(spec, WorkloadEntry) or not spec.address or not _is_ip(spec.address):
        return None
    meta = resource.metadata
    return Workload(
        name=meta.name,
        namespace=meta.namespace,
        ip=spec.address,
        labels=MappingProxyType(dict(spec.labels or {})),
        service_account=spec.service_account or "default",
        workload_name=meta.name,
        workload_kind="WorkloadEntry",
    )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class Workloads:
    """The index the kubernetesenv adapter reads; `update` replaces it whole."""

    def __init__(self) -> None:
        self._by_ip: Mapping[str, Workload] = MappingProxyType({})
        self._by_uid: Mapping[str, Workload] = MappingProxyType({})
        self.version = 0  # bumped by every update that changes something

    def update(self, resources: Iterable[Resource]) -> bool:
        """Index the Pods and WorkloadEntries among `resources` (others are ignored); whether
        the index changed. A pod wins over a WorkloadEntry of the same address, and among
        several of one kind the first by (namespace, name)."""
        found: list[Workload] = []
        for resource in sorted(resources, key=lambda r: r.key):
            if resource.kind.id not in REGISTRY_KIND_IDS:
                continue
            workload = _pod(resource) if resource.kind.kind == POD_KIND else _entry(resource)
            if workload is not None:
                found.append(workload)
        by_ip: dict[str, Workload] = {}
        for workload in sorted(found, key=lambda w: w.workload_kind == "WorkloadEntry"):
            by_ip.setdefault(str(ipaddress.ip_address(workload.ip)), workload)
        by_uid = {w.uid: w for w in found if w.workload_kind != "WorkloadEntry"}
        if by_ip == self._by_ip and by_uid == self._by_uid:
            return False
        self._by_ip, self._by_uid = MappingProxyType(by_ip), MappingProxyType(by_uid)
        self.version += 1
        return True

    def by_ip(self, address: str) -> Workload | None:
        return self._by_ip.get(address)

    def by_uid(self, uid: str) -> Workload | None:
        return self._by_uid.get(uid)

    def __len__(self) -> int:
        return len(self._by_ip)
