"""`meshctl completion bash` completes subcommands and their flags in a real bash."""

from __future__ import annotations

import subprocess
import sys


def complete(*words: str) -> list[str]:
    script = subprocess.run(
        [sys.executable, "-m", "meshctl", "completion", "bash"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = " ".join(words)
    call = f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _meshctl"
    probe = f'{script}\n{call}; echo "${{COMPREPLY[@]}}"'
    result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    return result.stdout.split()


def test_subcommands_complete() -> None:
    assert complete("meshctl", "proxy") == ["proxy-config", "proxy-status"]


def test_flags_of_a_subcommand_complete() -> None:
    assert complete("meshctl", "up", "--ga") == ["--galley-host", "--gateway-host"]
