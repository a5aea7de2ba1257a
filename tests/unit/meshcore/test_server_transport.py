"""The xDS transport over real gRPC sockets: statuses for bad input, isolation of streams."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.cluster.v3 import cds_pb2_grpc
from envoy.service.discovery.v3 import discovery_pb2

from meshcore.grpc_server import bind, create_server
from meshcore.h2_server import H2Server
from meshcore.xds import types
from meshcore.xds.cache import SnapshotCache
from meshcore.xds.errors import InvalidNode
from meshcore.xds.server import XdsServer
from meshcore.xds.status import StreamInfo
from tests.support.xds_client import Client, until
from tests.unit.meshcore.conftest import names_in, snapshot


class RecordingCallbacks:
    """Accepts node ids starting with "ok", keys every stream by its node id."""

    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def on_stream_open(self, stream: StreamInfo) -> str:
        if not stream.node_id.startswith("ok"):
            raise InvalidNode(f"node id {stream.node_id!r} is malformed")
        return stream.node_id

    def on_stream_closed(self, stream: StreamInfo) -> None:
        self.events.append(("closed", stream.node_id))

    def on_response_sent(self, stream: StreamInfo, type_url: str, count: int, secs: float) -> None:
        self.events.append(("sent", stream.node_id, type_url))

    def on_ack(self, stream: StreamInfo, type_url: str, version: str) -> None:
        self.events.append(("ack", stream.node_id, type_url))

    def on_nack(self, stream: StreamInfo, type_url: str, error: str) -> None:
        self.events.append(("nack", stream.node_id, error))


@contextlib.asynccontextmanager
async def listening(xds: XdsServer, transport: str) -> AsyncIterator[str]:
    """`xds` on grpc.aio or on `meshcore.h2_server`, at the address it yields."""
    if transport == "h2_server":
        h2 = H2Server(xds.h2_methods())
        port = await h2.start("127.0.0.1", 0)
        try:
            yield f"127.0.0.1:{port}"
        finally:
            await h2.stop()
        return
    server = create_server()
    xds.add_to(server)
    port = bind(server, "127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


TRANSPORTS = pytest.mark.parametrize("transport", ["grpc.aio", "h2_server"])


@pytest.fixture(params=["grpc.aio", "h2_server"])
async def served(request) -> AsyncIterator[tuple[XdsServer, RecordingCallbacks, str]]:
    """An XdsServer on either transport: the same behaviour is asked of both."""
    callbacks = RecordingCallbacks()
    xds = XdsServer(SnapshotCache(), callbacks, max_request_bytes=64 * 1024)
    async with listening(xds, request.param) as address:
        yield xds, callbacks, address


def node_request(node_id: str, type_url: str = types.CLUSTER, **fields):
    return discovery_pb2.DiscoveryRequest(
        node=base_pb2.Node(id=node_id), type_url=type_url, **fields
    )


async def test_serves_a_snapshot_and_records_the_ack(served) -> None:
    xds, callbacks, address = served
    xds.cache.set("ok-1", snapshot(cds=["a"]))
    client = Client(address)
    client.send(node_request("ok-1"))
    response = await client.receive()
    assert names_in(response.SerializeToString()) == ["a"]
    client.send(
        discovery_pb2.DiscoveryRequest(
            type_url=types.CLUSTER,
            response_nonce=response.nonce,
            version_info=response.version_info,
        )
    )
    await until(lambda: ("ack", "ok-1", types.CLUSTER) in callbacks.events)
    xds.cache.set("ok-1", snapshot(cds=["a", "b"]))
    pushed = await client.receive()
    assert sorted(names_in(pushed.SerializeToString())) == ["a", "b"]
    await client.close()


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        (node_request("bad~node"), "malformed"),
        (node_request("ok-2", "type.googleapis.com/no.Such"), "unknown type URL"),
        (discovery_pb2.DiscoveryRequest(type_url=types.CLUSTER), "must carry node.id"),
    ],
)
async def test_bad_first_requests_get_invalid_argument(served, first, expected) -> None:
    _, _, address = served
    client = Client(address)
    client.send(first)
    error = await client.failure()
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert expected in error.details()
    await client.close()


async def test_garbage_nonce_ends_only_that_stream(served) -> None:
    xds, _, address = served
    xds.cache.set("ok-a", snapshot(cds=["a"]))
    xds.cache.set("ok-b", snapshot(cds=["b"]))
    bad, good = Client(address), Client(address)
    bad.send(node_request("ok-a"))
    good.send(node_request("ok-b"))
    await bad.receive()
    first = await good.receive()
    bad.send(discovery_pb2.DiscoveryRequest(type_url=types.CLUSTER, response_nonce="zz"))
    error = await bad.failure()
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "never sent" in error.details()
    good.send(discovery_pb2.DiscoveryRequest(type_url=types.CLUSTER, response_nonce=first.nonce))
    xds.cache.set("ok-b", snapshot(cds=["b", "c"]))
    assert sorted(names_in((await good.receive()).SerializeToString())) == ["b", "c"]
    await bad.close()
    await good.close()


async def test_oversized_request_gets_resource_exhausted(served, caplog) -> None:
    xds, _, address = served
    caplog.set_level("INFO")
    xds.cache.set("ok-big", snapshot(cds=["a"]))
    client = Client(address)
    client.send(node_request("ok-big"))
    await client.receive()
    client.send(
        discovery_pb2.DiscoveryRequest(type_url=types.CLUSTER, resource_names=["x" * 100_000])
    )
    error = await client.failure()
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "exceeds the limit of 65536 bytes" in error.details()
    assert "exceeds the limit" in caplog.text
    await client.close()


async def test_closed_streams_are_forgotten(served) -> None:
    xds, callbacks, address = served
    xds.cache.set("ok-c", snapshot(cds=["a"]))
    client = Client(address)
    client.send(node_request("ok-c"))
    await client.receive()
    assert [s.node_id for s in xds.streams.values()] == ["ok-c"]
    await client.close()
    await until(lambda: not xds.streams)
    assert ("closed", "ok-c") in callbacks.events


@TRANSPORTS
async def test_a_client_that_stops_reading_loses_its_stream(caplog, transport: str) -> None:
    cache = SnapshotCache()
    xds = XdsServer(cache, RecordingCallbacks(), send_timeout=0.5)
    async with listening(xds, transport) as address:
        huge = {f"c{i}": "x" * 50_000 for i in range(200)}  # ~10 MB, far past flow control
        cache.set("ok-stuck", snapshot(cds=huge))
        stuck = Client(address)
        stuck.send(node_request("ok-stuck"))
        await until(lambda: bool(xds.streams))
        for step in range(2):  # each push is a new, different full set it will never read
            cache.set("ok-stuck", snapshot(cds={k: f"{v}{step}" for k, v in huge.items()}))
        await until(lambda: not xds.streams)
        assert "timed out after 0.5s" in caplog.text
        await stuck.close()


async def test_per_type_services_serve_their_own_type(served) -> None:
    xds, _, address = served
    xds.cache.set("ok-cds", snapshot(cds=["a"], lds=["l"]))
    async with grpc.aio.insecure_channel(address) as channel:
        stub = cds_pb2_grpc.ClusterDiscoveryServiceStub(channel)
        call = stub.StreamClusters(iter([node_request("ok-cds", type_url="")]))
        response = await asyncio.wait_for(call.read(), 5)
        assert response.type_url == types.CLUSTER
        assert names_in(response.SerializeToString()) == ["a"]
        call.cancel()
        listeners = stub.StreamClusters(iter([node_request("ok-cds", types.LISTENER)]))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.wait_for(listeners.read(), 5)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "serves only" in caught.value.details()


async def test_undecodable_request_gets_invalid_argument(served) -> None:
    _, _, address = served
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.stream_stream(
            "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
        )()
        await call.write(b"\x0a\xff\xff\xff")  # a length running past the end
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call.read()
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid DiscoveryRequest" in raised.value.details()
