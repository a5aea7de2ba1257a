"""meshcore.h2_server against grpc's own client (grpc.aio), over real loopback sockets.

What the xDS handlers rely on is asked of it here directly: messages of any size both ways
within the client's flow-control windows, many calls on one connection, the end of the
client's requests, statuses and their messages, cancellation both ways, a refused method, a
compressed request, and a server stopping under open calls.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import grpc
import hpack
import pytest

from meshcore.h2_server import (
    ACK,
    DATA,
    END_HEADERS,
    FLOW_CONTROL_ERROR,
    HEADERS,
    PING,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    STREAM_RECEIVE_WINDOW,
    CallContext,
    H2Server,
    Method,
    frame,
)

SERVICE = "/test.Echo/"


class Handlers:
    """Test handlers, recording what happened to them."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.started = asyncio.Event()

    async def sizes(self, requests: AsyncIterator[bytes], context: CallContext) -> None:
        """Answers each request (a decimal size) with that many bytes."""
        async for request in requests:
            size = int(request)
            await context.write(bytes([size % 251]) * size)

    async def count(self, requests: AsyncIterator[bytes], context: CallContext) -> None:
        """Answers with how many requests came, once the client has sent them all."""
        received = [request async for request in requests]
        await context.write(str(len(received)).encode())

    async def abort(self, requests: AsyncIterator[bytes], context: CallContext) -> None:
        await anext(aiter(requests))
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "100% wrong: ünïcode")

    async def fail(self, requests: AsyncIterator[bytes], context: CallContext) -> None:
        await anext(aiter(requests))
        raise ValueError("boom")

    async def wait(self, requests: AsyncIterator[bytes], context: CallContext) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.cancelled.set()

    def methods(self) -> dict[str, Method]:
        handlers = {
            "Sizes": self.sizes,
            "Count": self.count,
            "Abort": self.abort,
            "Fail": self.fail,
            "Wait": self.wait,
        }
        return {SERVICE + name: Method(bytes, handle) for name, handle in handlers.items()}


@pytest.fixture
async def served() -> AsyncIterator[tuple[H2Server, Handlers, grpc.aio.Channel]]:
    handlers = Handlers()
    server = H2Server(handlers.methods())
    port = await server.start("127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield server, handlers, channel
    finally:
        await channel.close()
        await server.stop()


def call(channel: grpc.aio.Channel, name: str, **options) -> grpc.aio.StreamStreamCall:
    return channel.stream_stream(SERVICE + name)(**options)


async def test_large_responses_arrive_whole_within_the_clients_windows(served) -> None:
    _, _, channel = served
    stream = call(channel, "Sizes")
    for size in (10, 3_500_000, 70_000, 0):  # grpc clients take up to 4 MiB
        await stream.write(str(size).encode())
        response = await stream.read()
        assert response == bytes([size % 251]) * size
    await stream.done_writing()
    assert await stream.code() is grpc.StatusCode.OK


async def test_a_large_request_is_taken_whole(served) -> None:
    _, _, channel = served
    stream = call(channel, "Count")
    for _ in range(3):
        await stream.write(b"1" * 3_000_000)  # past the call's and the connection's windows
    await stream.done_writing()
    assert await stream.read() == b"3"
    assert await stream.code() is grpc.StatusCode.OK


async def test_many_calls_share_one_connection(served) -> None:
    server, _, channel = served

    async def one(index: int) -> bytes:
        stream = call(channel, "Sizes")
        await stream.write(str(1000 + index).encode())
        response: bytes = await stream.read()
        await stream.done_writing()
        assert await stream.code() is grpc.StatusCode.OK
        return response

    responses = await asyncio.gather(*(one(i) for i in range(50)))
    assert [len(r) for r in responses] == [1000 + i for i in range(50)]
    assert server.connections == 1


async def test_the_end_of_the_clients_requests_ends_the_iterator(served) -> None:
    _, _, channel = served
    stream = call(channel, "Count")
    for _ in range(4):
        await stream.write(b"x")
    await stream.done_writing()
    assert await stream.read() == b"4"
    assert await stream.code() is grpc.StatusCode.OK


async def test_abort_ends_the_call_with_its_status_and_message(served) -> None:
    _, _, channel = served
    stream = call(channel, "Abort")
    await stream.write(b"go")
    assert await stream.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert await stream.details() == "100% wrong: ünïcode"


async def test_a_failing_handler_ends_only_its_call(served) -> None:
    _, _, channel = served
    failing = call(channel, "Fail")
    await failing.write(b"go")
    assert await failing.code() is grpc.StatusCode.UNKNOWN
    assert await failing.details() == "ValueError: boom"
    working = call(channel, "Count")
    await working.done_writing()
    assert await working.read() == b"0"


async def test_an_unknown_method_is_unimplemented(served) -> None:
    _, _, channel = served
    stream = call(channel, "Nothing")  # refused as soon as it opens, before any request
    assert await stream.code() is grpc.StatusCode.UNIMPLEMENTED
    assert "/test.Echo/Nothing" in await stream.details()


async def test_a_compressed_request_is_refused(served) -> None:
    _, _, channel = served
    stream = call(channel, "Count", compression=grpc.Compression.Gzip)
    await stream.write(b"x" * 1000)
    assert await stream.code() is grpc.StatusCode.UNIMPLEMENTED
    assert "compressed" in await stream.details()


async def test_a_call_the_client_cancels_cancels_its_handler(served) -> None:
    _, handlers, channel = served
    stream = call(channel, "Wait")
    await stream.write(b"x")
    await asyncio.wait_for(handlers.started.wait(), 5)
    stream.cancel()
    await asyncio.wait_for(handlers.cancelled.wait(), 5)


async def test_stopping_ends_open_calls_and_their_handlers(served) -> None:
    server, handlers, channel = served
    stream = call(channel, "Wait")
    await stream.write(b"x")
    await asyncio.wait_for(handlers.started.wait(), 5)
    await server.stop()
    assert handlers.cancelled.is_set()  # stop returns once the handlers have finished
    assert await stream.code() is not grpc.StatusCode.OK


async def test_a_connection_that_is_not_http2_is_closed(served) -> None:
    server, _, _ = served
    port = server._listeners[0].sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    received = await asyncio.wait_for(reader.read(), 5)  # until the server closes
    assert b"not an HTTP/2 connection preface" in received  # the GOAWAY's debug data
    writer.close()


async def test_a_request_past_the_size_limit_is_refused_before_it_is_read() -> None:
    handlers = Handlers()
    server = H2Server(handlers.methods(), max_message_bytes=1000)
    port = await server.start("127.0.0.1", 0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stream = call(channel, "Count")
        await stream.write(b"x" * 1001)
        assert await stream.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await stream.details() == "request of 1001 bytes exceeds the limit of 1000 bytes"
    await server.stop()


async def test_connections_are_kept_alive_by_tcp(served) -> None:
    """A peer that vanished without closing is found by TCP keepalives (grpc's server pings
    instead): idle 30 s, then a probe every 10 s."""
    server, _, channel = served
    stream = call(channel, "Count")
    await stream.done_writing()
    await stream.read()
    (connection,) = server._connections
    sock = connection._transport.get_extra_info("socket")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10


async def test_a_client_sending_past_its_window_loses_the_call_not_the_connection(served) -> None:
    """A client that ignores flow control cannot make the server hold more than the window of
    requests a handler has not taken: the call is reset with FLOW_CONTROL_ERROR."""
    server, handlers, _ = served
    port = server._listeners[0].sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    headers = hpack.Encoder().encode(
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", SERVICE + "Wait"),  # never reads its requests
            (":authority", "test"),
            ("content-type", "application/grpc"),
        ]
    )
    chunk = bytes(16_384)
    writer.write(PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_HEADERS, 1, headers))
    for _ in range(STREAM_RECEIVE_WINDOW // len(chunk) + 1):
        writer.write(frame(DATA, 0, 1, chunk))
    writer.write(frame(PING, 0, 0, b"stillup!"))
    await writer.drain()
    frames = await _frames_until(reader, lambda kind, flags, payload: kind == PING and flags & ACK)
    resets = [payload for kind, _, stream, payload in frames if kind == RST_STREAM and stream == 1]
    assert resets == [FLOW_CONTROL_ERROR.to_bytes(4, "big")]
    await asyncio.wait_for(handlers.cancelled.wait(), 5)
    writer.close()


async def _frames_until(reader: asyncio.StreamReader, last) -> list[tuple[int, int, int, bytes]]:
    """The server's frames as (type, flags, stream, payload), up to the one `last` accepts."""
    frames = []
    while True:
        head = await asyncio.wait_for(reader.readexactly(9), 5)
        length, kind, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
        stream = int.from_bytes(head[5:9], "big")
        payload = await reader.readexactly(length)
        frames.append((kind, flags, stream, payload))
        if last(kind, flags, payload):
            return frames
