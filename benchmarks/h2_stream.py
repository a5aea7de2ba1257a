"""One gRPC bidirectional call over a bare HTTP/2 connection, for the pilot load generator.

Why: the load generator shares this machine's two cores with the pilot it measures, and with
grpc.aio its client path (a future, a poller-thread hop and a task wake-up for every message
read or written) was about 60% of its CPU, so the client, not pilot, set part of every
convergence time. An Envoy sidecar holds one connection to pilot with one ADS call on it; that
shape needs little of HTTP/2: a prior-knowledge cleartext connection (h2c), one client stream,
flow control, settings and pings answered. Framing is done here and each whole message is
handed to a callback from `data_received`, and each request is written with one `write`.

Not a general HTTP/2 or gRPC client: one call per connection, no compression, no TLS. Header
blocks (two per call from the server) go through `hpack`, which keeps the dynamic table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import unquote

import grpc
import hpack

from meshcore.h2_server import (
    ACK,
    CONTINUATION,
    DATA,
    DEFAULT_FRAME,
    DEFAULT_WINDOW,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    LARGEST_FRAME,
    MAX_WINDOW,
    PADDED,
    PING,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    SETTINGS_ENABLE_PUSH,
    SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_FRAME_SIZE,
    WINDOW_UPDATE,
    frame,
    header_fragment,
    setting,
    window_update,
)

STREAM_ID = 1  # the only stream a connection carries

_GRPC_CODES = {code.value[0]: code.name for code in grpc.StatusCode}


class CallEnded(Exception):
    """The call ended other than with status OK; the message says how."""


def request_headers(method: str, authority: str) -> bytes:
    """The header block opening a call: the same bytes for every new connection, since each
    starts with an empty HPACK table."""
    return hpack.Encoder().encode(
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", method),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
    )


class GrpcCall(asyncio.Protocol):
    """The client side of one call. `on_message` receives each response message (bytes) as it
    completes; an exception it raises ends the call with that error. `window` is what the
    server may send ahead of what has been read: a stuck reader (`pause`) holds up no more."""

    def __init__(
        self,
        header_block: bytes,
        on_message: Callable[[bytes], None],
        *,
        window: int = MAX_WINDOW,
    ) -> None:
        self._header_block = header_block
        self._on_message = on_message
        self._window = window
        self._unacknowledged = 0  # bytes read since the last WINDOW_UPDATE we sent
        self._transport: asyncio.Transport | None = None
        # Receiving. A DATA frame's payload is taken as it arrives, straight from what the
        # socket read; only a frame header or a control frame split across reads is kept.
        self._in = bytearray()
        self._data_left = 0  # payload bytes of the current DATA frame still to come
        self._data_flags = 0
        self._prefix = bytearray()  # a message's 5-byte prefix split across reads, so far
        self._body: bytearray | None = None  # the message being filled, when split
        self._body_filled = 0
        self._headers = bytearray()  # a header block continued in CONTINUATION frames
        self._headers_end = False  # whether that block's HEADERS frame ended the stream
        self._decoder = hpack.Decoder()
        self._trailers: dict[str, str] = {}
        # Sending: the server's windows and largest frame, and what waits for window.
        self._send_window = DEFAULT_WINDOW  # the connection's
        self._stream_window = DEFAULT_WINDOW
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_frame = DEFAULT_FRAME
        self._pending = bytearray()
        self.pings = 0  # PINGs answered: grpc's bandwidth probes and keepalives
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        settings = frame(
            SETTINGS,
            0,
            0,
            setting(SETTINGS_ENABLE_PUSH, 0)
            + setting(SETTINGS_INITIAL_WINDOW_SIZE, self._window)
            + setting(SETTINGS_MAX_FRAME_SIZE, LARGEST_FRAME),
        )
        opening = PREFACE + settings
        if self._window > DEFAULT_WINDOW:
            opening += window_update(0, self._window - DEFAULT_WINDOW)
        opening += frame(HEADERS, END_HEADERS, STREAM_ID, self._header_block)
        transport.write(opening)

    def data_received(self, data: bytes) -> None:
        try:
            with memoryview(data) as view:
                position = self._continue_data(view, 0) if self._data_left else 0
                if position == len(data) or self.ended.done():
                    return
                if not self._in:
                    position = self._frames(view, position)
                    if position < len(data) and not self.ended.done():
                        self._in += view[position:]
                    return
            self._in += data
            with memoryview(self._in) as view:
                position = self._frames(view, 0)
            if not self.ended.done():
                del self._in[:position]
        except Exception as error:  # a broken frame, or the callback failed
            self._end(f"{type(error).__name__}: {error}", error)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(f"connection lost: {exc or 'closed by pilot'}")

    # Use

    def send(self, message: bytes) -> None:
        """Write one request message, or queue it while the server's window is closed."""
        framed = b"\x00" + len(message).to_bytes(4, "big") + message
        size = len(framed)
        if (
            not self._pending
            and size <= self._send_window
            and size <= self._stream_window
            and size <= self._peer_frame
            and self._transport is not None
        ):
            self._send_window -= size
            self._stream_window -= size
            self._transport.write(frame(DATA, 0, STREAM_ID, framed))
            return
        self._pending += framed
        self._flush()

    def pause(self) -> None:
        """Read nothing more, as a proxy that is stuck: the server's writes stop once the
        window and the sockets' buffers are full."""
        if self._transport is not None:
            self._transport.pause_reading()

    def close(self) -> None:
        """End the call from this side: `ended` resolves, and the connection closes."""
        self._end(None)

    # Frames

    def _frames(self, view: memoryview, position: int) -> int:
        """Handle the frames in `view` from `position`; where the unhandled rest starts (a
        frame header or a control frame not yet whole)."""
        end = len(view)
        while end - position >= 9 and not self.ended.done():
            length = int.from_bytes(view[position : position + 3], "big")
            kind, flags = view[position + 3], view[position + 4]
            start = position + 9
            if kind == DATA and not flags & PADDED:
                self._received(length)
                self._data_left, self._data_flags = length, flags
                position = self._continue_data(view, start)
                continue
            if start + length > end:
                break
            position = start + length
            if kind == DATA:  # padded: grpc does not pad, but HTTP/2 allows it
                self._received(length)
                self._message_bytes(view, start + 1, position - view[start])
                if flags & END_STREAM:
                    self._stream_ended()
            else:
                stream = int.from_bytes(view[start - 4 : start], "big") & 0x7FFF_FFFF
                self._control(kind, flags, stream, bytes(view[start:position]))
        return position

    def _continue_data(self, view: memoryview, start: int) -> int:
        """Take what `view` holds of the current DATA frame's payload from `start`."""
        stop = min(len(view), start + self._data_left)
        self._data_left -= stop - start
        self._message_bytes(view, start, stop)
        if not self._data_left and self._data_flags & END_STREAM:
            self._stream_ended()
        return stop

    def _message_bytes(self, view: memoryview, start: int, stop: int) -> None:
        """Assemble gRPC messages from DATA payload: a message whole in `view` is copied once,
        one split across reads is copied into a buffer of its size, then once more."""
        while start < stop:
            body = self._body
            if body is None:
                prefix = self._prefix
                if not prefix and stop - start >= 5:
                    size = int.from_bytes(view[start + 1 : start + 5], "big")
                    start += 5
                else:
                    taken = min(5 - len(prefix), stop - start)
                    prefix += view[start : start + taken]
                    start += taken
                    if len(prefix) < 5:
                        return
                    size = int.from_bytes(prefix[1:5], "big")
                    prefix.clear()
                if stop - start >= size:
                    self._on_message(bytes(view[start : start + size]))
                    start += size
                    continue
                body = self._body = bytearray(size)
                self._body_filled = 0
            filled = self._body_filled
            taken = min(len(body) - filled, stop - start)
            body[filled : filled + taken] = view[start : start + taken]
            start += taken
            self._body_filled = filled + taken
            if self._body_filled == len(body):
                self._body = None
                self._on_message(bytes(body))

    def _received(self, size: int) -> None:
        self._unacknowledged += size
        if self._unacknowledged >= self._window // 2 and self._transport is not None:
            grant = self._unacknowledged
            self._unacknowledged = 0
            self._transport.write(window_update(0, grant) + window_update(STREAM_ID, grant))

    def _control(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if kind == HEADERS:
            self._headers += header_fragment(flags, payload)
            self._headers_end = bool(flags & END_STREAM)
            if flags & END_HEADERS:
                self._header_block_done()
        elif kind == CONTINUATION:
            self._headers += payload
            if flags & END_HEADERS:
                self._header_block_done()
        elif kind == SETTINGS:
            if not flags & ACK:
                self._settings(payload)
        elif kind == PING:
            if not flags & ACK:
                self.pings += 1
                self._write(frame(PING, ACK, 0, payload))
        elif kind == WINDOW_UPDATE:
            grant = int.from_bytes(payload, "big") & 0x7FFF_FFFF
            if stream == 0:
                self._send_window += grant
            else:
                self._stream_window += grant
            self._flush()
        elif kind == RST_STREAM:
            self._end(f"stream reset by pilot (HTTP/2 error {int.from_bytes(payload, 'big')})")
        elif kind == GOAWAY:
            code = int.from_bytes(payload[4:8], "big")
            if code:
                detail = payload[8:].decode(errors="replace")
                self._end(f"connection ended by pilot (HTTP/2 error {code}) {detail}".strip())
        # PRIORITY and unknown frames are ignored, as HTTP/2 asks.

    def _settings(self, payload: bytes) -> None:
        for offset in range(0, len(payload) - 5, 6):
            key = int.from_bytes(payload[offset : offset + 2], "big")
            value = int.from_bytes(payload[offset + 2 : offset + 6], "big")
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                self._stream_window += value - self._peer_initial_window
                self._peer_initial_window = value
            elif key == SETTINGS_MAX_FRAME_SIZE:
                self._peer_frame = value
        self._write(frame(SETTINGS, ACK, 0))
        self._flush()

    def _header_block_done(self) -> None:
        fields = self._decoder.decode(bytes(self._headers))
        self._headers.clear()
        self._trailers.update((str(name), str(value)) for name, value in fields)
        if self._headers_end:
            self._stream_ended()

    def _stream_ended(self) -> None:
        status = self._trailers.get("grpc-status")
        if status == "0":
            self._end(None)
            return
        code = _GRPC_CODES.get(int(status), status) if status and status.isdigit() else status
        message = unquote(self._trailers.get("grpc-message", ""))
        self._end(f"{code}: {message}" if code else "ended by pilot without a status")

    # Sending

    def _flush(self) -> None:
        pending = self._pending
        while pending and self._transport is not None:
            size = min(len(pending), self._send_window, self._stream_window, self._peer_frame)
            if size <= 0:
                return
            self._send_window -= size
            self._stream_window -= size
            self._transport.write(frame(DATA, 0, STREAM_ID, bytes(pending[:size])))
            del pending[:size]

    def _write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def _end(self, failure: str | None, cause: BaseException | None = None) -> None:
        if self.ended.done():
            return
        if failure is None:
            self.ended.set_result(None)
        else:
            error = CallEnded(failure)
            error.__cause__ = cause
            self.ended.set_exception(error)
        if self._transport is not None:
            self._transport.close()


async def open_call(
    host: str,
    port: int,
    header_block: bytes,
    on_message: Callable[[bytes], None],
    *,
    window: int = MAX_WINDOW,
) -> GrpcCall:
    """Connect and open the call (`request_headers`); requests may be sent at once."""
    _, call = await asyncio.get_running_loop().create_connection(
        lambda: GrpcCall(header_block, on_message, window=window), host, port
    )
    return call
