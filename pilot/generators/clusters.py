"""CDS: outbound clusters per service port (shared by a view), inbound clusters per proxy.

The cluster type follows the service's resolution as in Istio: STATIC services are EDS
clusters fed over ADS, DNS ones let Envoy resolve the endpoints' names, NONE passes through to
the address the client dialled. Inbound clusters deliver to the local application, which
listens on the proxy's APP_ADDRESS.
"""

from __future__ import annotations

from typing import Final

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import wrappers_pb2

from pilot.generators import names
from pilot.generators.endpoints import cluster_load_assignment
from pilot.generators.inbound import inbound_ports
from pilot.generators.proto import ads, pack, seconds
from pilot.model import Endpoint, Protocol, Proxy, ProxyView, Resolution, Service, ServicePort
from pilot.push_context import PushContext

CONNECT_TIMEOUT_SECONDS: Final = 10
HTTP_PROTOCOL_OPTIONS: Final = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_UNLIMITED: Final = wrappers_pb2.UInt32Value(value=2**32 - 1)

Cluster = cluster_pb2.Cluster


def outbound_clusters(ctx: PushContext, view: ProxyView) -> list[cluster_pb2.Cluster]:
    """`outbound|<port>||<host>` for every port of every visible service, plus the
    BlackHoleCluster and PassthroughCluster, sorted by name."""
    clusters = [blackhole_cluster(), passthrough_cluster()]
    for service in ctx.services_for(view.namespace):
        clusters.extend(_outbound(ctx, service, port) for port in service.ports)
    return sorted(clusters, key=lambda c: c.name)


def inbound_clusters(ctx: PushContext, proxy: Proxy) -> list[cluster_pb2.Cluster]:
    """`inbound|<port>||` to APP_ADDRESS:<port> for each port the proxy's workload serves."""
    clusters = []
    for inbound in inbound_ports(ctx, proxy):
        name = names.inbound_cluster(inbound.port)
        cluster = _base(name, inbound.protocol)
        cluster.type = Cluster.STATIC
        cluster.load_assignment.CopyFrom(
            cluster_load_assignment(name, [Endpoint(proxy.app_address, inbound.port)])
        )
        clusters.append(cluster)
    return clusters


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


def _outbound(ctx: PushContext, service: Service, port: ServicePort) -> cluster_pb2.Cluster:
    name = names.outbound_cluster(port.number, service.hostname)
    cluster = _base(name, port.protocol)
    match service.resolution:
        case Resolution.STATIC:
            cluster.type = Cluster.EDS
            cluster.eds_cluster_config.eds_config.CopyFrom(ads())
            cluster.eds_cluster_config.service_name = name
        case Resolution.DNS | Resolution.DNS_ROUND_ROBIN:
            endpoints = ctx.endpoints(service.hostname, port.number) or (
                Endpoint(service.hostname, port.target_port or port.number),
            )
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
            cluster.lb_policy = Cluster.CLUSTER_PROVIDED
    return cluster


def _base(name: str, protocol: Protocol) -> cluster_pb2.Cluster:
    """What every service cluster has: timeout, Istio's unlimited circuit breakers (Envoy's
    defaults of 1024 would fail requests under load nobody configured), and HTTP/2 upstream
    for HTTP2 and gRPC ports."""
    cluster = Cluster(
        name=name,
        connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
        circuit_breakers=circuit_breaker_pb2.CircuitBreakers(
            thresholds=[
                circuit_breaker_pb2.CircuitBreakers.Thresholds(
                    max_connections=_UNLIMITED,
                    max_pending_requests=_UNLIMITED,
                    max_requests=_UNLIMITED,
                    max_retries=_UNLIMITED,
                )
            ]
        ),
    )
    if protocol.is_http2:
        options = http_protocol_options_pb2.HttpProtocolOptions(
            explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
                http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
            )
        )
        cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))
    return cluster
