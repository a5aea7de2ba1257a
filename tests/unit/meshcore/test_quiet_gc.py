"""The quiet collector: CPython never starts a full collection itself while it runs; one runs
once the process has worked and then gone quiet, and stopping gives the settings back."""

from __future__ import annotations

import asyncio
import gc
import time

from meshcore.quiet_gc import MIN_WORK_CPU_S, NEVER, YOUNG_THRESHOLDS, QuietCollector


def _work(cpu_seconds: float) -> None:
    deadline = time.process_time() + cpu_seconds
    while time.process_time() < deadline:
        pass


async def test_full_collections_wait_for_a_quiet_moment_after_work() -> None:
    before = gc.get_threshold()
    collector = QuietCollector(quiet_s=0.05)
    async with collector:
        assert gc.get_threshold() == (*YOUNG_THRESHOLDS, NEVER)
        await asyncio.sleep(0.2)  # quiet, but nothing was done: nothing to collect
        assert collector.full_collections == 0

        full_before = gc.get_stats()[2]["collections"]
        _work(MIN_WORK_CPU_S * 1.5)  # the event loop is blocked: no collection meanwhile
        assert collector.full_collections == 0
        for _ in range(100):  # up to 5 s
            if collector.full_collections:
                break
            await asyncio.sleep(0.05)
        assert collector.full_collections == 1
        assert gc.get_stats()[2]["collections"] > full_before
    assert gc.get_threshold() == before


async def test_constant_work_still_gets_collected_when_overdue() -> None:
    collector = QuietCollector(quiet_s=0.05, max_interval_s=0.0)
    async with collector:
        async with asyncio.timeout(10):
            while collector.full_collections == 0:
                _work(0.06)  # busier than quiet in every tick
                await asyncio.sleep(0)
    assert collector.full_collections >= 1
