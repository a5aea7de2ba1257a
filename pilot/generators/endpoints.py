"""EDS: the ClusterLoadAssignment of each EDS (STATIC resolution) outbound cluster.

Endpoints are grouped by locality, and every locality carries a `load_balancing_weight`
(the sum of its endpoints' weights): Envoy's locality-weighted balancing and gRPC's xDS client
need it, the latter silently dropping a locality without one. A subset cluster's assignment
holds the service port's endpoints whose labels match the subset's, the subset being looked up
in the DestinationRule that applies from the view's namespace (as the cluster was). Everything
is sorted, so equal inputs encode to equal bytes. An endpoint that takes Istio mutual TLS
carries `envoy.transport_socket_match: {tlsMode: istio}`, which auto mTLS clusters match on.
STRICT_DNS clusters reuse `cluster_load_assignment` inline.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Final

from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf import wrappers_pb2

from meshconfig.networking.destination_rule import Subset
from pilot.generators import names, traffic_policy
from pilot.generators.proto import socket_address
from pilot.model import ISTIO_TLS_MODE, Endpoint, ProxyView, Resolution, Service
from pilot.push_context import PushContext

TRANSPORT_SOCKET_MATCH: Final = "envoy.transport_socket_match"


def load_assignment(
    ctx: PushContext, cluster_name: str, view: ProxyView
) -> endpoint_pb2.ClusterLoadAssignment | None:
    """The endpoints of one EDS cluster as `view` sees it, or None if it has no such cluster.

    The view matters for subset clusters only: which rule defines the subset (and so its
    labels) depends on the proxy's namespace.
    """
    parsed = names.parse_outbound_cluster(cluster_name)
    if parsed is None:
        return None
    service = ctx.service(parsed.hostname)
    if service is None or service.resolution is not Resolution.STATIC:
        return None
    if all(port.number != parsed.port for port in service.ports):
        return None
    subset = None
    if parsed.subset:
        rule = traffic_policy.destination_rule(ctx, service.hostname, view.namespace)
        subset = rule.subset(parsed.subset) if rule is not None else None
        if subset is None:
            return None
    endpoints = ctx.endpoints(service.hostname, parsed.port)
    return cluster_load_assignment(cluster_name, subset_endpoints(endpoints, subset))


def load_assignments(ctx: PushContext, view: ProxyView) -> list[endpoint_pb2.ClusterLoadAssignment]:
    """One assignment for every EDS cluster `outbound_clusters` gives the view, subsets
    included, even if empty (an EDS cluster stays warming until it receives its assignment)."""
    assignments: list[endpoint_pb2.ClusterLoadAssignment] = []
    for service in ctx.services_for(view):
        if service.resolution is not Resolution.STATIC:
            continue
        rule = traffic_policy.destination_rule(ctx, service.hostname, view.namespace)
        # Shared by the views the same rule applies to (the context keeps the service).
        key = ("load-assignments", id(service), rule and (rule.namespace, rule.name))
        assignments += ctx.memo(key, partial(_service_assignments, ctx, service, rule))
    return assignments


def _service_assignments(
    ctx: PushContext, service: Service, rule: traffic_policy.AppliedRule | None
) -> tuple[endpoint_pb2.ClusterLoadAssignment, ...]:
    subsets = rule.spec.subsets or [] if rule is not None else []
    assignments = []
    for port in sorted(service.ports, key=lambda p: p.number):
        endpoints = ctx.endpoints(service.hostname, port.number)
        name = names.outbound_cluster(port.number, service.hostname)
        assignments.append(cluster_load_assignment(name, endpoints))
        for subset in subsets:
            name = names.outbound_cluster(port.number, service.hostname, subset.name)
            assignments.append(cluster_load_assignment(name, subset_endpoints(endpoints, subset)))
    return tuple(assignments)


def subset_endpoints(endpoints: Sequence[Endpoint], subset: Subset | None) -> Sequence[Endpoint]:
    """The endpoints carrying every label of `subset`; all of them for no subset."""
    if subset is None or not subset.labels:
        return endpoints
    labels = subset.labels
    return tuple(e for e in endpoints if e.has_labels(labels))


def cluster_load_assignment(
    cluster_name: str, endpoints: Iterable[Endpoint]
) -> endpoint_pb2.ClusterLoadAssignment:
    by_locality: dict[tuple[str, str, str], list[Endpoint]] = defaultdict(list)
    for endpoint in endpoints:
        by_locality[parse_locality(endpoint.locality)].append(endpoint)
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=cluster_name,
        endpoints=[
            _locality_endpoints(locality, by_locality[locality]) for locality in sorted(by_locality)
        ],
    )


def _istio_mtls_metadata() -> base_pb2.Metadata:
    """What a cluster's `tlsMode-istio` transport socket match selects (auto mutual TLS)."""
    metadata = base_pb2.Metadata()
    metadata.filter_metadata[TRANSPORT_SOCKET_MATCH].update({"tlsMode": ISTIO_TLS_MODE})
    return metadata


_ISTIO_MTLS: Final = _istio_mtls_metadata()


def parse_locality(locality: str) -> tuple[str, str, str]:
    """`region/zone/subzone` -> its parts, missing ones empty."""
    region, zone, subzone = ([*locality.split("/", 2), "", ""])[:3]
    return region, zone, subzone


def _locality_endpoints(
    locality: tuple[str, str, str], endpoints: list[Endpoint]
) -> endpoint_components_pb2.LocalityLbEndpoints:
    region, zone, subzone = locality
    ordered = sorted(endpoints, key=lambda e: (e.address, e.port))
    return endpoint_components_pb2.LocalityLbEndpoints(
        # Always present, even when empty: gRPC's xDS client rejects a missing locality.
        locality=base_pb2.Locality(region=region, zone=zone, sub_zone=subzone),
        lb_endpoints=[
            endpoint_components_pb2.LbEndpoint(
                endpoint=endpoint_components_pb2.Endpoint(
                    address=socket_address(e.address, e.port)
                ),
                load_balancing_weight=wrappers_pb2.UInt32Value(value=e.weight),
                metadata=_ISTIO_MTLS if e.istio_mtls else None,
            )
            for e in ordered
        ],
        load_balancing_weight=wrappers_pb2.UInt32Value(value=sum(e.weight for e in ordered)),
    )
