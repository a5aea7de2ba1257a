"""Measure the cost of building and serializing an Envoy Cluster with each candidate library.

Why: pilot builds and encodes thousands of Envoy resources per push, so the library that provides
Envoy's API types sits on the hot path. This reproduces the measurement behind
docs/decisions/0001-envoy-api-types.md: the same Istio-style outbound EDS cluster built with
xds-protos (standard protobuf runtime, upb) and with envoy-data-plane (betterproto2 pydantic
dataclasses, installed through the `bench` extra only). It also checks that both encodings parse
to the same Cluster, so the two sides are doing the same work.

Run: `python -m benchmarks.envoy_types [--iterations N]`.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import (
    base_pb2,
    config_source_pb2,
    grpc_service_pb2,
    protocol_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import any_pb2, duration_pb2, json_format, wrappers_pb2
from google.protobuf.message import Message
from pydantic.warnings import PydanticDeprecationWarning

# envoy-data-plane's generated models trip pydantic deprecation warnings as they are defined. They
# concern that library, not this benchmark, and would otherwise bury the test output.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", PydanticDeprecationWarning)
    from envoy_data_plane.envoy.config.cluster import v3 as dp_cluster
    from envoy_data_plane.envoy.config.core import v3 as dp_core
    from envoy_data_plane.envoy.extensions.transport_sockets.tls import v3 as dp_tls
    from envoy_data_plane.envoy.extensions.upstreams.http import v3 as dp_http
    from envoy_data_plane.envoy.type.matcher import v3 as dp_matcher
    from envoy_data_plane.google import protobuf as dp_protobuf

CLUSTER_NAME = "outbound|9080||reviews.default.svc.cluster.local"
SNI = "outbound_.9080_._.reviews.default.svc.cluster.local"
PEER_IDENTITY = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
SDS_CLUSTER = "sds-grpc"
HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
ALPN = ("istio-peer-exchange", "istio")
CONNECT_TIMEOUT_S = 10
# Istio lifts Envoy's default circuit-breaker limits to the maximum unless a DestinationRule
# sets them.
UNLIMITED = 2**32 - 1

DEFAULT_ITERATIONS = 2000
# envoy-data-plane is tens to hundreds of times slower; run it this many times fewer so a
# default run stays short.
SLOW_SIDE_DIVISOR = 10


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _sds_with_xds_protos(secret_name: str) -> secret_pb2.SdsSecretConfig:
    return secret_pb2.SdsSecretConfig(
        name=secret_name,
        sds_config=config_source_pb2.ConfigSource(
            api_config_source=config_source_pb2.ApiConfigSource(
                api_type=config_source_pb2.ApiConfigSource.GRPC,
                transport_api_version=config_source_pb2.V3,
                set_node_on_first_message_only=True,
                grpc_services=[
                    grpc_service_pb2.GrpcService(
                        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=SDS_CLUSTER)
                    )
                ],
            ),
            resource_api_version=config_source_pb2.V3,
        ),
    )


def build_with_xds_protos() -> bytes:
    """Build the cluster with xds-protos and return its wire encoding."""
    http_options = http_protocol_options_pb2.HttpProtocolOptions(
        explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
        )
    )
    tls = tls_pb2.UpstreamTlsContext(
        sni=SNI,
        common_tls_context=tls_pb2.CommonTlsContext(
            alpn_protocols=ALPN,
            tls_certificate_sds_secret_configs=[_sds_with_xds_protos("default")],
            combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
                default_validation_context=common_pb2.CertificateValidationContext(
                    match_typed_subject_alt_names=[
                        common_pb2.SubjectAltNameMatcher(
                            san_type=common_pb2.SubjectAltNameMatcher.URI,
                            matcher=string_pb2.StringMatcher(exact=PEER_IDENTITY),
                        )
                    ]
                ),
                validation_context_sds_secret_config=_sds_with_xds_protos("ROOTCA"),
            ),
        ),
    )
    unlimited = wrappers_pb2.UInt32Value(value=UNLIMITED)
    cluster = cluster_pb2.Cluster(
        name=CLUSTER_NAME,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            service_name=CLUSTER_NAME,
            eds_config=config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource(),
                initial_fetch_timeout=duration_pb2.Duration(),
                resource_api_version=config_source_pb2.V3,
            ),
        ),
        connect_timeout=duration_pb2.Duration(seconds=CONNECT_TIMEOUT_S),
        circuit_breakers=circuit_breaker_pb2.CircuitBreakers(
            thresholds=[
                circuit_breaker_pb2.CircuitBreakers.Thresholds(
                    max_connections=unlimited,
                    max_pending_requests=unlimited,
                    max_requests=unlimited,
                    max_retries=unlimited,
                    track_remaining=True,
                )
            ]
        ),
        typed_extension_protocol_options={HTTP_OPTIONS_KEY: _pack(http_options)},
        transport_socket=base_pb2.TransportSocket(
            name="envoy.transport_sockets.tls", typed_config=_pack(tls)
        ),
    )
    encoded: bytes = cluster.SerializeToString()
    return encoded


def _sds_with_data_plane(secret_name: str) -> dp_tls.SdsSecretConfig:
    return dp_tls.SdsSecretConfig(
        name=secret_name,
        sds_config=dp_core.ConfigSource(
            api_config_source=dp_core.ApiConfigSource(
                api_type=dp_core.ApiConfigSourceApiType.GRPC,
                transport_api_version=dp_core.ApiVersion.V3,
                set_node_on_first_message_only=True,
                grpc_services=[
                    dp_core.GrpcService(
                        envoy_grpc=dp_core.GrpcServiceEnvoyGrpc(cluster_name=SDS_CLUSTER)
                    )
                ],
            ),
            resource_api_version=dp_core.ApiVersion.V3,
        ),
    )


def build_with_envoy_data_plane() -> bytes:
    """Build the same cluster with envoy-data-plane and return its wire encoding."""
    http_options = dp_http.HttpProtocolOptions(
        explicit_http_config=dp_http.HttpProtocolOptionsExplicitHttpConfig(
            http2_protocol_options=dp_core.Http2ProtocolOptions()
        )
    )
    tls = dp_tls.UpstreamTlsContext(
        sni=SNI,
        common_tls_context=dp_tls.CommonTlsContext(
            alpn_protocols=list(ALPN),
            tls_certificate_sds_secret_configs=[_sds_with_data_plane("default")],
            combined_validation_context=dp_tls.CommonTlsContextCombinedCertificateValidationContext(
                default_validation_context=dp_tls.CertificateValidationContext(
                    match_typed_subject_alt_names=[
                        dp_tls.SubjectAltNameMatcher(
                            san_type=dp_tls.SubjectAltNameMatcherSanType.URI,
                            matcher=dp_matcher.StringMatcher(exact=PEER_IDENTITY),
                        )
                    ]
                ),
                validation_context_sds_secret_config=_sds_with_data_plane("ROOTCA"),
            ),
        ),
    )
    cluster = dp_cluster.Cluster(
        name=CLUSTER_NAME,
        type=dp_cluster.ClusterDiscoveryType.EDS,
        eds_cluster_config=dp_cluster.ClusterEdsClusterConfig(
            service_name=CLUSTER_NAME,
            eds_config=dp_core.ConfigSource(
                ads=dp_core.AggregatedConfigSource(),
                initial_fetch_timeout=datetime.timedelta(0),
                resource_api_version=dp_core.ApiVersion.V3,
            ),
        ),
        connect_timeout=datetime.timedelta(seconds=CONNECT_TIMEOUT_S),
        circuit_breakers=dp_cluster.CircuitBreakers(
            thresholds=[
                dp_cluster.CircuitBreakersThresholds(
                    max_connections=UNLIMITED,
                    max_pending_requests=UNLIMITED,
                    max_requests=UNLIMITED,
                    max_retries=UNLIMITED,
                    track_remaining=True,
                )
            ]
        ),
        typed_extension_protocol_options={HTTP_OPTIONS_KEY: dp_protobuf.Any.pack(http_options)},
        transport_socket=dp_core.TransportSocket(
            name="envoy.transport_sockets.tls", typed_config=dp_protobuf.Any.pack(tls)
        ),
    )
    return bytes(cluster)


@dataclass(frozen=True)
class Measurement:
    """How long one library took per build+serialize, and what it produced."""

    library: str
    iterations: int
    micros_per_cluster: float
    encoded: bytes


def measure(library: str, build: Callable[[], bytes], iterations: int) -> Measurement:
    """Time `iterations` calls of `build`, after one untimed call that warms caches."""
    encoded = build()
    start = time.perf_counter_ns()
    for _ in range(iterations):
        build()
    elapsed_ns = time.perf_counter_ns() - start
    return Measurement(library, iterations, elapsed_ns / iterations / 1000, encoded)


def run(protobuf_iterations: int, data_plane_iterations: int) -> tuple[Measurement, Measurement]:
    """Measure both libraries: (xds-protos, envoy-data-plane)."""
    return (
        measure("xds-protos", build_with_xds_protos, protobuf_iterations),
        measure("envoy-data-plane", build_with_envoy_data_plane, data_plane_iterations),
    )


def cluster_contents(encoded: bytes) -> dict[str, object]:
    """Decode a Cluster with xds-protos and return its contents with every Any unpacked.

    Comparing parsed Clusters directly is not enough: an Any holds its message as bytes, and
    betterproto2 writes fields in declaration order where protobuf writes them by field number.
    Both orders are valid wire format, so the packed bytes differ while the messages are equal.
    The proto3 JSON mapping unpacks each Any, which makes the comparison about content.
    """
    contents: dict[str, object] = json_format.MessageToDict(cluster_pb2.Cluster.FromString(encoded))
    return contents


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Envoy Cluster build+serialize benchmark")
    parser.add_argument(
        "--iterations",
        type=int,
        default=DEFAULT_ITERATIONS,
        help=f"clusters built with xds-protos; envoy-data-plane builds 1/{SLOW_SIDE_DIVISOR} "
        f"of that (default {DEFAULT_ITERATIONS})",
    )
    options = parser.parse_args(argv)
    if options.iterations < 1:
        parser.error("--iterations must be at least 1")
    fast, slow = run(options.iterations, max(1, options.iterations // SLOW_SIDE_DIVISOR))

    print(f"{'library':<18} {'iterations':>10} {'µs/cluster':>12}")
    for result in (fast, slow):
        print(f"{result.library:<18} {result.iterations:>10} {result.micros_per_cluster:>12.1f}")
    ratio = slow.micros_per_cluster / fast.micros_per_cluster
    print(f"ratio (envoy-data-plane / xds-protos): {ratio:.0f}x")

    same = cluster_contents(fast.encoded) == cluster_contents(slow.encoded)
    print(f"both encodings parse to the same Cluster: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
