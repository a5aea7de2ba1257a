"""Analyzers of VirtualServices against the rest of the configuration.

Each checks a reference a VirtualService makes that validation alone cannot: the gateways it
binds to exist, its destination hosts (and ports) name services of the registry, the subsets it
routes to are defined by a DestinationRule, and no two VirtualServices bound to the mesh gateway
claim the same host (Istio merges those only on ingress gateways; in the mesh one of them wins
unpredictably).
"""

from __future__ import annotations

from collections.abc import Iterator

from galley.analysis.context import DESTINATION_RULE, GATEWAY, VIRTUAL_SERVICE, Context
from galley.analysis.messages import (
    CONFLICTING_MESH_GATEWAY_HOSTS,
    DESTINATION_PORT_SELECTOR_REQUIRED,
    REFERENCED_RESOURCE_NOT_FOUND,
    Message,
)
from galley.analysis.registry import EVERYWHERE, ServiceIndex, to_fqdn, visibility
from meshconfig import Resource
from meshconfig.networking import DestinationRule, Gateway, VirtualService
from meshconfig.networking.common import Destination
from meshconfig.networking.virtual_service import MESH_GATEWAY


def _destinations(spec: VirtualService) -> Iterator[tuple[bool, Destination]]:
    """Every destination traffic is sent to, flagged True where it is a mirror."""
    for http in spec.http or []:
        for weighted in http.route or []:
            yield False, weighted.destination
        if http.mirror is not None:
            yield True, http.mirror
        for mirror in http.mirrors or []:
            yield True, mirror.destination
    for tcp in spec.tcp or []:
        for target in tcp.route or []:
            yield False, target.destination
    for tls in spec.tls or []:
        for target in tls.route or []:
            yield False, target.destination


def gateways(context: Context) -> Iterator[Message]:
    """IST0101: a gateway a VirtualService binds to (`name` or `namespace/name`) does not exist."""
    known = {(r.metadata.namespace, r.metadata.name) for r, _ in context.of(GATEWAY, Gateway)}
    for resource, spec in context.of(VIRTUAL_SERVICE, VirtualService):
        for name in spec.gateways or []:
            if name == MESH_GATEWAY:
                continue
            namespace, _, short = name.rpartition("/")
            if (namespace or resource.metadata.namespace, short) not in known:
                yield REFERENCED_RESOURCE_NOT_FOUND.at(resource, "gateway", name)


def destination_hosts(context: Context) -> Iterator[Message]:
    """IST0101 for a destination host (or its port) no service has; IST0112 for a missing port."""
    index = ServiceIndex(context)
    for resource, spec in context.of(VIRTUAL_SERVICE, VirtualService):
        for mirror, destination in _destinations(spec):
            host = destination.host
            service = index.lookup(host, resource.metadata.namespace)
            if service is None:
                what = "mirror host" if mirror else "host"
                yield REFERENCED_RESOURCE_NOT_FOUND.at(resource, what, host)
                continue
            port = destination.port.number if destination.port is not None else None
            if port is None:
                if len(service.ports) > 1:
                    listed = " ".join(str(number) for number in service.ports)
                    yield DESTINATION_PORT_SELECTOR_REQUIRED.at(resource, host, f"[{listed}]")
            elif port not in service.ports:
                yield REFERENCED_RESOURCE_NOT_FOUND.at(resource, "host:port", f"{host}:{port}")


def destination_subsets(context: Context) -> Iterator[Message]:
    """IST0101: a route or mirror names a subset no DestinationRule for its host defines."""
    defined = {
        (to_fqdn(rule.host, resource.metadata.namespace), subset.name)
        for resource, rule in context.of(DESTINATION_RULE, DestinationRule)
        for subset in rule.subsets or []
    }
    for resource, spec in context.of(VIRTUAL_SERVICE, VirtualService):
        namespace = resource.metadata.namespace
        for mirror, destination in _destinations(spec):
            subset = destination.subset
            if subset and (to_fqdn(destination.host, namespace), subset) not in defined:
                what = "mirror+subset" if mirror else "host+subset"
                yield REFERENCED_RESOURCE_NOT_FOUND.at(
                    resource, f"{what} in destinationrule", f"{destination.host}+{subset}"
                )


def mesh_gateway_hosts(context: Context) -> Iterator[Message]:
    """IST0109: VirtualServices bound to the mesh gateway claim the same host in one scope."""
    claims: dict[tuple[str, str], list[Resource]] = {}
    for resource, spec in context.of(VIRTUAL_SERVICE, VirtualService):
        if spec.gateways and MESH_GATEWAY not in spec.gateways:
            continue
        namespace = resource.metadata.namespace
        scopes = visibility(spec.export_to or [], namespace)
        if EVERYWHERE in scopes:
            scopes = frozenset({EVERYWHERE})
        for scope in sorted(scopes):
            for host in spec.hosts or []:
                claims.setdefault((scope, to_fqdn(host, namespace)), []).append(resource)
    for (_, host), owners in sorted(claims.items()):
        if len(owners) < 2:
            continue
        names = ",".join(f"{r.metadata.namespace}/{r.metadata.name}" for r in owners)
        for owner in owners:
            yield CONFLICTING_MESH_GATEWAY_HOSTS.at(owner, names, host)
