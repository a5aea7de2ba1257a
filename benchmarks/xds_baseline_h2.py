"""The bare push server of `xds_baseline`, on pilot's own HTTP/2 server instead of grpc.aio.

Why: pilot's CPU for a push was mostly grpc.aio's and the kernel's, message by message (a
future, a hop through grpc's poller thread and event engine, a task wake-up for every response
written and every ACK read), and issue #7's "within 2x of the prototype" measures pilot against
that same grpc.aio server. This server does exactly what `xds_baseline`'s does (take each
stream's first request, write pre-encoded responses, count one ACK per response) on
`meshcore.h2_server`, where HTTP/2 and gRPC are framed in Python on an `asyncio.Protocol` per
connection. The same clients measure both, so the two servers' costs per message and per MiB
say what leaving grpc.aio saves; this measurement is why pilot's cleartext xDS runs on
`meshcore.h2_server` (docs/decisions/0002-pilot-xds-transport.md).

Run: `python -m benchmarks.xds_baseline_h2 --streams 2000`, which measures the grpc.aio server
and this one alternately (`--rounds` pushes of each size each time, `--runs` times) and prints
each one's cost per message and per MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection

from benchmarks import xds_baseline
from benchmarks.control import commands
from benchmarks.xds_baseline import METHOD, SERVICE, response
from meshcore.h2_server import CallContext, H2Server, Method


class PushServer:
    """ADS calls that are written pre-encoded responses and counted ACKs; nothing else."""

    def __init__(self) -> None:
        self.streams: list[CallContext] = []
        self._acked = 0
        self._wanted = 0
        self._all_acked = asyncio.Event()

    def methods(self) -> dict[str, Method]:
        return {f"/{SERVICE}/{METHOD}": Method(bytes, self._serve)}

    async def _serve(self, requests: AsyncIterator[bytes], context: CallContext) -> None:
        iterator = aiter(requests)
        try:
            await anext(iterator)
        except StopAsyncIteration:
            return
        self.streams.append(context)
        try:
            async for _ in iterator:
                self._acked += 1
                if self._acked == self._wanted:
                    self._all_acked.set()
        finally:
            self.streams.remove(context)

    async def push(self, count: int, size: int) -> tuple[float, float]:
        """Write `count` responses of `size` bytes to every stream and wait for each ACK:
        (seconds, CPU seconds of this process). A write returns once the transport has the
        response, so one coroutine writes to all streams in turn."""
        payload = response(size)
        streams = list(self.streams)
        self._acked, self._wanted = 0, count * len(streams)
        self._all_acked.clear()
        began, began_cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            for stream in streams:
                await stream.write(payload)
        if self._wanted:
            await self._all_acked.wait()
        return time.perf_counter() - began, time.process_time() - began_cpu


def server_main(host: str, control: Connection) -> None:
    """Entry point of the server process, answering `xds_baseline`'s commands."""
    asyncio.run(_run_server(host, control))


async def _run_server(host: str, control: Connection) -> None:
    pushes = PushServer()
    server = H2Server(pushes.methods())
    control.send(await server.start(host, 0))
    try:
        async for command, argument in commands(control):
            if command == "streams":
                control.send(len(pushes.streams))
            elif command == "push":
                count, size, timeout = argument
                async with asyncio.timeout(timeout):
                    control.send(await pushes.push(count, size))
            else:
                raise ValueError(f"unknown command {command!r}")
    finally:
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="pushes of each size per run")
    parser.add_argument("--runs", type=int, default=2, help="of each server, alternated")
    parser.add_argument("--host", default="127.0.0.77", help="a loopback address")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    servers = {"grpc.aio": xds_baseline.server_main, "meshcore.h2_server": server_main}
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
