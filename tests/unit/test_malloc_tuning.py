"""`keep_freed_memory`: a large block freed and allocated again reuses the same pages instead
of the kernel faulting in fresh ones (checked in a fresh interpreter, by its page faults, so
that this process's malloc settings stay as they were)."""

from __future__ import annotations

import subprocess
import sys

_REALLOCATE = """
import resource, sys
from meshcore.malloc_tuning import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory() is True  # glibc here: the thresholds were taken
block = b"x" * (8 * 1024 * 1024)  # malloc, then every page written
del block
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = b"x" * (8 * 1024 * 1024)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
_PAGES = 8 * 1024 * 1024 // 4096


def _faults_on_reallocating(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _REALLOCATE, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def test_a_freed_block_is_reused_without_page_faults() -> None:
    assert _faults_on_reallocating("default") > _PAGES // 2  # glibc gave the pages back
    assert _faults_on_reallocating("keep") < _PAGES // 20
