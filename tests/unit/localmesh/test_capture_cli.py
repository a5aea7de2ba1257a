"""`meshctl up --capture` refuses to run without root, and the record `down` cleans up from."""

from __future__ import annotations

from pathlib import Path

import pytest

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
