"""The latency Mixer's policy Check adds to a request through Envoy: p50/p90/p99, with and
without ext_authz, in one run.

Why: issue #8's target is "under 1 ms added at p90" (Istio's Mixer added about 7 ms). Two
real Envoy sidecars (one worker thread each) front the same backend: one with the ext_authz
filter asking Mixer's Check (as pilot configures it, the destination's attributes in the
route's context extensions, Istio 1.4's deny-label sample in force), one without. A load
client in its own process sends requests one at a time, alternating between the two, so both
see the same machine state, and times each from send to last byte; Mixer serves in its own
process (spawned, single-threaded asyncio), the backend in this one. The difference of the
two latency distributions is what the Check adds. Access logging is off on both: Envoy
streams it after the response, so it adds nothing to the request.

The check cache works as with real traffic (the sidecar's requests differ only in request id
and path, which the rules do not read), so most Checks are cache hits; `--distinct-sources`
makes every request's source unique, so every Check runs the rules.

Every wait is bounded, every process stopped on exit. Run:
`python -m benchmarks.mixer_latency [--requests N] [--block 127.X.Y] [--distinct-sources]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import shutil
import statistics
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

from agent.envoy_process import EnvoyOptions, EnvoyProcess
from localmesh.demo_app import DemoApp
from mixer.envoy_attributes import FORWARDED_ATTRIBUTES_HEADER, forward_header
from mixer.server import Mixer, MixerOptions

REPOSITORY = Path(__file__).resolve().parents[1]
POLICY = REPOSITORY.parent / "shared" / "istio-1.4" / "samples" / "bookinfo" / "policy"
CONFIG_FILES = (POLICY / "mixer-rule-deny-label.yaml",)
DESTINATION = {
    "destination.labels": "app=ratings,version=v1",
    "destination.workload.name": "ratings-v1",
    "destination.workload.namespace": "default",
    "destination.service.host": "ratings.default.svc.cluster.local",
    "destination.service.name": "ratings",
    "destination.service.namespace": "default",
}
MIXER_CLUSTER = "outbound|9091||mixer.istio-system.svc.cluster.local"
APP_PORT = 9080
INBOUND_PORT = 15006
ENVOY_OPTIONS = EnvoyOptions(drain_seconds=0.2, stop_timeout=3.0, concurrency=1, log_level="error")
START_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 600.0
WARM_UP = 200  # requests per Envoy before timing
PERCENTILES = (50, 90, 99)


def _typed(type_name: str, **fields: Any) -> dict[str, Any]:
    return {"@type": f"type.googleapis.com/{type_name}", **fields}


def _cluster(name: str, host: str, port: int, *, http2: bool) -> dict[str, Any]:
    endpoint = {"address": {"socket_address": {"address": host, "port_value": port}}}
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "0.25s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}],
        },
    }
    if http2:
        options = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        cluster["typed_extension_protocol_options"] = {
            options: _typed(options, explicit_http_config={"http2_protocol_options": {}})
        }
    return cluster


def bootstrap(ip: str, app: str, mixer: str, *, policy: bool) -> dict[str, Any]:
    """An inbound sidecar on `ip`:15006 in front of `app`, asking Mixer first if `policy`."""
    route: dict[str, Any] = {"match": {"prefix": "/"}, "route": {"cluster": "inbound|9080||"}}
    filters: list[dict[str, Any]] = []
    if policy:
        filters.append(
            {
                "name": "envoy.filters.http.ext_authz",
                "typed_config": _typed(
                    "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
                    grpc_service={"envoy_grpc": {"cluster_name": MIXER_CLUSTER}, "timeout": "1s"},
                    transport_api_version="V3",
                    failure_mode_allow=False,
                ),
            }
        )
        route["typed_per_filter_config"] = {
            "envoy.filters.http.ext_authz": _typed(
                "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
                check_settings={"context_extensions": DESTINATION},
            )
        }
    filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": _typed("envoy.extensions.filters.http.router.v3.Router"),
        }
    )
    manager = _typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix="inbound_9080",
        route_config={
            "name": "inbound|9080||",
            "virtual_hosts": [{"name": "inbound", "domains": ["*"], "routes": [route]}],
        },
        http_filters=filters,
    )
    mixer_host, mixer_port = mixer.rsplit(":", 1)
    listener_address = {"socket_address": {"address": ip, "port_value": INBOUND_PORT}}
    return {
        "node": {"id": f"sidecar~{ip}~ratings-v1.default~default.svc.cluster.local"},
        "admin": {"address": {"socket_address": {"address": ip, "port_value": 15000}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "virtualInbound",
                    "address": listener_address,
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                _cluster("inbound|9080||", app, APP_PORT, http2=False),
                _cluster(MIXER_CLUSTER, mixer_host, int(mixer_port), http2=True),
            ],
        },
    }


def _serve_mixer(config_dir: str, host: str, control: Connection) -> None:
    """The Mixer process: serve until the control pipe says stop (or closes)."""

    async def main() -> None:
        options = MixerOptions(
            config_dir=Path(config_dir), host=host, port=0, monitoring_port=0, telemetry_port=0
        )
        async with Mixer(options) as mixer:
            control.send(("ready", mixer.address))
            loop = asyncio.get_running_loop()
            while not await loop.run_in_executor(None, control.poll, 0.2):
                pass
            cache = mixer.checks.cache
            control.send(("stats", cache.hits, cache.misses))

    with contextlib.suppress(EOFError, BrokenPipeError):
        asyncio.run(main())


def source_header(number: int, distinct: bool) -> dict[str, str]:
    """What a reviews-v2 client sidecar adds (allowed by deny-label). If `distinct`, the
    version label the rule reads is unique (still not v3), so the check cache cannot answer."""
    version = f"v2-{number}" if distinct else "v2"
    labels = {"app": "reviews", "version": version}
    header = forward_header({"source.labels": labels, "source.workload.name": "reviews-v2"})
    return {FORWARDED_ATTRIBUTES_HEADER: header}


def _load(urls: Mapping[str, str], requests: int, distinct: bool, results: Connection) -> None:
    """The load client process: alternate between the Envoys, one request at a time."""

    async def main() -> dict[str, list[float]]:
        timings: dict[str, list[float]] = {name: [] for name in urls}
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for number in range(WARM_UP + requests):
                for name, url in urls.items():
                    headers = source_header(number, distinct)
                    start = time.perf_counter()
                    async with session.get(f"{url}/ratings/{number % 7}", headers=headers) as r:
                        await r.read()
                        status = r.status
                    elapsed = time.perf_counter() - start
                    if status != 200:
                        raise AssertionError(f"{name}: request {number} answered {status}")
                    if number >= WARM_UP:
                        timings[name].append(elapsed)
        return timings

    results.send(asyncio.run(main()))


def percentiles_ms(samples: list[float]) -> dict[int, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {p: cuts[p - 1] * 1000.0 for p in PERCENTILES}


@dataclass(frozen=True)
class Result:
    requests: int
    plain_ms: dict[int, float]
    checked_ms: dict[int, float]
    cache_hits: int
    cache_misses: int

    @property
    def added_ms(self) -> dict[int, float]:
        return {p: self.checked_ms[p] - self.plain_ms[p] for p in PERCENTILES}


def _spawn(context: Any, target: Any, *args: Any) -> Any:
    process = context.Process(target=target, args=args, daemon=True)
    process.start()
    return process


def _stop(process: Any) -> None:
    process.join(10)
    if process.is_alive():
        process.kill()
        process.join(5)


async def _measure(block: str, mixer: str, requests: int, distinct: bool, run_dir: Path) -> Any:
    context = multiprocessing.get_context("spawn")
    app = DemoApp("ratings-v1", f"{block}.102", APP_PORT)
    envoys = {
        name: EnvoyProcess(
            bootstrap(f"{block}.{n}", f"{block}.102", mixer, policy=name == "checked"),
            f"http://{block}.{n}:15000",
            run_dir / name,
            ENVOY_OPTIONS,
        )
        for n, name in ((2, "plain"), (3, "checked"))
    }
    urls = {
        name: f"http://{block}.{n}:{INBOUND_PORT}" for n, name in ((2, "plain"), (3, "checked"))
    }
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(app)
        for envoy in envoys.values():
            await stack.enter_async_context(envoy)
        await _until_ready(urls)
        ours, theirs = context.Pipe()
        client = _spawn(context, _load, urls, requests, distinct, theirs)
        try:
            loop = asyncio.get_running_loop()
            if not await loop.run_in_executor(None, ours.poll, RUN_TIMEOUT_S):
                raise TimeoutError("the load client did not finish")
            return ours.recv()
        finally:
            _stop(client)


async def _until_ready(urls: Mapping[str, str]) -> None:
    """Both Envoys answer through to the backend (bounded: START_TIMEOUT_S)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        for url in urls.values():
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with session.get(f"{url}/", headers=source_header(0, False)) as r:
                        if r.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} did not serve")
                await asyncio.sleep(0.1)


def run(requests: int, block: str = "127.0.77", distinct: bool = False) -> Result:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    with tempfile.TemporaryDirectory(prefix="mixer-latency-") as scratch:
        config = Path(scratch) / "config"
        config.mkdir()
        for file in CONFIG_FILES:
            shutil.copy(file, config / file.name)
        mixer = _spawn(context, _serve_mixer, str(config), f"{block}.1", theirs)
        try:
            if not ours.poll(START_TIMEOUT_S):
                raise TimeoutError("mixer did not start")
            _, address = ours.recv()
            timings = asyncio.run(_measure(block, address, requests, distinct, Path(scratch)))
            ours.send("stop")
            if not ours.poll(10):
                raise TimeoutError("mixer did not report its cache counts")
            _, hits, misses = ours.recv()
        finally:
            _stop(mixer)
    return Result(
        requests, percentiles_ms(timings["plain"]), percentiles_ms(timings["checked"]), hits, misses
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="timed requests per Envoy")
    parser.add_argument("--block", default="127.0.77", help="loopback /24 prefix to bind")
    parser.add_argument("--distinct-sources", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.requests, args.block, args.distinct_sources)
    for label, values in (
        ("without ext_authz", result.plain_ms),
        ("with Mixer Check", result.checked_ms),
        ("added", result.added_ms),
    ):
        cells = ", ".join(f"p{p} {values[p]:.3f} ms" for p in PERCENTILES)
        print(f"{label:>18}: {cells}")
    print(
        f"{result.requests} timed requests per Envoy, interleaved; check cache "
        f"{result.cache_hits} hits, {result.cache_misses} misses"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
