"""Which VirtualServices route which services for a sidecar, and which cluster a destination is.

HTTP routes (RDS) and TCP/TLS routes (outbound listeners) resolve VirtualServices the same way,
so the rules live here once, as istiod applies them to sidecars:

- a sidecar sees the VirtualServices exported to its namespace and bound to the `mesh` gateway
  (`IstioConfig.virtual_services_for`) that its Sidecar scope admits (`sidecar_scope`), oldest
  first; we have no creation time, so "oldest" is the resource key order (namespace, name);
- hosts and destination hosts are qualified relative to the VirtualService's namespace;
- for HTTP exactly one VirtualService routes a service: a VirtualService naming the service
  exactly beats any wildcard, the longest wildcard beats shorter ones, and among equals the first
  wins. istiod merges several VirtualServices for one host only on gateways, never for sidecars;
- for TCP and TLS every VirtualService whose hosts cover the service contributes, in order
  (istiod's `getConfigsForHost`).

Delegation lives in `pilot.virtual_service_rules` (`http_rules`), shared with the Sidecar
scope.
"""

from __future__ import annotations

from collections.abc import Iterable

from meshconfig.networking.common import Destination
from pilot.generators import names
from pilot.istio_config import hosts_match, qualify
from pilot.model import ProxyView
from pilot.push_context import PushContext
from pilot.virtual_service_rules import BoundVirtualService


def mesh_virtual_services(ctx: PushContext, view: ProxyView) -> tuple[BoundVirtualService, ...]:
    """The VirtualServices applying to the view's sidecars (those exported to its namespace,
    bound to the mesh and admitted by its Sidecar scope), in precedence order."""
    return tuple(BoundVirtualService.of(vs) for vs in ctx.scope(view).virtual_services)


def http_owner(
    hostname: str, virtual_services: Iterable[BoundVirtualService]
) -> BoundVirtualService | None:
    """The one VirtualService whose HTTP routes a sidecar uses for `hostname`."""
    best: tuple[int, BoundVirtualService] | None = None
    for vs in virtual_services:
        if hostname in vs.hosts:
            return vs
        for host in vs.hosts:
            wildcard = host.startswith("*") and hosts_match(host, hostname)
            if wildcard and (best is None or len(host) > best[0]):
                best = (len(host), vs)
    return None if best is None else best[1]


def destination_cluster(
    ctx: PushContext, destination: Destination, namespace: str, port: int
) -> str:
    """istiod's `GetDestinationCluster`: the destination's port if given, else the service's
    only port, else the port the request arrived on."""
    hostname = qualify(destination.host, namespace)
    number = port
    if destination.port is not None and destination.port.number is not None:
        number = destination.port.number
    else:
        service = ctx.service(hostname)
        if service is not None and len(service.ports) == 1:
            number = service.ports[0].number
    return names.outbound_cluster(number, hostname, destination.subset or "")


# --- delegation --------------------------------------------------------------------------------
