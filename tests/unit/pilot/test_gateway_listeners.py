"""Gateway listeners: one per server port on the router's own address, HTTP and terminated
HTTPS connection managers, TLS from files or SDS, passthrough and TCP chains, port merging;
and real Envoy accepts a gateway using all of them (`envoy --mode validate`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from pilot.generators import clusters, endpoints
from pilot.model import Proxy
from tests.support.certs import write_server_certificate
from tests.support.shared import BOOKINFO_NETWORKING
from tests.unit.pilot.gateway_support import (
    INGRESS_LABELS,
    ROUTER_ID,
    ROUTER_IP,
    gateway,
    listeners,
    route_configs,
    router_view,
)
from tests.unit.pilot.test_gen_whole_config import _bootstrap, _envoy_validate
from tests.unit.pilot.vs_support import BOOKINFO, WriteConfig, build, service, virtual_service

MakeProxy = Callable[..., Proxy]
REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"

PASSTHROUGH = """\
hosts: [a.example.com, b.example.com, c.example.com]
gateways: [gw]
tls:
- match: [{sniHosts: [a.example.com], port: 8443}]
  route: [{destination: {host: reviews}}]
- match: [{sniHosts: [b.example.com]}, {sniHosts: [a.example.com]}]
  route: [{destination: {host: ratings}}]
- match: [{sniHosts: [c.example.com], gateways: [other]}]
  route: [{destination: {host: ratings}}]
"""
TCP = """\
hosts: [db.example.com]
gateways: [gw]
tcp:
- match: [{port: 9999}]
  route: [{destination: {host: details}}]
- route: [{destination: {host: db, port: {number: 5432}}, weight: 70},
          {destination: {host: reviews}, weight: 30}]
"""


def _manager(chain: listener_components_pb2.FilterChain) -> hcm_pb2.HttpConnectionManager:
    manager = hcm_pb2.HttpConnectionManager()
    assert chain.filters[0].typed_config.Unpack(manager)
    return manager


def _tls(chain: listener_components_pb2.FilterChain) -> tls_pb2.DownstreamTlsContext:
    context = tls_pb2.DownstreamTlsContext()
    assert chain.transport_socket.typed_config.Unpack(context)
    return context


def _tcp_proxy(chain: listener_components_pb2.FilterChain) -> tcp_proxy_pb2.TcpProxy:
    proxy = tcp_proxy_pb2.TcpProxy()
    assert chain.filters[0].typed_config.Unpack(proxy)
    return proxy


def _simple(port: int, name: str, host: str, files: str = "/certs/a") -> str:
    return (
        f"- port: {{number: {port}, name: {name}, protocol: HTTPS}}\n  hosts: [{host}]\n"
        f"  tls: {{mode: SIMPLE, serverCertificate: {files}.pem, privateKey: {files}.key}}\n"
    )


def test_bookinfo_gateway_listens_on_the_router_address(write_config: WriteConfig) -> None:
    ctx = build(write_config, BOOKINFO, (BOOKINFO_NETWORKING / "bookinfo-gateway.yaml").read_text())
    (listener,) = listeners(ctx).values()
    assert listener.name == "0.0.0.0_8080"
    assert listener.address.socket_address.address == ROUTER_IP
    assert listener.address.socket_address.port_value == 8080
    (chain,) = listener.filter_chains
    manager = _manager(chain)
    assert manager.rds.route_config_name == "http.8080"
    assert manager.stat_prefix == "outbound_0.0.0.0_8080"
    assert manager.use_remote_address.value
    assert manager.forward_client_cert_details == hcm_pb2.HttpConnectionManager.SANITIZE_SET
    assert not listener.listener_filters


def test_https_simple_terminates_tls_for_its_hosts(write_config: WriteConfig) -> None:
    servers = _simple(8443, "https", "bookinfo.example.com") + _simple(
        8443, "https-all", "'*'", "/certs/b"
    )
    ctx = build(write_config, BOOKINFO, gateway("gw", servers))
    listener = listeners(ctx)["0.0.0.0_8443"]
    named, wildcard = listener.filter_chains
    assert list(named.filter_chain_match.server_names) == ["bookinfo.example.com"]
    assert not wildcard.HasField("filter_chain_match")
    assert _manager(named).rds.route_config_name == "https.8443.https.gw.default"
    assert _manager(wildcard).rds.route_config_name == "https.8443.https-all.gw.default"
    context = _tls(named)
    (certificate,) = context.common_tls_context.tls_certificates
    assert certificate.certificate_chain.filename == "/certs/a.pem"
    assert certificate.private_key.filename == "/certs/a.key"
    assert list(context.common_tls_context.alpn_protocols) == ["h2", "http/1.1"]
    assert not context.require_client_certificate.value
    assert not context.common_tls_context.HasField("tls_params")
    assert [f.name for f in listener.listener_filters] == ["envoy.filters.listener.tls_inspector"]


def test_mutual_and_optional_mutual_verify_clients(write_config: WriteConfig) -> None:
    servers = """\
    - port: {number: 8443, name: mtls, protocol: HTTPS}
      hosts: [m.example.com]
      tls:
        mode: MUTUAL
        serverCertificate: /c.pem
        privateKey: /c.key
        caCertificates: /ca.pem
        subjectAltNames: [client.example.com]
        minProtocolVersion: TLSV1_2
        cipherSuites: [ECDHE-ECDSA-AES128-GCM-SHA256]
    - port: {number: 8443, name: optional, protocol: HTTPS}
      hosts: [o.example.com]
      tls: {mode: OPTIONAL_MUTUAL, serverCertificate: /c.pem, privateKey: /c.key,
            caCertificates: /ca.pem}
    """
    ctx = build(write_config, BOOKINFO, gateway("gw", servers))
    mutual, optional = (_tls(c) for c in listeners(ctx)["0.0.0.0_8443"].filter_chains)
    assert mutual.require_client_certificate.value
    validation = mutual.common_tls_context.validation_context
    assert validation.trusted_ca.filename == "/ca.pem"
    assert [m.matcher.exact for m in validation.match_typed_subject_alt_names] == [
        "client.example.com"
    ]
    params = mutual.common_tls_context.tls_params
    assert params.tls_minimum_protocol_version == params.TLSv1_2
    assert list(params.cipher_suites) == ["ECDHE-ECDSA-AES128-GCM-SHA256"]
    assert not optional.require_client_certificate.value
    assert optional.common_tls_context.validation_context.trusted_ca.filename == "/ca.pem"


def test_credential_name_asks_for_sds_secrets_over_ads(write_config: WriteConfig) -> None:
    servers = """\
    - port: {number: 8443, name: https, protocol: HTTPS}
      hosts: [s.example.com]
      tls: {mode: MUTUAL, credentialName: shop-cert}
    - port: {number: 8443, name: mesh, protocol: HTTPS}
      hosts: [i.example.com]
      tls: {mode: ISTIO_MUTUAL}
    """
    ctx = build(write_config, BOOKINFO, gateway("gw", servers))
    credential, istio = (_tls(c) for c in listeners(ctx)["0.0.0.0_8443"].filter_chains)
    (secret,) = credential.common_tls_context.tls_certificate_sds_secret_configs
    assert secret.name == "kubernetes://shop-cert"
    assert secret.sds_config.HasField("ads")
    combined = credential.common_tls_context.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == "kubernetes://shop-cert-cacert"
    assert combined.HasField("default_validation_context")
    (workload,) = istio.common_tls_context.tls_certificate_sds_secret_configs
    assert workload.name == "default"
    roots = istio.common_tls_context.combined_validation_context
    assert roots.validation_context_sds_secret_config.name == "ROOTCA"
    assert istio.require_client_certificate.value


def test_passthrough_routes_by_sni_from_tls_routes(write_config: WriteConfig) -> None:
    servers = """\
    - port: {number: 8443, name: tls, protocol: TLS}
      hosts: [a.example.com, b.example.com]
      tls: {mode: PASSTHROUGH}
    """
    ctx = build(
        write_config,
        BOOKINFO,
        gateway("gw", servers),
        virtual_service("pass", PASSTHROUGH),
    )
    listener = listeners(ctx)["0.0.0.0_8443"]
    assert [f.name for f in listener.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    routed = [
        (list(c.filter_chain_match.server_names), _tcp_proxy(c).cluster)
        for c in listener.filter_chains
    ]
    # The first chain for an SNI name keeps it; the match for another gateway is skipped.
    assert routed == [
        (["a.example.com"], REVIEWS),
        (["b.example.com"], "outbound|9080||ratings.default.svc.cluster.local"),
    ]
    assert not any(c.HasField("transport_socket") for c in listener.filter_chains)
    assert route_configs(ctx) == {}


def test_tcp_servers_take_the_first_applicable_tcp_rule(write_config: WriteConfig) -> None:
    servers = """\
    - port: {number: 5432, name: tcp, protocol: TCP}
      hosts: ['*']
    - port: {number: 5432, name: http, protocol: HTTP}
      hosts: ['*']
    - port: {number: 6000, name: unrouted, protocol: TCP}
      hosts: [nothing.example.com]
    """
    ctx = build(
        write_config,
        BOOKINFO,
        service("db", 5432, protocol="TCP"),
        gateway("gw", servers),
        virtual_service("tcp", TCP),
    )
    found = listeners(ctx)
    # The HTTP server conflicts with the TCP one on 5432; nothing routes the 6000 server.
    assert list(found) == ["0.0.0.0_5432"]
    (chain,) = found["0.0.0.0_5432"].filter_chains
    proxy = _tcp_proxy(chain)
    assert {(c.name, c.weight) for c in proxy.weighted_clusters.clusters} == {
        ("outbound|5432||db.default.svc.cluster.local", 70),
        (REVIEWS, 30),
    }
    assert route_configs(ctx) == {}


def test_tls_termination_on_a_tls_port_proxies_tcp(write_config: WriteConfig) -> None:
    servers = """\
    - port: {number: 8443, name: tls, protocol: TLS}
      hosts: [db.example.com]
      tls: {mode: SIMPLE, serverCertificate: /d.pem, privateKey: /d.key}
    """
    spec = (
        "hosts: [db.example.com]\ngateways: [gw]\ntcp: [{route: [{destination: {host: reviews}}]}]"
    )
    ctx = build(write_config, BOOKINFO, gateway("gw", servers), virtual_service("db", spec))
    (chain,) = listeners(ctx)["0.0.0.0_8443"].filter_chains
    assert _tcp_proxy(chain).cluster == REVIEWS
    assert list(chain.filter_chain_match.server_names) == ["db.example.com"]
    assert not _tls(chain).common_tls_context.alpn_protocols


def test_servers_repeating_a_tls_host_or_the_port_kind_are_dropped(
    write_config: WriteConfig,
) -> None:
    servers = (
        _simple(8443, "first", "dup.example.com")
        + _simple(8443, "second", "dup.example.com")
        + "- port: {number: 8443, name: plain, protocol: HTTP}\n  hosts: ['*']\n"
    )
    ctx = build(write_config, BOOKINFO, gateway("gw", servers))
    (chain,) = listeners(ctx)["0.0.0.0_8443"].filter_chains
    assert _manager(chain).rds.route_config_name == "https.8443.first.gw.default"
    assert list(route_configs(ctx)) == ["https.8443.first.gw.default"]


@pytest.mark.envoy
def test_envoy_accepts_a_gateway_using_every_server_kind(
    write_config: WriteConfig, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    files = write_server_certificate(tmp_path / "certs", "bookinfo.example.com")
    servers = f"""\
    - port: {{number: 8080, name: http, protocol: HTTP}}
      hosts: ['*']
    - port: {{number: 8081, name: redirect, protocol: HTTP}}
      hosts: [bookinfo.example.com]
      tls: {{httpsRedirect: true}}
    - port: {{number: 8443, name: https, protocol: HTTPS}}
      hosts: [bookinfo.example.com]
      tls: {{mode: SIMPLE, serverCertificate: {files.certificate}, privateKey: {files.private_key}}}
    - port: {{number: 8443, name: mtls, protocol: HTTPS}}
      hosts: [mtls.example.com]
      tls:
        mode: MUTUAL
        serverCertificate: {files.certificate}
        privateKey: {files.private_key}
        caCertificates: {files.ca_certificate}
    - port: {{number: 8443, name: tls, protocol: TLS}}
      hosts: [a.example.com, b.example.com]
      tls: {{mode: PASSTHROUGH}}
    - port: {{number: 5432, name: tcp, protocol: TCP}}
      hosts: ['*']
    - port: {{number: 9443, name: sds, protocol: HTTPS}}
      hosts: [sds.example.com]
      tls: {{mode: SIMPLE, credentialName: sds-cert}}
    """
    ctx = build(
        write_config,
        BOOKINFO,
        service("db", 5432, protocol="TCP"),
        gateway("gw", servers),
        virtual_service("pass", PASSTHROUGH),
        virtual_service("tcp", TCP),
        virtual_service(
            "web",
            "hosts: ['*']\ngateways: [gw]\nhttp: [{route: [{destination: {host: productpage}}]}]",
        ),
    )
    proxy = make_proxy(ROUTER_ID, LABELS=INGRESS_LABELS)
    assert proxy.view == router_view()
    generated = {
        "clusters": clusters.outbound_clusters(ctx, proxy.view),
        "endpoints": list(endpoints.load_assignments(ctx, proxy.view)),
        "routes": list(route_configs(ctx).values()),
        "listeners": list(listeners(ctx).values()),
    }
    assert sorted(listeners(ctx)) == [
        "0.0.0.0_5432",
        "0.0.0.0_8080",
        "0.0.0.0_8081",
        "0.0.0.0_8443",
        "0.0.0.0_9443",
    ]
    assert len(listeners(ctx)["0.0.0.0_8443"].filter_chains) == 4
    result = _envoy_validate(_bootstrap(proxy, generated), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
