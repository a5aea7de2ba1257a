"""The bookinfo-shaped demo application, each service on its own (no mesh needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from localmesh.bookinfo import Bookinfo


@pytest.fixture
async def serve() -> AsyncIterator:
    runners: list[web.AppRunner] = []

    async def start(app: Bookinfo) -> str:
        web_app = web.Application()
        web_app.add_routes(app.routes())
        runner = web.AppRunner(web_app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def get(url: str, **kwargs) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as response:
        return response.status, await response.text()


async def test_reviews_v1_names_itself_and_asks_nobody(serve) -> None:
    base = await serve(
        Bookinfo("reviews", "v1", "reviews-v1"),
    )
    status, text = await get(base + "/reviews/0")
    assert status == 200 and text.startswith("reviews-v1:") and "Rating" not in text


async def test_productpage_reports_what_it_could_not_reach(serve, monkeypatch) -> None:
    # No sidecar: the proxy it is told to use refuses connections.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    page = Bookinfo("productpage", "v1", "productpage-v1")
    base = await serve(page)
    status, text = await get(base + "/productpage")
    assert status == 200
    assert (
        "productpage-v1" in text and "details: error 503" in text and "reviews: error 503" in text
    )
    await page.close()


async def test_login_sets_the_user_the_page_shows(serve, monkeypatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    page = Bookinfo("productpage", "v1", "productpage-v1")
    base = await serve(page)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(base + "/login", params={"username": "jason"}) as response:
            assert response.status == 200
        async with session.get(base + "/productpage") as response:
            assert "user: jason" in await response.text()
    await page.close()


def test_unknown_service_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown bookinfo service"):
        Bookinfo("frontpage", "v1", "x")
