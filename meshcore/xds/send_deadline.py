"""Send deadlines for thousands of streams without a timer per write.

A client that stops reading must lose its stream once a write to it has not completed for the
send timeout, so that it gives its push slot back. `asyncio.timeout` around each write does
that by scheduling and cancelling a timer, and looking up the running loop and task, for every
write: with several thousand writes per push, about 3% of pilot's event-loop thread. Here a
write only records its deadline (`writing`) and clears it (`written`); one timer, set only
while writes are in flight, looks at them every quarter of the timeout and cancels the task of
each write past its deadline. A stuck write therefore ends between 1 and 1.25 times the
timeout after it began; `expired` tells the cancelled task why it was cancelled. The timer is
a loop callback, not a task, so nothing of it is left to cancel when its server stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable


class SendDeadlines:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._period = timeout / 4
        self._in_flight: dict[Hashable, tuple[float, asyncio.Task[None]]] = {}
        self._expired: set[Hashable] = set()
        self._timer: asyncio.TimerHandle | None = None

    def writing(self, key: Hashable, task: asyncio.Task[None]) -> None:
        """`task` starts a write for `key` (one at a time per key)."""
        self._in_flight[key] = (time.monotonic() + self.timeout, task)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._period, self._look)

    def written(self, key: Hashable) -> None:
        """The write for `key` is over, however it ended."""
        del self._in_flight[key]
        self._expired.discard(key)

    def expired(self, key: Hashable) -> bool:
        """Whether the timer cancelled the write in flight for `key`."""
        return key in self._expired

    def _look(self) -> None:
        self._timer = None
        now = time.monotonic()
        for key, (deadline, task) in list(self._in_flight.items()):
            if deadline <= now and key not in self._expired:
                self._expired.add(key)
                task.cancel()
        if self._in_flight:
            self._timer = asyncio.get_running_loop().call_later(self._period, self._look)
