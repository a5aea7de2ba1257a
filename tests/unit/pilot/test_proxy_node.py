"""Proxy.from_node: Istio's node id and metadata, and a precise refusal for each malformation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from envoy.config.core.v3 import base_pb2

from meshcore.xds.errors import InvalidNode
from pilot.model import InterceptionMode, NodeType, Proxy, ProxyView

MakeNode = Callable[..., base_pb2.Node]
MakeProxy = Callable[..., Proxy]
SIDECAR_ID = "sidecar~127.0.1.2~reviews-v1.default~default.svc.cluster.local"


def test_sidecar_id_and_metadata(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(
        NAMESPACE="default",
        LABELS={"app": "reviews", "version": "v1"},
        SERVICE_ACCOUNT="bookinfo-reviews",
        INSTANCE_IPS="127.0.1.2, 10.0.0.2",
        INTERCEPTION_MODE="NONE",
        HTTP_PROXY_PORT="15080",
        APP_ADDRESS="127.0.100.2",
        NAME="reviews-v1",
        CLUSTER_ID="Kubernetes",
    )
    assert proxy.id == SIDECAR_ID
    assert proxy.type is NodeType.SIDECAR
    assert (proxy.ip, proxy.pod_name, proxy.namespace) == ("127.0.1.2", "reviews-v1", "default")
    assert proxy.dns_domain == "default.svc.cluster.local"
    assert dict(proxy.labels) == {"app": "reviews", "version": "v1"}
    assert proxy.service_account == "bookinfo-reviews"
    assert proxy.instance_ips == ("127.0.1.2", "10.0.0.2")
    assert proxy.ip_addresses == ("127.0.1.2", "10.0.0.2")
    assert proxy.interception_mode is InterceptionMode.NONE
    assert proxy.http_proxy_port == 15080
    assert proxy.app_address == "127.0.100.2"
    assert (proxy.name, proxy.cluster_id) == ("reviews-v1", "Kubernetes")


def test_defaults_without_metadata(make_proxy: MakeProxy) -> None:
    proxy = make_proxy()
    assert proxy.interception_mode is InterceptionMode.REDIRECT
    assert proxy.http_proxy_port is None
    assert proxy.app_address == "127.0.0.1"
    assert proxy.ip_addresses == ("127.0.1.2",)
    assert dict(proxy.labels) == {}


def test_router_and_ipv6(make_proxy: MakeProxy) -> None:
    proxy = make_proxy("router~::1~ingress-7f.istio-system~istio-system.svc.cluster.local")
    assert proxy.type is NodeType.ROUTER
    assert (proxy.ip, proxy.namespace) == ("::1", "istio-system")


def test_view_is_shared_by_proxies_of_one_namespace(make_proxy: MakeProxy) -> None:
    one = make_proxy(LABELS={"app": "a"})
    other = make_proxy("sidecar~127.0.9.9~b-1.default~default.svc.cluster.local")
    elsewhere = make_proxy("sidecar~127.0.9.9~b-1.shop~shop.svc.cluster.local")
    assert one.view == other.view == ProxyView(NodeType.SIDECAR, "default")
    assert hash(one.view) == hash(other.view)
    assert elsewhere.view != one.view


def test_an_http_proxy_listener_is_part_of_the_view(make_proxy: MakeProxy) -> None:
    explicit = make_proxy(HTTP_PROXY_PORT="15080")
    assert explicit.view == ProxyView(NodeType.SIDECAR, "default", http_proxy=True)
    assert explicit.view != make_proxy().view
    proxyless = make_proxy(HTTP_PROXY_PORT="15080", GENERATOR="grpc")
    assert not proxyless.view.http_proxy  # it gets no Envoy listeners at all


@pytest.mark.parametrize(
    ("node_id", "message"),
    [
        ("", "node id '': has 1 '~'-separated parts, want 4"),
        ("sidecar~127.0.0.1~a.b", "has 3 '~'-separated parts, want 4"),
        ("sidecar~127.0.0.1~a.b~c~d", "has 5 '~'-separated parts, want 4"),
        ("gateway~127.0.0.1~a.b~b.svc", "type 'gateway' is not 'sidecar' or 'router'"),
        ("sidecar~127.0.0~a.b~b.svc", "'127.0.0' is not an IP address"),
        ("sidecar~127.0.0.1~pod~b.svc", "'pod' is not '<pod>.<namespace>'"),
        ("sidecar~127.0.0.1~.ns~b.svc", "'.ns' is not '<pod>.<namespace>'"),
        ("sidecar~127.0.0.1~pod.~b.svc", "'pod.' is not '<pod>.<namespace>'"),
        ("sidecar~127.0.0.1~pod.ns~", "DNS domain (the last part) is empty"),
    ],
)
def test_malformed_id(make_node: MakeNode, node_id: str, message: str) -> None:
    with pytest.raises(InvalidNode) as raised:
        Proxy.from_node(make_node(node_id))
    assert str(raised.value).startswith(f"node id {node_id!r}: ")
    assert str(raised.value).endswith(message)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"NAMESPACE": "shop"}, "NAMESPACE: 'shop' disagrees with the id's 'default'"),
        ({"NAMESPACE": 3}, "NAMESPACE: must be a string, got number_value"),
        ({"LABELS": "app=x"}, "LABELS: must be a struct of strings"),
        ({"LABELS": {"app": True}}, "LABELS.app: must be a string, got bool_value"),
        ({"INSTANCE_IPS": "127.0.1.2,nope"}, "INSTANCE_IPS: 'nope' is not an IP address"),
        ({"INTERCEPTION_MODE": "magic"}, "'magic' is not one of REDIRECT, TPROXY, NONE"),
        ({"HTTP_PROXY_PORT": "abc"}, "HTTP_PROXY_PORT: 'abc' is not a port number (1-65535)"),
        ({"HTTP_PROXY_PORT": "0"}, "HTTP_PROXY_PORT: '0' is not a port number (1-65535)"),
        ({"HTTP_PROXY_PORT": "70000"}, "'70000' is not a port number (1-65535)"),
        ({"HTTP_PROXY_PORT": 15080}, "HTTP_PROXY_PORT: must be a string, got number_value"),
        ({"APP_ADDRESS": "localhost"}, "APP_ADDRESS: 'localhost' is not an IP address"),
    ],
)
def test_malformed_metadata(
    make_proxy: MakeProxy, metadata: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidNode) as raised:
        make_proxy(**metadata)
    assert str(raised.value).startswith(f"node {SIDECAR_ID!r}: metadata ")
    assert str(raised.value).endswith(message)


def test_proxy_labels_are_frozen(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(LABELS={"app": "reviews"})
    with pytest.raises(TypeError):
        proxy.labels["app"] = "other"  # type: ignore[index]
