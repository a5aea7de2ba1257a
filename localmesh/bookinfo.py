"""`python -m localmesh.bookinfo SERVICE`: an application with the shape of Istio's bookinfo.

The local mesh's demo must accept Istio's own bookinfo configuration unchanged, so its services
have bookinfo's names, port (9080), versions and call graph: productpage asks details and
reviews, reviews v2 and v3 ask ratings (v2 shows black stars, v3 red ones), v1 asks nobody.
Every answer says in plain text which workload produced each part, so a routing change is
visible with curl. Calls to other services go to their short names through the sidecar, which
the application finds as the standard HTTP proxy (`HTTP_PROXY`); the headers Istio asks
applications to propagate (the request id, B3/W3C trace context, and bookinfo's `end-user`,
set after `/login`) are forwarded on each call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Sequence
from typing import Final

import aiohttp
from aiohttp import web

PORT: Final = 9080
SERVICES: Final = ("productpage", "details", "reviews", "ratings")
PROPAGATED: Final = (
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "traceparent",
    "tracestate",
    "end-user",
)
USER_COOKIE: Final = "user"
STARS: Final = {"v2": "black", "v3": "red"}
CALL_TIMEOUT: Final = aiohttp.ClientTimeout(total=3)


class Bookinfo:
    """One bookinfo service at one version; `routes()` are its HTTP handlers."""

    def __init__(self, service: str, version: str, workload: str) -> None:
        if service not in SERVICES:
            raise ValueError(f"unknown bookinfo service {service!r}: one of {', '.join(SERVICES)}")
        self.service = service
        self.version = version
        self.workload = workload
        self._session: aiohttp.ClientSession | None = None

    def routes(self) -> list[web.RouteDef]:
        handlers = {
            "productpage": [
                web.get("/productpage", self._productpage),
                web.get("/login", self._login),
                web.post("/login", self._login),
                web.get("/logout", self._logout),
                web.get("/static/{name:.*}", self._static),
                web.get("/api/v1/products", self._products),
                web.get("/api/v1/products/{id}", self._product),
            ],
            "details": [web.get("/details/{id}", self._details)],
            "reviews": [web.get("/reviews/{id}", self._reviews)],
            "ratings": [web.get("/ratings/{id}", self._ratings)],
        }
        return [web.get("/health", self._health), *handlers[self.service]]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, request: web.Request, url: str) -> tuple[int, str]:
        """GET `url` through the sidecar (trust_env: HTTP_PROXY), forwarding Istio's headers."""
        if self._session is None:
            self._session = aiohttp.ClientSession(trust_env=True, timeout=CALL_TIMEOUT)
        headers = {name: request.headers[name] for name in PROPAGATED if name in request.headers}
        user = request.cookies.get(USER_COOKIE)
        if user and "end-user" not in headers:
            headers["end-user"] = user
        try:
            async with self._session.get(url, headers=headers) as response:
                return response.status, (await response.text()).strip()
        except (aiohttp.ClientError, TimeoutError) as error:
            return 503, f"unavailable: {error!r}"

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text=f"{self.workload} ok\n")

    async def _productpage(self, request: web.Request) -> web.Response:
        details, reviews = await asyncio.gather(
            self._call(request, f"http://details:{PORT}/details/0"),
            self._call(request, f"http://reviews:{PORT}/reviews/0"),
        )
        user = request.cookies.get(USER_COOKIE)
        lines = [
            f"productpage: The Comedy of Errors ({self.workload})",
            f"user: {user}" if user else "user: (not logged in)",
            _part("details", details),
            _part("reviews", reviews),
        ]
        return web.Response(text="\n".join(lines) + "\n")

    async def _login(self, request: web.Request) -> web.Response:
        form = await request.post() if request.method == "POST" else request.query
        user = str(form.get("username") or form.get("user") or "")
        if not user:
            raise web.HTTPBadRequest(text="login needs a username\n")
        response = web.Response(text=f"logged in as {user}\n")
        response.set_cookie(USER_COOKIE, user)
        return response

    async def _logout(self, request: web.Request) -> web.Response:
        response = web.Response(text="logged out\n")
        response.del_cookie(USER_COOKIE)
        return response

    async def _static(self, request: web.Request) -> web.Response:
        return web.Response(text=f"static {request.match_info['name']} ({self.workload})\n")

    async def _products(self, request: web.Request) -> web.Response:
        return web.json_response([_PRODUCT])

    async def _product(self, request: web.Request) -> web.Response:
        return web.json_response(_PRODUCT | {"id": int(request.match_info["id"])})

    async def _details(self, request: web.Request) -> web.Response:
        book = "William Shakespeare, 200 pages, paperback, ISBN-10 1234567890"
        return web.Response(text=f"{book} ({self.workload})")

    async def _reviews(self, request: web.Request) -> web.Response:
        text = f"{self.workload}: An extremely entertaining play by Shakespeare."
        color = STARS.get(self.version)
        if color is None:
            return web.Response(text=text)
        status, ratings = await self._call(request, f"http://ratings:{PORT}/ratings/0")
        stars = f"{color} stars, {ratings}" if status == 200 else "ratings unavailable"
        return web.Response(text=f"{text} Rating: {stars}")

    async def _ratings(self, request: web.Request) -> web.Response:
        return web.Response(text=f"5 of 5 ({self.workload})")


_PRODUCT: Final = {"id": 0, "title": "The Comedy of Errors"}


def _part(name: str, answer: tuple[int, str]) -> str:
    status, text = answer
    return f"{name}: {text}" if status == 200 else f"{name}: error {status} ({text[:200]})"


async def serve(app: Bookinfo, host: str, port: int, stop: asyncio.Event) -> None:
    web_app = web.Application()
    web_app.add_routes(app.routes())
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        print(f"{app.workload}: serving {app.service} on {host}:{port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
        await app.close()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bookinfo", description=__doc__.splitlines()[0])
    parser.add_argument("service", choices=SERVICES)
    parser.add_argument("--version", default="v1")
    parser.add_argument("--host", default=os.environ.get("APP_ADDRESS", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--workload", default=os.environ.get("POD_NAME", ""))
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    workload = args.workload or f"{args.service}-{args.version}"
    await serve(Bookinfo(args.service, args.version, workload), args.host, args.port, stop)


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(_main(parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
