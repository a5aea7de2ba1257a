"""The workload's readiness endpoint, `GET /healthz/ready` on <ip>:15021, as in Istio.

Ready means what Istio's agent means: Envoy's admin says it is LIVE and Envoy has accepted its
first configuration from pilot (a successful CDS and LDS update). The check asks Envoy's admin
API on every probe, so it follows Envoy's restarts (counters start again from zero).

Task ownership: `HealthServer` owns the aiohttp runner (whose server tasks aiohttp manages) and
one client session to the admin API; `start()` creates both, `stop()` closes both.
"""

import logging
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from meshcore.lifecycle import Service

log = logging.getLogger(__name__)

HEALTH_PORT = 15021
READY_PATH = "/healthz/ready"
CDS_SUCCESS = "cluster_manager.cds.update_success"
CDS_REJECTED = "cluster_manager.cds.update_rejected"
LDS_SUCCESS = "listener_manager.lds.update_success"
LDS_REJECTED = "listener_manager.lds.update_rejected"
_STATS_FILTER = r"^(cluster_manager\.cds|listener_manager\.lds)\.update_(success|rejected)$"


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str


class HealthServer(Service):
    """Serves `/healthz/ready` for one Envoy, judged through that Envoy's admin API."""

    def __init__(
        self, host: str, admin_url: str, port: int = HEALTH_PORT, timeout: float = 1.0
    ) -> None:
        self._host = host
        self.port = port  # the bound port once started (useful with port=0)
        self._admin_url = admin_url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(READY_PATH, self._handle_ready)
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self.port).start()
        self.port = self._runner.addresses[0][1]
        log.info("health endpoint on http://%s:%d%s", self._host, self.port, READY_PATH)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def readiness(self) -> Readiness:
        """Ask Envoy's admin whether it is live and has received its first configuration."""
        if self._session is None:
            return Readiness(False, "health server not started")
        try:
            async with self._session.get(f"{self._admin_url}/ready") as response:
                state = (await response.text()).strip()
                if response.status != 200 or state != "LIVE":
                    return Readiness(False, f"envoy not live: {state or response.status}")
            params = {"format": "json", "filter": _STATS_FILTER}
            async with self._session.get(f"{self._admin_url}/stats", params=params) as response:
                response.raise_for_status()
                body = await response.json()
        except (aiohttp.ClientError, TimeoutError) as error:
            return Readiness(False, f"envoy admin unreachable: {error!r}")
        stats = {s["name"]: s["value"] for s in body.get("stats", []) if "name" in s}
        if stats.get(CDS_SUCCESS, 0) < 1 or stats.get(LDS_SUCCESS, 0) < 1:
            return Readiness(
                False,
                "config not received from pilot: "
                f"cds updates: {stats.get(CDS_SUCCESS, 0)} successful, "
                f"{stats.get(CDS_REJECTED, 0)} rejected; "
                f"lds updates: {stats.get(LDS_SUCCESS, 0)} successful, "
                f"{stats.get(LDS_REJECTED, 0)} rejected",
            )
        return Readiness(True, "ready")

    async def _handle_ready(self, request: web.Request) -> web.Response:
        readiness = await self.readiness()
        return web.Response(status=200 if readiness.ready else 503, text=readiness.reason + "\n")
