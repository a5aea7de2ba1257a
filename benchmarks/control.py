"""Commands from a benchmark to the processes it spawns, read on the child's asyncio loop.

A benchmark drives its load generators over `multiprocessing` pipes: it sends `(command,
argument)` tuples and finally `STOP` (or closes its end). The child reads them without a thread
of its own, from its event loop, as they arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from typing import Any

STOP = "stop"


async def commands(control: Connection) -> AsyncIterator[Any]:
    """Each message received on `control`, until `STOP` or the other end closes."""
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Any] = asyncio.Queue()

    def readable() -> None:
        try:
            inbox.put_nowait(control.recv())
        except EOFError:
            inbox.put_nowait(STOP)

    loop.add_reader(control.fileno(), readable)
    try:
        while (message := await inbox.get()) != STOP:
            yield message
    finally:
        loop.remove_reader(control.fileno())
