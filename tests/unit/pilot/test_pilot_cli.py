"""`pilot-discovery`'s flags: one config source, and the mutual-TLS port with its material."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilot.__main__ import parse_args


def test_mtls_flags(tmp_path: Path) -> None:
    tls = ["--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-roots", "r.pem"]
    args = parse_args(["--galley", "127.0.0.1:9901", "--mtls-port", "15011", "--galley-mtls", *tls])
    assert args.mtls_port == 15011 and args.tls_cert == Path("c.pem") and args.galley_mtls


@pytest.mark.parametrize("flag", [["--mtls-port", "15011"], ["--galley-mtls"]])
def test_mutual_tls_needs_the_three_tls_flags(tmp_path: Path, flag: list[str], capsys) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--config-dir", str(tmp_path), *flag, "--tls-cert", "c.pem"])
    assert "need --tls-cert, --tls-key and --tls-roots" in capsys.readouterr().err


def test_exactly_one_config_source(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        parse_args([])
    with pytest.raises(SystemExit):
        parse_args(["--config-dir", str(tmp_path), "--galley", "127.0.0.1:9901"])
