"""Garbage collection at quiet moments, and a full collection rarely.

A full (oldest-generation) collection walks every object the cyclic collector tracks. Pilot
holding the streams of 2000 proxies tracks about 350,000: one pass took 0.2-0.35 s, nothing
else runs meanwhile, and Python started one every second or two while pilot pushed
(BENCHMARKS.md). So CPython never starts one itself here. The young generations stay automatic
(they walk only recent objects). At a quiet moment after some work (under `QUIET_CPU_SHARE` of
a core for `quiet_s`), the young generations are collected and every object the collector
still tracks is frozen (`gc.freeze`): out of its sight, so no later collection walks it again.
A change that arrives during that pause waits 10-50 ms (at 2000 proxies), not a quarter
second.

Garbage cycles among frozen objects (the oldest generation is frozen unexamined, and objects
frozen alive may die later) wait for a full collection (unfreeze, collect, freeze): at the
first quiet moment `full_interval_s` after the last one, or after `max_interval_s` of work
without a quiet moment. Pilot leaves few: none were found after 2000
streams were pushed to and then ended (objects are freed by their reference counts).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Final

from meshcore.lifecycle import Service, cancel_and_wait

log = logging.getLogger(__name__)

# Young collections: a larger first generation makes them rarer. Every survivor is walked once
# more when the middle generation is collected (and then promoted), so its threshold sets the
# size of that pause, not the total: at 20 (x 50,000) one took 260 ms in pilot, at 3 (x 20,000)
# under 90.
YOUNG_THRESHOLDS: Final = (20_000, 3)
# Gen-1 collections before CPython would collect the oldest generation itself: never.
NEVER: Final = 2**31 - 1
QUIET_CPU_SHARE: Final = 0.05
MIN_WORK_CPU_S: Final = 0.2  # what counts as "some work" since the last collection here


class QuietCollector(Service):
    """Owns the process's collector settings while started; one per process."""

    def __init__(
        self,
        *,
        quiet_s: float = 1.0,
        full_interval_s: float = 300.0,
        max_interval_s: float = 600.0,
    ) -> None:
        self.quiet_s = quiet_s
        self.full_interval_s = full_interval_s
        self.max_interval_s = max_interval_s
        self.quiet_collections = 0
        self.full_collections = 0
        self._saved: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._saved = gc.get_threshold()
        gc.collect()
        gc.freeze()
        gc.set_threshold(*YOUNG_THRESHOLDS, NEVER)
        self._task = asyncio.create_task(self._run(time.process_time()), name="quiet-gc")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None
        if self._saved is not None:
            gc.unfreeze()
            gc.set_threshold(*self._saved)
            self._saved = None

    async def _run(self, cpu: float) -> None:
        """`cpu`: the process's CPU time when started (work from then on counts)."""
        last_full = time.monotonic()
        worked = 0.0  # CPU seconds since the last collection here
        while True:
            await asyncio.sleep(self.quiet_s)
            now_cpu = time.process_time()
            used, cpu = now_cpu - cpu, now_cpu
            worked += used
            quiet = used < self.quiet_s * QUIET_CPU_SHARE
            if worked < MIN_WORK_CPU_S:
                continue
            since_full = time.monotonic() - last_full
            if since_full >= self.max_interval_s or (quiet and since_full >= self.full_interval_s):
                self.collect_all()
                last_full = time.monotonic()
            elif quiet:
                self.settle()
            else:
                continue
            worked, cpu = 0.0, time.process_time()

    def settle(self) -> None:
        """Collect the young generations and freeze what is alive: a quiet moment's work."""
        began = time.perf_counter()
        found = gc.collect(1)
        gc.freeze()
        self.quiet_collections += 1
        log.debug(
            "young collection: %d unreachable objects, %d frozen, %.1f ms",
            found,
            gc.get_freeze_count(),
            (time.perf_counter() - began) * 1000,
        )

    def collect_all(self) -> None:
        """A full collection, frozen objects included; what survives is frozen again."""
        began = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self.full_collections += 1
        log.debug(
            "full collection: %d unreachable objects, %.0f ms",
            found,
            (time.perf_counter() - began) * 1000,
        )
