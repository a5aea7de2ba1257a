"""Inbound mutual TLS: the filter chains a workload port gets for its PeerAuthentication mode.

As in Istio, one port becomes up to three filter chains told apart by what the TLS inspector
sees in the connection's first bytes:

- STRICT: only a chain matching TLS, which terminates the mesh's mutual TLS (the workload
  certificate and mesh root from the agent's SDS, a client certificate of the trust domain
  required). A plaintext connection matches no chain and is closed.
- PERMISSIVE: that chain restricted to mesh ALPN values (what Istio clients offer), a
  plaintext chain (`raw_buffer`), and on TCP ports a chain passing other TLS (the
  application's own) through untouched.
- DISABLE: one plaintext chain, as for a proxy that has no workload certificate.

Every chain carries the same network filters; the inbound HTTP connection manager adds the
peer's identity to `x-forwarded-client-cert` (`filters`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Final

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2

from pilot.generators.proto import pack
from pilot.generators.traffic_policy import (
    ALPN_IN_MESH,
    SDS_ROOT_CA,
    SDS_WORKLOAD_CERT,
    TLS_TRANSPORT_SOCKET,
    TRUST_DOMAIN,
    sds_secret,
)
from pilot.security_policies import MtlsMode

FilterChain = listener_components_pb2.FilterChain
FilterChainMatch = listener_components_pb2.FilterChainMatch

TLS: Final = "tls"
RAW_BUFFER: Final = "raw_buffer"
# What Istio's clients offer in ALPN (with or without Istio's ALPN override filter).
MESH_ALPNS: Final = ("istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2")
ALPN_HTTP: Final = ("h2", "http/1.1")


def inbound_chains(
    mode: MtlsMode,
    filters: Sequence[listener_components_pb2.Filter],
    *,
    http: bool,
    name: str = "",
    port: int | None = None,
) -> list[listener_components_pb2.FilterChain]:
    """The chains for one inbound port; `port` adds a destination port match (the chains of
    `virtualInbound`), `name` names them (suffixed `-mtls`, `-plaintext`, `-passthrough`
    unless the port is plaintext only)."""

    def chain(suffix: str, **match: object) -> listener_components_pb2.FilterChain:
        built = FilterChain(name=f"{name}-{suffix}" if name and suffix else name, filters=filters)
        if port is not None:
            built.filter_chain_match.destination_port.value = port
        for key, value in match.items():
            if isinstance(value, str):
                setattr(built.filter_chain_match, key, value)
            else:
                getattr(built.filter_chain_match, key).extend(value)
        return built

    if mode is MtlsMode.DISABLE:
        return [chain("")]
    mtls = chain("mtls", transport_protocol=TLS)
    mtls.transport_socket.CopyFrom(_mesh_transport_socket(http))
    if mode is MtlsMode.STRICT:
        return [mtls]
    mtls.filter_chain_match.application_protocols.extend(MESH_ALPNS)
    chains = [mtls, chain("plaintext", transport_protocol=RAW_BUFFER)]
    if not http:
        chains.append(chain("passthrough", transport_protocol=TLS))
    return chains


def needs_tls_inspector(chains: Sequence[listener_components_pb2.FilterChain]) -> bool:
    return any(chain.filter_chain_match.transport_protocol for chain in chains)


@cache
def _mesh_transport_socket(http: bool) -> base_pb2.TransportSocket:
    """`mesh_tls` as a transport socket, built once for HTTP and once for TCP ports: every
    mutual TLS chain of every proxy has one of the two. Shared, so callers copy it (CopyFrom)."""
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(mesh_tls(http)))


def mesh_tls(http: bool) -> tls_pb2.DownstreamTlsContext:
    """The server side of Istio mutual TLS: a client certificate of the trust domain required,
    verified against the mesh root."""
    context = tls_pb2.DownstreamTlsContext()
    context.require_client_certificate.value = True
    common = context.common_tls_context
    common.tls_certificate_sds_secret_configs.append(sds_secret(SDS_WORKLOAD_CERT))
    combined = common.combined_validation_context
    combined.default_validation_context.match_typed_subject_alt_names.append(
        common_pb2.SubjectAltNameMatcher(
            san_type=common_pb2.SubjectAltNameMatcher.URI,
            matcher=string_pb2.StringMatcher(prefix=f"spiffe://{TRUST_DOMAIN}/"),
        )
    )
    combined.validation_context_sds_secret_config.CopyFrom(sds_secret(SDS_ROOT_CA))
    common.alpn_protocols.extend(ALPN_HTTP if http else ALPN_IN_MESH)
    return context
