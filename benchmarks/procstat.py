"""What a benchmark reads about a process it measures: CPU used so far, page faults, and peak
memory.

Every load benchmark runs the service under test in a process of its own and measures it from
outside, through /proc, while it runs and apart from the load generator.
"""

from __future__ import annotations

import os
from pathlib import Path


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (which may contain spaces): field 3 of proc(5)
    first."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process so far, all its threads (what getrusage reports
    for itself)."""
    fields = _stat_fields(pid)
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def minor_faults(pid: int) -> int:
    """Page faults of a live process so far that needed no disk: mostly fresh memory the
    kernel had to map and zero."""
    return int(_stat_fields(pid)[7])  # field 10 of proc(5)


def peak_rss_mib(pid: int) -> float:
    """VmHWM (peak resident set) of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmHWM in /proc/{pid}/status")
