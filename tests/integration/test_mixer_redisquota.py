"""redisquota against a real redis-server: Istio 1.4's redis quota samples, over Mixer's API
and through a real Envoy.

Each test starts its own redis-server on its loopback block (.3, Redis' standard port 6379),
waits a bounded time for it to answer and always stops it. The samples name their server
`redis-release-master:6379`; they load unchanged, and the tests that allocate point that one
line at the test's server. redis-server comes from Debian (`make system-packages`); without it
the tests skip only when not root, since as root the set-up installs it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import grpc
import pytest
import redis.asyncio
from redis.exceptions import RedisError

from mixer.adapters.base import Environment
from mixer.config_source import load_directory
from mixer.runtime import HandlerPool
from mixer.server import Mixer, MixerOptions
from tests.integration.mesh import allocate_block, eventually
from tests.integration.test_mixer_api import Client, no_tasks_left, request_attributes
from tests.integration.test_mixer_envoy import Setup, source, workload
from tests.support.shared import ISTIO_1_4

POLICY = ISTIO_1_4 / "samples" / "bookinfo" / "policy"
SAMPLES = (
    "mixer-rule-productpage-redis-quota-fixed-window.yaml",
    "mixer-rule-productpage-redis-quota-rolling-window.yaml",
    "mixer-rule-ratings-redis-quota-fixed-window.yaml",
    "mixer-rule-ratings-redis-quota-rolling-window.yaml",
)
SAMPLE_SERVER = "redis-release-master:6379"
REDIS_SERVER = shutil.which("redis-server")

if REDIS_SERVER is None and os.geteuid() != 0:
    pytest.skip(
        "redis-server is not installed (make system-packages as root)", allow_module_level=True
    )


class RedisServer:
    """One redis-server process, in memory only, on `host`:6379."""

    def __init__(self, host: str, directory: Path) -> None:
        self.host = host
        self.address = f"{host}:6379"
        self._directory = directory
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        assert REDIS_SERVER is not None, "redis-server is missing: run make system-packages"
        self._directory.mkdir(parents=True, exist_ok=True)
        self._process = await asyncio.create_subprocess_exec(
            REDIS_SERVER,
            *("--bind", self.host, "--port", "6379", "--save", "", "--appendonly", "no"),
            *("--dir", str(self._directory), "--loglevel", "warning"),
            stdout=asyncio.subprocess.DEVNULL,
        )
        async with redis.asyncio.Redis(host=self.host, socket_timeout=1) as client:

            async def answering() -> bool | None:
                try:
                    return True if await client.ping() else None
                except RedisError:
                    return None

            await eventually(answering, f"redis-server on {self.address}", attempts=100)

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(f"{allocate_block()}.3", tmp_path / "redis")
    try:
        await server.start()
        yield server
    finally:
        await server.stop()


def install_sample(config: Path, name: str, server: RedisServer) -> None:
    """The sample with only its Redis address changed to the test's server."""
    config.mkdir(parents=True, exist_ok=True)
    text = (POLICY / name).read_text()
    assert SAMPLE_SERVER in text
    (config / name).write_text(text.replace(SAMPLE_SERVER, server.address))


StartMixer = Callable[[Path], Awaitable[Mixer]]


@pytest.fixture
async def start_mixer() -> AsyncIterator[StartMixer]:
    """Starts Mixers on the test's block reading `config`; stops them all at the end."""
    block = allocate_block()
    mixers: list[Mixer] = []

    async def start(config: Path) -> Mixer:
        options = MixerOptions(
            config_dir=config,
            host=f"{block}.{len(mixers) + 1}",
            port=0,
            monitoring_port=0,
            telemetry_port=0,
        )
        mixer = Mixer(options)
        await mixer.start()
        mixers.append(mixer)
        return mixer

    yield start
    for mixer in mixers:
        await mixer.stop()
    await no_tasks_left()


async def granted(mixer: Mixer, attributes: dict[str, object], count: int) -> list[int]:
    """The amounts granted to `count` Checks asking one requestcountquota each."""
    async with grpc.aio.insecure_channel(mixer.address) as channel:
        client = Client(channel)
        amounts = []
        for number in range(count):
            response = await client.check(
                attributes, {"requestcountquota": 1}, dedup=f"{id(attributes)}-{number}"
            )
            amounts.append(response.quotas["requestcountquota"].granted_amount)
        return amounts


def to_productpage(app: str, **extra: object) -> dict[str, object]:
    attributes = request_attributes(app, "v1", **extra)
    attributes["destination.labels"] = {"app": "productpage", "version": "v1"}
    attributes["destination.workload.name"] = "productpage-v1"
    return attributes


@pytest.mark.parametrize("sample", SAMPLES)
async def test_istio_redis_quota_samples_load_unchanged(tmp_path: Path, sample: str) -> None:
    config = tmp_path / "config"
    config.mkdir()
    shutil.copy(POLICY / sample, config / sample)
    pool = HandlerPool(Environment())
    try:
        runtime = await pool.runtime(load_directory(config))
    finally:
        await pool.close()
    assert runtime.summary()["handlers"] == 1


async def test_fixed_window_sample_is_shared_by_every_mixer(
    tmp_path: Path, redis_server: RedisServer, start_mixer: StartMixer
) -> None:
    config = tmp_path / "config"
    install_sample(config, SAMPLES[0], redis_server)
    first = await start_mixer(config)
    second = await start_mixer(config)
    # productpage from reviews: one request per 30 s window, counted once for both Mixers.
    assert await granted(first, to_productpage("reviews"), 2) == [1, 0]
    assert await granted(second, to_productpage("reviews"), 1) == [0]
    # From the ingress gateway: the override's 50.
    assert await granted(second, to_productpage("istio-ingressgateway"), 3) == [1, 1, 1]
    async with redis.asyncio.Redis(host=redis_server.host) as client:
        keys = await client.keys("mixer:redisquota:*")
        ttls = [await client.pttl(key) for key in keys]
    assert len(keys) == 2 and all(0 < ttl <= 30_000 for ttl in ttls)


async def test_rolling_window_sample_limits_by_override_and_recovers(
    tmp_path: Path, redis_server: RedisServer, start_mixer: StartMixer
) -> None:
    config = tmp_path / "config"
    install_sample(config, SAMPLES[1], redis_server)
    mixer = await start_mixer(config)
    # productpage from any source: 2 a second; reviews: 1; others: 500.
    assert await granted(mixer, to_productpage("reviews"), 3) == [1, 1, 0]
    reviews = request_attributes("productpage", "v1")
    reviews["destination.labels"] = {"app": "reviews", "version": "v2"}
    assert await granted(mixer, reviews, 2) == [1, 0]
    assert await granted(mixer, request_attributes("reviews", "v2"), 3) == [1, 1, 1]

    async def recovered() -> bool | None:
        return True if await granted(mixer, to_productpage("reviews"), 1) == [1] else None

    await eventually(recovered, "the 1 s rolling window to admit productpage again", 40)


@pytest.mark.envoy
async def test_fixed_window_sample_gives_429_through_envoy(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    setup = Setup(allocate_block(), tmp_path / "config", tmp_path / "run")
    setup.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
    try:
        install_sample(setup.config_dir, SAMPLES[0], redis_server)
        await setup.start_mixer()
        await setup.start_envoy(workload("productpage"))
        assert await setup.statuses(3, source("reviews", "v1")) == [200, 429, 429]
        _, body = await setup.get(source("reviews", "v1"))
        assert body.startswith("RESOURCE_EXHAUSTED:")
        gateway = source("istio-ingressgateway", "v1")
        assert await setup.statuses(3, gateway) == [200, 200, 200]
    finally:
        await setup.close()
    await no_tasks_left()
