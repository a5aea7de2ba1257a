"""PeerAuthentication and auto mutual TLS: which mode applies, and what Envoy gets for it."""

from __future__ import annotations

from textwrap import dedent

import pytest
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from meshconfig import load_documents, validate_document
from pilot.config_files import load_config_directory
from pilot.generators.clusters import outbound_clusters
from pilot.generators.endpoints import load_assignments
from pilot.generators.listeners import proxy_listeners
from pilot.istio_config import IstioConfig
from pilot.model import InterceptionMode, NodeType, Proxy, ProxyView
from pilot.push_context import PushContext
from pilot.security_policies import MtlsMode, SecurityPolicies
from tests.unit.pilot.conftest import WriteConfig

HOST = "svc.default.svc.cluster.local"
CLUSTER = f"outbound|8080||{HOST}"
REGISTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc, namespace: default}
spec:
  hosts: [svc.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http}, {number: 5432, name: tcp}]
  workloadSelector: {labels: {app: svc}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: with-sidecar, namespace: default}
spec:
  address: 10.0.0.1
  labels: {app: svc, security.istio.io/tlsMode: istio}
  serviceAccount: svc
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: without, namespace: default}
spec: {address: 10.0.0.2, labels: {app: svc}}  # no identity: Istio assumes no sidecar
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm, namespace: default}
spec: {address: 10.0.0.3, labels: {app: svc}, serviceAccount: svc}  # istio by default
"""


def peer(mode: str | None, namespace: str = "default", name: str = "p", extra: str = "") -> str:
    mtls = f"\n  mtls: {{mode: {mode}}}" if mode else ""
    return (
        f"apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:{mtls}{extra or ''}"
        + ("" if mode or extra else " {}")
    )


def policies(*documents: str) -> SecurityPolicies:
    resources = [
        validate_document(document, "test")
        for text in documents
        for document in load_documents(dedent(text), "test")
    ]
    return IstioConfig.from_resources(resources).security


def context(write_config: WriteConfig, *documents: str) -> PushContext:
    loaded = load_config_directory(write_config("\n---\n".join([REGISTRY, *documents])))
    return PushContext.build(loaded.registry, "1", loaded.istio)


def proxy(sds: bool = True, labels: dict[str, str] | None = None) -> Proxy:
    return Proxy(
        id="sidecar~10.0.0.1~with-sidecar.default~default.svc.cluster.local",
        type=NodeType.SIDECAR,
        ip="10.0.0.1",
        pod_name="with-sidecar",
        namespace="default",
        dns_domain="default.svc.cluster.local",
        labels=labels or {"app": "svc", "security.istio.io/tlsMode": "istio"},
        interception_mode=InterceptionMode.NONE,
        sds=sds,
    )


# --- which mode applies --------------------------------------------------------------------


def test_permissive_without_any_policy() -> None:
    assert policies().peer_mtls("default", {}).for_port(8080) is MtlsMode.PERMISSIVE


def test_mesh_namespace_and_workload_levels_in_order_of_specificity() -> None:
    selector = "\n  selector: {matchLabels: {app: svc}}"
    found = policies(
        peer("STRICT", namespace="istio-system"),
        peer("DISABLE", namespace="shop"),
        peer("PERMISSIVE", name="w", extra=selector),
    )
    assert found.peer_mtls("default", {}).mode is MtlsMode.STRICT  # the mesh's
    assert found.peer_mtls("shop", {"app": "svc"}).mode is MtlsMode.DISABLE  # the namespace's
    assert found.peer_mtls("default", {"app": "svc"}).mode is MtlsMode.PERMISSIVE  # workload


def test_unset_inherits_and_port_level_overrides() -> None:
    workload = (
        "\n  selector: {matchLabels: {app: svc}}\n  mtls: {mode: UNSET}"
        "\n  portLevelMtls: {8080: {mode: DISABLE}, 9090: {mode: UNSET}}"
    )
    found = policies(peer("STRICT"), peer(None, name="w", extra=workload))
    mtls = found.peer_mtls("default", {"app": "svc"})
    assert mtls.mode is MtlsMode.STRICT
    assert mtls.for_port(8080) is MtlsMode.DISABLE
    assert mtls.for_port(9090) is MtlsMode.STRICT


def test_a_selector_that_does_not_match_and_another_namespace_do_not_apply() -> None:
    other = "\n  selector: {matchLabels: {app: other}}"
    found = policies(peer("STRICT", name="w", extra=other), peer("DISABLE", namespace="shop"))
    assert found.peer_mtls("default", {"app": "svc"}).mode is MtlsMode.PERMISSIVE


# --- auto mutual TLS on the client side ----------------------------------------------------


def test_auto_mtls_marks_sidecar_endpoints_and_matches_them(write_config: WriteConfig) -> None:
    ctx = context(write_config)
    view = ProxyView(NodeType.SIDECAR, "default", sds=True)
    cluster = {c.name: c for c in outbound_clusters(ctx, view)}[CLUSTER]
    assert [m.name for m in cluster.transport_socket_matches] == [
        "tlsMode-istio",
        "tlsMode-disabled",
    ]
    istio = cluster.transport_socket_matches[0]
    assert dict(istio.match) == {"tlsMode": "istio"}
    context_ = tls_pb2.UpstreamTlsContext()
    istio.transport_socket.typed_config.Unpack(context_)
    assert context_.sni == f"outbound_.8080_._.{HOST}"
    sans = context_.common_tls_context.combined_validation_context.default_validation_context
    assert [m.matcher.exact for m in sans.match_typed_subject_alt_names] == [
        "spiffe://cluster.local/ns/default/sa/svc"
    ]
    assignment = {a.cluster_name: a for a in load_assignments(ctx, view)}[CLUSTER]
    marked = {
        lb.endpoint.address.socket_address.address: dict(
            lb.metadata.filter_metadata["envoy.transport_socket_match"]
        )
        for lb in assignment.endpoints[0].lb_endpoints
    }
    assert marked == {
        "10.0.0.1": {"tlsMode": "istio"},
        "10.0.0.2": {},
        "10.0.0.3": {"tlsMode": "istio"},
    }


def test_no_mtls_for_a_client_without_a_certificate(write_config: WriteConfig) -> None:
    ctx = context(
        write_config,
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: svc, namespace: default}\n"
        "spec: {host: svc, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}",
    )
    view = ProxyView(NodeType.SIDECAR, "default", sds=False)
    cluster = {c.name: c for c in outbound_clusters(ctx, view)}[CLUSTER]
    assert not cluster.transport_socket_matches
    assert not cluster.HasField("transport_socket")


def test_workload_disabling_mtls_is_not_marked(write_config: WriteConfig) -> None:
    ctx = context(write_config, peer("DISABLE"))
    view = ProxyView(NodeType.SIDECAR, "default", sds=True)
    assignment: endpoint_pb2.ClusterLoadAssignment = {
        a.cluster_name: a for a in load_assignments(ctx, view)
    }[CLUSTER]
    assert not any(lb.HasField("metadata") for lb in assignment.endpoints[0].lb_endpoints)


# --- the server side: inbound filter chains ------------------------------------------------


def inbound_listener(ctx: PushContext, port: int, sds: bool = True) -> listener_pb2.Listener:
    found = {listener.name: listener for listener in proxy_listeners(ctx, proxy(sds))}
    return found[f"10.0.0.1_{port}"]


def chain_shapes(listener: listener_pb2.Listener) -> list[tuple[str, tuple[str, ...], bool]]:
    return [
        (
            chain.filter_chain_match.transport_protocol,
            tuple(chain.filter_chain_match.application_protocols)[:1],
            chain.HasField("transport_socket"),
        )
        for chain in listener.filter_chains
    ]


@pytest.mark.parametrize(
    ("mode", "http", "tcp"),
    [
        (
            "PERMISSIVE",
            [("tls", ("istio",), True), ("raw_buffer", (), False)],
            [("tls", ("istio",), True), ("raw_buffer", (), False), ("tls", (), False)],
        ),
        ("STRICT", [("tls", (), True)], [("tls", (), True)]),
        ("DISABLE", [("", (), False)], [("", (), False)]),
    ],
)
def test_inbound_chains_follow_the_mode(
    write_config: WriteConfig, mode: str, http: list[object], tcp: list[object]
) -> None:
    ctx = context(write_config, peer(mode))
    http_listener = inbound_listener(ctx, 8080)
    assert chain_shapes(http_listener) == http
    assert chain_shapes(inbound_listener(ctx, 5432)) == tcp
    inspectors = [f.name for f in http_listener.listener_filters]
    assert inspectors == ([] if mode == "DISABLE" else ["envoy.filters.listener.tls_inspector"])


def test_strict_requires_a_mesh_client_certificate(write_config: WriteConfig) -> None:
    chain = inbound_listener(context(write_config, peer("STRICT")), 8080).filter_chains[0]
    server = tls_pb2.DownstreamTlsContext()
    chain.transport_socket.typed_config.Unpack(server)
    assert server.require_client_certificate.value
    common = server.common_tls_context
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == ["default"]
    assert common.combined_validation_context.validation_context_sds_secret_config.name == "ROOTCA"
    assert list(common.alpn_protocols) == ["h2", "http/1.1"]


def test_changing_one_proxys_tls_context_leaves_the_next_ones(write_config: WriteConfig) -> None:
    """The mutual TLS transport socket is built once and shared: listeners get copies."""
    ctx = context(write_config, peer("STRICT"))
    first = inbound_listener(ctx, 8080).filter_chains[0]
    first.transport_socket.name = "changed"
    first.transport_socket.typed_config.Clear()
    second = inbound_listener(ctx, 8080).filter_chains[0]
    server = tls_pb2.DownstreamTlsContext()
    assert second.transport_socket.name == "envoy.transport_sockets.tls"
    assert second.transport_socket.typed_config.Unpack(server)
    assert server.require_client_certificate.value


def test_a_proxy_without_certificate_stays_plaintext_even_under_strict(
    write_config: WriteConfig,
) -> None:
    listener = inbound_listener(context(write_config, peer("STRICT")), 8080, sds=False)
    assert chain_shapes(listener) == [("", (), False)]


def test_virtual_inbound_has_the_chains_per_port(write_config: WriteConfig) -> None:
    ctx = context(write_config, peer("STRICT"))
    listener = {x.name: x for x in proxy_listeners(ctx, proxy())}["virtualInbound"]
    assert [
        (c.name, c.filter_chain_match.destination_port.value) for c in listener.filter_chains
    ] == [
        ("inbound|5432||-mtls", 5432),
        ("inbound|8080||-mtls", 8080),
    ]
