"""Routers in snapshots: their view carries their labels, route configs are shared by routers
with equal labels, and each router's listeners are bound to its own address."""

from __future__ import annotations

from collections.abc import Callable

from envoy.config.listener.v3 import listener_pb2
from google.protobuf import any_pb2

from meshcore.xds import types
from meshcore.xds.resource import Snapshot
from pilot.model import NodeType, Proxy, ProxyView
from pilot.snapshots import SnapshotGenerator
from tests.support.shared import BOOKINFO_NETWORKING
from tests.unit.pilot.gateway_support import INGRESS_LABELS, ROUTER_ID
from tests.unit.pilot.vs_support import BOOKINFO, WriteConfig, build

MakeProxy = Callable[..., Proxy]
OTHER_ROUTER = (
    "router~127.0.9.10~istio-ingressgateway-2.istio-system~istio-system.svc.cluster.local"
)
SIDECAR = "sidecar~127.0.1.2~productpage-v1.default~default.svc.cluster.local"


def _listener(snapshot: Snapshot, name: str) -> listener_pb2.Listener:
    packed = any_pb2.Any.FromString(snapshot.types[types.LISTENER].resources[name].any_bytes)
    listener = listener_pb2.Listener()
    assert packed.Unpack(listener)
    return listener


def test_router_views_carry_labels_and_sidecar_views_do_not(make_proxy: MakeProxy) -> None:
    router = make_proxy(ROUTER_ID, LABELS={"istio": "ingressgateway", "app": "gw"})
    assert router.view == ProxyView(
        NodeType.ROUTER, "istio-system", (("app", "gw"), ("istio", "ingressgateway"))
    )
    sidecar = make_proxy(SIDECAR, LABELS={"app": "productpage"})
    assert sidecar.view == ProxyView(NodeType.SIDECAR, "default")


def test_routers_share_routes_and_bind_listeners_to_their_own_address(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    ctx = build(write_config, BOOKINFO, (BOOKINFO_NETWORKING / "bookinfo-gateway.yaml").read_text())
    generator = SnapshotGenerator()
    one = generator.full(ctx, make_proxy(ROUTER_ID, LABELS=INGRESS_LABELS))
    two = generator.full(ctx, make_proxy(OTHER_ROUTER, LABELS=INGRESS_LABELS))
    assert one.types[types.ROUTE] is two.types[types.ROUTE]
    assert list(one.types[types.ROUTE].resources) == ["http.8080"]
    assert list(one.types[types.LISTENER].resources) == ["0.0.0.0_8080"]
    addresses = {_listener(s, "0.0.0.0_8080").address.socket_address.address for s in (one, two)}
    assert addresses == {"127.0.9.9", "127.0.9.10"}

    other = generator.full(ctx, make_proxy(OTHER_ROUTER, LABELS={"istio": "egressgateway"}))
    assert not other.types[types.LISTENER].resources
    assert not other.types[types.ROUTE].resources
    assert other.types[types.CLUSTER].resources.keys() == one.types[types.CLUSTER].resources.keys()
