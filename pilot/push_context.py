"""The immutable snapshot every config generation reads: services, endpoints, instances.

Pilot builds one `PushContext` per debounced registry change and generates all proxies'
configuration from it. Everything a generator asks for is resolved once, at build time (which
workloads a selector picks, which port an endpoint listens on, which services a proxy's own
workload backs), so generating for a thousand proxies never repeats that work, and a push
in flight keeps a consistent view while the next context is being built.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pilot.istio_config import IstioConfig
from pilot.model import (
    Endpoint,
    Proxy,
    Resolution,
    Service,
    ServiceInstance,
    WorkloadInstance,
    is_ip,
)
from pilot.registry import RegistrySnapshot


@dataclass(frozen=True, slots=True)
class PushContext:
    """Build with `PushContext.build`; `version` increases with every build (the builder's)."""

    version: str
    services: tuple[Service, ...]  # sorted by hostname
    config: IstioConfig
    _by_hostname: Mapping[str, Service]
    _endpoints: Mapping[tuple[str, int], tuple[Endpoint, ...]]
    _instances_by_address: Mapping[str, tuple[ServiceInstance, ...]]

    @classmethod
    def build(
        cls, registry: RegistrySnapshot, version: str, config: IstioConfig | None = None
    ) -> PushContext:
        services = tuple(sorted(registry.services, key=lambda s: s.hostname))
        workloads_by_namespace: dict[str, list[WorkloadInstance]] = defaultdict(list)
        for workload in registry.workloads:
            workloads_by_namespace[workload.namespace].append(workload)

        endpoints: dict[tuple[str, int], tuple[Endpoint, ...]] = {}
        instances: dict[str, list[ServiceInstance]] = defaultdict(list)
        for service in services:
            backing = _backing_workloads(service, workloads_by_namespace[service.namespace])
            for port in service.ports:
                for workload in backing:
                    endpoint = Endpoint.of(workload, port)
                    instances[endpoint.address].append(ServiceInstance(service, port, endpoint))
                port_endpoints = [Endpoint.of(w, port) for w in backing if w.ready]
                if service.resolution is Resolution.STATIC:
                    # EDS carries IPs only; a named workload is reachable through DNS services.
                    port_endpoints = [e for e in port_endpoints if is_ip(e.address)]
                endpoints[service.hostname, port.number] = tuple(sorted(port_endpoints, key=_order))
        return cls(
            version=version,
            services=services,
            config=config or IstioConfig(),
            _by_hostname=MappingProxyType({s.hostname: s for s in services}),
            _endpoints=MappingProxyType(endpoints),
            _instances_by_address=MappingProxyType({a: tuple(i) for a, i in instances.items()}),
        )

    def service(self, hostname: str) -> Service | None:
        return self._by_hostname.get(hostname)

    def services_for(self, namespace: str) -> tuple[Service, ...]:
        """The services a proxy in `namespace` may reach, sorted by hostname.

        All of them for now; Sidecar resources and `exportTo` will narrow this per namespace.
        """
        return self.services

    def endpoints(self, hostname: str, port: int) -> tuple[Endpoint, ...]:
        """The ready endpoints of a service port, sorted; empty for an unknown service or port."""
        return self._endpoints.get((hostname, port), ())

    def instances_for(self, proxy: Proxy) -> tuple[ServiceInstance, ...]:
        """The service ports the proxy's own workload serves, ready or not (it needs its inbound
        side before it can become ready), sorted by (hostname, port)."""
        found = [i for ip in proxy.ip_addresses for i in self._instances_by_address.get(ip, ())]
        return tuple(sorted(found, key=lambda i: (i.service.hostname, i.port.number)))


def _backing_workloads(
    service: Service, namespace_workloads: Iterable[WorkloadInstance]
) -> list[WorkloadInstance]:
    if service.workload_selector is None:
        return list(service.endpoints)
    return [w for w in namespace_workloads if service.selects(w)]


def _order(endpoint: Endpoint) -> tuple[str, str, int]:
    return (endpoint.locality, endpoint.address, endpoint.port)
