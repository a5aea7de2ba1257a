"""A tiny HTTP backend for demos and tests: it says which workload answered.

It stands in for an application behind a sidecar, so its answer names the workload and echoes
the request's host and the headers a sidecar adds, which makes routing visible from curl.
"""

from __future__ import annotations

import json

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
