"""Run one Envoy for one workload, keep it running, and drain it before it goes.

Istio's pilot-agent supervises its Envoy the same way: restart on unexpected exit with a bounded
exponential backoff, and on shutdown drain listeners through the admin API before signalling.
Hot restart is disabled so many Envoys share one host; Envoy runs in its own session so a
terminal's Ctrl-C reaches the agent (which drains) and not Envoy directly.

Task ownership: `EnvoyProcess` owns exactly one task, the supervisor, created by `start()` and
awaited by `stop()`. That task alone spawns, waits on, restarts and terminates the Envoy
process, so there is no race between a restart and a stop.
"""

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from meshcore.envoy_binary import envoy_path
from meshcore.lifecycle import Service

log = logging.getLogger(__name__)

BOOTSTRAP_FILE = "envoy-bootstrap.json"
LOG_FILE = "envoy.log"


@dataclass(frozen=True)
class EnvoyOptions:
    log_level: str = "info"
    concurrency: int = 2
    drain_seconds: float = 5.0  # Envoy's --drain-time-s, and how long stop() lets it drain
    stop_timeout: float = 5.0  # SIGTERM to SIGKILL
    backoff_initial: float = 0.2
    backoff_max: float = 10.0
    stable_after: float = 10.0  # an Envoy up this long resets the backoff


class EnvoyProcess(Service):
    """Supervises one Envoy: `start()`, `stop()`, or `async with`."""

    def __init__(
        self,
        bootstrap: Mapping[str, Any],
        admin_url: str,
        run_dir: Path,
        options: EnvoyOptions | None = None,
        binary: Path | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._admin_url = admin_url
        self._options = options or EnvoyOptions()
        self._binary = binary
        self.bootstrap_path = run_dir / BOOTSTRAP_FILE
        self.log_path = run_dir / LOG_FILE
        self.restarts = 0
        self._process: asyncio.subprocess.Process | None = None
        self._started_at = 0.0
        self._stopping = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """The running Envoy's pid, or None between runs."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def start(self) -> None:
        """Write the bootstrap and start Envoy; raises if it cannot even be spawned."""
        if self._supervisor is not None:
            raise RuntimeError("EnvoyProcess already started")
        self._binary = self._binary or envoy_path()
        self.bootstrap_path.parent.mkdir(parents=True, exist_ok=True)
        self.bootstrap_path.write_text(json.dumps(self._bootstrap, indent=2))
        process = await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(process), name="envoy-supervisor")

    async def stop(self) -> None:
        """Drain, then terminate Envoy; returns once the process and its supervisor are gone."""
        self._stopping.set()
        if self._supervisor is not None:
            await self._supervisor

    def _command(self) -> list[str]:
        opts = self._options
        return [
            str(self._binary),
            "-c",
            str(self.bootstrap_path),
            "--disable-hot-restart",
            "--log-level",
            opts.log_level,
            "--drain-time-s",
            str(math.ceil(opts.drain_seconds)),
            "--drain-strategy",
            "immediate",
            "--concurrency",
            str(opts.concurrency),
        ]

    async def _spawn(self) -> asyncio.subprocess.Process:
        with self.log_path.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                *self._command(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        self._process = process
        self._started_at = asyncio.get_running_loop().time()
        log.info("envoy started, pid %d, log %s", process.pid, self.log_path)
        return process

    async def _supervise(self, first: asyncio.subprocess.Process) -> None:
        opts = self._options
        delay = opts.backoff_initial
        process: asyncio.subprocess.Process | None = first
        try:
            while True:
                if process is not None:
                    if not await self._exited_before_stop(process):
                        await self._shutdown(process)
                        return
                    uptime = asyncio.get_running_loop().time() - self._started_at
                    if uptime >= opts.stable_after:
                        delay = opts.backoff_initial
                    log.warning(
                        "envoy pid %d exited with %s after %.1fs; restarting in %.1fs",
                        process.pid,
                        process.returncode,
                        uptime,
                        delay,
                    )
                if await self._stop_requested_within(delay):
                    return
                delay = min(delay * 2, opts.backoff_max)
                try:
                    process = await self._spawn()
                except OSError:
                    log.exception("cannot start envoy; retrying in %.1fs", delay)
                    process = None
                    continue
                self.restarts += 1
        finally:
            if process is not None and process.returncode is None:
                process.kill()  # only reached if this task itself is cancelled

    async def _exited_before_stop(self, process: asyncio.subprocess.Process) -> bool:
        exited = asyncio.ensure_future(process.wait())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((exited, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
            stopping.cancel()
        return not self._stopping.is_set()

    async def _stop_requested_within(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    async def _shutdown(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is None:
            await self._drain_listeners()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), self._options.drain_seconds)
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), self._options.stop_timeout)
            except TimeoutError:
                log.warning("envoy pid %d ignored SIGTERM; killing it", process.pid)
                process.kill()
                await process.wait()
        log.info("envoy pid %d stopped with %s", process.pid, process.returncode)

    async def _drain_listeners(self) -> None:
        url = f"{self._admin_url}/drain_listeners?graceful"
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session,
                session.post(url) as response,
            ):
                if response.status != 200:
                    log.warning("drain_listeners answered %d", response.status)
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("cannot drain envoy listeners: %r", error)
