"""The bare push server of `xds_baseline`, on pilot's own HTTP/2 server instead of grpc.aio.

Why: pilot's CPU for a push was mostly grpc.aio's and the kernel's, message by message (a
future, a hop through grpc's poller thread and event engine, a task wake-up for every response
written and every ACK read), and issue #7's "within 2x of the prototype" measures pilot against
that same grpc.aio server. This server does exactly what `xds_baseline`'s does (take each
stream's first request, write pre-encoded responses, count one ACK per response), with the same
code (`xds_baseline.BaselineServer`), on `meshcore.h2_server`, where HTTP/2 and gRPC are framed
in Python on an `asyncio.Protocol` per connection. The same clients measure both, so the two
servers' costs per message and per MiB say what leaving grpc.aio saves; this measurement is why
pilot's cleartext xDS runs on `meshcore.h2_server` (docs/decisions/0002-pilot-xds-
transport.md).

Run: `python -m benchmarks.xds_baseline_h2 --streams 2000`, which measures the grpc.aio server
and this one alternately (`--rounds` pushes of each size each time, `--runs` times) and prints
each one's cost per message and per MiB.
"""

from __future__ import annotations

import argparse
import asyncio
from multiprocessing.connection import Connection

from benchmarks import xds_baseline
from benchmarks.xds_baseline import METHOD, SERVICE, BaselineServer, answer_commands, response
from meshcore.h2_server import H2Server, Method


def server_main(host: str, control: Connection) -> None:
    """Entry point of the server process: `xds_baseline`'s server and commands, on
    `meshcore.h2_server`."""
    asyncio.run(_run_server(host, control))


async def _run_server(host: str, control: Connection) -> None:
    baseline = BaselineServer()
    server = H2Server({f"/{SERVICE}/{METHOD}": Method(bytes, baseline.serve)})
    control.send(await server.start(host, 0))
    try:
        await answer_commands(baseline, control)
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
