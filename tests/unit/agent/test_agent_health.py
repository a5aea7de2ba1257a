"""Readiness logic against a stand-in admin API that answers like Envoy's."""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.health import CDS_SUCCESS, LDS_SUCCESS, HealthServer

HOST = "127.0.97.1"


@dataclass
class FakeAdmin:
    state: str = "PRE_INITIALIZING"
    stats: dict[str, int] = field(default_factory=dict)
    filters: list[str] = field(default_factory=list)

    async def ready(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.state == "LIVE" else 503, text=self.state + "\n")

    async def stats_json(self, request: web.Request) -> web.Response:
        assert request.query["format"] == "json"
        self.filters.append(request.query["filter"])
        return web.json_response(
            {"stats": [{"name": k, "value": v} for k, v in self.stats.items()]}
        )


@pytest.fixture
async def admin() -> AsyncIterator[tuple[FakeAdmin, str]]:
    fake = FakeAdmin()
    app = web.Application()
    app.router.add_get("/ready", fake.ready)
    app.router.add_get("/stats", fake.stats_json)
    async with TestServer(app, host=HOST) as server:
        yield fake, f"http://{HOST}:{server.port}"


async def test_readiness_follows_envoy_state_and_config(admin: tuple[FakeAdmin, str]) -> None:
    fake, url = admin
    async with HealthServer(HOST, url, port=0) as health:
        first = await health.readiness()
        assert not first.ready and first.reason == "envoy not live: PRE_INITIALIZING"

        fake.state = "LIVE"
        fake.stats = {CDS_SUCCESS: 1, LDS_SUCCESS: 0, "listener_manager.lds.update_rejected": 2}
        waiting = await health.readiness()
        assert not waiting.ready
        assert "cds updates: 1 successful" in waiting.reason
        assert "lds updates: 0 successful, 2 rejected" in waiting.reason

        fake.stats[LDS_SUCCESS] = 3
        assert (await health.readiness()).ready
        assert fake.filters[-1].startswith("^(cluster_manager")


async def test_http_endpoint_status_codes(admin: tuple[FakeAdmin, str]) -> None:
    fake, url = admin
    async with HealthServer(HOST, url, port=0) as health, aiohttp.ClientSession() as client:
        port = health.port
        async with client.get(f"http://{HOST}:{port}/healthz/ready") as response:
            assert response.status == 503
            assert "not live" in await response.text()
        fake.state, fake.stats = "LIVE", {CDS_SUCCESS: 1, LDS_SUCCESS: 1}
        async with client.get(f"http://{HOST}:{port}/healthz/ready") as response:
            assert response.status == 200


async def test_unreachable_admin_is_not_ready() -> None:
    async with HealthServer(HOST, f"http://{HOST}:1", port=0) as health:
        readiness = await health.readiness()
    assert not readiness.ready and readiness.reason.startswith("envoy admin unreachable")
