"""The lifecycle every service object shares: start, stop, `async with`, and run-until-signal.

Services compose into one process (the local mesh, tests) or run alone (their `__main__`), so
each is an object with explicit `start()` and `stop()`; this base adds the context-manager
protocol once. `run_until_signalled` is the whole of a service's CLI main loop.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import gc
import signal
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Self


class Service(abc.ABC):
    """Subclasses implement `start` and `stop`; `async with` calls them."""

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel tasks a service owns and wait until every one has finished."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def settle_heap() -> None:
    """Call once a long-lived service has loaded its state (a whole configuration, say).

    Python's cyclic collector otherwise rescans every object of that state on each full
    collection, which showed as the tail of galley's change latency; frozen objects are left
    alone, and a larger first generation makes collections rarer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def run_until_signalled(
    service: AbstractAsyncContextManager[Any], *, long_lived_state: bool = False
) -> None:
    """Run `service` until SIGTERM or SIGINT, then leave its context (which stops it).

    With `long_lived_state`, the heap is settled (`settle_heap`) once the service started.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with service:
            if long_lived_state:
                settle_heap()
            await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
