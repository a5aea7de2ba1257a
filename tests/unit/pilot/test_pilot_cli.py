"""`pilot-discovery`'s flags: one config source, and the mutual-TLS port with its material."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilot.__main__ import parse_args


def test_mtls_flags(tmp_path: Path) -> None:
    args = parse_args(
        ["--config-dir", str(tmp_path), "--mtls-port", "15011", "--tls-cert", "c.pem"]
    )
    assert args.mtls_port == 15011 and args.tls_cert == Path("c.pem")
    assert args.tls_key is None


def test_exactly_one_config_source(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        parse_args([])
    with pytest.raises(SystemExit):
        parse_args(["--config-dir", str(tmp_path), "--galley", "127.0.0.1:9901"])
