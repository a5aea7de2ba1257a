"""The extra serving processes of `citadel --workers N`.

One Python process signs on one core: the event loop spends about as long on gRPC as on the
signature (BENCHMARKS.md), and threads gain nothing under the interpreter lock. Several
processes bound to the same ports with SO_REUSEPORT let the kernel spread connections over
them; Linux lets only sockets of the same user join such a group. The first process binds the
ports (resolving port 0), then starts the others here, each loading the same CA itself.

Each worker holds one end of a pipe to the first process: it says when it serves, and it stops
when the pipe closes, so a worker never outlives the process that started it (even one that was
killed). A worker that dies is started again after a pause; a worker that cannot start fails
citadel's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from meshcore.processes import end_process

log = logging.getLogger(__name__)

SERVING = "serving"
STARTUP_TIMEOUT_S = 60.0  # a fresh interpreter importing grpc and cryptography, loading the CA
STOP_TIMEOUT_S = 5.0
RESTART_PAUSE_S = 1.0

# What a worker process runs: its index (1..N-1) and its end of the pipe.
WorkerTarget = Callable[[int, Connection], None]


class WorkerStartError(RuntimeError):
    """A worker did not report serving in time."""


class _Worker:
    def __init__(self, index: int, process: BaseProcess, control: Connection) -> None:
        self.index = index
        self.process = process
        self.control = control


class WorkerPool:
    """Processes 1..`count` running `target`, each spawned afresh (no state inherited)."""

    def __init__(self, target: WorkerTarget, count: int) -> None:
        self._target = target
        self._count = count
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, _Worker] = {}
        self._restarts: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers.values() if w.process.pid is not None]

    async def start(self) -> None:
        workers = await asyncio.gather(
            *(self._spawn(index) for index in range(1, self._count + 1)), return_exceptions=True
        )
        for worker in workers:
            if isinstance(worker, _Worker):
                self._watch(worker)
        failures = [w for w in workers if isinstance(w, BaseException)]
        if failures:
            raise failures[0]

    async def _spawn(self, index: int) -> _Worker:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=self._target, args=(index, theirs), name=f"citadel-worker-{index}", daemon=True
        )
        process.start()
        theirs.close()
        worker = _Worker(index, process, ours)
        if await asyncio.to_thread(_await_serving, ours):
            return worker
        await asyncio.to_thread(_end, worker)
        raise WorkerStartError(
            f"citadel worker {index} did not start serving within {STARTUP_TIMEOUT_S:.0f} s "
            f"(exit code {process.exitcode}); its log says why"
        )

    def _watch(self, worker: _Worker) -> None:
        self._workers[worker.index] = worker
        asyncio.get_running_loop().add_reader(worker.process.sentinel, self._exited, worker)

    def _exited(self, worker: _Worker) -> None:
        asyncio.get_running_loop().remove_reader(worker.process.sentinel)
        self._workers.pop(worker.index, None)
        worker.process.join()
        worker.control.close()
        if self._stopping:
            return
        log.error(
            "citadel worker %d (pid %s) exited with code %s; starting it again",
            worker.index,
            worker.process.pid,
            worker.process.exitcode,
        )
        task = asyncio.create_task(self._restart(worker.index))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart(self, index: int) -> None:
        while not self._stopping:
            await asyncio.sleep(RESTART_PAUSE_S)
            try:
                worker = await self._spawn(index)
            except WorkerStartError as error:
                log.error("%s", error)
                continue
            if self._stopping:
                await asyncio.to_thread(_end, worker)
            else:
                self._watch(worker)
            return

    async def stop(self) -> None:
        self._stopping = True
        for task in list(self._restarts):
            task.cancel()
        loop = asyncio.get_running_loop()
        workers = list(self._workers.values())
        self._workers.clear()
        for worker in workers:
            loop.remove_reader(worker.process.sentinel)
        await asyncio.gather(*(asyncio.to_thread(_end, worker) for worker in workers))


def _await_serving(control: Connection) -> bool:
    try:
        return control.poll(STARTUP_TIMEOUT_S) and control.recv() == SERVING
    except (EOFError, OSError):
        return False


def _end(worker: _Worker) -> None:
    """Close the pipe (the worker stops serving and exits), then insist if it does not."""
    with contextlib.suppress(OSError):
        worker.control.close()
    end_process(worker.process, STOP_TIMEOUT_S)
