"""The immutable snapshot every config generation reads: services, endpoints, instances.

Pilot builds one `PushContext` per debounced registry change and generates all proxies'
configuration from it. Everything a generator asks for is resolved once, at build time (which
workloads a selector picks, which port an endpoint listens on, which services a proxy's own
workload backs), so generating for a thousand proxies never repeats that work, and a push
in flight keeps a consistent view while the next context is being built. Sidecar scopes are
the exception: computed on first use per (namespace, Sidecar), since only the namespaces of
connected proxies need one, and memoized for the life of the context. Generators memoize the
same way (`memo`) what several views would otherwise build alike, such as a service's cluster
seen from every namespace the same DestinationRule applies to.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, TypeVar

from pilot.istio_config import IstioConfig, config_key
from pilot.mesh_config import DEFAULT_MESH, MeshConfig
from pilot.model import (
    ISTIO_TLS_MODE,
    Endpoint,
    NodeType,
    Proxy,
    ProxyView,
    Resolution,
    Service,
    ServiceInstance,
    ServicePort,
    WorkloadInstance,
    is_ip,
)
from pilot.registry import RegistrySnapshot
from pilot.security_policies import MtlsMode
from pilot.sidecar_scope import SidecarScope

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class InboundInputs:
    """What decides every proxy's inbound side (clusters and listeners) besides its own
    instances: Sidecars, security policies, key sets, mesh config. DestinationRules,
    VirtualServices and Gateways do not reach it; other services do only through a Sidecar's
    egress proxy, so they are part of it only where Sidecars exist. Small, and holding no
    context: a proxy's kept inbound side carries the inputs it was made from."""

    mesh: MeshConfig
    jwks: Mapping[str, str]
    config: IstioConfig  # without VirtualServices, Gateways and DestinationRules
    services: tuple[Service, ...] | None  # only with Sidecars


@dataclass(frozen=True, slots=True)
class PushContext:
    """Build with `PushContext.build`; `version` increases with every build (the builder's)."""

    version: str
    services: tuple[Service, ...]  # sorted by hostname
    config: IstioConfig
    _by_hostname: Mapping[str, Service]
    _endpoints: Mapping[tuple[str, int], tuple[Endpoint, ...]]
    _instances_by_address: Mapping[str, tuple[ServiceInstance, ...]]
    # Label keys that some VirtualService match's `sourceLabels` reads (HTTP, TCP or TLS): the
    # only labels that split sidecar views (most meshes have none, so sidecars keep sharing).
    _source_label_keys: frozenset[str] = frozenset()
    _scopes: dict[tuple[str, str], SidecarScope] = field(default_factory=dict, compare=False)
    _memo: dict[Hashable, Any] = field(default_factory=dict, compare=False)
    # RequestAuthentication key sets pilot fetched, by URL (`pilot.jwks`).
    jwks: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    mesh: MeshConfig = DEFAULT_MESH

    @classmethod
    def build(
        cls,
        registry: RegistrySnapshot,
        version: str,
        config: IstioConfig | None = None,
        jwks: Mapping[str, str] = MappingProxyType({}),
        mesh: MeshConfig = DEFAULT_MESH,
    ) -> PushContext:
        config = config or IstioConfig()
        services = tuple(sorted(registry.services, key=lambda s: s.hostname))
        workloads_by_namespace: dict[str, list[WorkloadInstance]] = defaultdict(list)
        # Namespace and one label -> the workloads carrying it, so that a service's selector
        # is checked against the few its first label picks instead of the whole namespace.
        by_label: dict[tuple[str, str, str], list[WorkloadInstance]] = defaultdict(list)
        for workload in registry.workloads:
            workloads_by_namespace[workload.namespace].append(workload)
            for label in workload.labels.items():
                by_label[(workload.namespace, *label)].append(workload)

        endpoints: dict[tuple[str, int], tuple[Endpoint, ...]] = {}
        instances: dict[str, list[ServiceInstance]] = defaultdict(list)
        for service in services:
            backing = _backing_workloads(service, workloads_by_namespace, by_label)
            for port in service.ports:
                port_endpoints = []
                for workload in backing:
                    endpoint = _mtls_marked(workload, port, service, config)
                    instances[endpoint.address].append(ServiceInstance(service, port, endpoint))
                    if workload.ready:
                        port_endpoints.append(endpoint)
                if service.resolution is Resolution.STATIC:
                    # EDS carries IPs only; a named workload is reachable through DNS services.
                    port_endpoints = [e for e in port_endpoints if is_ip(e.address)]
                endpoints[service.hostname, port.number] = tuple(sorted(port_endpoints, key=_order))
        return cls(
            version=version,
            services=services,
            config=config,
            _by_hostname=MappingProxyType({s.hostname: s for s in services}),
            _endpoints=MappingProxyType(endpoints),
            _instances_by_address=MappingProxyType({a: tuple(i) for a, i in instances.items()}),
            _source_label_keys=_source_label_keys(config),
            jwks=jwks,
            mesh=mesh,
        )

    def memo(self, key: Hashable, build: Callable[[], T]) -> T:
        """`build()`, once per `key` for the life of this context. A key must name everything
        the result depends on besides this context (objects by `id` only if this context
        keeps them alive, as it does its services and scopes)."""
        try:
            found: T = self._memo[key]
        except KeyError:
            found = self._memo[key] = build()
        return found

    def differs_only_in_routing(self, other: PushContext) -> bool:
        """Whether `other` has the same registry, mesh config, key sets and Istio config save
        its VirtualServices and Gateways. Then every proxy's inbound side is the same in both,
        and so are a view's clusters and endpoints if its Sidecar scope imports the same
        services (a VirtualService can import a service's port into a scope)."""
        return (
            self.services == other.services
            and self._endpoints == other._endpoints
            and self._instances_by_address == other._instances_by_address
            and self.mesh == other.mesh
            and self.jwks == other.jwks
            and _without_routing(self.config) == _without_routing(other.config)
        )

    def inbound_inputs(self) -> InboundInputs:
        """Everything besides its own instances that decides a proxy's inbound side in this
        context; equal inputs and equal instances make an equal inbound side."""
        return self.memo(
            "inbound-inputs",
            lambda: InboundInputs(
                self.mesh,
                self.jwks,
                _without_outbound(self.config),
                self.services if self.config.sidecars else None,
            ),
        )

    def service(self, hostname: str) -> Service | None:
        return self._by_hostname.get(hostname)

    def view_for(self, proxy: Proxy) -> ProxyView:
        """The proxy's view with the Sidecar that applies to it (sidecars only: gateways see
        every service, as in Istio)."""
        view = proxy.view
        if proxy.type is NodeType.SIDECAR:
            sidecar = self.config.sidecar_for(proxy.namespace, proxy.labels)
            if sidecar is not None:
                view = replace(view, sidecar=config_key(sidecar))
            if self._source_label_keys:
                labels = proxy.labels.items()
                seen = tuple(sorted((k, v) for k, v in labels if k in self._source_label_keys))
                view = replace(view, labels=seen)
        return view

    def scope(self, view: ProxyView) -> SidecarScope:
        """What the view's Sidecar (or the absence of one) lets it see, computed once."""
        key = (view.namespace, view.sidecar)
        found = self._scopes.get(key)
        if found is None:
            sidecar = self.config.sidecar(view.sidecar) if view.sidecar else None
            found = SidecarScope.build(self.services, self.config, view.namespace, sidecar)
            self._scopes[key] = found
        return found

    def services_for(self, view: ProxyView) -> tuple[Service, ...]:
        """The services the view's proxies may reach, sorted by hostname, with only the ports
        their Sidecar imports."""
        return self.scope(view).services

    def endpoints(self, hostname: str, port: int) -> tuple[Endpoint, ...]:
        """The ready endpoints of a service port, sorted; empty for an unknown service or port."""
        return self._endpoints.get((hostname, port), ())

    def instances_for(self, proxy: Proxy) -> tuple[ServiceInstance, ...]:
        """The service ports the proxy's own workload serves, ready or not (it needs its inbound
        side before it can become ready), sorted by (hostname, port)."""
        found = [i for ip in proxy.ip_addresses for i in self._instances_by_address.get(ip, ())]
        return tuple(sorted(found, key=lambda i: (i.service.hostname, i.port.number)))


def _without_routing(config: IstioConfig) -> IstioConfig:
    return replace(config, virtual_services=(), gateways=())


def _without_outbound(config: IstioConfig) -> IstioConfig:
    return replace(config, virtual_services=(), gateways=(), destination_rules=())


def _source_label_keys(config: IstioConfig) -> frozenset[str]:
    keys: set[str] = set()
    for vs in config.virtual_services:
        spec: Any = vs.spec
        for rule in (*(spec.http or ()), *(spec.tcp or ()), *(spec.tls or ())):
            for match in rule.match or ():
                keys.update(match.source_labels or {})
    return frozenset(keys)


def _mtls_marked(
    workload: WorkloadInstance, port: ServicePort, service: Service, config: IstioConfig
) -> Endpoint:
    """The workload's endpoint for `port`, marked as accepting Istio mutual TLS if its TLS
    mode is `istio` and its PeerAuthentication does not disable mTLS on the port."""
    accepts = workload.tls_mode == ISTIO_TLS_MODE and (
        config.security.peer_mtls(service.namespace, workload.labels).for_port(
            workload.endpoint_port(port)
        )
        is not MtlsMode.DISABLE
    )
    return Endpoint.of(workload, port, istio_mtls=accepts)


def _backing_workloads(
    service: Service,
    by_namespace: Mapping[str, list[WorkloadInstance]],
    by_label: Mapping[tuple[str, str, str], list[WorkloadInstance]],
) -> list[WorkloadInstance]:
    """The workloads a service selects, in registry order (or its inline endpoints)."""
    selector = service.workload_selector
    if selector is None:
        return list(service.endpoints)
    first = next(iter(selector.items()), None)
    candidates = (
        by_namespace.get(service.namespace, ())
        if first is None
        else by_label.get((service.namespace, *first), ())
    )
    return [w for w in candidates if service.selects(w)]


def _order(endpoint: Endpoint) -> tuple[str, str, int]:
    return (endpoint.locality, endpoint.address, endpoint.port)
