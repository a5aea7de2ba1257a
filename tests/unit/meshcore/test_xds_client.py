"""The generic ADS client against the real xDS server: receive, NACK, reconnect and resync."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from google.protobuf import any_pb2

from meshcore.grpc_server import bind, create_server
from meshcore.xds import types
from meshcore.xds.cache import SnapshotCache
from meshcore.xds.client import XdsClient
from meshcore.xds.server import XdsServer
from meshcore.xds.status import StreamInfo, SyncState
from tests.support.xds_client import until
from tests.unit.meshcore.conftest import snapshot


class AcceptAll:
    def on_stream_open(self, stream: StreamInfo) -> str:
        return "key"

    def on_stream_closed(self, stream: StreamInfo) -> None:
        pass

    def on_response_sent(self, stream: StreamInfo, type_url: str, n: int, secs: float) -> None:
        pass

    def on_ack(self, stream: StreamInfo, type_url: str, version: str) -> None:
        pass

    def on_nack(self, stream: StreamInfo, type_url: str, error: str) -> None:
        pass


def decode(type_url: str, packed: any_pb2.Any) -> tuple[str, str]:
    cluster = cluster_pb2.Cluster()
    packed.Unpack(cluster)
    if cluster.alt_stat_name == "poison":
        raise ValueError(f"cluster {cluster.name} is poisoned")
    return cluster.name, cluster.alt_stat_name


class Server:
    def __init__(self, port: int = 0) -> None:
        self.cache = SnapshotCache()
        self.xds = XdsServer(self.cache, AcceptAll())
        self.grpc = create_server()
        self.xds.add_to(self.grpc)
        self.port = bind(self.grpc, f"127.0.0.1:{port}")

    async def __aenter__(self) -> Server:
        await self.grpc.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.grpc.stop(grace=None)


@pytest.fixture(params=[False, True], ids=["sotw", "delta"])
def delta(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with Server() as running:
        yield running


async def start(client: XdsClient[str]) -> asyncio.Task[None]:
    return asyncio.create_task(client.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_receives_updates_and_acks(server: Server, delta: bool) -> None:
    seen: list[Mapping[str, str]] = []
    server.cache.set("key", snapshot(cds={"a": "one"}))
    client: XdsClient[str] = XdsClient(
        f"127.0.0.1:{server.port}",
        base_pb2.Node(id="n"),
        [types.CLUSTER],
        decode,
        lambda _t, resources: seen.append(resources),
        delta=delta,
    )
    task = await start(client)
    try:
        await asyncio.wait_for(client.synced.wait(), 5)
        assert client.resources(types.CLUSTER) == {"a": "one"}
        server.cache.set("key", snapshot(cds={"b": "two"}))
        await until(lambda: client.resources(types.CLUSTER) == {"b": "two"})
        [stream] = server.xds.streams.values()
        await until(lambda: stream.status(types.CLUSTER).state is SyncState.SYNCED)
    finally:
        await stop(task)


async def test_a_resource_it_cannot_decode_is_nacked_and_the_last_good_set_stays(
    server: Server, delta: bool
) -> None:
    server.cache.set("key", snapshot(cds={"a": "one"}))
    client: XdsClient[str] = XdsClient(
        f"127.0.0.1:{server.port}",
        base_pb2.Node(id="n"),
        [types.CLUSTER],
        decode,
        lambda _t, _r: None,
        delta=delta,
    )
    task = await start(client)
    try:
        await asyncio.wait_for(client.synced.wait(), 5)
        server.cache.set("key", snapshot(cds={"a": "one", "b": "poison"}))
        [stream] = server.xds.streams.values()
        await until(lambda: stream.status(types.CLUSTER).state is SyncState.NACK)
        assert "cluster b is poisoned" in stream.status(types.CLUSTER).nack_error
        assert client.resources(types.CLUSTER) == {"a": "one"}
    finally:
        await stop(task)


async def test_reconnects_and_resyncs_after_the_server_restarts(delta: bool) -> None:
    async with Server() as first:
        port = first.port
        first.cache.set("key", snapshot(cds={"a": "one", "b": "two"}))
        client: XdsClient[str] = XdsClient(
            f"127.0.0.1:{port}",
            base_pb2.Node(id="n"),
            [types.CLUSTER],
            decode,
            lambda _t, _r: None,
            delta=delta,
            backoff_initial=0.05,
        )
        task = await start(client)
        await asyncio.wait_for(client.synced.wait(), 5)
    try:
        second = Server(port)
        second.cache.set("key", snapshot(cds={"a": "one", "c": "three"}))
        async with second:
            await until(lambda: client.resources(types.CLUSTER) == {"a": "one", "c": "three"})
    finally:
        await stop(task)
