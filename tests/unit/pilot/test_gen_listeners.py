"""LDS generation: shared outbound listeners, and the listeners bound to one proxy's address."""

from __future__ import annotations

from collections.abc import Callable

from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from pilot.generators.listeners import outbound_listeners, proxy_listeners
from pilot.model import NodeType, Proxy, ProxyView
from pilot.push_context import PushContext

BuildContext = Callable[..., PushContext]
MakeProxy = Callable[..., Proxy]
Listener = listener_pb2.Listener


def _by_name(listeners: list[listener_pb2.Listener]) -> dict[str, listener_pb2.Listener]:
    return {listener.name: listener for listener in listeners}


def _hcm(chain: listener_components_pb2.FilterChain) -> hcm_pb2.HttpConnectionManager:
    (network_filter,) = chain.filters
    assert network_filter.name == "envoy.filters.network.http_connection_manager"
    manager = hcm_pb2.HttpConnectionManager()
    assert network_filter.typed_config.Unpack(manager)
    return manager


def _tcp_cluster(chain: listener_components_pb2.FilterChain) -> str:
    (network_filter,) = chain.filters
    assert network_filter.name == "envoy.filters.network.tcp_proxy"
    proxy = tcp_proxy_pb2.TcpProxy()
    assert network_filter.typed_config.Unpack(proxy)
    return str(proxy.cluster)


def _address(listener: listener_pb2.Listener) -> tuple[str, int]:
    socket = listener.address.socket_address
    return socket.address, socket.port_value


def test_outbound_listener_names(ctx: PushContext, sidecar: Proxy) -> None:
    listeners = outbound_listeners(ctx, sidecar.view)
    assert [listener.name for listener in listeners] == [
        "0.0.0.0_443",
        "0.0.0.0_80",
        "0.0.0.0_8000",
        "0.0.0.0_9080",
        "0.0.0.0_9090",
        "240.0.0.10_3306",
    ]
    for listener in listeners:
        assert listener.HasField("bind_to_port") and not listener.bind_to_port.value
        assert listener.traffic_direction == base_pb2.TrafficDirection.OUTBOUND
        assert listener.name == "{}_{}".format(*_address(listener))


def test_outbound_http_listener_uses_rds_over_ads(ctx: PushContext, sidecar: Proxy) -> None:
    listener = _by_name(outbound_listeners(ctx, sidecar.view))["0.0.0.0_9080"]
    manager = _hcm(listener.filter_chains[0])
    assert manager.stat_prefix == "outbound_0.0.0.0_9080"
    assert manager.rds.route_config_name == "9080"
    assert manager.rds.config_source.HasField("ads")
    assert manager.rds.config_source.resource_api_version == config_source_pb2.ApiVersion.V3
    fault, cors, router = manager.http_filters
    assert [fault.name, cors.name] == ["envoy.filters.http.fault", "envoy.filters.http.cors"]
    assert router.name == "envoy.filters.http.router"
    assert router.typed_config.Is(router_pb2.Router.DESCRIPTOR)
    assert not manager.access_log


def test_outbound_tcp_listeners(ctx: PushContext, sidecar: Proxy) -> None:
    listeners = _by_name(outbound_listeners(ctx, sidecar.view))
    assert _tcp_cluster(listeners["240.0.0.10_3306"].filter_chains[0]) == (
        "outbound|3306||reviews.default.svc.cluster.local"
    )
    assert _tcp_cluster(listeners["0.0.0.0_443"].filter_chains[0]) == (
        "outbound|443||www.googleapis.com"
    )


def test_http_keeps_a_contested_port(build_context: BuildContext, sidecar: Proxy) -> None:
    entry = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: %s}
        spec: {hosts: [%s], ports: [{number: 7000, name: %s}]}
        ---
    """
    ctx = build_context(
        entry % ("a", "a.example.com", "tcp")
        + entry % ("b", "b.example.com", "http")
        + entry % ("c", "c.example.com", "mongo")
    )
    (listener,) = outbound_listeners(ctx, sidecar.view)
    assert listener.name == "0.0.0.0_7000"
    assert _hcm(listener.filter_chains[0]).rds.route_config_name == "7000"


def test_virtual_outbound(ctx: PushContext, sidecar: Proxy) -> None:
    listener = _by_name(proxy_listeners(ctx, sidecar))["virtualOutbound"]
    assert _address(listener) == ("127.0.1.2", 15001)
    assert listener.use_original_dst.value
    assert not listener.filter_chains
    assert _tcp_cluster(listener.default_filter_chain) == "PassthroughCluster"


def test_virtual_inbound_chains_deliver_to_inbound_clusters(
    ctx: PushContext, sidecar: Proxy
) -> None:
    listener = _by_name(proxy_listeners(ctx, sidecar))["virtualInbound"]
    assert _address(listener) == ("127.0.1.2", 15006)
    assert listener.traffic_direction == base_pb2.TrafficDirection.INBOUND
    assert [f.name for f in listener.listener_filters] == ["envoy.filters.listener.original_dst"]
    chains = {c.filter_chain_match.destination_port.value: c for c in listener.filter_chains}
    assert sorted(chains) == [3306, 19080, 19090]
    assert _tcp_cluster(chains[3306]) == "inbound|3306||"
    manager = _hcm(chains[19080])
    assert manager.stat_prefix == "inbound_0.0.0.0_19080"
    assert manager.route_config.name == "inbound|19080||"
    assert manager.route_config.virtual_hosts[0].routes[0].route.cluster == "inbound|19080||"
    assert _hcm(chains[19090]).route_config.name == "inbound|19090||"
    assert _tcp_cluster(listener.default_filter_chain) == "BlackHoleCluster"
    assert not listener.transparent.value


def test_without_capture_each_inbound_port_and_the_http_proxy_bind(
    ctx: PushContext, sidecar: Proxy
) -> None:
    listeners = _by_name(proxy_listeners(ctx, sidecar))
    assert list(listeners) == [
        "127.0.1.2_15080",
        "127.0.1.2_19080",
        "127.0.1.2_19090",
        "127.0.1.2_3306",
        "virtualInbound",
        "virtualOutbound",
    ]
    assert _address(listeners["127.0.1.2_19080"]) == ("127.0.1.2", 19080)
    assert not listeners["127.0.1.2_19080"].HasField("bind_to_port")
    assert _hcm(listeners["127.0.1.2_19080"].filter_chains[0]).route_config.name == (
        "inbound|19080||"
    )
    assert _tcp_cluster(listeners["127.0.1.2_3306"].filter_chains[0]) == "inbound|3306||"

    http_proxy = listeners["127.0.1.2_15080"]
    assert _address(http_proxy) == ("127.0.1.2", 15080)
    assert http_proxy.traffic_direction == base_pb2.TrafficDirection.OUTBOUND
    manager = _hcm(http_proxy.filter_chains[0])
    assert manager.rds.route_config_name == "http_proxy"
    assert manager.http_protocol_options.allow_absolute_url.value


def test_with_capture_only_the_virtual_listeners(ctx: PushContext, make_proxy: MakeProxy) -> None:
    listeners = _by_name(proxy_listeners(ctx, make_proxy()))
    assert list(listeners) == ["virtualInbound", "virtualOutbound"]
    # iptables' REDIRECT sends outbound connections to 127.0.0.1, inbound to the pod address.
    assert _address(listeners["virtualOutbound"]) == ("0.0.0.0", 15001)
    assert _address(listeners["virtualInbound"]) == ("0.0.0.0", 15006)


def test_captured_inbound_passes_undeclared_ports_through(
    ctx: PushContext, make_proxy: MakeProxy
) -> None:
    """Istio's inbound passthrough: chains without a port match after the per-port ones, as
    the workload's PeerAuthentication asks (here: no certificate, so plaintext only)."""
    inbound = _by_name(proxy_listeners(ctx, make_proxy()))["virtualInbound"]
    *_, passthrough = inbound.filter_chains
    assert passthrough.name == "InboundPassthroughClusterIpv4"
    assert not passthrough.filter_chain_match.HasField("destination_port")
    assert _tcp_cluster(passthrough) == "InboundPassthroughClusterIpv4"
    assert _tcp_cluster(inbound.default_filter_chain) == "BlackHoleCluster"
    uncaptured = _by_name(proxy_listeners(ctx, make_proxy(INTERCEPTION_MODE="NONE")))
    assert all(
        chain.filter_chain_match.HasField("destination_port")
        for chain in uncaptured["virtualInbound"].filter_chains
    )
    tproxy = _by_name(proxy_listeners(ctx, make_proxy(INTERCEPTION_MODE="TPROXY")))
    assert tproxy["virtualInbound"].transparent.value


def test_http_proxy_listener_in_any_interception_mode(
    ctx: PushContext, make_proxy: MakeProxy
) -> None:
    proxy = make_proxy(HTTP_PROXY_PORT="15080")
    assert "127.0.1.2_15080" in _by_name(proxy_listeners(ctx, proxy))


def test_proxy_backing_nothing(ctx: PushContext, make_proxy: MakeProxy) -> None:
    proxy = make_proxy("sidecar~127.0.9.9~x.default~default.svc", INTERCEPTION_MODE="NONE")
    listeners = _by_name(proxy_listeners(ctx, proxy))
    assert list(listeners) == ["virtualInbound", "virtualOutbound"]
    assert not listeners["virtualInbound"].filter_chains


def test_gateways_get_no_listeners_yet(ctx: PushContext, make_proxy: MakeProxy) -> None:
    gateway = make_proxy("router~127.0.1.9~gw.default~default.svc", INTERCEPTION_MODE="NONE")
    assert outbound_listeners(ctx, ProxyView(NodeType.ROUTER, "default")) == []
    assert proxy_listeners(ctx, gateway) == []
