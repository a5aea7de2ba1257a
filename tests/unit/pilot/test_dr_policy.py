"""DestinationRule traffic policies on generated clusters: one test per translated feature."""

from __future__ import annotations

from textwrap import dedent, indent

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from pilot.config_files import load_config_directory
from pilot.generators.clusters import HTTP_PROTOCOL_OPTIONS, outbound_clusters
from pilot.model import NodeType, ProxyView
from pilot.push_context import PushContext
from tests.unit.pilot.conftest import WriteConfig

Cluster = cluster_pb2.Cluster
UNLIMITED = 2**32 - 1
VIEW = ProxyView(NodeType.SIDECAR, "default", sds=True)  # a proxy with a workload certificate
HOST = "svc.default.svc.cluster.local"
HTTP = f"outbound|8080||{HOST}"
GRPC = f"outbound|9090||{HOST}"
TCP = f"outbound|5432||{HOST}"

# One STATIC service with an HTTP, a gRPC and a TCP port, and two workloads.
SERVICE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc, namespace: default}
spec:
  hosts: [svc.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 8080, name: http}
  - {number: 9090, name: grpc}
  - {number: 5432, name: tcp}
  workloadSelector: {labels: {app: svc}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: svc-v1, namespace: default}
spec: {address: 10.0.0.1, labels: {app: svc, version: v1}, serviceAccount: svc-a}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: svc-v2, namespace: default}
spec: {address: 10.0.0.2, labels: {app: svc, version: v2}, serviceAccount: svc-b}
"""


def context(write_config: WriteConfig, *documents: str) -> PushContext:
    """The push context of SERVICE plus `documents` (registry and Istio config)."""
    text = "\n---\n".join([SERVICE, *(dedent(d).strip("\n") for d in documents)])
    loaded = load_config_directory(write_config(text))
    return PushContext.build(loaded.registry, "1", loaded.istio)


def rule(spec: str, name: str = "svc", namespace: str = "default") -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec:\n  host: svc\n{indent(dedent(spec).strip(chr(10)), '  ')}\n"
    )


def clusters(write_config: WriteConfig, *documents: str) -> dict[str, cluster_pb2.Cluster]:
    return {c.name: c for c in outbound_clusters(context(write_config, *documents), VIEW)}


def http_options(cluster: cluster_pb2.Cluster) -> http_protocol_options_pb2.HttpProtocolOptions:
    options = http_protocol_options_pb2.HttpProtocolOptions()
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Unpack(options)
    return options


def tls_context(cluster: cluster_pb2.Cluster) -> tls_pb2.UpstreamTlsContext:
    assert cluster.transport_socket.name == "envoy.transport_sockets.tls"
    context = tls_pb2.UpstreamTlsContext()
    cluster.transport_socket.typed_config.Unpack(context)
    return context


def thresholds(cluster: cluster_pb2.Cluster) -> tuple[int, int, int, int]:
    (limits,) = cluster.circuit_breakers.thresholds
    return (
        limits.max_connections.value,
        limits.max_pending_requests.value,
        limits.max_requests.value,
        limits.max_retries.value,
    )


def test_without_a_rule_istio_defaults_apply(write_config: WriteConfig) -> None:
    generated = clusters(write_config)
    for name in (HTTP, GRPC, TCP):
        cluster = generated[name]
        assert cluster.lb_policy == Cluster.LEAST_REQUEST
        assert thresholds(cluster) == (UNLIMITED,) * 4
        assert cluster.circuit_breakers.thresholds[0].track_remaining
        assert not cluster.HasField("outlier_detection")
        assert not cluster.HasField("transport_socket")
        assert not cluster.HasField("metadata")
    assert HTTP_PROTOCOL_OPTIONS not in generated[HTTP].typed_extension_protocol_options
    assert http_options(generated[GRPC]).explicit_http_config.HasField("http2_protocol_options")


@pytest.mark.parametrize(
    ("simple", "expected"),
    [
        ("ROUND_ROBIN", Cluster.ROUND_ROBIN),
        ("RANDOM", Cluster.RANDOM),
        ("LEAST_REQUEST", Cluster.LEAST_REQUEST),
        ("LEAST_CONN", Cluster.LEAST_REQUEST),
        ("UNSPECIFIED", Cluster.LEAST_REQUEST),
    ],
)
def test_simple_load_balancer(write_config: WriteConfig, simple: str, expected: int) -> None:
    generated = clusters(
        write_config, rule(f"trafficPolicy: {{loadBalancer: {{simple: {simple}}}}}")
    )
    assert {generated[name].lb_policy for name in (HTTP, GRPC, TCP)} == {expected}
    assert generated[HTTP].metadata.filter_metadata["istio"]["config"] == (
        "/apis/networking.istio.io/v1/namespaces/default/destination-rule/svc"
    )


def test_passthrough_dials_the_original_destination(write_config: WriteConfig) -> None:
    cluster = clusters(write_config, rule("trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}"))[
        HTTP
    ]
    assert (cluster.type, cluster.lb_policy) == (Cluster.ORIGINAL_DST, Cluster.CLUSTER_PROVIDED)
    assert not cluster.HasField("eds_cluster_config")
    assert not cluster.HasField("load_assignment")


def test_warmup_becomes_slow_start(write_config: WriteConfig) -> None:
    spec = "trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN, warmupDurationSecs: 30s}}"
    cluster = clusters(write_config, rule(spec))[HTTP]
    assert cluster.round_robin_lb_config.slow_start_config.slow_start_window.seconds == 30


def test_warmup_with_aggression_on_least_request(write_config: WriteConfig) -> None:
    generated = clusters(
        write_config,
        rule(
            """
            trafficPolicy:
              loadBalancer: {warmup: {duration: 10s, minimumPercent: 20, aggression: 2}}
            """
        ),
    )
    slow_start = generated[HTTP].least_request_lb_config.slow_start_config
    assert slow_start.slow_start_window.seconds == 10
    assert slow_start.aggression.default_value == 2
    assert slow_start.aggression.runtime_key
    assert slow_start.min_weight_percent.value == 20


@pytest.mark.parametrize(
    ("hash_spec", "policy", "ring", "table"),
    [
        ("{httpHeaderName: x-user}", Cluster.RING_HASH, 1024, None),
        ("{httpCookie: {name: session, ttl: 0s}}", Cluster.RING_HASH, 1024, None),
        ("{useSourceIp: true, minimumRingSize: 2048}", Cluster.RING_HASH, 2048, None),
        (
            "{httpQueryParameterName: u, ringHash: {minimumRingSize: 4096}}",
            Cluster.RING_HASH,
            4096,
            None,
        ),
        ("{httpHeaderName: x-user, maglev: {tableSize: 65537}}", Cluster.MAGLEV, None, 65537),
    ],
)
def test_consistent_hash(
    write_config: WriteConfig, hash_spec: str, policy: int, ring: int | None, table: int | None
) -> None:
    spec = f"trafficPolicy: {{loadBalancer: {{consistentHash: {hash_spec}}}}}"
    cluster = clusters(write_config, rule(spec))[HTTP]
    assert cluster.lb_policy == policy
    if ring is not None:
        assert cluster.ring_hash_lb_config.minimum_ring_size.value == ring
    if table is not None:
        assert cluster.maglev_lb_config.table_size.value == table


def test_connection_pool_limits_and_timeouts(write_config: WriteConfig) -> None:
    spec = """
        trafficPolicy:
          connectionPool:
            tcp:
              maxConnections: 10
              connectTimeout: 250ms
              maxConnectionDuration: 1h
              tcpKeepalive: {probes: 3, time: 7200s, interval: 75s}
            http:
              http1MaxPendingRequests: 1
              http2MaxRequests: 20
              maxRequestsPerConnection: 1
              maxRetries: 2
              idleTimeout: 90s
        """
    cluster = clusters(write_config, rule(spec))[HTTP]
    assert thresholds(cluster) == (10, 1, 20, 2)
    assert (cluster.connect_timeout.seconds, cluster.connect_timeout.nanos) == (0, 250_000_000)
    keepalive = cluster.upstream_connection_options.tcp_keepalive
    assert (keepalive.keepalive_probes.value, keepalive.keepalive_time.value) == (3, 7200)
    assert keepalive.keepalive_interval.value == 75
    options = http_options(cluster)
    common = options.common_http_protocol_options
    assert common.max_requests_per_connection.value == 1
    assert common.idle_timeout.seconds == 90
    assert common.max_connection_duration.seconds == 3600
    # An HTTP/1.1 port keeps HTTP/1.1, said explicitly since the options must name a protocol.
    assert options.explicit_http_config.HasField("http_protocol_options")


def test_tcp_idle_timeout_is_the_fallback(write_config: WriteConfig) -> None:
    spec = "trafficPolicy: {connectionPool: {tcp: {idleTimeout: 5m}}}"
    common = http_options(clusters(write_config, rule(spec))[HTTP]).common_http_protocol_options
    assert common.idle_timeout.seconds == 300


def test_h2_upgrade_and_client_protocol(write_config: WriteConfig) -> None:
    upgraded = clusters(
        write_config, rule("trafficPolicy: {connectionPool: {http: {h2UpgradePolicy: UPGRADE}}}")
    )[HTTP]
    assert http_options(upgraded).explicit_http_config.HasField("http2_protocol_options")
    kept = clusters(
        write_config,
        rule("trafficPolicy: {connectionPool: {http: {h2UpgradePolicy: DO_NOT_UPGRADE}}}"),
    )
    assert HTTP_PROTOCOL_OPTIONS not in kept[HTTP].typed_extension_protocol_options
    # DO_NOT_UPGRADE never downgrades a port that speaks HTTP/2 already.
    assert http_options(kept[GRPC]).explicit_http_config.HasField("http2_protocol_options")
    client = clusters(
        write_config, rule("trafficPolicy: {connectionPool: {http: {useClientProtocol: true}}}")
    )[GRPC]
    downstream = http_options(client).use_downstream_protocol_config
    assert downstream.HasField("http_protocol_options")
    assert downstream.HasField("http2_protocol_options")


def test_http2_stream_settings(write_config: WriteConfig) -> None:
    spec = """
        trafficPolicy:
          connectionPool:
            http: {maxConcurrentStreams: 50, http2KeepAlive: {interval: 30s, timeout: 5s}}
        """
    h2 = http_options(clusters(write_config, rule(spec))[GRPC]).explicit_http_config
    assert h2.http2_protocol_options.max_concurrent_streams.value == 50
    keepalive = h2.http2_protocol_options.connection_keepalive
    assert (keepalive.interval.seconds, keepalive.timeout.seconds) == (30, 5)


def test_outlier_detection(write_config: WriteConfig) -> None:
    spec = """
        trafficPolicy:
          outlierDetection:
            consecutive5xxErrors: 3
            consecutiveGatewayErrors: 2
            interval: 1s
            baseEjectionTime: 30s
            maxEjectionPercent: 50
            minHealthPercent: 25
        """
    cluster = clusters(write_config, rule(spec))[HTTP]
    out = cluster.outlier_detection
    assert (out.consecutive_5xx.value, out.enforcing_consecutive_5xx.value) == (3, 100)
    assert out.consecutive_gateway_failure.value == 2
    assert out.enforcing_consecutive_gateway_failure.value == 100
    assert out.HasField("enforcing_success_rate") and out.enforcing_success_rate.value == 0
    assert (out.interval.seconds, out.base_ejection_time.seconds) == (1, 30)
    assert out.max_ejection_percent.value == 50
    assert cluster.common_lb_config.healthy_panic_threshold.value == 25


def test_outlier_detection_defaults_and_the_deprecated_field(write_config: WriteConfig) -> None:
    cluster = clusters(
        write_config, rule("trafficPolicy: {outlierDetection: {consecutiveErrors: 4}}")
    )[HTTP]
    out = cluster.outlier_detection
    assert out.consecutive_gateway_failure.value == 4
    assert out.enforcing_consecutive_gateway_failure.value == 100
    assert out.HasField("enforcing_consecutive_5xx") and out.enforcing_consecutive_5xx.value == 0
    assert not out.HasField("max_ejection_percent")
    # Panic routing off: present and 0.
    assert cluster.common_lb_config.HasField("healthy_panic_threshold")
    assert cluster.common_lb_config.healthy_panic_threshold.value == 0


def test_tls_disable_adds_nothing(write_config: WriteConfig) -> None:
    cluster = clusters(write_config, rule("trafficPolicy: {tls: {mode: DISABLE}}"))[HTTP]
    assert not cluster.HasField("transport_socket")


def test_tls_simple_with_files(write_config: WriteConfig) -> None:
    spec = """
        trafficPolicy:
          tls:
            mode: SIMPLE
            caCertificates: /etc/certs/ca.pem
            subjectAltNames: [svc.example.com, "spiffe://cluster.local/ns/default/sa/svc"]
            sni: svc.example.com
            caCrl: /etc/certs/crl.pem
        """
    generated = clusters(write_config, rule(spec))
    context = tls_context(generated[HTTP])
    assert context.sni == "svc.example.com"
    validation = context.common_tls_context.validation_context
    assert validation.trusted_ca.filename == "/etc/certs/ca.pem"
    assert validation.crl.filename == "/etc/certs/crl.pem"
    matcher = common_pb2.SubjectAltNameMatcher
    assert [(m.san_type, m.matcher.exact) for m in validation.match_typed_subject_alt_names] == [
        (matcher.DNS, "svc.example.com"),
        (matcher.URI, "spiffe://cluster.local/ns/default/sa/svc"),
    ]
    assert not context.common_tls_context.tls_certificates
    assert list(tls_context(generated[GRPC]).common_tls_context.alpn_protocols) == ["h2"]
    assert not http_options(generated[HTTP]).upstream_http_protocol_options.auto_sni


def test_tls_mutual_with_files_and_auto_sni(write_config: WriteConfig) -> None:
    spec = """
        trafficPolicy:
          tls:
            mode: MUTUAL
            clientCertificate: /etc/certs/cert.pem
            privateKey: /etc/certs/key.pem
            caCertificates: /etc/certs/ca.pem
        """
    cluster = clusters(write_config, rule(spec))[HTTP]
    context = tls_context(cluster)
    (certificate,) = context.common_tls_context.tls_certificates
    assert certificate.certificate_chain.filename == "/etc/certs/cert.pem"
    assert certificate.private_key.filename == "/etc/certs/key.pem"
    assert context.sni == ""
    upstream = http_options(cluster).upstream_http_protocol_options
    assert upstream.auto_sni and upstream.auto_san_validation


def test_tls_without_ca_or_verification_has_no_validation(write_config: WriteConfig) -> None:
    for spec in (
        "trafficPolicy: {tls: {mode: SIMPLE}}",
        "trafficPolicy: {tls: {mode: SIMPLE, insecureSkipVerify: true}}",
    ):
        cluster = clusters(write_config, rule(spec))[HTTP]
        assert not tls_context(cluster).common_tls_context.HasField("validation_context")
        assert not http_options(cluster).upstream_http_protocol_options.auto_san_validation


def test_tls_credential_name_is_not_used_by_sidecars(write_config: WriteConfig) -> None:
    spec = "trafficPolicy: {tls: {mode: SIMPLE, credentialName: svc-secret}}"
    assert not clusters(write_config, rule(spec))[HTTP].HasField("transport_socket")


def test_istio_mutual_uses_sds_secrets_and_mesh_alpn(write_config: WriteConfig) -> None:
    generated = clusters(
        write_config,
        rule(
            """
            trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
            subsets: [{name: v1, labels: {version: v1}}]
            """
        ),
    )
    context = tls_context(generated[HTTP])
    common = context.common_tls_context
    assert context.sni == f"outbound_.8080_._.{HOST}"
    (certificate,) = common.tls_certificate_sds_secret_configs
    assert certificate.name == "default"
    grpc = certificate.sds_config.api_config_source.grpc_services[0]
    assert grpc.envoy_grpc.cluster_name == "sds-grpc"
    combined = common.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == "ROOTCA"
    assert [
        m.matcher.exact for m in combined.default_validation_context.match_typed_subject_alt_names
    ] == [
        "spiffe://cluster.local/ns/default/sa/svc-a",
        "spiffe://cluster.local/ns/default/sa/svc-b",
    ]
    assert list(common.alpn_protocols) == ["istio-peer-exchange", "istio"]
    h2 = tls_context(generated[GRPC]).common_tls_context
    assert list(h2.alpn_protocols) == ["istio-peer-exchange", "istio", "h2"]
    assert tls_context(generated[f"outbound|8080|v1|{HOST}"]).sni == f"outbound_.8080_.v1_.{HOST}"


def test_port_level_settings_replace_the_whole_policy(write_config: WriteConfig) -> None:
    spec = """
        trafficPolicy:
          loadBalancer: {simple: RANDOM}
          connectionPool: {tcp: {maxConnections: 5}}
          portLevelSettings:
          - port: {number: 5432}
            loadBalancer: {simple: ROUND_ROBIN}
        """
    generated = clusters(write_config, rule(spec))
    assert generated[HTTP].lb_policy == Cluster.RANDOM
    assert thresholds(generated[HTTP])[0] == 5
    assert generated[TCP].lb_policy == Cluster.ROUND_ROBIN
    # Not inherited from the top level: back to the default.
    assert thresholds(generated[TCP])[0] == UNLIMITED


def test_subset_policy_overrides_field_by_field(write_config: WriteConfig) -> None:
    spec = """
        trafficPolicy:
          loadBalancer: {simple: RANDOM}
          connectionPool: {tcp: {maxConnections: 5}}
          portLevelSettings:
          - port: {number: 5432}
            outlierDetection: {consecutive5xxErrors: 7}
        subsets:
        - name: v1
          labels: {version: v1}
          trafficPolicy:
            loadBalancer: {simple: ROUND_ROBIN}
            portLevelSettings:
            - port: {number: 9090}
              connectionPool: {http: {http2MaxRequests: 9}}
        - name: v2
          labels: {version: v2}
        """
    generated = clusters(write_config, rule(spec))
    v1_http = generated[f"outbound|8080|v1|{HOST}"]
    assert v1_http.lb_policy == Cluster.ROUND_ROBIN  # the subset's
    assert thresholds(v1_http)[0] == 5  # the rule's, inherited
    v1_grpc = generated[f"outbound|9090|v1|{HOST}"]
    # The subset's port-level entry replaces everything else.
    assert v1_grpc.lb_policy == Cluster.LEAST_REQUEST
    assert thresholds(v1_grpc) == (UNLIMITED, UNLIMITED, 9, UNLIMITED)
    v1_tcp = generated[f"outbound|5432|v1|{HOST}"]
    # The rule's port-level entry for 5432 (outlier only), then the subset's load balancer.
    assert v1_tcp.lb_policy == Cluster.ROUND_ROBIN
    assert v1_tcp.outlier_detection.consecutive_5xx.value == 7
    assert thresholds(v1_tcp)[0] == UNLIMITED
    v2_http = generated[f"outbound|8080|v2|{HOST}"]
    assert v2_http.lb_policy == Cluster.RANDOM
    assert v2_http.metadata.filter_metadata["istio"]["subset"] == "v2"


def test_the_rule_of_the_proxy_namespace_wins(write_config: WriteConfig) -> None:
    ctx = context(
        write_config,
        rule("trafficPolicy: {loadBalancer: {simple: RANDOM}}"),
        rule(
            "trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}", name="mine", namespace="shop"
        ).replace("host: svc", f"host: {HOST}"),
    )
    mine = {c.name: c for c in outbound_clusters(ctx, ProxyView(NodeType.SIDECAR, "shop"))}
    theirs = {c.name: c for c in outbound_clusters(ctx, VIEW)}
    assert mine[HTTP].lb_policy == Cluster.ROUND_ROBIN
    assert theirs[HTTP].lb_policy == Cluster.RANDOM


def test_equal_rules_give_equal_bytes(write_config: WriteConfig) -> None:
    spec = """
        trafficPolicy:
          tls: {mode: ISTIO_MUTUAL}
          outlierDetection: {consecutive5xxErrors: 1}
        subsets: [{name: b, labels: {version: v2}}, {name: a, labels: {version: v1}}]
        """
    first = outbound_clusters(context(write_config, rule(spec)), VIEW)
    second = outbound_clusters(context(write_config, rule(spec)), VIEW)
    assert [c.SerializeToString(deterministic=True) for c in first] == [
        c.SerializeToString(deterministic=True) for c in second
    ]
    assert [c.name for c in first] == sorted(c.name for c in first)
