"""What a Sidecar changes in the generated traffic config: outboundTrafficPolicy (REGISTRY_ONLY,
egressProxy) and ingress listeners; and that real Envoy accepts all of it."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from pilot.model import Proxy
from tests.unit.pilot.sidecar_support import (
    A1,
    A1_APP,
    A1_IP,
    SYS,
    Generated,
    MakeProxy,
    WriteConfig,
    context,
    generate,
    proxy_in,
    sidecar,
)
from tests.unit.pilot.test_gen_whole_config import _bootstrap, _envoy_validate

REGISTRY_ONLY = sidecar(
    "default",
    "a",
    """
    egress: [{hosts: ["./*", "istio-system/*"]}]
    outboundTrafficPolicy: {mode: REGISTRY_ONLY}
    """,
)
EGRESS_PROXY = sidecar(
    "default",
    "a",
    f"""
    outboundTrafficPolicy:
      mode: ALLOW_ANY
      egressProxy: {{host: {SYS}, port: {{number: 8080}}}}
    """,
)
# For a1's own workload: port 8080 to the app's 7070, TCP 9000 on a Unix socket behind another
# bind address, 9100 to the pod IP's 9101.
INGRESS = sidecar(
    "a1-ingress",
    "a",
    """
    workloadSelector: {labels: {app: a1}}
    ingress:
    - port: {number: 8080, protocol: HTTP, name: http}
      defaultEndpoint: 127.0.0.1:7070
    - port: {number: 9000, protocol: TCP, name: tcp}
      bind: 127.0.5.9
      defaultEndpoint: unix:///tmp/a1.sock
    - port: {number: 9100, protocol: HTTP, name: http-admin}
      defaultEndpoint: 0.0.0.0:9101
    """,
)


def _catch_all(listener: listener_pb2.Listener) -> str:
    proxy = tcp_proxy_pb2.TcpProxy()
    listener.default_filter_chain.filters[0].typed_config.Unpack(proxy)
    cluster: str = proxy.cluster
    return cluster


def _a1_proxy(make_proxy: MakeProxy) -> Proxy:
    return proxy_in(make_proxy, "a", A1_IP, app="a1")


def test_registry_only_blocks_unknown_destinations(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    generated = generate(context(write_config, REGISTRY_ONLY), proxy_in(make_proxy, "a"))
    for name in ("8080", "http_proxy"):
        last = generated.route(name).virtual_hosts[-1]
        assert (last.name, list(last.domains)) == ("block_all", ["*"])
        (route,) = last.routes
        assert route.match.prefix == "/" and route.direct_response.status == 502
    assert _catch_all(generated.listener("virtualOutbound")) == "BlackHoleCluster"
    names = {c.name for c in generated.clusters}
    assert {"BlackHoleCluster", "PassthroughCluster"} <= names  # as istiod: both always


def test_allow_any_passes_unknown_destinations_through(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    generated = generate(context(write_config), proxy_in(make_proxy, "a"))
    last = generated.route("8080").virtual_hosts[-1]
    assert last.name == "allow_any" and last.routes[0].route.cluster == "PassthroughCluster"
    # The explicit proxy has no original destination to pass through to.
    assert "allow_any" not in {vh.name for vh in generated.route("http_proxy").virtual_hosts}
    assert _catch_all(generated.listener("virtualOutbound")) == "PassthroughCluster"


def test_an_egress_proxy_receives_unknown_destinations(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    generated = generate(context(write_config, EGRESS_PROXY), proxy_in(make_proxy, "a"))
    egress = f"outbound|8080||{SYS}"
    for name in ("8080", "http_proxy"):
        last = generated.route(name).virtual_hosts[-1]
        assert last.name == "allow_any" and last.routes[0].route.cluster == egress
    assert _catch_all(generated.listener("virtualOutbound")) == egress


def _inbound_endpoints(generated: Generated) -> dict[str, str]:
    found = {}
    for cluster in generated.clusters:
        if cluster.name.startswith("inbound|"):
            (locality,) = cluster.load_assignment.endpoints
            (endpoint,) = locality.lb_endpoints
            address = endpoint.endpoint.address
            found[cluster.name] = (
                f"unix:{address.pipe.path}"
                if address.HasField("pipe")
                else f"{address.socket_address.address}:{address.socket_address.port_value}"
            )
    return found


def test_without_ingress_listeners_inbound_follows_the_service_instances(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    generated = generate(context(write_config, REGISTRY_ONLY), _a1_proxy(make_proxy))
    assert _inbound_endpoints(generated) == {
        "inbound|8080||": f"{A1_APP}:8080",
        "inbound|9000||": f"{A1_APP}:9000",
    }
    names = {listener.name for listener in generated.listeners}
    assert {f"{A1_IP}_8080", f"{A1_IP}_9000"} <= names


def test_ingress_listeners_replace_the_inbound_ports(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    generated = generate(context(write_config, REGISTRY_ONLY, INGRESS), _a1_proxy(make_proxy))
    assert _inbound_endpoints(generated) == {
        "inbound|8080||": f"{A1_APP}:7070",  # the pod's loopback is the app's address
        "inbound|9000||": "unix:/tmp/a1.sock",
        "inbound|9100||": f"{A1_IP}:9101",
    }
    bound = {
        listener.name: listener
        for listener in generated.listeners
        if listener.traffic_direction == base_pb2.TrafficDirection.INBOUND
        and listener.name != "virtualInbound"
    }
    assert sorted(bound) == [f"{A1_IP}_8080", f"{A1_IP}_9100", "127.0.5.9_9000"]
    assert bound["127.0.5.9_9000"].address.socket_address.address == "127.0.5.9"
    filters = {name: listener.filter_chains[0].filters[0].name for name, listener in bound.items()}
    assert filters[f"{A1_IP}_9100"] == "envoy.filters.network.http_connection_manager"
    assert filters["127.0.5.9_9000"] == "envoy.filters.network.tcp_proxy"
    chains = generated.listener("virtualInbound").filter_chains
    assert [c.filter_chain_match.destination_port.value for c in chains] == [8080, 9000, 9100]
    # The ingress Sidecar selects a1 only, so a1's outbound side is not scoped by a/default.
    assert any(A1 in c.name for c in generated.clusters)


@pytest.mark.envoy
@pytest.mark.parametrize(
    ("documents", "a1"),
    [((REGISTRY_ONLY,), False), ((EGRESS_PROXY,), False), ((REGISTRY_ONLY, INGRESS), True)],
    ids=["registry-only", "egress-proxy", "ingress"],
)
def test_envoy_accepts_sidecar_scoped_config(
    write_config: WriteConfig,
    make_proxy: MakeProxy,
    tmp_path: Path,
    documents: tuple[str, ...],
    a1: bool,
) -> None:
    ctx = context(write_config, *documents)
    proxy = _a1_proxy(make_proxy) if a1 else proxy_in(make_proxy, "a")
    generated = generate(ctx, proxy)
    messages = {
        "clusters": generated.clusters,
        "endpoints": generated.endpoints,
        "routes": generated.routes,
        "listeners": generated.listeners,
    }
    result = _envoy_validate(_bootstrap(proxy, messages), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
