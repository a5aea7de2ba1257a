"""The agent supervising a real Envoy: serving, restart after a crash, drain on stop, CLI signals.

Every test binds its own loopback address (127.0.99.x) so tests run in parallel. Pilot points
at a closed port, so Envoy never gets configuration; a short initial fetch timeout lets it go
live anyway, which is what makes its static listeners (15090) serve.
"""

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest

from agent.bootstrap import ProxySpec, build_bootstrap
from agent.envoy_process import EnvoyOptions, EnvoyProcess
from agent.health import HealthServer

pytestmark = pytest.mark.envoy

T = TypeVar("T")
OPTIONS = EnvoyOptions(drain_seconds=1.0, stop_timeout=3.0, backoff_initial=0.1)


def spec_for(ip: str) -> ProxySpec:
    return ProxySpec(
        ip=ip, pod="web-1", namespace="test", pilot=f"{ip}:1", initial_fetch_timeout=0.2
    )


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, attempts: int = 100, interval: float = 0.05
) -> T:
    """Poll until probe returns something other than None; bounded in count and time."""
    for _ in range(attempts):
        result = await probe()
        if result is not None:
            return result
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


async def get(url: str) -> tuple[int, str, str] | None:
    """(status, connection header, body), or None if nothing answers yet."""
    timeout = aiohttp.ClientTimeout(total=1.0)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            body = await response.text()
            return response.status, response.headers.get("connection", ""), body
    except (aiohttp.ClientError, TimeoutError):
        return None


async def admin_live(spec: ProxySpec) -> str | None:
    answer = await get(f"{spec.admin_url}/ready")
    return "LIVE" if answer is not None and answer[0] == 200 else None


@asynccontextmanager
async def agent(ip: str, run_dir: Path) -> AsyncIterator[tuple[ProxySpec, EnvoyProcess]]:
    spec = spec_for(ip)
    envoy = EnvoyProcess(build_bootstrap(spec), spec.admin_url, run_dir, OPTIONS)
    async with envoy, HealthServer(spec.ip, spec.admin_url):
        await eventually(lambda: admin_live(spec), "envoy admin to report LIVE")
        yield spec, envoy


@pytest.fixture(autouse=True)
async def no_task_left() -> AsyncIterator[None]:
    yield
    assert asyncio.all_tasks() == {asyncio.current_task()}


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_envoy_serves_admin_and_stats_but_is_not_ready(tmp_path: Path) -> None:
    async with agent("127.0.99.1", tmp_path) as (spec, envoy):
        assert envoy.bootstrap_path == tmp_path / "envoy-bootstrap.json"
        assert envoy.bootstrap_path.is_file()
        stats = await get(f"http://{spec.ip}:15090/stats/prometheus")
        assert stats is not None and stats[0] == 200
        assert "envoy_cluster_manager_cds_update_attempt" in stats[2]
        health = await get(f"http://{spec.ip}:15021/healthz/ready")
        assert health is not None and health[0] == 503
        assert "config not received from pilot" in health[2]
    assert "starting workers" in envoy.log_path.read_text()


async def test_supervisor_restarts_killed_envoy(tmp_path: Path) -> None:
    async with agent("127.0.99.2", tmp_path) as (spec, envoy):
        first = envoy.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)

        async def restarted() -> int | None:
            pid = envoy.pid
            if pid in (None, first) or await admin_live(spec) is None:
                return None
            return pid

        second = await eventually(restarted, "a new envoy answering on the admin port")
        assert envoy.restarts == 1 and second != first


async def test_stop_drains_then_leaves_no_process(tmp_path: Path) -> None:
    async with agent("127.0.99.3", tmp_path) as (spec, envoy):
        pid = envoy.pid
        assert pid is not None
        stopping = asyncio.create_task(envoy.stop())

        async def draining() -> bool | None:
            # While draining, Envoy still answers but asks HTTP/1.1 clients to close.
            answer = await get(f"http://{spec.ip}:15090/stats/prometheus")
            return True if answer is not None and answer[1].lower() == "close" else None

        await eventually(draining, "the stats listener to drain", attempts=20)
        assert not stopping.done()  # still inside the drain period
        await asyncio.wait_for(stopping, OPTIONS.drain_seconds + OPTIONS.stop_timeout + 2)
        assert envoy.pid is None and process_gone(pid)
        assert await get(f"{spec.admin_url}/ready") is None


async def test_cli_drains_and_exits_zero_on_sigterm(tmp_path: Path) -> None:
    spec = spec_for("127.0.99.4")
    cli = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "agent", f"--ip={spec.ip}", "--pod=cli", f"--pilot={spec.pilot}"),
        *("--initial-fetch-timeout=0.2", "--drain-seconds=0.5", f"--run-dir={tmp_path}"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await eventually(lambda: admin_live(spec), "the CLI's envoy to go live")
        health = await get(f"http://{spec.ip}:15021/healthz/ready")
        assert health is not None and health[0] == 503
        cli.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(cli.communicate(), 10)
    finally:
        if cli.returncode is None:
            cli.kill()
            await cli.wait()
    assert cli.returncode == 0, stderr.decode()
    assert await get(f"{spec.admin_url}/ready") is None
    assert await get(f"http://{spec.ip}:15021/healthz/ready") is None
