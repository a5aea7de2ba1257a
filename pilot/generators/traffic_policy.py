"""DestinationRule traffic policies as Envoy cluster settings, applied the way Istio applies them.

A cluster gets one policy, resolved as istiod resolves it (`resolve`): the rule's top-level
policy; replaced as a whole by a `portLevelSettings` entry for the cluster's port (fields the
entry leaves out fall back to defaults, not to the top level); for a subset cluster, overridden
field by field by the subset's policy, itself replaced as a whole by the subset's own entry for
the port. `apply` turns the four parts of that policy into cluster fields:

- loadBalancer: `lb_policy` (Istio's default is LEAST_REQUEST), slow start, the hash ring or
  Maglev table of consistentHash (the hash key itself is a route's `hash_policy`);
- connectionPool: circuit breaker thresholds (unlimited unless set: Envoy's own defaults of 1024
  would fail requests under load nobody configured), connect timeout, TCP keepalive, and the
  HTTP protocol options (idle timeout, requests per connection, HTTP/2 upgrade);
- outlierDetection: consecutive 5xx / gateway-error ejection, success-rate ejection off, and the
  panic threshold from minHealthPercent (0 by default: Istio disables panic routing);
- tls: an UpstreamTlsContext transport socket (certificate files for SIMPLE and MUTUAL; SDS
  secrets for ISTIO_MUTUAL). Without tls settings, auto mutual TLS: ISTIO_MUTUAL to the
  endpoints that take it, plaintext to the rest. A client proxy without a workload
  certificate gets neither ISTIO_MUTUAL nor auto mTLS (it has nothing to present).

Not translated (a push context has no per-proxy locality, or the piece needs SDS or listener
support): localityLbSetting, zoneAwareLbSetting, backendUtilization, tunnel, proxyProtocol,
retryBudget, outlierDetectionHttpErrorCodes, and credentialName.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import (
    base_pb2,
    config_source_pb2,
    grpc_service_pb2,
)
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3.http_protocol_options_pb2 import HttpProtocolOptions
from envoy.type.matcher.v3 import string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from meshconfig.base import duration_seconds
from meshconfig.networking.destination_rule import (
    ClientTLSSettings,
    ConnectionPoolSettings,
    ConsistentHashLB,
    DestinationRule,
    HTTPSettings,
    LoadBalancerSettings,
    OutlierDetection,
    Subset,
    TcpKeepalive,
    TrafficPolicy,
)
from pilot.generators.proto import API_V3, duration, pack
from pilot.model import Protocol, is_ip
from pilot.push_context import PushContext

Cluster = cluster_pb2.Cluster

UNLIMITED: Final = 2**32 - 1
DEFAULT_MINIMUM_RING_SIZE: Final = 1024  # Envoy's default, which Istio sets explicitly
TLS_TRANSPORT_SOCKET: Final = "envoy.transport_sockets.tls"
RAW_BUFFER_TRANSPORT_SOCKET: Final = "envoy.transport_sockets.raw_buffer"
# Istio's SDS names: the agent serves the workload certificate and the mesh root over a Unix
# socket that the bootstrap's `sds-grpc` cluster reaches.
SDS_CLUSTER: Final = "sds-grpc"
SDS_WORKLOAD_CERT: Final = "default"
SDS_ROOT_CA: Final = "ROOTCA"
# In-mesh ALPN: `istio` marks mesh traffic, `istio-peer-exchange` offers metadata exchange.
ALPN_IN_MESH: Final = ("istio-peer-exchange", "istio")
ALPN_IN_MESH_H2: Final = ("istio-peer-exchange", "istio", "h2")
ALPN_H2: Final = ("h2",)
TRUST_DOMAIN: Final = "cluster.local"
# Where every SDS secret comes from, built once: a message field given a message copies it.
_SDS_CONFIG: Final = config_source_pb2.ConfigSource(
    api_config_source=config_source_pb2.ApiConfigSource(
        api_type=config_source_pb2.ApiConfigSource.GRPC,
        transport_api_version=API_V3,
        set_node_on_first_message_only=True,
        grpc_services=[
            grpc_service_pb2.GrpcService(
                envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=SDS_CLUSTER)
            )
        ],
    ),
    resource_api_version=API_V3,
)


@dataclass(frozen=True, slots=True)
class AppliedRule:
    """The DestinationRule that applies to a host as seen from a namespace."""

    namespace: str
    name: str
    spec: DestinationRule

    @property
    def config_path(self) -> str:
        """How Istio names the rule in cluster metadata (istioctl shows it)."""
        return (
            f"/apis/networking.istio.io/v1/namespaces/{self.namespace}/destination-rule/{self.name}"
        )

    def subset(self, name: str) -> Subset | None:
        return next((s for s in self.spec.subsets or () if s.name == name), None)


def destination_rule(ctx: PushContext, hostname: str, namespace: str) -> AppliedRule | None:
    """The rule `IstioConfig.destination_rule_for` picks (Istio's precedence), typed."""
    resource = ctx.config.destination_rule_for(hostname, namespace)
    if resource is None:
        return None
    spec = resource.spec
    if not isinstance(spec, DestinationRule):
        raise TypeError(f"{resource.label} has a {type(spec).__name__} spec")
    return AppliedRule(resource.metadata.namespace, resource.metadata.name, spec)


@dataclass(frozen=True, slots=True)
class Policy:
    """The parts of a traffic policy that become cluster settings, resolved for one cluster."""

    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


def resolve(rule: DestinationRule | None, port: int, subset: Subset | None = None) -> Policy:
    """The policy for the cluster of `port` (and `subset`), merged as istiod merges it."""
    top, _ = _for_port(rule.traffic_policy if rule is not None else None, port)
    own, whole = _for_port(subset.traffic_policy if subset is not None else None, port)
    if own is None:
        return top or Policy()
    if top is None or whole:
        return own
    return Policy(
        own.load_balancer if own.load_balancer is not None else top.load_balancer,
        own.connection_pool if own.connection_pool is not None else top.connection_pool,
        own.outlier_detection if own.outlier_detection is not None else top.outlier_detection,
        own.tls if own.tls is not None else top.tls,
    )


def _for_port(policy: TrafficPolicy | None, port: int) -> tuple[Policy | None, bool]:
    """The policy for `port`, and whether it came from a port-level entry."""
    if policy is None:
        return None, False
    for entry in policy.port_level_settings or ():
        if entry.port is not None and entry.port.number == port:
            parts = (entry.load_balancer, entry.connection_pool, entry.outlier_detection)
            return Policy(*parts, entry.tls), True
    parts = (policy.load_balancer, policy.connection_pool, policy.outlier_detection)
    return Policy(*parts, policy.tls), False


@dataclass(frozen=True, slots=True)
class Upstream:
    """What applying a policy needs to know about the cluster besides the policy."""

    protocol: Protocol
    mtls_sni: str  # the SNI ISTIO_MUTUAL sends unless the rule names one
    identities: tuple[str, ...] = ()  # SPIFFE IDs ISTIO_MUTUAL accepts unless the rule lists SANs
    # Whether the client proxy has a workload certificate (SDS): without one it cannot do
    # Istio mutual TLS, so neither ISTIO_MUTUAL nor auto mTLS applies.
    certificates: bool = True


def mtls_sni(port: int, hostname: str, subset: str = "") -> str:
    """Istio's in-mesh SNI for a cluster: `outbound_.<port>_.<subset>_.<host>`."""
    return f"outbound_.{port}_.{subset}_.{hostname}"


def spiffe_id(namespace: str, service_account: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}"


def apply(cluster: cluster_pb2.Cluster, policy: Policy, upstream: Upstream) -> HttpProtocolOptions:
    """Set the policy's fields on an outbound cluster; returns the HTTP protocol options it
    needs (empty if none), for the caller to pack."""
    options = connection_pool(cluster, policy.connection_pool, upstream.protocol)
    _outlier_detection(cluster, policy.outlier_detection)
    _load_balancer(cluster, policy.load_balancer)
    _tls(cluster, options, policy.tls, upstream)
    return options


def connection_pool(
    cluster: cluster_pb2.Cluster, pool: ConnectionPoolSettings | None, protocol: Protocol
) -> HttpProtocolOptions:
    """Circuit breakers, timeouts and keepalive on `cluster`; the HTTP protocol options for
    the rest. Inbound clusters get this part (with no pool: the defaults) too."""
    tcp = pool.tcp if pool is not None else None
    http = pool.http if pool is not None else None
    thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds(
        max_connections=_uint32(UNLIMITED),
        max_pending_requests=_uint32(UNLIMITED),
        max_requests=_uint32(UNLIMITED),
        max_retries=_uint32(UNLIMITED),
        track_remaining=True,
    )
    options = HttpProtocolOptions()
    common = options.common_http_protocol_options
    # As in Istio, 0 means "not set" for the counts (Envoy would refuse every request).
    if http is not None:
        if http.http2_max_requests:  # Envoy applies max_requests to HTTP/2 only
            thresholds.max_requests.value = http.http2_max_requests
        if http.http1_max_pending_requests:  # and max_pending_requests to HTTP/1.1 only
            thresholds.max_pending_requests.value = http.http1_max_pending_requests
        if http.max_retries:
            thresholds.max_retries.value = http.max_retries
        if http.idle_timeout:
            common.idle_timeout.CopyFrom(duration(http.idle_timeout))
        if http.max_requests_per_connection:
            common.max_requests_per_connection.value = http.max_requests_per_connection
    if tcp is not None:
        if tcp.connect_timeout:
            cluster.connect_timeout.CopyFrom(duration(tcp.connect_timeout))
        if tcp.max_connections:
            thresholds.max_connections.value = tcp.max_connections
        if tcp.max_connection_duration:
            common.max_connection_duration.CopyFrom(duration(tcp.max_connection_duration))
        if tcp.idle_timeout and not common.HasField("idle_timeout"):
            common.idle_timeout.CopyFrom(duration(tcp.idle_timeout))
        if tcp.tcp_keepalive is not None:
            _tcp_keepalive(cluster, tcp.tcp_keepalive)
    cluster.circuit_breakers.CopyFrom(circuit_breaker_pb2.CircuitBreakers(thresholds=[thresholds]))
    _upstream_protocol(options, protocol, http)
    return options


def _tcp_keepalive(cluster: cluster_pb2.Cluster, settings: TcpKeepalive) -> None:
    keepalive = cluster.upstream_connection_options.tcp_keepalive
    keepalive.SetInParent()  # present even when empty: the OS defaults, switched on
    if settings.probes:
        keepalive.keepalive_probes.value = settings.probes
    if settings.time:
        keepalive.keepalive_time.value = int(duration_seconds(settings.time))
    if settings.interval:
        keepalive.keepalive_interval.value = int(duration_seconds(settings.interval))


def _upstream_protocol(
    options: HttpProtocolOptions, protocol: Protocol, http: HTTPSettings | None
) -> None:
    """HTTP/2 for HTTP2 and gRPC ports or when h2UpgradePolicy is UPGRADE, the client's own
    protocol with useClientProtocol; otherwise left to Envoy (HTTP/1.1)."""
    upgrade = http is not None and http.h2_upgrade_policy == "UPGRADE"
    if not upgrade and http is not None and http.use_client_protocol:
        downstream = options.use_downstream_protocol_config
        downstream.http_protocol_options.SetInParent()
        downstream.http2_protocol_options.SetInParent()
    elif upgrade or protocol.is_http2:
        h2 = options.explicit_http_config.http2_protocol_options
        h2.SetInParent()
        if http is not None and http.max_concurrent_streams:
            h2.max_concurrent_streams.value = http.max_concurrent_streams
        if http is not None and http.http2_keep_alive is not None:
            keepalive = h2.connection_keepalive
            if http.http2_keep_alive.interval:
                keepalive.interval.CopyFrom(duration(http.http2_keep_alive.interval))
            if http.http2_keep_alive.timeout:
                keepalive.timeout.CopyFrom(duration(http.http2_keep_alive.timeout))


def _outlier_detection(cluster: cluster_pb2.Cluster, settings: OutlierDetection | None) -> None:
    if settings is None:
        return
    out = cluster.outlier_detection
    out.enforcing_success_rate.CopyFrom(_uint32(0))  # only consecutive errors eject
    if settings.consecutive_errors:
        # The deprecated field counts gateway errors only (istio/api#617).
        out.consecutive_gateway_failure.value = settings.consecutive_errors
        out.enforcing_consecutive_gateway_failure.value = 100
        out.enforcing_consecutive_5xx.CopyFrom(_uint32(0))
    if settings.consecutive_5xx_errors is not None:
        errors = settings.consecutive_5xx_errors
        out.consecutive_5xx.CopyFrom(_uint32(errors))
        out.enforcing_consecutive_5xx.CopyFrom(_uint32(100 if errors else 0))
    if settings.consecutive_gateway_errors is not None:
        errors = settings.consecutive_gateway_errors
        out.consecutive_gateway_failure.CopyFrom(_uint32(errors))
        out.enforcing_consecutive_gateway_failure.CopyFrom(_uint32(100 if errors else 0))
    if settings.interval:
        out.interval.CopyFrom(duration(settings.interval))
    if settings.base_ejection_time:
        out.base_ejection_time.CopyFrom(duration(settings.base_ejection_time))
    if settings.max_ejection_percent:
        out.max_ejection_percent.value = settings.max_ejection_percent
    if settings.split_external_local_origin_errors:
        out.split_external_local_origin_errors = True
        if settings.consecutive_local_origin_failures:
            out.consecutive_local_origin_failure.value = settings.consecutive_local_origin_failures
            out.enforcing_consecutive_local_origin_failure.value = 100
        out.enforcing_local_origin_success_rate.CopyFrom(_uint32(0))
    # Istio turns panic routing off unless minHealthPercent asks for it: with few hosts per
    # service, Envoy's default (50%) would send traffic to ejected hosts.
    cluster.common_lb_config.healthy_panic_threshold.CopyFrom(
        percent_pb2.Percent(value=float(settings.min_health_percent or 0))
    )


def _load_balancer(cluster: cluster_pb2.Cluster, settings: LoadBalancerSettings | None) -> None:
    if cluster.type == Cluster.ORIGINAL_DST:
        cluster.lb_policy = Cluster.CLUSTER_PROVIDED
        return
    simple = settings.simple if settings is not None else None
    match simple:
        case "PASSTHROUGH":
            # Straight to the address the client dialled: no endpoints, no balancing.
            cluster.type = Cluster.ORIGINAL_DST
            cluster.lb_policy = Cluster.CLUSTER_PROVIDED
            cluster.ClearField("eds_cluster_config")
            cluster.ClearField("load_assignment")
            return
        case "RANDOM":
            cluster.lb_policy = Cluster.RANDOM
        case "ROUND_ROBIN":
            cluster.lb_policy = Cluster.ROUND_ROBIN
            _slow_start(cluster.round_robin_lb_config.slow_start_config, settings)
        case _:  # LEAST_REQUEST, LEAST_CONN (its old name), or unset: Istio's default
            cluster.lb_policy = Cluster.LEAST_REQUEST
            _slow_start(cluster.least_request_lb_config.slow_start_config, settings)
    if settings is not None and settings.consistent_hash is not None:
        _consistent_hash(cluster, settings.consistent_hash)


def _slow_start(
    config: cluster_pb2.Cluster.SlowStartConfig, settings: LoadBalancerSettings | None
) -> None:
    if settings is None:
        return
    if settings.warmup is not None:
        config.slow_start_window.CopyFrom(duration(settings.warmup.duration))
        if settings.warmup.aggression is not None:
            config.aggression.default_value = settings.warmup.aggression
            config.aggression.runtime_key = "upstream.slow_start.aggression"
        if settings.warmup.minimum_percent is not None:
            config.min_weight_percent.value = settings.warmup.minimum_percent
    elif settings.warmup_duration_secs:
        config.slow_start_window.CopyFrom(duration(settings.warmup_duration_secs))


def _consistent_hash(cluster: cluster_pb2.Cluster, settings: ConsistentHashLB) -> None:
    if settings.maglev is not None:
        cluster.lb_policy = Cluster.MAGLEV
        if settings.maglev.table_size:
            cluster.maglev_lb_config.table_size.value = settings.maglev.table_size
    elif settings.ring_hash is not None:
        cluster.lb_policy = Cluster.RING_HASH
        if settings.ring_hash.minimum_ring_size:
            size = settings.ring_hash.minimum_ring_size
            cluster.ring_hash_lb_config.minimum_ring_size.value = size
    else:
        cluster.lb_policy = Cluster.RING_HASH
        size = settings.minimum_ring_size or DEFAULT_MINIMUM_RING_SIZE
        cluster.ring_hash_lb_config.minimum_ring_size.value = size


def _tls(
    cluster: cluster_pb2.Cluster,
    options: HttpProtocolOptions,
    settings: ClientTLSSettings | None,
    upstream: Upstream,
) -> None:
    h2 = options.explicit_http_config.HasField("http2_protocol_options")
    if settings is None:
        if upstream.certificates:
            _auto_mtls(cluster, upstream, h2)
        return
    if settings.mode in (None, "DISABLE"):
        return
    if settings.mode == "ISTIO_MUTUAL":
        if not upstream.certificates:
            return
        context = _istio_mutual(settings, upstream, h2)
    elif settings.credential_name:
        # A sidecar does not fetch credentials by name (Istio leaves the cluster without TLS
        # for a rule without a workload selector); gateways need SDS, which is not served yet.
        return
    else:
        context = _from_files(settings, options, h2)
    cluster.transport_socket.CopyFrom(
        base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))
    )


def _auto_mtls(cluster: cluster_pb2.Cluster, upstream: Upstream, h2: bool) -> None:
    """Istio's auto mutual TLS: endpoints marked `tlsMode: istio` (a sidecar that accepts
    mTLS, see `endpoints`) get ISTIO_MUTUAL, every other endpoint plaintext."""
    context = _istio_mutual_context(upstream.mtls_sni, upstream.identities, h2)
    matches = cluster.transport_socket_matches
    istio = matches.add(name="tlsMode-istio")
    istio.match.update({"tlsMode": "istio"})
    istio.transport_socket.CopyFrom(
        base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))
    )
    plaintext = matches.add(name="tlsMode-disabled")
    plaintext.match.SetInParent()
    plaintext.transport_socket.CopyFrom(
        base_pb2.TransportSocket(
            name=RAW_BUFFER_TRANSPORT_SOCKET, typed_config=pack(raw_buffer_pb2.RawBuffer())
        )
    )


def _istio_mutual(
    settings: ClientTLSSettings, upstream: Upstream, h2: bool
) -> tls_pb2.UpstreamTlsContext:
    return _istio_mutual_context(
        settings.sni or upstream.mtls_sni, settings.subject_alt_names or upstream.identities, h2
    )


def _istio_mutual_context(
    sni: str, identities: tuple[str, ...] | list[str], h2: bool
) -> tls_pb2.UpstreamTlsContext:
    """The workload certificate and mesh root from the agent's SDS server (`agent.sds`,
    reached through the bootstrap's `sds-grpc` cluster), as Istio configures them: Istio's
    SNI, in-mesh ALPN, and the server's SPIFFE ID checked against the service's accounts."""
    context = tls_pb2.UpstreamTlsContext(sni=sni)
    common = context.common_tls_context
    common.tls_certificate_sds_secret_configs.append(sds_secret(SDS_WORKLOAD_CERT))
    combined = common.combined_validation_context
    combined.default_validation_context.SetInParent()
    combined.default_validation_context.match_typed_subject_alt_names.extend(
        san_matchers(identities)
    )
    combined.validation_context_sds_secret_config.CopyFrom(sds_secret(SDS_ROOT_CA))
    common.alpn_protocols.extend(ALPN_IN_MESH_H2 if h2 else ALPN_IN_MESH)
    return context


def _from_files(
    settings: ClientTLSSettings, options: HttpProtocolOptions, h2: bool
) -> tls_pb2.UpstreamTlsContext:
    """SIMPLE and MUTUAL with certificate files read by Envoy itself.

    Istio serves the files over SDS (so they can rotate); without an SDS server Envoy reads
    them directly, at cluster creation. Without caCertificates the server is not verified:
    Istio would verify against the system roots, served by its agent over SDS.
    """
    context = tls_pb2.UpstreamTlsContext(sni=settings.sni or "")
    common = context.common_tls_context
    if settings.mode == "MUTUAL":
        common.tls_certificates.append(
            common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(filename=settings.client_certificate or ""),
                private_key=base_pb2.DataSource(filename=settings.private_key or ""),
            )
        )
    verify = bool(settings.ca_certificates) and not settings.insecure_skip_verify
    if verify:
        validation = common.validation_context
        validation.trusted_ca.filename = settings.ca_certificates or ""
        validation.match_typed_subject_alt_names.extend(
            san_matchers(settings.subject_alt_names or ())
        )
        if settings.ca_crl:
            validation.crl.filename = settings.ca_crl
    if h2:
        common.alpn_protocols.extend(ALPN_H2)
    if not settings.sni:
        # HTTP requests then send their Host as SNI, and (when verifying without explicit
        # SANs) check the certificate against it.
        upstream_http = options.upstream_http_protocol_options
        upstream_http.auto_sni = True
        if verify and not settings.subject_alt_names:
            upstream_http.auto_san_validation = True
    return context


def sds_secret(name: str) -> secret_pb2.SdsSecretConfig:
    """A secret from the agent's SDS server (`sds-grpc`): Istio's `default` or `ROOTCA`."""
    return secret_pb2.SdsSecretConfig(name=name, sds_config=_SDS_CONFIG)


def san_matchers(names: tuple[str, ...] | list[str]) -> list[common_pb2.SubjectAltNameMatcher]:
    """Exact SAN matches, typed: SPIFFE IDs and other URIs, IP addresses, else DNS names."""
    matcher = common_pb2.SubjectAltNameMatcher
    return [
        matcher(
            san_type=matcher.URI
            if "://" in name
            else matcher.IP_ADDRESS
            if is_ip(name)
            else matcher.DNS,
            matcher=string_pb2.StringMatcher(exact=name),
        )
        for name in names
    ]


def _uint32(value: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=value)
