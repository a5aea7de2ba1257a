"""`python -m citadel` options map onto CitadelOptions the way the brief of each flag says, and
the rotation commands step a CA directory through a rotation."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509

from citadel.__main__ import main, options_from, parse_args
from citadel.ca import CertificateAuthority
from citadel.cacerts import DirectoryStore
from citadel.server import CitadelOptions
from citadel.tokens import TokenAuthority
from meshcore.identity import SpiffeId


def test_defaults_and_lifetimes_in_hours() -> None:
    args = parse_args(["--ca-dir", "/tmp/ca", "--ttl", "2", "--max-ttl", "48"])
    assert args.command == "serve"
    assert (args.port, args.mtls_port, args.monitoring_port) == (8060, 8061, 15014)
    assert args.ttl == datetime.timedelta(hours=2)
    assert args.max_ttl == datetime.timedelta(hours=48)
    assert parse_args(["--ca-dir", "x"]).ttl == datetime.timedelta(hours=24)


def test_kubernetes_mode_keeps_the_ca_in_a_secret_unless_given_a_directory() -> None:
    options = options_from(parse_args(["--kubernetes", "in-cluster", "--trust-domain", "a.org"]))
    assert (options.kubernetes, options.ca_dir) == ("in-cluster", None)
    assert (options.ca_secret_namespace, options.trust_domain) == ("istio-system", "a.org")
    named = parse_args(["--kubernetes", "/kubeconfig", "--ca-secret-namespace", "mesh"])
    assert options_from(named).ca_secret_namespace == "mesh"
    mounted = options_from(parse_args(["--kubernetes", "in-cluster", "--ca-dir", "/etc/cacerts"]))
    assert isinstance(mounted.store(None), DirectoryStore)
    with pytest.raises(ValueError, match="needs a Kubernetes client"):
        options.store(None)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give --ca-dir (local mesh) or --kubernetes"),
        (["--ca-dir", "x", "--ca-secret-namespace", "ns"], "--ca-secret-namespace needs"),
        (
            ["--kubernetes", "in-cluster", "--ca-dir", "x", "--ca-secret-namespace", "ns"],
            "give one",
        ),
        (["rotate", "--ca-dir", "x"], "invalid choice: 'rotate'"),
        (["--ca-dir", "x", "--workers", "0"], "--workers must be at least 1, not 0"),
    ],
)
def test_bad_combinations_are_refused(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert message in capsys.readouterr().err


def test_options_need_a_ca_directory_or_kubernetes() -> None:
    with pytest.raises(ValueError, match="needs a CA directory"):
        CitadelOptions()


def test_workers_flag_sets_the_serving_processes() -> None:
    assert options_from(parse_args(["--ca-dir", "x"])).workers == 1
    assert options_from(parse_args(["--ca-dir", "x", "--workers", "3"])).workers == 3
    with pytest.raises(ValueError, match="at least one serving process, not 0"):
        CitadelOptions(ca_dir=Path("x"), workers=0)


def test_rotation_commands_step_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca_dir = str(tmp_path / "ca")
    assert main(["rotate-root", "--ca-dir", ca_dir]) == 1
    assert "there is no CA in directory" in capsys.readouterr().err
    assert main(["finish-rotation", "--ca-dir", ca_dir]) == 1

    (old_root,) = CertificateAuthority.load_or_create(tmp_path / "ca").roots
    assert main(["finish-rotation", "--ca-dir", ca_dir]) == 1
    assert "no root rotation is in progress" in capsys.readouterr().err

    assert main(["rotate-root", "--ca-dir", ca_dir]) == 0
    assert "restart citadel" in capsys.readouterr().out
    bundle = x509.load_pem_x509_certificates((tmp_path / "ca" / "root-cert.pem").read_bytes())
    assert len(bundle) == 2 and bundle[1] == old_root
    assert main(["rotate-root", "--ca-dir", ca_dir]) == 1
    assert "already in progress" in capsys.readouterr().err

    assert main(["finish-rotation", "--ca-dir", ca_dir]) == 0
    finished = x509.load_pem_x509_certificates((tmp_path / "ca" / "root-cert.pem").read_bytes())
    assert finished == bundle[:1]
    assert not (tmp_path / "ca" / "cert-chain.pem").exists()


def test_mint_token_and_server_cert_prepare_a_mesh_started_piecewise(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    token_file = tmp_path / "out" / "reviews.token"
    assert (
        main(
            [
                "mint-token",
                "--ca-dir",
                str(ca_dir),
                "--namespace",
                "default",
                "--service-account",
                "bookinfo-reviews",
                "--out",
                str(token_file),
            ]
        )
        == 0
    )
    assert token_file.stat().st_mode & 0o777 == 0o600
    identity = TokenAuthority.load_or_create(ca_dir).verify(token_file.read_text())
    assert identity == SpiffeId("default", "bookinfo-reviews")

    out = tmp_path / "pilot-tls"
    assert (
        main(
            [
                "server-cert",
                "--ca-dir",
                str(ca_dir),
                "--ttl",
                "2",
                "--name",
                "istiod.istio-system.svc",
                "--name",
                "10.0.0.5",
                "--out-dir",
                str(out),
            ]
        )
        == 0
    )
    leaf = x509.load_pem_x509_certificates((out / "tls.crt").read_bytes())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["istiod.istio-system.svc"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= datetime.timedelta(
        hours=2, minutes=2
    )
    assert (out / "ca.crt").read_bytes() == CertificateAuthority.load_or_create(ca_dir).root_pem


def test_mint_token_needs_its_identity(capsys) -> None:
    with pytest.raises(SystemExit):
        parse_args(["mint-token", "--ca-dir", "/tmp/x", "--namespace", "default"])
    assert "mint-token needs" in capsys.readouterr().err
