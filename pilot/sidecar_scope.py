"""Sidecar scope: the services and VirtualServices a Sidecar resource lets its proxies see.

Istio's `SidecarScope`, computed once per (namespace, Sidecar) and push context and shared by
every proxy view that has them (`PushContext.scope`). Without a Sidecar a proxy sees everything,
exactly as under a Sidecar whose only egress listener imports `*/*`, so both go through the
same code. Each egress listener imports hosts written `<namespace>/<dnsName>`: `.` is the
namespace the scope applies in (for a root-namespace Sidecar, the proxy's own), `*` any
namespace, and `~` (or any namespace without services) nothing. As in istiod:

- a service is imported when a host of its namespace covers its hostname (`SubsetOf`), or
  failing that a host of `*/`; an egress listener with a port imports only that port;
- a VirtualService (of those exported to the namespace and bound to `mesh`) is imported when
  one of its hosts and an imported host of the VirtualService's namespace, or of `*/`, match
  each other (`Matches`);
- the services that imported VirtualServices route to are imported too, with only the ports
  the destinations name (all of them if one names none), so routes never point at clusters
  the proxy lacks;
- `outboundTrafficPolicy` decides what unknown destinations get (the mesh default is
  ALLOW_ANY: pass through).

Egress listeners are not turned into listeners of their own (their port, bind and captureMode
select nothing here): every HTTP port's route config and every outbound listener is built from
the union of what they import.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from meshconfig import Resource
from meshconfig.networking.common import Destination
from meshconfig.networking.sidecar import IstioEgressListener, IstioIngressListener, Sidecar
from meshconfig.networking.virtual_service import VirtualService
from pilot.istio_config import (
    MESH_GATEWAY,
    IstioConfig,
    host_subset_of,
    hosts_match,
    qualify,
)
from pilot.model import Service, ServicePort
from pilot.virtual_service_rules import BoundVirtualService, http_rules

WILDCARD_NAMESPACE = "*"
CURRENT_NAMESPACE = "."
_IMPORT_ALL = IstioEgressListener(hosts=["*/*"])
_ALL_PORTS = 0  # a destination without a port depends on every port of its service


@dataclass(frozen=True, slots=True)
class SidecarScope:
    sidecar: Sidecar | None  # None: no Sidecar applies, everything is visible
    services: tuple[Service, ...]  # sorted by hostname; ports narrowed to those imported
    virtual_services: tuple[Resource, ...]  # in precedence order (by key)

    @classmethod
    def build(
        cls,
        services: Sequence[Service],
        config: IstioConfig,
        namespace: str,
        sidecar: Resource | None,
    ) -> SidecarScope:
        spec = None
        if sidecar is not None:
            assert isinstance(sidecar.spec, Sidecar), sidecar.label
            spec = sidecar.spec
        listeners = (spec.egress if spec is not None else None) or [_IMPORT_ALL]
        by_hostname = {s.hostname: s for s in services}
        visible = config.virtual_services_for(namespace, MESH_GATEWAY)
        imported: dict[str, Service] = {}
        chosen: dict[tuple[str, str, str], Resource] = {}
        for listener in listeners:
            imports = _imports(listener, namespace)
            port = _listener_port(listener)
            for service in services:
                if _imported(service, imports):
                    _add(imported, _narrowed(service, [port] if port else [_ALL_PORTS]))
            for vs in visible:
                if not _vs_imported(vs, imports):
                    continue
                chosen.setdefault(vs.key, vs)
                for hostname, ports in _destinations(vs, namespace, config).items():
                    destination = by_hostname.get(hostname)
                    if destination is not None:
                        _add(imported, _narrowed(destination, [port] if port else ports))
        return cls(
            sidecar=spec,
            services=tuple(imported[h] for h in sorted(imported)),
            virtual_services=tuple(chosen[key] for key in sorted(chosen)),
        )

    @property
    def registry_only(self) -> bool:
        """Unknown destinations are refused (REGISTRY_ONLY) rather than passed through."""
        policy = self.sidecar.outbound_traffic_policy if self.sidecar is not None else None
        return policy is not None and policy.mode == "REGISTRY_ONLY"

    @property
    def egress_proxy(self) -> Destination | None:
        """Where ALLOW_ANY sends unknown destinations instead of passing them through."""
        policy = self.sidecar.outbound_traffic_policy if self.sidecar is not None else None
        return policy.egress_proxy if policy is not None else None

    @property
    def ingress(self) -> tuple[IstioIngressListener, ...]:
        """The Sidecar's ingress listeners; when present they replace the inbound ports the
        workload's service instances would give."""
        return tuple(self.sidecar.ingress or ()) if self.sidecar is not None else ()


def _imports(listener: IstioEgressListener, namespace: str) -> dict[str, list[str]]:
    """The listener's hosts by namespace, `.` resolved to `namespace`."""
    imports: dict[str, list[str]] = {}
    for host in listener.hosts:
        host_namespace, _, name = host.partition("/")
        if host_namespace == CURRENT_NAMESPACE:
            host_namespace = namespace
        imports.setdefault(host_namespace, []).append(name)
    return imports


def _listener_port(listener: IstioEgressListener) -> int:
    """The port a listener narrows its services to; 0 for none (no port, or HTTP_PROXY)."""
    port = listener.port
    if port is None or not port.number or (port.protocol or "").upper() == "HTTP_PROXY":
        return 0
    return port.number


def _imported(service: Service, imports: dict[str, list[str]]) -> bool:
    for namespace in (service.namespace, WILDCARD_NAMESPACE):
        if any(host_subset_of(service.hostname, host) for host in imports.get(namespace, ())):
            return True
    return False


def _vs_imported(vs: Resource, imports: dict[str, list[str]]) -> bool:
    spec = vs.spec
    assert isinstance(spec, VirtualService), vs.label
    own = vs.metadata.namespace
    hosts = [qualify(host, own) for host in spec.hosts or ()]
    return any(
        hosts_match(host, imported)
        for namespace in (own, WILDCARD_NAMESPACE)
        for imported in imports.get(namespace, ())
        for host in hosts
    )


def _destinations(vs: Resource, namespace: str, config: IstioConfig) -> dict[str, list[int]]:
    """The hostnames the VirtualService routes or mirrors to from `namespace`, each with the
    ports named (`_ALL_PORTS` for a destination without one), delegated rules included. Rules
    whose every match is for another source namespace are skipped, as istiod skips them."""
    bound = BoundVirtualService.of(vs)
    found: dict[str, list[int]] = {}
    for destination in _rule_destinations(bound, config, namespace):
        hostname = qualify(destination.host, vs.metadata.namespace)
        port = destination.port.number if destination.port is not None else None
        found.setdefault(hostname, []).append(port or _ALL_PORTS)
    return found


def _rule_destinations(
    vs: BoundVirtualService, config: IstioConfig, namespace: str
) -> Iterator[Destination]:
    spec = vs.spec
    for http in http_rules(vs, config):
        if _for_namespace((m.source_namespace for m in http.match or ()), namespace):
            yield from (r.destination for r in http.route or ())
            yield from (m.destination for m in http.mirrors or ())
            if http.mirror is not None:
                yield http.mirror
    for l4 in (*(spec.tcp or ()), *(spec.tls or ())):
        if _for_namespace((m.source_namespace for m in l4.match or ()), namespace):
            yield from (r.destination for r in l4.route or ())


def _for_namespace(source_namespaces: Iterable[str | None], namespace: str) -> bool:
    """A rule applies unless all of its matches name another source namespace."""
    wanted = list(source_namespaces)
    return not wanted or any(ns in (None, namespace) for ns in wanted)


def _narrowed(service: Service, ports: Sequence[int]) -> Service | None:
    """The service with only `ports` (all for `_ALL_PORTS`); None if it has none of them."""
    if _ALL_PORTS in ports:
        return service
    kept = tuple(p for p in service.ports if p.number in ports)
    if len(kept) == len(service.ports):
        return service
    return replace(service, ports=kept) if kept else None


def _add(imported: dict[str, Service], service: Service | None) -> None:
    """Add a service; a second import of the same hostname adds the ports it lacked."""
    if service is None:
        return
    existing = imported.get(service.hostname)
    if existing is None:
        imported[service.hostname] = service
        return
    numbers = {p.number for p in existing.ports}
    extra: list[ServicePort] = [p for p in service.ports if p.number not in numbers]
    if extra:
        imported[service.hostname] = replace(existing, ports=(*existing.ports, *extra))
