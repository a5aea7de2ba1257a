"""A tiny HTTP backend for demos and tests: it says which workload answered.

It stands in for an application behind a sidecar, so its answer names the workload and echoes
the request's host and the headers a sidecar adds, which makes routing visible from curl.
The local mesh runs it in-process; a capture pod, whose application must live in the pod's
network namespace, runs it as a process: `python -m localmesh.demo_app WORKLOAD PORT...`
(listening on `APP_ADDRESS`, 127.0.0.1 by default).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Sequence

from aiohttp import web

from meshcore.lifecycle import Service


class DemoApp(Service):
    """One backend listening on `host:port`; owns its aiohttp runner."""

    def __init__(self, workload: str, host: str, port: int) -> None:
        self.workload = workload
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _answer(self, request: web.Request) -> web.Response:
        body = {
            "workload": self.workload,
            "host": request.host,
            "path": request.path_qs,
            "method": request.method,
            "x-forwarded-proto": request.headers.get("x-forwarded-proto", ""),
            "x-request-id": request.headers.get("x-request-id", ""),
            # The caller's identity, when its sidecar reached ours over mutual TLS.
            "x-forwarded-client-cert": request.headers.get("x-forwarded-client-cert", ""),
        }
        return web.Response(text=f"hello from {self.workload}\n{json.dumps(body)}\n")


async def _serve(workload: str, host: str, ports: Sequence[int]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        for port in ports:
            await stack.enter_async_context(DemoApp(workload, host, port))
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo_app", description=__doc__.splitlines()[0])
    parser.add_argument("workload")
    parser.add_argument("ports", type=int, nargs="+")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.workload, os.environ.get("APP_ADDRESS", "127.0.0.1"), args.ports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
