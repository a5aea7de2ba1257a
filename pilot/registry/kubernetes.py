"""The Kubernetes service registry: Services, EndpointSlices (or Endpoints) and Pods -> the model.

Pilot sees the cluster through galley (or a directory of the same objects), as validated
`meshconfig` resources, and rebuilds this registry from all of them on every change; the
conversion is pure, so the same objects always give the same services. It follows Istio's
Kubernetes controller:

- A Service becomes `<name>.<namespace>.svc.cluster.local`, MESH_INTERNAL, with its cluster IPs
  as VIPs and STATIC resolution (EDS). A port's protocol is its `appProtocol`, else the prefix of
  its name (`http-web`), else TCP; UDP and SCTP ports are dropped (sidecars carry TCP only).
- A headless Service (`clusterIP: None`) passes traffic through to the address the client
  resolved (Istio's Passthrough: ORIGINAL_DST clusters). Its ready pod IPs are its addresses,
  so each TCP port gets one listener per pod, as Istio's PILOT_ENABLE_HEADLESS_SERVICE_POD_LISTENERS
  (on by default) does, while HTTP ports share `0.0.0.0_<port>`; since listeners then depend on
  the endpoints, an endpoint change of a headless service is a full push, as in Istio.
- An ExternalName Service is MESH_EXTERNAL with DNS resolution of its external name.
- Endpoints come from the EndpointSlices labelled `kubernetes.io/service-name` (ready ones,
  first address of each, ports by the Service port's name); a Service with no slice at all falls
  back to its core/v1 Endpoints object. An endpoint is joined to its pod by `targetRef`, else by
  IP, for the labels DestinationRule subsets select, the service account (the SPIFFE identity)
  and the locality (the pod's `istio-locality` label, dots for slashes, as Istio reads it). An
  endpoint whose `targetRef` names a pod not seen yet is left out until the pod arrives, as
  Istio does, so it never serves with no labels.
- A pod the Service selects that is not a ready endpoint is still an instance of the Service,
  but not ready: its own sidecar gets its inbound side (resolving a named `targetPort` against
  the pod's container ports) before Kubernetes declares it ready, while no other proxy sends it
  traffic. Istio likewise finds a proxy's own services from its pod and the Services' selectors.
- Every running pod with an IP is a `WorkloadInstance` (ports: its named container ports), so a
  ServiceEntry's workloadSelector selects pods as in Istio. Host-network pods are left out: their
  IP is their node's and is shared.

Node objects are not read, so localities come from pod labels only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace

from pydantic import BaseModel

from meshconfig import Resource
from meshconfig.kube import EndpointsBody, EndpointSliceBody, PodSpec, PodStatus, ServiceSpec
from meshconfig.kube.objects import ObjectReference
from meshconfig.kube.objects import ServicePort as KubeServicePort
from meshconfig.resource import Metadata
from pilot.model import (
    CLUSTER_DOMAIN,
    Location,
    Protocol,
    Resolution,
    Service,
    ServicePort,
    WorkloadInstance,
)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
LOCALITY_LABEL = "istio-locality"
HEADLESS = "None"
# appProtocol values Kubernetes itself defines (a port name can never take them).
_KUBERNETES_APP_PROTOCOLS = {
    "kubernetes.io/h2c": Protocol.HTTP2,
    "kubernetes.io/ws": Protocol.HTTP,
    "kubernetes.io/wss": Protocol.HTTPS,
}
_TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})

KubeKinds = ServiceSpec | EndpointSliceBody | EndpointsBody | PodSpec


@dataclass(frozen=True, slots=True)
class KubernetesRegistry:
    """Services sorted by hostname, pods by (namespace, name)."""

    services: tuple[Service, ...] = ()
    workloads: tuple[WorkloadInstance, ...] = ()


def reads(resource: Resource) -> bool:
    """Whether `resource` is one of the Kubernetes kinds this registry reads."""
    return isinstance(resource.spec, KubeKinds)


def hostname(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}"


def protocol(port: KubeServicePort) -> Protocol | None:
    """Istio's protocol of a Service port; None for the UDP and SCTP ports sidecars never see."""
    if port.protocol != "TCP":
        return None
    if port.app_protocol in _KUBERNETES_APP_PROTOCOLS:
        return _KUBERNETES_APP_PROTOCOLS[port.app_protocol]
    return Protocol.for_port(None, port.app_protocol or port.name or "")


def build(resources: Iterable[Resource]) -> KubernetesRegistry:
    """The registry of the Services, EndpointSlices, Endpoints and Pods among `resources`."""
    services: list[tuple[Metadata, ServiceSpec]] = []
    pods: list[_Pod] = []
    endpoints = _Endpoints()
    for resource in resources:
        spec, meta = resource.spec, resource.metadata
        if isinstance(spec, ServiceSpec):
            services.append((meta, spec))
        elif isinstance(spec, PodSpec):
            pod = _Pod.of(meta, spec, resource.status)
            if pod is not None:
                pods.append(pod)
        else:
            endpoints.add(meta, spec)
    index = _PodIndex(pods)
    converted = (_service(meta, spec, endpoints, index) for meta, spec in services)
    return KubernetesRegistry(
        services=tuple(sorted((s for s in converted if s is not None), key=lambda s: s.hostname)),
        workloads=tuple(p.workload() for p in index.pods if not p.host_network),
    )


def _service(
    meta: Metadata, spec: ServiceSpec, endpoints: _Endpoints, pods: _PodIndex
) -> Service | None:
    """None for an ExternalName Service without a name."""
    name = hostname(meta.name, meta.namespace)
    ports = tuple(
        ServicePort(
            name=port.name or "",
            number=port.port,
            protocol=port_protocol,
            target_port=_number(port.target_port),
        )
        for port in spec.ports or ()
        if (port_protocol := protocol(port)) is not None
    )
    if spec.type == "ExternalName":
        if not spec.external_name:
            return None
        target = WorkloadInstance(name="", namespace=meta.namespace, address=spec.external_name)
        return Service(
            name,
            meta.namespace,
            ports,
            resolution=Resolution.DNS,
            location=Location.MESH_EXTERNAL,
            endpoints=(target,),
        )
    ready = endpoints.ready(meta.namespace, meta.name, pods)
    pending = _pending(spec, ports, meta.namespace, pods, {w.address for w in ready})
    headless = spec.cluster_ip == HEADLESS
    if headless:
        addresses = tuple(sorted({w.address for w in ready}))
    else:
        cluster_ips = spec.cluster_ips or [spec.cluster_ip or ""]
        addresses = tuple(ip for ip in cluster_ips if ip and ip != HEADLESS)
    return Service(
        name,
        meta.namespace,
        ports,
        addresses=addresses,
        resolution=Resolution.NONE if headless else Resolution.STATIC,
        location=Location.MESH_INTERNAL,
        endpoints=tuple(sorted((*ready, *pending), key=lambda w: (w.address, w.name))),
    )


@dataclass(frozen=True, slots=True)
class _Pod:
    name: str
    namespace: str
    ip: str
    labels: Mapping[str, str]
    spec: PodSpec
    ready: bool

    @classmethod
    def of(cls, meta: Metadata, spec: PodSpec, status: BaseModel | None) -> _Pod | None:
        """None for a pod with no IP yet, or one that has finished."""
        if not isinstance(status, PodStatus) or status.phase in _TERMINAL_PHASES:
            return None
        ip = status.pod_ip or next((p.ip for p in status.pod_ips or ()), "")
        if not ip:
            return None
        ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions or ())
        return cls(meta.name, meta.namespace, ip, meta.labels, spec, ready)

    @property
    def host_network(self) -> bool:
        return bool(self.spec.host_network)

    @property
    def service_account(self) -> str:
        # The ServiceAccount admission plugin fills in "default" when a pod names none.
        return self.spec.service_account_name or "default"

    @property
    def locality(self) -> str:
        return self.labels.get(LOCALITY_LABEL, "").replace(".", "/")

    def named_ports(self) -> dict[str, int]:
        return {
            port.name: port.container_port
            for container in self.spec.containers
            for port in container.ports or ()
            if port.name and port.protocol == "TCP"
        }

    def workload(
        self, ports: Mapping[str, int] | None = None, *, ready: bool | None = None
    ) -> WorkloadInstance:
        """This pod as a workload; `ports` (by service port name) default to its named ports."""
        return WorkloadInstance(
            name=self.name,
            namespace=self.namespace,
            address=self.ip,
            labels=self.labels,
            ports=self.named_ports() if ports is None else ports,
            service_account=self.service_account,
            locality=self.locality,
            ready=self.ready if ready is None else ready,
        )


class _PodIndex:
    def __init__(self, pods: list[_Pod]) -> None:
        self.pods = sorted(pods, key=lambda p: (p.namespace, p.name))
        self._by_name = {(p.namespace, p.name): p for p in self.pods}
        self._by_ip = {p.ip: p for p in self.pods if not p.host_network}
        self._by_namespace: dict[str, list[_Pod]] = defaultdict(list)
        for pod in self.pods:
            self._by_namespace[pod.namespace].append(pod)

    def selected(self, namespace: str, selector: Mapping[str, str]) -> Iterator[_Pod]:
        for pod in self._by_namespace.get(namespace, ()):
            if not pod.host_network and all(pod.labels.get(k) == v for k, v in selector.items()):
                yield pod

    def endpoint(
        self, namespace: str, address: str, ref: ObjectReference | None, ports: Mapping[str, int]
    ) -> WorkloadInstance | None:
        """A ready endpoint, with what its pod tells; None when its pod is not known yet."""
        if ref is not None and ref.kind == "Pod":
            pod = self._by_name.get((ref.namespace or namespace, ref.name or ""))
            if pod is None:
                return None
        else:
            pod = self._by_ip.get(address)
        if pod is None:
            return WorkloadInstance(name="", namespace=namespace, address=address, ports=ports)
        return replace(pod.workload(ports, ready=True), address=address)


class _Endpoints:
    """EndpointSlices by the Service they name, and Endpoints objects by name."""

    def __init__(self) -> None:
        self._slices: dict[tuple[str, str], list[tuple[str, EndpointSliceBody]]] = defaultdict(list)
        self._legacy: dict[tuple[str, str], EndpointsBody] = {}

    def add(self, meta: Metadata, body: BaseModel) -> None:
        if isinstance(body, EndpointSliceBody):
            service = meta.labels.get(SERVICE_NAME_LABEL)
            if service:
                self._slices[meta.namespace, service].append((meta.name, body))
        elif isinstance(body, EndpointsBody):
            self._legacy[meta.namespace, meta.name] = body

    def ready(self, namespace: str, name: str, pods: _PodIndex) -> list[WorkloadInstance]:
        """The ready endpoints from the Service's EndpointSlices, else from its Endpoints; one
        per address (the first slice by name wins, while Kubernetes moves one between slices)."""
        found: dict[str, WorkloadInstance] = {}

        def add(address: str, ref: ObjectReference | None, ports: Mapping[str, int]) -> None:
            workload = pods.endpoint(namespace, address, ref, ports)
            if workload is not None:
                found.setdefault(address, workload)

        slices = self._slices.get((namespace, name))
        legacy = self._legacy.get((namespace, name))
        if slices:
            for _, body in sorted(slices, key=lambda named: named[0]):
                if body.address_type == "FQDN":
                    continue  # names, not addresses: Istio ignores these slices too
                ports = {p.name or "": p.port for p in body.ports or () if p.port is not None}
                for endpoint in body.endpoints or ():
                    # A missing `ready` condition means ready (the EndpointSlice API's rule).
                    if endpoint.conditions is None or endpoint.conditions.ready is not False:
                        add(endpoint.addresses[0], endpoint.target_ref, ports)
        elif legacy is not None:
            for subset in legacy.subsets or ():
                ports = {p.name or "": p.port for p in subset.ports or ()}
                for address in subset.addresses or ():
                    add(address.ip, address.target_ref, ports)
        return list(found.values())


def _pending(
    spec: ServiceSpec,
    ports: tuple[ServicePort, ...],
    namespace: str,
    pods: _PodIndex,
    ready: set[str],
) -> list[WorkloadInstance]:
    """The selected pods that are not ready endpoints, as instances that are not ready.

    Each port maps to where the pod listens: a named targetPort resolved against the pod's
    container ports (a numeric one is the port's `target_port` already).
    """
    if not spec.selector:
        return []  # a Service without a selector has exactly the endpoints it is given
    targets = {p.name or "": p.target_port for p in spec.ports or ()}
    pending = []
    for pod in pods.selected(namespace, spec.selector):
        if pod.ip in ready:
            continue
        named = pod.named_ports()
        resolved = {
            port.name: named[target]
            for port in ports
            if isinstance(target := targets[port.name], str) and target in named
        }
        pending.append(pod.workload(resolved, ready=False))
    return pending


def _number(target: int | str | None) -> int | None:
    """A numeric targetPort; a named one is resolved per pod (by the endpoints' ports)."""
    if isinstance(target, int):
        return target
    if target is not None and target.isdigit():
        return int(target)
    return None
