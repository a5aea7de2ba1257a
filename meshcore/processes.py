"""Ending a child process politely, then firmly: the one escalation every spawner here uses.

The caller has already asked the child to stop its own way (a message on its pipe, a closed
pipe); this waits for it, then sends SIGTERM, then SIGKILL, each wait bounded, so that a child
that hangs can never hang its parent.
"""

from __future__ import annotations

from multiprocessing.process import BaseProcess


def end_process(process: BaseProcess, timeout_s: float) -> None:
    """Wait up to `timeout_s` for `process` to exit, then terminate it, then kill it."""
    process.join(timeout_s)
    if process.is_alive():
        process.terminate()
        process.join(timeout_s)
    if process.is_alive():
        process.kill()
        process.join()
