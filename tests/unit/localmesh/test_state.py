"""The local mesh's state file: how status, down and a second up find a running mesh."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from localmesh.state import STATE_FILE, Endpoint, MeshState
from meshctl.__main__ import main


def state(pid: int) -> MeshState:
    return MeshState(
        pid,
        "examples/bookinfo",
        True,
        [Endpoint("pilot", "127.0.0.1:15014", "http://127.0.0.1:15014/ready")],
        [Endpoint("productpage-v1", "127.20.0.2", "http://127.20.0.2:15021/healthz/ready")],
        ["http://127.0.0.1:8080/productpage"],
    )


def test_saved_state_of_a_live_process_loads(tmp_path: Path) -> None:
    state(os.getpid()).save(tmp_path)
    assert MeshState.load(tmp_path) == state(os.getpid())


def test_state_of_a_dead_process_describes_nothing(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    state(int(finished.stdout)).save(tmp_path)
    assert MeshState.load(tmp_path) is None


def test_a_broken_state_file_is_named(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=STATE_FILE):
        MeshState.load(tmp_path)


def test_status_and_down_without_a_mesh(tmp_path: Path, capsys) -> None:
    assert main(["status", "--run-dir", str(tmp_path)]) == 1
    assert main(["down", "--run-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("no local mesh is running") == 2


def test_up_refuses_a_missing_directory(tmp_path: Path, capsys) -> None:
    assert main(["up", str(tmp_path / "nope"), "--run-dir", str(tmp_path)]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_up_says_a_mesh_is_already_running(tmp_path: Path, capsys) -> None:
    state(os.getpid()).save(tmp_path)
    assert main(["up", str(tmp_path), "--run-dir", str(tmp_path)]) == 1
    assert "already running" in capsys.readouterr().out
