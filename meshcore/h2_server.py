"""A gRPC server for long-lived streaming calls, on asyncio's own transports (cleartext HTTP/2).

Why: pilot writes thousands of xDS responses per push and reads as many ACKs, and on grpc.aio
each of those is a batch operation with a future, a hop through grpc's event-engine and poller
threads and a wake-up of the handler's task; measured with the same clients
(`benchmarks/xds_baseline_h2.py`), a bare push server spends 67-74 µs a message on grpc.aio and
25-26 µs on this server, which frames HTTP/2 in Python on an `asyncio.Protocol`. This server
runs pilot's xDS handlers unchanged: the same `(requests, context) -> None` coroutines grpc.aio
calls, with a context offering what they use of grpc's (`write`, `abort`, `peer`,
`auth_context`).

What it implements of HTTP/2 (RFC 9113) and gRPC over it: prior-knowledge cleartext connections
(as Envoy and grpc's insecure channels open them), any number of concurrent calls per
connection up to `max_concurrent_streams`, HPACK header blocks (`hpack`) with CONTINUATION,
flow control both ways (a request's window is given back when the handler takes the message, so
a handler that stops reading stops its client, and a client that sends past its window loses
the call, or past the connection's the connection; responses wait for the window the client
grants), PING and SETTINGS acknowledged, RST_STREAM and GOAWAY from the client ending calls and
connections, trailers with `grpc-status` and `grpc-message` (trailers-only for a call refused
before any response). Messages are uncompressed (a compressed one ends the call with
UNIMPLEMENTED), and a request announcing more than `max_message_bytes` ends its call with
RESOURCE_EXHAUSTED before anything of it is buffered. Dead peers are found by TCP keepalives
rather than HTTP/2 pings. Not implemented: TLS (pilot's mutual-TLS port stays on grpc.aio),
deadlines (`grpc-timeout` is ignored; these calls live as long as the proxy), unary calls.

A handler's task is cancelled when its client resets the call or the connection is lost, as
grpc.aio cancels it. `write` returns once the response is handed to the transport, waiting only
while the client's window is closed or more than `WRITE_BUFFER_BYTES` wait unsent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import hpack

from meshcore.grpc_server import DEFAULT_MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Frame types (PRIORITY, 0x2, is ignored as HTTP/2 allows, so it has no name here).
DATA, HEADERS, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE = (
    0x0,
    0x1,
    0x3,
    0x4,
    0x5,
    0x6,
    0x7,
    0x8,
)
CONTINUATION = 0x9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
(
    SETTINGS_HEADER_TABLE_SIZE,
    SETTINGS_ENABLE_PUSH,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_FRAME_SIZE,
) = (0x1, 0x2, 0x3, 0x4, 0x5)
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, REFUSED_STREAM, CANCEL = 0x0, 0x1, 0x3, 0x7, 0x8
DEFAULT_WINDOW = 65_535
DEFAULT_FRAME = 16_384
MAX_WINDOW = 2**31 - 1
LARGEST_FRAME = 2**24 - 1
# What a client may send ahead of what handlers have taken: per call, and per connection.
STREAM_RECEIVE_WINDOW = 4 * 1024 * 1024
CONNECTION_RECEIVE_WINDOW = 64 * 1024 * 1024
# What a connection's transport may hold unsent before `write` waits (asyncio's default is
# 64 KiB): about one response of a 5000-service mesh, so that a client that reads slowly but
# steadily is not taken for a stuck one by pilot's send timeout. Not more: Python 3.11's
# transport keeps what is unsent in one bytearray that it shifts after every partial send,
# and 8 MiB cost pilot twice the CPU and memory of a cold connect at 5000 services.
WRITE_BUFFER_BYTES = 2 * 1024 * 1024
_GRPC_CONTENT_TYPE = "application/grpc"
_KEEPALIVE_IDLE_S, _KEEPALIVE_INTERVAL_S, _KEEPALIVE_PROBES = 30, 10, 3
_STOP_TIMEOUT_S = 5.0  # for handlers to finish once their calls are ended
# grpc-message is percent-encoded: printable ASCII but '%' stays as it is (gRPC's HTTP/2 spec).
_MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")

Handler = Callable[[AsyncIterator[Any], "CallContext"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Method:
    """A streaming method: how a request's bytes become what the handler receives, and the
    handler. Responses are bytes, written as they are."""

    deserialize: Callable[[bytes], Any]
    handle: Handler


class ProtocolError(Exception):
    """The client broke HTTP/2 in a way that ends the connection."""


class CallAborted(Exception):
    """Raised by `CallContext.abort` to end the handler, as grpc.aio's `AbortError`."""


# HTTP/2 framing, shared with the load generator's client side (benchmarks/h2_stream.py).


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload
    )


def _data_header(length: int, stream_bytes: bytes) -> bytes:
    return length.to_bytes(3, "big") + b"\x00\x00" + stream_bytes


def header_fragment(flags: int, payload: Any) -> Any:
    """A HEADERS frame's payload without its padding and priority fields."""
    if flags & PADDED:
        payload = payload[1 : len(payload) - payload[0]]
    if flags & PRIORITY_FLAG:
        payload = payload[5:]
    return payload


def setting(key: int, value: int) -> bytes:
    return key.to_bytes(2, "big") + value.to_bytes(4, "big")


def window_update(stream: int, grant: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream, grant.to_bytes(4, "big"))


class H2Server:
    """Serves `methods` (by path, `/<service>/<method>`) on cleartext HTTP/2."""

    def __init__(
        self,
        methods: Mapping[str, Method],
        *,
        max_concurrent_streams: int = 100_000,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._methods = dict(methods)
        self._max_streams = max_concurrent_streams
        self.max_message_bytes = max_message_bytes  # a request's, refused before it is read
        self._listeners: list[asyncio.Server] = []
        self._connections: set[_Connection] = set()
        # Every call's handler task, held here (the loop keeps tasks only weakly) until done.
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0: any free port); the port bound."""
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(
            lambda: _Connection(self), host, port, backlog=4096, reuse_address=True
        )
        self._listeners.append(listener)
        bound: int = listener.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        """Stop listening, tell every client to go away, end every call and wait for its
        handler to finish."""
        for listener in self._listeners:
            listener.close()
        for connection in list(self._connections):
            connection.go_away()
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=_STOP_TIMEOUT_S)
        for listener in self._listeners:
            await listener.wait_closed()
        self._listeners.clear()

    def _run_handler(self, call: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(call)
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        return task

    @property
    def connections(self) -> int:
        return len(self._connections)

    def _opened(self, connection: _Connection) -> None:
        self._connections.add(connection)

    def _closed(self, connection: _Connection) -> None:
        self._connections.discard(connection)


class CallContext:
    """What a handler may do with its call (the subset of grpc.aio's `ServicerContext` that
    pilot's handlers use)."""

    __slots__ = ("_stream",)

    def __init__(self, stream: _Stream) -> None:
        self._stream = stream

    def peer(self) -> str:
        return self._stream.connection.peer

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}  # cleartext: no certificate

    async def write(self, message: bytes) -> None:
        await self._stream.write(message)

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        await self._stream.finish(code, details)
        raise CallAborted(f"{code.name}: {details}")


class _Requests:
    """The handler's requests: an async iterator over the call's messages, in order."""

    __slots__ = ("_stream",)

    def __init__(self, stream: _Stream) -> None:
        self._stream = stream

    def __aiter__(self) -> _Requests:
        return self

    async def __anext__(self) -> Any:
        return await self._stream.next_request()


class _Stream:
    """One call: its request messages as they arrive, its responses as the window allows."""

    __slots__ = (
        "_body",
        "_filled",
        "_prefix",
        "_queue",
        "_waiting_for_request",
        "_waiting_for_window",
        "connection",
        "finished",
        "half_closed",
        "headers_sent",
        "id",
        "id_bytes",
        "method",
        "receive_window",
        "send_window",
        "task",
        "unacknowledged",
    )

    def __init__(self, connection: _Connection, stream_id: int, method: Method) -> None:
        self.connection = connection
        self.id = stream_id
        self.id_bytes = stream_id.to_bytes(4, "big")
        self.method = method
        self.send_window = connection.peer_initial_window
        self.unacknowledged = 0  # request bytes taken since our last WINDOW_UPDATE for it
        self.receive_window = STREAM_RECEIVE_WINDOW  # what the client may still send on it
        self.half_closed = False  # the client sent END_STREAM: no more requests
        self.headers_sent = False
        self.finished = False  # trailers sent or the stream reset
        self.task: asyncio.Task[None] | None = None
        self._queue: deque[tuple[Any, int]] = deque()  # (request, its bytes on the wire)
        self._waiting_for_request: asyncio.Future[None] | None = None
        self._waiting_for_window: asyncio.Future[None] | None = None
        self._prefix = bytearray()
        self._body: bytearray | None = None
        self._filled = 0

    # Requests

    def receive(self, data: memoryview) -> None:
        """DATA payload: whole gRPC messages are deserialized and queued for the handler."""
        position, end = 0, len(data)
        while position < end:
            body = self._body
            if body is None:
                taken = min(5 - len(self._prefix), end - position)
                self._prefix += data[position : position + taken]
                position += taken
                if len(self._prefix) < 5:
                    return
                if self._prefix[0]:
                    raise _CallRefused(grpc.StatusCode.UNIMPLEMENTED, "compressed request")
                size = int.from_bytes(self._prefix[1:5], "big")
                self._prefix.clear()
                limit = self.connection.max_message_bytes
                if size > limit:
                    raise _CallRefused(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"request of {size} bytes exceeds the limit of {limit} bytes",
                    )
                if end - position >= size:  # whole here: copied once, not assembled
                    self._deliver(bytes(data[position : position + size]), size + 5)
                    position += size
                    continue
                body = self._body = bytearray(size)
                self._filled = 0
            taken = min(len(body) - self._filled, end - position)
            body[self._filled : self._filled + taken] = data[position : position + taken]
            self._filled += taken
            position += taken
            if self._filled == len(body):
                self._body = None
                self._deliver(bytes(body), len(body) + 5)

    def _deliver(self, payload: bytes, wire_bytes: int) -> None:
        self._queue.append((self.method.deserialize(payload), wire_bytes))
        self._wake_reader()

    def end_of_requests(self) -> None:
        self.half_closed = True
        self._wake_reader()

    def _wake_reader(self) -> None:
        waiter = self._waiting_for_request
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next_request(self) -> Any:
        while not self._queue:
            if self.half_closed or self.finished:
                raise StopAsyncIteration
            waiter = self._waiting_for_request = self.connection.loop.create_future()
            await waiter
        request, wire_bytes = self._queue.popleft()
        self.connection.consumed(self, wire_bytes)
        return request

    # Responses

    async def write(self, message: bytes) -> None:
        if self.finished:
            raise asyncio.CancelledError("the call has ended")
        connection = self.connection
        if not self.headers_sent:
            self._send_headers()
        framed_size = 5 + len(message)
        prefix = b"\x00" + len(message).to_bytes(4, "big")
        sent = 0  # of the framed message
        view = memoryview(message)
        while sent < framed_size:
            allowed = min(self.send_window, connection.send_window, framed_size - sent)
            if allowed <= 0:
                await self._window_opened()
                continue
            pieces: list[bytes | memoryview] = []
            stop = sent + allowed
            frame_size = connection.peer_frame
            while sent < stop:
                size = min(frame_size, stop - sent)
                pieces.append(_data_header(size, self.id_bytes))
                if sent < 5:
                    head = prefix[sent : min(5, sent + size)]
                    pieces.append(head)
                    rest = size - len(head)
                    if rest:
                        pieces.append(view[:rest])
                else:
                    pieces.append(view[sent - 5 : sent - 5 + size])
                sent += size
            self.send_window -= allowed
            connection.send_window -= allowed
            connection.write(b"".join(pieces))
            await connection.drained()
            if self.finished:
                raise asyncio.CancelledError("the call has ended")

    def window_opened(self) -> None:
        waiter = self._waiting_for_window
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _window_opened(self) -> None:
        waiter = self._waiting_for_window = self.connection.loop.create_future()
        await waiter
        if self.finished:
            raise asyncio.CancelledError("the call has ended")

    def _send_headers(self) -> None:
        self.headers_sent = True
        self.connection.send_headers(
            self.id, [(":status", "200"), ("content-type", _GRPC_CONTENT_TYPE)], end=False
        )

    async def finish(self, code: grpc.StatusCode, details: str = "") -> None:
        """End the call with a status, once the transport has taken it."""
        self.finish_now(code, details)
        await self.connection.drained()

    def finish_now(self, code: grpc.StatusCode, details: str = "") -> None:
        """End the call with a status (trailers; trailers-only before any response)."""
        if self.finished:
            return
        trailers = [("grpc-status", str(code.value[0]))]
        if details:
            trailers.append(("grpc-message", urllib.parse.quote(details, safe=_MESSAGE_SAFE)))
        if not self.headers_sent:
            self.headers_sent = True
            trailers = [(":status", "200"), ("content-type", _GRPC_CONTENT_TYPE), *trailers]
        self.finished = True
        self.connection.send_headers(self.id, trailers, end=True)
        self.connection.forget(self)
        self._wake_reader()
        self.window_opened()

    def reset(self) -> None:
        """The client reset the call, or the connection is gone: end the handler."""
        self.finished = True
        self._wake_reader()
        self.window_opened()
        if self.task is not None:
            self.task.cancel()


class _CallRefused(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class _Connection(asyncio.Protocol):
    """One client connection: frames in, calls dispatched, frames out."""

    def __init__(self, server: H2Server) -> None:
        self._server = server
        self.max_message_bytes = server.max_message_bytes
        self.loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self.peer = "unknown"
        self._in = bytearray()
        self._preface_seen = False
        self._streams: dict[int, _Stream] = {}
        self._last_stream_id = 0
        self._decoder = hpack.Decoder()
        self._encoder = hpack.Encoder()
        self._header_block = bytearray()  # a block continued in CONTINUATION frames
        self._header_block_stream = 0
        self._header_block_ends_stream = False
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_frame = DEFAULT_FRAME
        self.send_window = DEFAULT_WINDOW
        self._unacknowledged = 0  # connection-level bytes taken since our last WINDOW_UPDATE
        self._receive_window = CONNECTION_RECEIVE_WINDOW  # what the client may still send
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._going_away = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.set_write_buffer_limits(high=WRITE_BUFFER_BYTES)
        _keep_alive(transport.get_extra_info("socket"))
        host, port, *_ = transport.get_extra_info("peername") or ("unknown", 0)
        self.peer = f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"
        self._server._opened(self)
        settings = (
            setting(SETTINGS_MAX_CONCURRENT_STREAMS, self._server._max_streams)
            + setting(SETTINGS_INITIAL_WINDOW_SIZE, STREAM_RECEIVE_WINDOW)
            + setting(SETTINGS_ENABLE_PUSH, 0)
        )
        transport.write(
            frame(SETTINGS, 0, 0, settings)
            + window_update(0, CONNECTION_RECEIVE_WINDOW - DEFAULT_WINDOW)
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        for stream in list(self._streams.values()):
            stream.reset()
        self._streams.clear()
        self._release_drain_waiters()
        self._server._closed(self)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._release_drain_waiters()

    def data_received(self, data: bytes) -> None:
        # Frames are read from what arrived; only a frame split across reads is kept, so most
        # requests are never copied into the connection's buffer.
        pending: bytes | bytearray = data
        if self._in:
            self._in += data
            pending = self._in
        try:
            position = self._frames(pending)
        except ProtocolError as error:
            log.warning("HTTP/2 connection from %s closed: %s", self.peer, error)
            self._close(PROTOCOL_ERROR, str(error))
            return
        except Exception:  # a bug here must cost one connection, not the server
            log.exception("HTTP/2 connection from %s failed", self.peer)
            self._close(PROTOCOL_ERROR, "internal error")
            return
        if pending is self._in:
            del self._in[:position]
        elif position < len(data):
            self._in += data[position:]

    # Frames in

    def _frames(self, pending: bytes | bytearray) -> int:
        position = 0
        if not self._preface_seen:
            if len(pending) < len(PREFACE):
                return 0
            if pending[: len(PREFACE)] != PREFACE:
                raise ProtocolError("not an HTTP/2 connection preface")
            position, self._preface_seen = len(PREFACE), True
        end = len(pending)
        with memoryview(pending) as view:
            while end - position >= 9 and self._transport is not None:
                length = int.from_bytes(view[position : position + 3], "big")
                if end - position - 9 < length:
                    break
                kind, flags = view[position + 3], view[position + 4]
                stream_id = int.from_bytes(view[position + 5 : position + 9], "big") & 0x7FFF_FFFF
                start = position + 9
                position = start + length
                self._frame(kind, flags, stream_id, view[start:position])
        return position

    def _frame(self, kind: int, flags: int, stream_id: int, payload: memoryview) -> None:
        if self._header_block_stream and kind != CONTINUATION:
            raise ProtocolError("a header block was interrupted by another frame")
        if kind == DATA:
            self._data(flags, stream_id, payload)
        elif kind == HEADERS:
            self._headers(flags, stream_id, payload)
        elif kind == CONTINUATION:
            if stream_id != self._header_block_stream:
                raise ProtocolError("CONTINUATION without a header block to continue")
            self._header_block += payload
            if flags & END_HEADERS:
                self._header_block_done()
        elif kind == SETTINGS:
            if not flags & ACK:
                self._settings(payload)
        elif kind == PING:
            if not flags & ACK:
                self.write(frame(PING, ACK, 0, bytes(payload)))
        elif kind == WINDOW_UPDATE:
            self._window_granted(stream_id, payload)
        elif kind == RST_STREAM:
            stream = self._streams.pop(stream_id, None)
            if stream is not None:
                stream.reset()
        elif kind == GOAWAY:
            self._close(NO_ERROR, "")
        elif kind == PUSH_PROMISE:
            raise ProtocolError("a client sent PUSH_PROMISE")
        # PRIORITY and unknown frame types are ignored, as HTTP/2 asks.

    def _data(self, flags: int, stream_id: int, payload: memoryview) -> None:
        size = len(payload)
        self._receive_window -= size
        if self._receive_window < 0:
            raise ProtocolError("the client sent past the connection's flow-control window")
        if flags & PADDED:
            payload = payload[1 : size - payload[0]]
        stream = self._streams.get(stream_id)
        if stream is None:  # a call already ended: give its window back at once
            self.consumed(None, size)
            return
        stream.receive_window -= size
        if stream.receive_window < 0:  # a stream error: this call ends, the connection stays
            self.write(frame(RST_STREAM, 0, stream_id, FLOW_CONTROL_ERROR.to_bytes(4, "big")))
            self.forget(stream)
            stream.reset()
            self.consumed(None, size)
            return
        if size > len(payload):
            self.consumed(stream, size - len(payload))  # the padding, taken at once
        try:
            stream.receive(payload)
        except _CallRefused as refused:
            self._refuse(stream, refused)
            return
        if flags & END_STREAM:
            stream.end_of_requests()

    def _headers(self, flags: int, stream_id: int, payload: memoryview) -> None:
        self._header_block[:] = header_fragment(flags, payload)
        self._header_block_stream = stream_id
        self._header_block_ends_stream = bool(flags & END_STREAM)
        if flags & END_HEADERS:
            self._header_block_done()

    def _header_block_done(self) -> None:
        stream_id, ends_stream = self._header_block_stream, self._header_block_ends_stream
        self._header_block_stream = 0
        try:
            decoded = self._decoder.decode(bytes(self._header_block))
            fields = {_text(name): _text(value) for name, value in decoded}
        except hpack.HPACKError as error:
            raise ProtocolError(f"bad header block: {error}") from None
        if stream_id in self._streams:  # trailers from the client: end of its requests
            if ends_stream:
                self._streams[stream_id].end_of_requests()
            return
        if stream_id % 2 == 0:
            raise ProtocolError(f"stream {stream_id} is not a client stream")
        if stream_id <= self._last_stream_id:
            return  # a call that has ended already: nothing left to tell it
        self._last_stream_id = stream_id
        if self._going_away:
            self.write(frame(RST_STREAM, 0, stream_id, REFUSED_STREAM.to_bytes(4, "big")))
            return
        if len(self._streams) >= self._server._max_streams:
            self.write(frame(RST_STREAM, 0, stream_id, REFUSED_STREAM.to_bytes(4, "big")))
            return
        path = fields.get(":path", "")
        method = self._server._methods.get(path)
        stream = _Stream(self, stream_id, method or _UNKNOWN)
        self._streams[stream_id] = stream
        if fields.get(":method") != "POST" or not fields.get("content-type", "").startswith(
            _GRPC_CONTENT_TYPE
        ):
            self._refuse(stream, _CallRefused(grpc.StatusCode.INTERNAL, "not a gRPC request"))
            return
        if method is None:
            self._refuse(stream, _CallRefused(grpc.StatusCode.UNIMPLEMENTED, f"unknown {path}"))
            return
        if ends_stream:
            stream.half_closed = True
        stream.task = self._server._run_handler(self._run(stream, method))

    def _refuse(self, stream: _Stream, refused: _CallRefused) -> None:
        stream.finish_now(refused.code, refused.details)
        if stream.task is not None:
            stream.task.cancel()

    def _settings(self, payload: memoryview) -> None:
        if len(payload) % 6:
            raise ProtocolError("a SETTINGS frame of a length not a multiple of 6")
        for offset in range(0, len(payload), 6):
            key = int.from_bytes(payload[offset : offset + 2], "big")
            value = int.from_bytes(payload[offset + 2 : offset + 6], "big")
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ProtocolError("an initial window size past 2^31-1")
                change = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self._streams.values():
                    stream.send_window += change
                    if change > 0:
                        stream.window_opened()
            elif key == SETTINGS_MAX_FRAME_SIZE:
                if not DEFAULT_FRAME <= value <= LARGEST_FRAME:
                    raise ProtocolError(f"a max frame size of {value}")
                self.peer_frame = value
            elif key == SETTINGS_HEADER_TABLE_SIZE:
                self._encoder.header_table_size = value
        self.write(frame(SETTINGS, ACK, 0))

    def _window_granted(self, stream_id: int, payload: memoryview) -> None:
        grant = int.from_bytes(payload, "big") & 0x7FFF_FFFF
        if stream_id == 0:
            self.send_window += grant
            if self.send_window > MAX_WINDOW:
                raise ProtocolError("the connection's window grew past 2^31-1")
            for stream in self._streams.values():
                stream.window_opened()
            return
        found = self._streams.get(stream_id)
        if found is not None:
            found.send_window += grant
            found.window_opened()

    # Calls

    async def _run(self, stream: _Stream, method: Method) -> None:
        try:
            await method.handle(_Requests(stream), CallContext(stream))
            await stream.finish(grpc.StatusCode.OK)
        except CallAborted:
            pass  # the status went out in `abort`
        except asyncio.CancelledError:
            if not stream.finished and self._transport is not None:
                self.write(frame(RST_STREAM, 0, stream.id, CANCEL.to_bytes(4, "big")))
            stream.finished = True
            raise
        except Exception as error:  # a bug in a handler ends its call, not the server
            log.exception("handler for stream %d from %s failed", stream.id, self.peer)
            await stream.finish(grpc.StatusCode.UNKNOWN, f"{type(error).__name__}: {error}")
        finally:
            self.forget(stream)

    def forget(self, stream: _Stream) -> None:
        if self._streams.get(stream.id) is stream:
            del self._streams[stream.id]

    def consumed(self, stream: _Stream | None, size: int) -> None:
        """A handler took `size` bytes of requests: let the client send as much again, in
        WINDOW_UPDATEs of a quarter of each window at least (one per ACK would double the
        frames and system calls of a push)."""
        if self._transport is None:
            return
        updates = b""
        self._unacknowledged += size
        if self._unacknowledged >= CONNECTION_RECEIVE_WINDOW // 4:
            updates += window_update(0, self._unacknowledged)
            self._receive_window += self._unacknowledged
            self._unacknowledged = 0
        if stream is not None and not stream.half_closed and not stream.finished:
            stream.unacknowledged += size
            if stream.unacknowledged >= STREAM_RECEIVE_WINDOW // 4:
                updates += window_update(stream.id, stream.unacknowledged)
                stream.receive_window += stream.unacknowledged
                stream.unacknowledged = 0
        if updates:
            self.write(updates)

    # Frames out

    def write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def send_headers(self, stream_id: int, fields: list[tuple[str, str]], *, end: bool) -> None:
        block = self._encoder.encode(fields)
        flags = END_HEADERS | (END_STREAM if end else 0)
        first, rest = block[: self.peer_frame], block[self.peer_frame :]
        out = frame(HEADERS, flags if not rest else flags & ~END_HEADERS, stream_id, first)
        while rest:
            chunk, rest = rest[: self.peer_frame], rest[self.peer_frame :]
            out += frame(CONTINUATION, END_HEADERS if not rest else 0, stream_id, chunk)
        self.write(out)

    async def drained(self) -> None:
        """Return once the transport takes more (at once unless its buffer is full)."""
        while self._paused and self._transport is not None:
            waiter = self.loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def _release_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def go_away(self) -> None:
        """Refuse new calls, end the current ones, close."""
        self._close(NO_ERROR, "server stopping")

    def _close(self, code: int, reason: str) -> None:
        transport = self._transport
        if transport is None:
            return
        self._going_away = True
        payload = self._last_stream_id.to_bytes(4, "big") + code.to_bytes(4, "big")
        with contextlib.suppress(Exception):
            transport.write(frame(GOAWAY, 0, 0, payload + reason.encode()))
        for stream in list(self._streams.values()):
            stream.reset()
        transport.close()


def _keep_alive(sock: socket.socket | None) -> None:
    """TCP keepalives as grpc's server pings (30 s idle, then every 10 s): a peer that vanished
    without closing is found within a minute and its calls end."""
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):  # Linux
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, _KEEPALIVE_IDLE_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, _KEEPALIVE_INTERVAL_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, _KEEPALIVE_PROBES)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _unknown(requests: AsyncIterator[Any], context: CallContext) -> None:
    raise AssertionError("never called: unknown methods are refused")


_UNKNOWN = Method(lambda payload: payload, _unknown)
