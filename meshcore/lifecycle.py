"""The lifecycle every service object shares: start, stop, `async with`, and run-until-signal.

Services compose into one process (the local mesh, tests) or run alone (their `__main__`), so
each is an object with explicit `start()` and `stop()`; this base adds the context-manager
protocol once. `run_until_signalled` is the whole of a service's CLI main loop.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
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


async def run_until_signalled(*services: AbstractAsyncContextManager[Any]) -> None:
    """Run `services` (entered in order) until SIGTERM or SIGINT, then leave their contexts
    (which stops them, in reverse order)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with contextlib.AsyncExitStack() as stack:
            for service in services:
                await stack.enter_async_context(service)
            await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
