"""The quiet collector: CPython never starts a full collection itself while it runs; at a
quiet moment after work the young generations are collected and what lives is frozen, a full
collection comes rarely, and stopping gives the settings back."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Callable

from meshcore.quiet_gc import MIN_WORK_CPU_S, NEVER, YOUNG_THRESHOLDS, QuietCollector


def _work(cpu_seconds: float) -> None:
    deadline = time.process_time() + cpu_seconds
    while time.process_time() < deadline:
        pass


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110  # the collector's counters, set by its task
            await asyncio.sleep(0.05)


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle(holder: list[_Node]) -> weakref.ref[_Node]:
    """A reference cycle, alive while `holder` holds it."""
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    holder.append(first)
    return weakref.ref(first)


def _watched(objects: list[object]) -> bool:
    """Whether any of `objects` is still in a generation the collector walks."""
    ids = {id(o) for o in objects}
    return any(id(o) in ids for o in gc.get_objects())


async def test_a_quiet_moment_after_work_freezes_what_lives_without_a_full_collection() -> None:
    before = gc.get_threshold()
    collector = QuietCollector(quiet_s=0.05)
    async with collector:
        assert gc.get_threshold() == (*YOUNG_THRESHOLDS, NEVER)
        await asyncio.sleep(0.2)  # quiet, but nothing was done: nothing to collect
        assert collector.quiet_collections == collector.full_collections == 0

        kept: list[object] = [[index] for index in range(1000)]
        assert _watched(kept)
        full_before = gc.get_stats()[2]["collections"]
        _work(MIN_WORK_CPU_S * 1.5)  # the event loop is blocked: no collection meanwhile
        assert collector.quiet_collections == 0
        await _until(lambda: collector.quiet_collections > 0)
        assert not _watched(kept)  # frozen: no collection walks them again
        assert collector.full_collections == 0
        assert gc.get_stats()[2]["collections"] == full_before
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0 and _watched(kept)  # stopping unfreezes


async def test_garbage_cycles_of_frozen_objects_wait_for_the_full_collection() -> None:
    async with QuietCollector(quiet_s=60) as collector:
        holder: list[_Node] = []
        alive = _cycle(holder)
        collector.settle()  # frozen while alive...
        holder.clear()  # ...and unreachable from here on
        gc.collect()
        collector.settle()
        assert alive() is not None
        collector.collect_all()
        assert alive() is None

        young = _cycle(holder)  # never frozen: a young collection finds it
        holder.clear()
        collector.settle()
        assert young() is None


async def test_the_full_collection_comes_at_a_quiet_moment_once_due() -> None:
    collector = QuietCollector(quiet_s=0.05, full_interval_s=0.0)
    async with collector:
        _work(MIN_WORK_CPU_S * 1.5)
        await _until(lambda: collector.full_collections > 0)
        assert collector.quiet_collections == 0


async def test_constant_work_still_gets_collected_when_overdue() -> None:
    collector = QuietCollector(quiet_s=0.05, max_interval_s=0.0)
    async with collector:
        async with asyncio.timeout(10):
            while collector.full_collections == 0:
                _work(0.06)  # busier than quiet in every tick
                await asyncio.sleep(0)
    assert collector.full_collections >= 1
