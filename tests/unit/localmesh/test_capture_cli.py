"""`meshctl up --capture` refuses to run without root or from code its pods cannot read, and
the record `down` cleans up from."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from localmesh import capture
from localmesh.capture import RECORD, CaptureRecord
from meshctl.__main__ import main

BOOKINFO = Path(__file__).resolve().parents[3] / "examples" / "bookinfo"


@pytest.mark.parametrize("detach", [[], ["-d"]])
def test_capture_needs_root(
    detach: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    run_dir = tmp_path / "run"
    code = main(["up", "--capture", str(BOOKINFO), "--run-dir", str(run_dir), *detach])
    assert code == 2
    assert "--capture needs root (network namespaces and iptables)" in capsys.readouterr().err
    assert not run_dir.exists()  # nothing started, nothing made


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")
def test_capture_refuses_code_its_pods_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as closed:  # 0700, as `mktemp -d` makes
        code = Path(closed, "agent.py")
        code.write_text("")
        monkeypatch.setattr(capture, "code_paths", lambda: (code,))
        run_dir = tmp_path / "run"
        exit_code = main(["up", "--capture", str(BOOKINFO), "--run-dir", str(run_dir)])
    assert exit_code == 1
    error = capsys.readouterr().err
    assert f"--capture runs sidecars as uid 1337, which cannot read {code}" in error
    assert not (run_dir / RECORD).exists()  # no namespace made


def test_the_record_names_everything_the_mesh_made(tmp_path: Path) -> None:
    assert CaptureRecord.load(tmp_path) is None
    record = CaptureRecord("lm42x1", 42)
    record.save(tmp_path)
    assert CaptureRecord.load(tmp_path) == record
    assert record.hub.name == "lm42x1-hub"
    assert record.work_dir.name == "lm42x1"
    (tmp_path / RECORD).write_text("{}")
    with pytest.raises(ValueError, match="not a capture record"):
        CaptureRecord.load(tmp_path)
