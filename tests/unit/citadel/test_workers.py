"""The worker pool's own promises: a worker that cannot start fails the start, naming why."""

from __future__ import annotations

from multiprocessing.connection import Connection

import pytest

from citadel.workers import WorkerPool, WorkerStartError


def exit_before_serving(index: int, control: Connection) -> None:
    raise SystemExit(3)


async def test_a_worker_that_exits_before_serving_fails_the_start() -> None:
    pool = WorkerPool(exit_before_serving, 1)
    with pytest.raises(WorkerStartError, match=r"citadel worker 1 did not start .*exit code 3"):
        await pool.start()
    await pool.stop()
    assert pool.pids == []
