"""The local mesh's application supervisor: restarts with backoff, stops the whole group."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from localmesh import app_process
from localmesh.app_process import AppProcess
from localmesh.state import process_alive


async def test_an_exiting_application_is_restarted(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(app_process, "BACKOFF_INITIAL", 0.01)
    script = "import os; print('started', os.environ['POD_NAME'], flush=True)"
    process = AppProcess(
        "quick", [sys.executable, "-c", script], {"POD_NAME": "p1"}, tmp_path / "app.log"
    )
    log = tmp_path / "app.log"
    async with process:
        for _ in range(200):
            if log.read_text().count("started p1") >= 3:
                break
            await asyncio.sleep(0.05)
    assert process.restarts >= 2
    assert log.read_text().count("started p1") >= 3


async def test_stop_ends_the_application_and_its_children(tmp_path: Path) -> None:
    # The application starts a child of its own: stopping must not leave it behind.
    script = (
        "import subprocess, sys, time;"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print(child.pid, flush=True); time.sleep(60)"
    )
    log = tmp_path / "app.log"
    process = AppProcess("tree", [sys.executable, "-c", script], {}, log)
    async with process:
        for _ in range(200):
            if log.read_text().strip():
                break
            await asyncio.sleep(0.05)
        child = int(log.read_text().split()[0])
        parent = process.pid
        assert parent is not None and process_alive(child)
    for _ in range(100):
        if not process_alive(child):
            break
        await asyncio.sleep(0.05)
    assert not process_alive(parent) and not process_alive(child)


async def test_a_command_that_does_not_exist_fails_at_start(tmp_path: Path) -> None:
    process = AppProcess("missing", ["/nonexistent/app"], {}, tmp_path / "app.log")
    with pytest.raises(FileNotFoundError):
        await process.start()


def test_an_empty_command_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        AppProcess("none", [], {}, tmp_path / "app.log")
