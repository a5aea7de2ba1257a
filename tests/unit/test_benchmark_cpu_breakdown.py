"""The function timers of `benchmarks.cpu_breakdown`: put in place and taken out again, counting
only while asked to, refusing what they cannot wrap."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from benchmarks.cpu_breakdown import Breakdown


class _Work:
    def spin(self, seconds: float) -> str:
        began = time.process_time()
        while time.process_time() - began < seconds:
            pass
        return "spun"

    async def spin_later(self, seconds: float) -> str:
        return self.spin(seconds)

    @staticmethod
    def helper() -> None:
        pass


def test_counts_calls_and_cpu_only_while_counting_and_restores_the_functions() -> None:
    original = vars(_Work)["spin"]
    breakdown = Breakdown([(_Work, "spin"), (_Work, "spin_later")])
    work = _Work()

    with breakdown.patched():
        assert work.spin(0.0) == "spun"  # not counting yet
        breakdown.counting = True
        assert work.spin(0.02) == "spun"
        assert asyncio.run(work.spin_later(0.02)) == "spun"
        breakdown.counting = False
        work.spin(0.0)

    assert vars(_Work)["spin"] is original
    spin, later = breakdown.spent["_Work.spin"], breakdown.spent["_Work.spin_later"]
    assert spin.calls == 2  # directly, and inside spin_later: inclusive
    assert later.calls == 1
    assert spin.seconds >= 0.04 and later.seconds >= 0.02
    rows = breakdown.table(stretches=2)
    assert rows[2].startswith("| _Work.spin | ") and "| 1 |" in rows[2]  # 2 calls over 2


def test_refuses_what_is_not_a_plain_function() -> None:
    breakdown = Breakdown([(_Work, "helper")])
    with pytest.raises(TypeError, match=r"_Work\.helper"), breakdown.patched():
        pass


def test_restores_the_functions_when_the_run_fails() -> None:
    original: Any = vars(_Work)["spin"]
    with pytest.raises(RuntimeError), Breakdown([(_Work, "spin")]).patched():
        raise RuntimeError("the run failed")
    assert vars(_Work)["spin"] is original
