"""Full garbage collections at quiet moments, never in the middle of work.

A full (oldest-generation) collection walks every object the cyclic collector tracks. A control
plane holding a large configuration, or pilot holding the config of 2000 proxies, has millions:
one pass took about 0.3 s in pilot at 1000 services and 2000 proxies, nothing else runs
meanwhile, and Python started one every second or two while pilot pushed (BENCHMARKS.md). The
young generations stay automatic (they walk only recent objects). The oldest is collected here
instead: once the process has done some work and then been quiet (under `QUIET_CPU_SHARE` of a
core for `quiet_s`), or after `max_interval_s` of work without a quiet moment, so garbage cycles
that reached the oldest generation are still reclaimed under constant load.
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
MIN_WORK_CPU_S: Final = 0.2  # what counts as "some work" since the last full collection


class QuietCollector(Service):
    """Owns the process's collector settings while started; one per process."""

    def __init__(self, *, quiet_s: float = 1.0, max_interval_s: float = 300.0) -> None:
        self.quiet_s = quiet_s
        self.max_interval_s = max_interval_s
        self.full_collections = 0
        self._saved: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._saved = gc.get_threshold()
        gc.collect()
        gc.set_threshold(*YOUNG_THRESHOLDS, NEVER)
        self._task = asyncio.create_task(self._run(), name="quiet-gc")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            self._saved = None

    async def _run(self) -> None:
        last_full = time.monotonic()
        worked = 0.0  # CPU seconds since the last full collection
        cpu = time.process_time()
        while True:
            await asyncio.sleep(self.quiet_s)
            now_cpu = time.process_time()
            used, cpu = now_cpu - cpu, now_cpu
            worked += used
            quiet = used < self.quiet_s * QUIET_CPU_SHARE
            overdue = time.monotonic() - last_full >= self.max_interval_s
            if worked >= MIN_WORK_CPU_S and (quiet or overdue):
                self.collect()
                last_full, worked, cpu = time.monotonic(), 0.0, time.process_time()

    def collect(self) -> None:
        began = time.perf_counter()
        found = gc.collect()
        self.full_collections += 1
        log.debug(
            "full collection: %d unreachable objects, %.0f ms",
            found,
            (time.perf_counter() - began) * 1000,
        )
