"""The bare push server of `xds_baseline`, on asyncio's own transports instead of grpc.aio.

Why: pilot's CPU for a push is mostly grpc.aio's and the kernel's, message by message (a
future, a hop through grpc's poller thread and event engine, a task wake-up for every
response written and every ACK read), and issue #7's "within 2x of the prototype" measures
pilot against that same grpc.aio server. This server does exactly what `xds_baseline`'s does
(take each stream's first request, write pre-encoded responses, count one ACK per response)
with the HTTP/2 and gRPC framing done in Python on an `asyncio.Protocol` per connection: each
response is one `transport.write`, each ACK is read in `data_received` with no task or future
of its own. The same clients measure both, so the two servers' costs per message and per MiB
say what moving pilot's xDS streams off grpc.aio could save.

It is a measuring instrument for the connection shape the load generator makes (one call per
connection, the client's windows open wide), not a general server: no TLS, one stream per
connection, no flow control of its own beyond what that shape needs (it sends within the
windows the client grants and stops the run if they close), no trailers.

Run: `python -m benchmarks.xds_baseline_h2 --streams 2000`, which measures the grpc.aio
server and this one alternately (`--rounds` pushes of each size each time, `--runs` times) and
prints each one's cost per message and per MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from multiprocessing.connection import Connection

import hpack

from benchmarks import xds_baseline
from benchmarks.control import commands
from benchmarks.h2_stream import (
    ACK,
    DATA,
    DEFAULT_FRAME,
    DEFAULT_WINDOW,
    END_HEADERS,
    HEADERS,
    MAX_WINDOW,
    PING,
    PREFACE,
    SETTING_INITIAL_WINDOW,
    SETTING_MAX_FRAME,
    SETTINGS,
    WINDOW_UPDATE,
    frame,
    setting,
    window_update,
)
from benchmarks.xds_baseline import response

_RESPONSE_HEADERS = [(":status", "200"), ("content-type", "application/grpc")]


class WindowClosed(RuntimeError):
    """The client granted less window than a response needs: this shape never does that."""


class PushServer:
    """The streams (one per connection) and the ACKs counted for the push in progress."""

    def __init__(self) -> None:
        self.streams: list[_Connection] = []
        self._acked = 0
        self._wanted = 0
        self._all_acked = asyncio.Event()

    def acked(self) -> None:
        self._acked += 1
        if self._acked == self._wanted:
            self._all_acked.set()

    async def push(self, count: int, size: int) -> tuple[float, float]:
        """Write `count` responses of `size` bytes to every stream and wait for each ACK:
        (seconds, CPU seconds of this process)."""
        payload = response(size)
        streams = list(self.streams)
        self._acked, self._wanted = 0, count * len(streams)
        self._all_acked.clear()
        began, began_cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            for stream in streams:
                stream.send(payload)
        if self._wanted:
            await self._all_acked.wait()
        return time.perf_counter() - began, time.process_time() - began_cpu


class _Connection(asyncio.Protocol):
    """One client connection carrying one gRPC call."""

    def __init__(self, server: PushServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._in = bytearray()
        self._preface_seen = False
        self._stream_id = 0
        self._message = bytearray()  # gRPC-framed request bytes not yet a whole message
        self._subscribed = False
        self._peer_frame = DEFAULT_FRAME
        self._send_window = DEFAULT_WINDOW  # the connection's; the stream's is as large
        self._unacknowledged = 0  # request bytes read since our last WINDOW_UPDATE

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        opening = frame(SETTINGS, 0, 0, setting(SETTING_INITIAL_WINDOW, MAX_WINDOW))
        transport.write(opening + window_update(0, MAX_WINDOW - DEFAULT_WINDOW))

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self._server.streams:
            self._server.streams.remove(self)

    def data_received(self, data: bytes) -> None:
        pending = self._in
        pending += data
        position = 0
        if not self._preface_seen:
            if len(pending) < len(PREFACE):
                return
            position, self._preface_seen = len(PREFACE), True
        end = len(pending)
        while end - position >= 9:
            length = int.from_bytes(pending[position : position + 3], "big")
            if end - position - 9 < length:
                break
            kind, flags = pending[position + 3], pending[position + 4]
            stream = int.from_bytes(pending[position + 5 : position + 9], "big") & 0x7FFF_FFFF
            start, position = position + 9, position + 9 + length
            self._frame(kind, flags, stream, pending[start:position])
        del pending[:position]

    def _frame(self, kind: int, flags: int, stream: int, payload: bytearray) -> None:
        assert self._transport is not None
        if kind == DATA:
            self._requests(payload)
        elif kind == HEADERS:
            self._stream_id = stream
            block = hpack.Encoder().encode(_RESPONSE_HEADERS)
            self._transport.write(frame(HEADERS, END_HEADERS, stream, block))
        elif kind == SETTINGS and not flags & ACK:
            for offset in range(0, len(payload) - 5, 6):
                if int.from_bytes(payload[offset : offset + 2], "big") == SETTING_MAX_FRAME:
                    self._peer_frame = int.from_bytes(payload[offset + 2 : offset + 6], "big")
            self._transport.write(frame(SETTINGS, ACK, 0))
        elif kind == PING and not flags & ACK:
            self._transport.write(frame(PING, ACK, 0, bytes(payload)))
        elif kind == WINDOW_UPDATE and stream == 0:
            self._send_window += int.from_bytes(payload, "big") & 0x7FFF_FFFF

    def _requests(self, payload: bytearray) -> None:
        assert self._transport is not None
        self._unacknowledged += len(payload)
        if self._unacknowledged >= MAX_WINDOW // 2:
            grant, self._unacknowledged = self._unacknowledged, 0
            self._transport.write(window_update(0, grant) + window_update(self._stream_id, grant))
        message = self._message
        message += payload
        while len(message) >= 5:
            size = int.from_bytes(message[1:5], "big")
            if len(message) < 5 + size:
                break
            del message[: 5 + size]
            if self._subscribed:
                self._server.acked()
            else:
                self._subscribed = True
                self._server.streams.append(self)

    def send(self, message: bytes) -> None:
        """One response: the gRPC prefix and message in DATA frames of the client's size."""
        assert self._transport is not None
        framed = b"\x00" + len(message).to_bytes(4, "big") + message
        if len(framed) > self._send_window:
            raise WindowClosed(f"{len(framed)} bytes to send, {self._send_window} of window")
        self._send_window -= len(framed)
        pieces: list[bytes] = []
        stream = self._stream_id.to_bytes(4, "big")
        for offset in range(0, len(framed), self._peer_frame):
            chunk = framed[offset : offset + self._peer_frame]
            pieces += (len(chunk).to_bytes(3, "big") + bytes((DATA, 0)) + stream, chunk)
        self._transport.write(b"".join(pieces))


def server_main(host: str, control: Connection) -> None:
    """Entry point of the server process, answering `xds_baseline`'s commands."""
    asyncio.run(_run_server(host, control))


async def _run_server(host: str, control: Connection) -> None:
    server = PushServer()
    loop = asyncio.get_running_loop()
    listening = await loop.create_server(lambda: _Connection(server), host, 0, backlog=4096)
    control.send(listening.sockets[0].getsockname()[1])
    try:
        async for command, argument in commands(control):
            if command == "streams":
                control.send(len(server.streams))
            elif command == "push":
                count, size, timeout = argument
                async with asyncio.timeout(timeout):
                    control.send(await server.push(count, size))
            else:
                raise ValueError(f"unknown command {command!r}")
    finally:
        listening.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="pushes of each size per run")
    parser.add_argument("--runs", type=int, default=2, help="of each server, alternated")
    parser.add_argument("--host", default="127.0.0.77", help="a loopback address")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    servers = {"grpc.aio": xds_baseline.server_main, "asyncio HTTP/2": server_main}
    print(f"{args.streams} streams; µs of server CPU per stream: per message + per MiB")
    print()
    print("| server | µs a message | µs a MiB | a 1 KiB push | a 512 KiB push |")
    print("|---|---|---|---|---|")
    for _ in range(args.runs):
        for name, server in servers.items():
            cost = xds_baseline.measure(
                args.host, args.streams, rounds=args.rounds, timeout=args.timeout, server=server
            )
            small = cost.of(1, len(response(xds_baseline.SMALL_BYTES)) / 2**20)
            large = cost.of(1, len(response(xds_baseline.LARGE_BYTES)) / 2**20)
            print(
                f"| {name} | {cost.per_message_us:.0f} | {cost.per_mib_us:.0f} "
                f"| {small:.0f} | {large:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
