"""The xDS transport's push throttle and stuck clients, with fakes of the gRPC stream.

`XdsServer._serve` only needs a request iterator and a servicer context (peer, auth context,
write, abort), so these tests drive it with fakes whose writes can be held or never finish,
and time is bounded by short send timeouts. Also: the options `create_server` gives grpc.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from meshcore import grpc_server
from meshcore.xds import types
from meshcore.xds.cache import SnapshotCache
from meshcore.xds.server import Received, XdsServer
from meshcore.xds.status import StreamInfo
from tests.unit.meshcore.conftest import names_in, snapshot


class Callbacks:
    def __init__(self) -> None:
        self.closed: list[str] = []
        self.sent: list[tuple[str, str]] = []

    def on_stream_open(self, stream: StreamInfo) -> str:
        return stream.node_id

    def on_stream_closed(self, stream: StreamInfo) -> None:
        self.closed.append(stream.node_id)

    def on_response_sent(self, stream: StreamInfo, type_url: str, count: int, secs: float) -> None:
        self.sent.append((stream.node_id, type_url))

    def on_ack(self, stream: StreamInfo, type_url: str, version: str) -> None:
        pass

    def on_nack(self, stream: StreamInfo, type_url: str, error: str) -> None:
        pass


class Writes:
    """Counts writes in flight across streams; holds them until `gate` is set."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.active = 0
        self.most = 0


class FakeContext:
    """A servicer context whose writes go through `writes`, or never finish when stuck."""

    def __init__(self, writes: Writes, *, stuck: bool = False) -> None:
        self.writes = writes
        self.stuck = stuck
        self.written: list[bytes] = []
        self.aborted: tuple[grpc.StatusCode, str] | None = None
        self.started_writing = False

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}

    async def write(self, payload: bytes) -> None:
        self.started_writing = True
        if self.stuck:
            await asyncio.Event().wait()  # a peer that stopped reading
        self.writes.active += 1
        self.writes.most = max(self.writes.most, self.writes.active)
        try:
            await self.writes.gate.wait()
        finally:
            self.writes.active -= 1
        self.written.append(payload)

    async def abort(self, code: grpc.StatusCode, message: str) -> None:
        self.aborted = (code, message)


async def requests(node_id: str) -> AsyncIterator[Received]:
    """A first CDS request (as the transport parses it), then a client that stays subscribed
    and sends nothing more."""
    first = discovery_pb2.DiscoveryRequest(node=base_pb2.Node(id=node_id), type_url=types.CLUSTER)
    yield Received(first.SerializeToString(), discovery_pb2.DiscoveryRequest)
    await asyncio.Event().wait()


def open_stream(xds: XdsServer, node_id: str, context: FakeContext) -> asyncio.Task[None]:
    return asyncio.create_task(xds._serve(requests(node_id), context, False, None))


async def until(condition, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)


async def close(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_at_most_32_streams_write_at_once_by_default() -> None:
    cache, writes = SnapshotCache(), Writes()
    xds = XdsServer(cache, Callbacks())
    contexts = {f"n{i}": FakeContext(writes) for i in range(40)}
    for node_id in contexts:
        cache.set(node_id, snapshot(cds=["a"]))
    writes.gate.clear()
    tasks = [open_stream(xds, node_id, ctx) for node_id, ctx in contexts.items()]
    try:
        await until(lambda: writes.active == 32)
        await settle()
        assert writes.active == writes.most == 32
        assert sum(not c.started_writing for c in contexts.values()) == 8
        writes.gate.set()
        await until(lambda: all(c.written for c in contexts.values()))
        assert writes.most == 32
        for ctx in contexts.values():
            [payload] = ctx.written
            response = discovery_pb2.DiscoveryResponse.FromString(payload)
            assert response.type_url == types.CLUSTER and names_in(payload) == ["a"]
    finally:
        await close(tasks)


async def test_the_limit_is_configurable() -> None:
    cache, writes = SnapshotCache(), Writes()
    xds = XdsServer(cache, Callbacks(), max_concurrent_pushes=3)
    contexts = [FakeContext(writes) for _ in range(6)]
    writes.gate.clear()
    tasks = []
    for i, ctx in enumerate(contexts):
        cache.set(f"n{i}", snapshot(cds=["a"]))
        tasks.append(open_stream(xds, f"n{i}", ctx))
    try:
        await until(lambda: writes.active == 3)
        await settle()
        assert writes.most == 3
        writes.gate.set()
        await until(lambda: all(c.written for c in contexts))
        assert writes.most == 3
    finally:
        await close(tasks)


async def test_a_stuck_client_is_dropped_after_its_send_timeout_without_delaying_others() -> None:
    cache, writes, callbacks = SnapshotCache(), Writes(), Callbacks()
    xds = XdsServer(cache, callbacks, send_timeout=0.5)
    cache.set("stuck", snapshot(cds=["s"]))
    stuck = FakeContext(writes, stuck=True)
    began = time.monotonic()
    stuck_task = open_stream(xds, "stuck", stuck)
    await until(lambda: stuck.started_writing)
    others = {f"ok{i}": FakeContext(writes) for i in range(5)}
    tasks = []
    for node_id, ctx in others.items():
        cache.set(node_id, snapshot(cds=[node_id]))
        tasks.append(open_stream(xds, node_id, ctx))
    try:
        await until(lambda: all(c.written for c in others.values()), within=0.4)
        assert time.monotonic() - began < 0.5  # served while the stuck one still waits
        assert not stuck_task.done()
        for node_id, ctx in others.items():
            assert names_in(ctx.written[0]) == [node_id]
        await asyncio.wait_for(stuck_task, 3)
        assert time.monotonic() - began >= 0.5
        assert stuck.aborted is not None
        code, message = stuck.aborted
        assert code is grpc.StatusCode.UNAVAILABLE
        assert message == "sending cds timed out after 0.5s"
        assert stuck.written == []
        assert callbacks.closed == ["stuck"]
        assert sorted(i.node_id for i in xds.streams.values()) == sorted(others)
        # The other streams are untouched and still pushed to.
        cache.set("ok0", snapshot(cds=["ok0", "more"]))
        await until(lambda: len(others["ok0"].written) == 2)
        assert sorted(names_in(others["ok0"].written[1])) == ["more", "ok0"]
    finally:
        await close([stuck_task, *tasks])


async def test_a_dropped_stuck_client_gives_its_push_slot_back() -> None:
    cache, writes = SnapshotCache(), Writes()
    xds = XdsServer(cache, Callbacks(), send_timeout=0.3, max_concurrent_pushes=1)
    cache.set("stuck", snapshot(cds=["s"]))
    cache.set("ok", snapshot(cds=["a"]))
    stuck, waiting = FakeContext(writes, stuck=True), FakeContext(writes)
    stuck_task = open_stream(xds, "stuck", stuck)
    await until(lambda: stuck.started_writing)
    task = open_stream(xds, "ok", waiting)
    try:
        await settle()
        assert not waiting.started_writing  # the only slot is taken
        await asyncio.wait_for(stuck_task, 3)
        assert stuck.aborted is not None and stuck.aborted[0] is grpc.StatusCode.UNAVAILABLE
        await until(lambda: bool(waiting.written))
        assert names_in(waiting.written[0]) == ["a"]
    finally:
        await close([stuck_task, task])


# create_server


@pytest.fixture
def captured_options(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    calls: list[dict[str, object]] = []

    def fake_server(*, options):
        calls.append(dict(options))
        return object()

    monkeypatch.setattr(grpc_server.grpc.aio, "server", fake_server)
    return calls


def test_create_server_raises_grpcs_pending_request_limit(captured_options) -> None:
    grpc_server.create_server()
    [options] = captured_options
    assert options["grpc.server.max_pending_requests"] == 100_000
    assert options["grpc.server.max_pending_requests_hard_limit"] == 100_000
    assert options["grpc.max_concurrent_streams"] == 100_000
    assert "grpc.max_pending_requests" not in options  # not an option grpc reads


def test_create_server_pending_limit_follows_max_concurrent_streams(captured_options) -> None:
    grpc_server.create_server(max_concurrent_streams=5000)
    [options] = captured_options
    assert options["grpc.server.max_pending_requests"] == 5000
    assert options["grpc.server.max_pending_requests_hard_limit"] == 5000


async def test_create_server_options_are_accepted_by_grpc() -> None:
    server = grpc_server.create_server(max_concurrent_streams=5000)
    port = grpc_server.bind(server, "127.0.0.1:0")
    await server.start()
    try:
        assert port > 0
    finally:
        await server.stop(grace=None)
