"""Pilot's pushes: unchanged proxies are left alone, endpoint updates are shared per view.

Proxies connect through `DiscoveryService.on_stream_open` (as the xDS server calls it), and a
state-of-the-world protocol object stands in for each proxy's stream, so "not pushed" is
checked where it matters: the cache watch is not woken and the stream has nothing to send.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import discovery_pb2

from meshcore.xds import types
from meshcore.xds.protocol import Outgoing
from meshcore.xds.sotw import SotwProtocol
from meshcore.xds.status import StreamInfo
from pilot.debounce import PushRequest
from pilot.discovery import DiscoveryService
from pilot.metrics import PilotMetrics
from pilot.snapshots import SnapshotGenerator
from tests.unit.pilot.conftest import SAMPLE_MESH, BuildContext, MakeNode

RATINGS_HOST = "ratings.shop.svc.cluster.local"
RATINGS_9080 = "outbound|9080||ratings.shop.svc.cluster.local"
CLIENT_A = "sidecar~127.0.3.1~a.default~default.svc.cluster.local"
CLIENT_B = "sidecar~127.0.3.2~b.default~default.svc.cluster.local"
CLIENT_SHOP = "sidecar~127.0.3.3~c.shop~shop.svc.cluster.local"
MOVED_RATINGS = SAMPLE_MESH.replace("[{address: 127.0.2.1}]", "[{address: 127.0.2.9}]")
SERVED = frozenset(types.PUSH_ORDER)


class Connected:
    """One proxy's stream: connected to `discovery`, subscribed to CDS and EDS, all ACKed."""

    def __init__(self, discovery: DiscoveryService, node: base_pb2.Node, stream_id: int) -> None:
        self.discovery = discovery
        self.info = StreamInfo(stream_id, "peer", False, node.id, node)
        self.key = self.info.cache_key = discovery.on_stream_open(self.info)
        self.woken = 0
        self.watch = discovery.cache.watch(self.key, self._wake)
        self.proto = SotwProtocol(self.info, SERVED)
        snapshot = discovery.cache.get(self.key)
        assert snapshot is not None
        self.eds_names = sorted(snapshot.types[types.ENDPOINT].resources)
        self.proto.on_request(discovery_pb2.DiscoveryRequest(type_url=types.CLUSTER))
        self.proto.on_request(
            discovery_pb2.DiscoveryRequest(type_url=types.ENDPOINT, resource_names=self.eds_names)
        )
        first = self.proto.responses(snapshot)
        assert [o.type_url for o in first] == [types.CLUSTER, types.ENDPOINT]
        self.ack(first)

    def _wake(self) -> None:
        self.woken += 1

    def ack(self, outs: list[Outgoing]) -> None:
        for out in outs:
            names = self.eds_names if out.type_url == types.ENDPOINT else []
            self.proto.on_request(
                discovery_pb2.DiscoveryRequest(
                    type_url=out.type_url,
                    resource_names=names,
                    response_nonce=out.nonce,
                    version_info=out.version,
                )
            )

    def pending(self) -> list[Outgoing]:
        snapshot = self.discovery.cache.get(self.key)
        assert snapshot is not None
        return self.proto.responses(snapshot)


def names_of(out: Outgoing) -> list[str]:
    message = {
        types.CLUSTER: cluster_pb2.Cluster,
        types.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    }[out.type_url]
    response = discovery_pb2.DiscoveryResponse.FromString(out.payload)
    decoded = [message.FromString(r.value) for r in response.resources]
    return [getattr(m, "cluster_name", "") or m.name for m in decoded]


async def test_a_full_push_that_changes_nothing_pushes_nothing(
    build_context: BuildContext, make_node: MakeNode
) -> None:
    discovery = DiscoveryService(build_context(version="1"), PilotMetrics())
    proxies = [Connected(discovery, make_node(CLIENT_A), 1), Connected(discovery, make_node(), 2)]
    before = {p.key: discovery.cache.get(p.key) for p in proxies}
    await discovery.push(PushRequest(full=True, reason="test"), build_context(version="2"))
    for proxy in proxies:
        assert discovery.cache.get(proxy.key) is before[proxy.key]
        assert proxy.woken == 0
        assert proxy.pending() == []


async def test_a_full_push_sends_only_what_changed(
    build_context: BuildContext, make_node: MakeNode
) -> None:
    discovery = DiscoveryService(build_context(version="1"), PilotMetrics())
    proxy = Connected(discovery, make_node(CLIENT_A), 1)
    before = discovery.cache.get(proxy.key)
    assert before is not None
    await discovery.push(PushRequest(full=True), build_context(MOVED_RATINGS, version="2"))
    after = discovery.cache.get(proxy.key)
    assert after is not None and after is not before
    assert proxy.woken == 1
    assert after.types[types.CLUSTER] is before.types[types.CLUSTER]  # kept, not rebuilt
    [out] = proxy.pending()
    assert out.type_url == types.ENDPOINT
    assert out.version == after.types[types.ENDPOINT].version
    assert names_of(out) == [RATINGS_9080]


async def test_an_endpoint_push_that_changes_nothing_pushes_nothing(
    build_context: BuildContext, make_node: MakeNode
) -> None:
    discovery = DiscoveryService(build_context(version="1"), PilotMetrics())
    proxy = Connected(discovery, make_node(CLIENT_A), 1)
    before = discovery.cache.get(proxy.key)
    request = PushRequest(full=False, endpoints=frozenset({RATINGS_HOST}))
    await discovery.push(request, build_context(version="2"))
    assert discovery.cache.get(proxy.key) is before
    assert proxy.woken == 0 and proxy.pending() == []


async def test_endpoint_updates_are_computed_once_per_view(
    build_context: BuildContext, make_node: MakeNode, monkeypatch
) -> None:
    computed: list[object] = []
    original = SnapshotGenerator._updated_endpoints

    def counting(self, ctx, current, view, hostnames):
        computed.append(view)
        return original(self, ctx, current, view, hostnames)

    monkeypatch.setattr(SnapshotGenerator, "_updated_endpoints", counting)
    discovery = DiscoveryService(build_context(version="1"), PilotMetrics())
    a = Connected(discovery, make_node(CLIENT_A), 1)
    b = Connected(discovery, make_node(CLIENT_B), 2)
    shop = Connected(discovery, make_node(CLIENT_SHOP), 3)
    request = PushRequest(full=False, endpoints=frozenset({RATINGS_HOST}))
    await discovery.push(request, build_context(MOVED_RATINGS, version="2"))

    assert len(computed) == 2  # the default namespace's view, and the shop one's
    assert len(set(computed)) == 2
    snapshots = {p.key: discovery.cache.get(p.key) for p in (a, b, shop)}
    assert snapshots[a.key].types[types.ENDPOINT] is snapshots[b.key].types[types.ENDPOINT]
    for proxy in (a, b, shop):
        assert proxy.woken == 1
        [out] = proxy.pending()
        assert out.type_url == types.ENDPOINT and names_of(out) == [RATINGS_9080]
        cla = snapshots[proxy.key].types[types.ENDPOINT].resources[RATINGS_9080]
        assert out.version == snapshots[proxy.key].types[types.ENDPOINT].version
        assert cla.name == RATINGS_9080
