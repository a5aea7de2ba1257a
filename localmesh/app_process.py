"""A workload's application as a supervised process: restarted with backoff, logged to a file.

The local mesh runs whatever command a WorkloadEntry names (`localmesh.pymesh.dev/command`),
as a pod runs its container: with the pod's address and identity in its environment and its
sidecar as the HTTP proxy, so the application reaches other services through the mesh without
knowing it. An application that exits is started again after a delay that doubles up to a cap
(reset once it has stayed up a while), as a kubelet restarts a crashing container; stopping
sends SIGTERM and, after a grace period, SIGKILL to its whole process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from meshcore.lifecycle import Service, cancel_and_wait

log = logging.getLogger(__name__)

BACKOFF_INITIAL: Final = 0.5
BACKOFF_MAX: Final = 30.0
STABLE_AFTER: Final = 10.0  # seconds up after which a crash starts the backoff afresh
STOP_GRACE: Final = 5.0


class AppProcess(Service):
    """Keeps `argv` running with `env` added to the environment, output appended to `log_file`."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], log_file: Path
    ) -> None:
        if not argv:
            raise ValueError(f"{name}: the command is empty")
        self.name = name
        self.argv = tuple(argv)
        self.env = dict(env)
        self.log_file = log_file
        self.restarts = 0
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{self.name} already started")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        await self._spawn()  # the first start fails loudly (a command that does not exist)
        self._task = asyncio.create_task(self._supervise(), name=f"app {self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])
        await self._terminate()

    async def _spawn(self) -> None:
        with self.log_file.open("ab") as output:
            self._process = await asyncio.create_subprocess_exec(
                *self.argv,
                env={**os.environ, **self.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() signals all of it
            )

    async def _supervise(self) -> None:
        backoff = BACKOFF_INITIAL
        while True:
            process = self._process
            assert process is not None
            started = time.monotonic()
            code = await process.wait()
            if time.monotonic() - started >= STABLE_AFTER:
                backoff = BACKOFF_INITIAL
            log.warning("%s exited with %s; restarting in %.1fs", self.name, code, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            try:
                await self._spawn()
            except OSError as error:
                log.error("%s cannot be restarted: %s", self.name, error)
                continue
            self.restarts += 1

    async def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
