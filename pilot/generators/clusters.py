"""CDS: outbound clusters per service port (shared by a view), inbound clusters per proxy.

The cluster type follows the service's resolution as in Istio: STATIC services are EDS
clusters fed over ADS, DNS ones let Envoy resolve the endpoints' names, NONE passes through to
the address the client dialled. The DestinationRule that applies to a service from the view's
namespace adds one cluster per subset (`outbound|<port>|<subset>|<host>`, holding only the
endpoints with the subset's labels) and its traffic policy (`traffic_policy`) to every one of
them. Inbound clusters deliver to the local application, which listens on the proxy's
APP_ADDRESS; a proxy with traffic capture also gets Istio's InboundPassthroughClusterIpv4 for
ports no service declares.
"""

from __future__ import annotations

from functools import partial
from typing import Final

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.extensions.upstreams.http.v3.http_protocol_options_pb2 import HttpProtocolOptions
from google.protobuf import struct_pb2

from meshconfig.networking.destination_rule import Subset
from pilot.generators import mixer, names, traffic_policy
from pilot.generators.endpoints import cluster_load_assignment, subset_endpoints
from pilot.generators.inbound import inbound_ports
from pilot.generators.proto import ads, pack, seconds
from pilot.generators.traffic_policy import AppliedRule, Upstream
from pilot.generators.virtual_services import destination_cluster
from pilot.model import (
    Endpoint,
    InterceptionMode,
    NodeType,
    Proxy,
    ProxyView,
    Resolution,
    Service,
    ServicePort,
)
from pilot.push_context import PushContext

CONNECT_TIMEOUT_SECONDS: Final = 10
INBOUND_PASSTHROUGH_SOURCE: Final = "127.0.0.6"
HTTP_PROTOCOL_OPTIONS: Final = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

Cluster = cluster_pb2.Cluster


def outbound_clusters(ctx: PushContext, view: ProxyView) -> list[cluster_pb2.Cluster]:
    """`outbound|<port>||<host>` for every port of every visible service, one more per subset
    of the DestinationRule that applies, plus the BlackHoleCluster and PassthroughCluster,
    sorted by name."""
    clusters = [blackhole_cluster(), passthrough_cluster(), *mixer.clusters(ctx, view, ctx.mesh)]
    for service in ctx.services_for(view):
        rule = traffic_policy.destination_rule(ctx, service.hostname, view.namespace)
        # Views differ in a service's clusters only by the rule that applies from their
        # namespace and by whether they have certificates, so views agreeing on those share
        # them (the service object is the scope's, which the context keeps).
        key = ("outbound-clusters", id(service), rule and (rule.namespace, rule.name), view.sds)
        clusters += ctx.memo(key, partial(_service_clusters, ctx, view, service, rule))
    return sorted(clusters, key=lambda c: c.name)


def _service_clusters(
    ctx: PushContext, view: ProxyView, service: Service, rule: AppliedRule | None
) -> tuple[cluster_pb2.Cluster, ...]:
    subsets: tuple[Subset | None, ...] = (None,)
    if rule is not None:
        subsets += tuple(rule.spec.subsets or ())
    identities = _identities(ctx, service)
    found = []
    for port in service.ports:
        for subset in subsets:
            cluster = _outbound(ctx, view, service, port, rule, identities, subset)
            if cluster is not None:
                found.append(cluster)
    return tuple(found)


def inbound_clusters(ctx: PushContext, proxy: Proxy) -> list[cluster_pb2.Cluster]:
    """`inbound|<port>||` for each port the proxy's workload serves, to where the application
    listens for it (APP_ADDRESS:<port> unless a Sidecar ingress listener says otherwise)."""
    clusters = []
    for inbound in inbound_ports(ctx, proxy):
        name = names.inbound_cluster(inbound.port)
        cluster = _base(name)
        cluster.type = Cluster.STATIC
        assignment = cluster_load_assignment(
            name, [Endpoint(inbound.app_address, inbound.app_port)]
        )
        if inbound.app_socket:  # the one endpoint is a Unix socket instead
            assignment.endpoints[0].lb_endpoints[0].endpoint.address.CopyFrom(
                address_pb2.Address(pipe=address_pb2.Pipe(path=inbound.app_socket))
            )
        cluster.load_assignment.CopyFrom(assignment)
        _set_http_options(cluster, traffic_policy.connection_pool(cluster, None, inbound.protocol))
        clusters.append(cluster)
    if proxy.type is NodeType.SIDECAR and proxy.interception_mode is not InterceptionMode.NONE:
        clusters.append(inbound_passthrough_cluster())
    return clusters


def inbound_passthrough_cluster() -> cluster_pb2.Cluster:
    """Captured inbound connections to a port no service declares, delivered where they were
    headed (the pod's address) from 127.0.0.6, the source Istio's capture rules let through
    instead of redirecting the proxy's connection back to itself."""
    cluster = Cluster(
        name=names.INBOUND_PASSTHROUGH_CLUSTER,
        type=Cluster.ORIGINAL_DST,
        lb_policy=Cluster.CLUSTER_PROVIDED,
        connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
    )
    cluster.upstream_bind_config.source_address.address = INBOUND_PASSTHROUGH_SOURCE
    cluster.upstream_bind_config.source_address.port_value = 0
    return cluster


def catch_all_cluster(ctx: PushContext, view: ProxyView) -> str:
    """Where the view's proxies send what no service claims: BlackHoleCluster under
    REGISTRY_ONLY, else the Sidecar's egress proxy, else PassthroughCluster (ALLOW_ANY)."""
    scope = ctx.scope(view)
    if scope.registry_only:
        return names.BLACKHOLE_CLUSTER
    if scope.egress_proxy is not None:
        return destination_cluster(ctx, scope.egress_proxy, view.namespace, 0)
    return names.PASSTHROUGH_CLUSTER


def blackhole_cluster() -> cluster_pb2.Cluster:
    """Where traffic goes to be dropped: a static cluster with no endpoints."""
    return Cluster(
        name=names.BLACKHOLE_CLUSTER,
        type=Cluster.STATIC,
        connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
    )


def passthrough_cluster() -> cluster_pb2.Cluster:
    """Traffic for destinations the mesh does not know, sent on to where it was going."""
    return Cluster(
        name=names.PASSTHROUGH_CLUSTER,
        type=Cluster.ORIGINAL_DST,
        lb_policy=Cluster.CLUSTER_PROVIDED,
        connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
    )


def _outbound(
    ctx: PushContext,
    view: ProxyView,
    service: Service,
    port: ServicePort,
    rule: AppliedRule | None,
    identities: tuple[str, ...],
    subset: Subset | None,
) -> cluster_pb2.Cluster | None:
    """The cluster of a service port or of one subset of it; None for a DNS subset that no
    endpoint belongs to (like istiod: a LOGICAL_DNS cluster without one would be invalid)."""
    subset_name = subset.name if subset is not None else ""
    name = names.outbound_cluster(port.number, service.hostname, subset_name)
    cluster = _base(name)
    match service.resolution:
        case Resolution.STATIC:
            cluster.type = Cluster.EDS
            cluster.eds_cluster_config.eds_config.CopyFrom(ads())
            cluster.eds_cluster_config.service_name = name
        case Resolution.DNS | Resolution.DNS_ROUND_ROBIN:
            endpoints = subset_endpoints(
                ctx.endpoints(service.hostname, port.number)
                or (Endpoint(service.hostname, port.target_port or port.number),),
                subset,
            )
            if not endpoints:
                return None
            if service.resolution is Resolution.DNS:
                cluster.type = Cluster.STRICT_DNS
            else:
                # LOGICAL_DNS takes exactly one endpoint (a name whose first address is used).
                cluster.type = Cluster.LOGICAL_DNS
                endpoints = endpoints[:1]
            cluster.dns_lookup_family = Cluster.V4_PREFERRED
            cluster.load_assignment.CopyFrom(cluster_load_assignment(name, endpoints))
        case Resolution.NONE:
            cluster.type = Cluster.ORIGINAL_DST
    policy = traffic_policy.resolve(rule.spec if rule is not None else None, port.number, subset)
    upstream = Upstream(
        protocol=port.protocol,
        mtls_sni=traffic_policy.mtls_sni(port.number, service.hostname, subset_name),
        identities=identities,
        certificates=view.sds,
    )
    _set_http_options(cluster, traffic_policy.apply(cluster, policy, upstream))
    if rule is not None:
        _set_istio_metadata(cluster, rule, subset_name)
    return cluster


def _identities(ctx: PushContext, service: Service) -> tuple[str, ...]:
    """The SPIFFE IDs of the service accounts its endpoints run as, sorted."""
    accounts = {
        endpoint.service_account
        for port in service.ports
        for endpoint in ctx.endpoints(service.hostname, port.number)
        if endpoint.service_account
    }
    return tuple(sorted(traffic_policy.spiffe_id(service.namespace, a) for a in accounts))


def _base(name: str) -> cluster_pb2.Cluster:
    return Cluster(name=name, connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS))


def _set_http_options(cluster: cluster_pb2.Cluster, options: HttpProtocolOptions) -> None:
    """Pack the options if any were set; an upstream protocol must be chosen (HTTP/1.1, as
    Envoy would use without options, unless already set)."""
    if not options.ListFields():
        return
    if options.WhichOneof("upstream_protocol_options") is None:
        options.explicit_http_config.http_protocol_options.SetInParent()
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))


def _set_istio_metadata(cluster: cluster_pb2.Cluster, rule: AppliedRule, subset: str) -> None:
    """Which DestinationRule (and subset) made the cluster, where istioctl looks for it."""
    istio = struct_pb2.Struct()
    istio.update({"config": rule.config_path, **({"subset": subset} if subset else {})})
    cluster.metadata.filter_metadata["istio"].CopyFrom(istio)
