"""Debouncing of change events into pushes, as Istio does it.

Changes arrive in bursts (an editor saving several files, many endpoints moving at once). The
first event opens a window; every further event extends it until nothing arrives for
`quiet` seconds, but never past `max_wait` after the first event. The merged request is then
pushed, and events arriving during a push are held for the next one: a proxy that is behind
gets the latest state, never a queue of states. The `Debouncer` owns one task (`run`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PushRequest:
    """What changed. `full` means regenerate everything; otherwise only EDS for `endpoints`."""

    full: bool
    endpoints: frozenset[str] = frozenset()  # hostnames whose endpoints changed
    workload_addresses: frozenset[str] = frozenset()  # addresses of workloads that changed
    reason: str = ""
    started: float = field(default_factory=time.monotonic)

    def merge(self, other: PushRequest) -> PushRequest:
        return PushRequest(
            full=self.full or other.full,
            endpoints=self.endpoints | other.endpoints,
            workload_addresses=self.workload_addresses | other.workload_addresses,
            reason=self.reason if self.reason == other.reason else f"{self.reason},{other.reason}",
            started=min(self.started, other.started),
        )


Push = Callable[[PushRequest], Awaitable[None]]


class Debouncer:
    def __init__(
        self,
        push: Push,
        *,
        quiet: float = 0.1,
        max_wait: float = 1.0,
        on_debounced: Callable[[float], None] | None = None,
    ) -> None:
        self._push = push
        self._quiet = quiet
        self._max_wait = max_wait
        self._on_debounced = on_debounced
        self._pending: PushRequest | None = None
        self._last_event = 0.0
        self._arrived = asyncio.Event()

    def submit(self, request: PushRequest) -> None:
        self._pending = request if self._pending is None else self._pending.merge(request)
        self._last_event = time.monotonic()
        self._arrived.set()

    async def run(self) -> None:
        while True:
            await self._arrived.wait()
            await self._settle()
            request, self._pending = self._pending, None
            self._arrived.clear()
            if request is None:
                continue
            if self._on_debounced is not None:
                self._on_debounced(time.monotonic() - request.started)
            await self._push(request)
            if self._pending is not None:
                self._arrived.set()

    async def _settle(self) -> None:
        """Sleep until the burst is quiet for `quiet` seconds or `max_wait` has passed."""
        assert self._pending is not None
        deadline = self._pending.started + self._max_wait
        while True:
            now = time.monotonic()
            wake = min(self._last_event + self._quiet, deadline)
            if now >= wake:
                return
            await asyncio.sleep(wake - now)
