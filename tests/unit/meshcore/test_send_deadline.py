"""SendDeadlines: a write past its deadline has its task cancelled, others are left alone, and
no task of its own outlives the writes it watches."""

from __future__ import annotations

import asyncio
import time

import pytest

from meshcore.xds.send_deadline import SendDeadlines


async def _write(deadlines: SendDeadlines, key: str, done: asyncio.Event) -> str:
    """Stands in for the pusher: one write that ends when `done` is set."""
    task = asyncio.current_task()
    assert task is not None
    deadlines.writing(key, task)
    try:
        await done.wait()
    except asyncio.CancelledError:
        if not deadlines.expired(key):
            raise
        task.uncancel()
        return "expired"
    finally:
        deadlines.written(key)
    return "written"


async def test_a_write_past_its_deadline_is_cancelled_within_a_quarter_more() -> None:
    deadlines = SendDeadlines(0.4)
    began = time.monotonic()
    stuck = asyncio.create_task(_write(deadlines, "stuck", asyncio.Event()))
    assert await asyncio.wait_for(stuck, 2) == "expired"
    assert 0.4 <= time.monotonic() - began < 0.4 * 1.25 + 0.1
    assert not deadlines.expired("stuck")  # forgotten once the write is over


async def test_writes_that_complete_in_time_are_left_alone() -> None:
    deadlines = SendDeadlines(0.2)
    done = asyncio.Event()
    quick = asyncio.create_task(_write(deadlines, "quick", done))
    stuck = asyncio.create_task(_write(deadlines, "stuck", asyncio.Event()))
    await asyncio.sleep(0.05)
    done.set()
    assert await quick == "written"
    assert await asyncio.wait_for(stuck, 2) == "expired"


async def test_a_write_started_again_gets_a_new_deadline() -> None:
    deadlines = SendDeadlines(0.3)
    for _ in range(3):  # each write is within its own deadline, the three together are not
        done = asyncio.Event()
        write = asyncio.create_task(_write(deadlines, "s", done))
        await asyncio.sleep(0.15)
        done.set()
        assert await write == "written"


async def test_a_cancellation_from_elsewhere_is_not_taken_for_a_timeout() -> None:
    deadlines = SendDeadlines(5.0)
    write = asyncio.create_task(_write(deadlines, "s", asyncio.Event()))
    await asyncio.sleep(0.01)
    write.cancel()
    with pytest.raises(asyncio.CancelledError):
        await write


async def test_no_task_of_its_own_is_left_when_writes_are_over() -> None:
    deadlines = SendDeadlines(0.2)
    before = asyncio.all_tasks()
    done = asyncio.Event()
    write = asyncio.create_task(_write(deadlines, "s", done))
    await asyncio.sleep(0.01)
    assert asyncio.all_tasks() - before == {write}
    done.set()
    await write
    assert asyncio.all_tasks() == before
