"""Keeping freed memory in the process for reuse, instead of handing it back to the kernel.

A push writes each of thousands of streams a response of up to a megabyte (joined from shared
pieces, then copied by grpc), and lets it go once written. glibc's malloc by default hands
large freed blocks back to the kernel (`munmap`, or trimming the top of the heap once 128 KiB
to a few MiB are free there), so the next response lands on fresh pages that the kernel must
fault in and zero again: at 1000 services and 2000 proxies 85,000-104,000 page faults per
service removed, and 37,000-57,000 per VirtualService edit (BENCHMARKS.md). With fixed, high
thresholds the memory is reused as it is.

What it costs: memory freed after a peak stays with the process (up to `TRIM_THRESHOLD` at the
top of the heap), which leaves its peak resident size, the figure to provision for, as it was.
Only glibc acts on `mallopt`: musl's does nothing (and says so), macOS has none; there this
changes nothing.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Final

log = logging.getLogger(__name__)

# glibc's <malloc.h>
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
# Blocks below this come from the heap, not a mapping of their own: above any response (a
# state-of-the-world CDS response is 3.6 MB at 5000 services).
MMAP_THRESHOLD: Final = 32 * 1024 * 1024
# Free memory at the top of the heap beyond this goes back to the kernel.
TRIM_THRESHOLD: Final = 512 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Set glibc's thresholds for the whole process; whether they were taken."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        log.debug("no mallopt in this C library: it returns freed memory its way")
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    taken = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    if not taken:
        log.warning("the C library refused the malloc thresholds: it returns freed memory its way")
    return taken
