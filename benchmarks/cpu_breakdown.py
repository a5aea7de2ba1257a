"""CPU by function over chosen stretches of a run, from timers around a few named functions.

Why: cProfile times every call, and on pilot's many small functions it misleads (it inflated
`Service.vips` 40-fold, BENCHMARKS.md). Wrapping a dozen chosen functions with a process-time
timer costs about a microsecond a call and leaves everything else running as it does. Times are
inclusive: a timed function called by another timed one counts in both, like a profile's
cumulative column. A coroutine function is timed from its call to its return, so it gives its
own CPU only if it never waits in between (as with `pilot_push_cost`'s in-process streams).
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass
class Spent:
    """CPU seconds and calls of one timed function while counting was on."""

    seconds: float = 0.0
    calls: int = 0


class Breakdown:
    """Times `targets` (owner, attribute name: a class or module and a function on it) while
    `counting`, once `patched` has put the timers in place."""

    def __init__(self, targets: Sequence[tuple[Any, str]]) -> None:
        self.targets = targets
        self.counting = False
        self.spent = {self.label(owner, name): Spent() for owner, name in targets}

    @staticmethod
    def label(owner: Any, name: str) -> str:
        return f"{owner.__name__.rsplit('.', 1)[-1]}.{name}"

    @contextmanager
    def patched(self) -> Iterator[Breakdown]:
        originals = [(owner, name, vars(owner)[name]) for owner, name in self.targets]
        for owner, name, original in originals:
            if not inspect.isfunction(original):
                raise TypeError(f"{self.label(owner, name)} is not a plain function to time")
        try:
            for owner, name, original in originals:
                setattr(owner, name, self._timed(original, self.spent[self.label(owner, name)]))
            yield self
        finally:
            for owner, name, original in originals:
                setattr(owner, name, original)

    def _timed(self, function: Callable[..., Any], spent: Spent) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def timed_coroutine(*args: Any, **kwargs: Any) -> Any:
                began = time.process_time()
                try:
                    return await function(*args, **kwargs)
                finally:
                    self._add(spent, began)

            return timed_coroutine

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                self._add(spent, began)

        return timed

    def _add(self, spent: Spent, began: float) -> None:
        if self.counting:
            spent.seconds += time.process_time() - began
            spent.calls += 1

    def table(self, stretches: int) -> list[str]:
        """Markdown rows, most CPU first: ms and calls per stretch counted, µs per call."""
        lines = [
            "| function | ms per change | calls per change | µs per call |",
            "|---|---|---|---|",
        ]
        for label, spent in sorted(self.spent.items(), key=lambda item: -item[1].seconds):
            if not spent.calls:
                continue
            lines.append(
                f"| {label} | {spent.seconds / stretches * 1e3:.1f} "
                f"| {spent.calls / stretches:.0f} | {spent.seconds / spent.calls * 1e6:.1f} |"
            )
        return lines
