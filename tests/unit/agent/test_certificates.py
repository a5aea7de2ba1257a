"""The certificate manager's pure parts: the CSR it sends and when it renews."""

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from agent.certificates import (
    MIN_RENEWAL_DELAY,
    CertificateManager,
    make_csr,
    new_key,
    renewal_delay,
)
from agent.sds import SdsServer
from meshcore.identity import SpiffeId

HELLO = SpiffeId("default", "hello")
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def test_csr_names_only_the_spiffe_id_over_a_p256_key() -> None:
    key = new_key()
    csr = x509.load_pem_x509_csr(make_csr(key, HELLO))
    assert csr.is_signature_valid
    assert len(csr.subject) == 0
    public_key = csr.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert isinstance(public_key.curve, ec.SECP256R1)
    assert public_key == key.public_key()
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert list(san.value) == [
        x509.UniformResourceIdentifier("spiffe://cluster.local/ns/default/sa/hello")
    ]


def test_each_key_is_new() -> None:
    assert new_key().public_key() != new_key().public_key()


@pytest.mark.parametrize(("draw", "expected"), [(-1.0, 40.0), (0.0, 50.0), (1.0, 60.0)])
def test_renewal_at_the_fraction_of_the_remaining_lifetime_within_jitter(
    draw: float, expected: float
) -> None:
    not_after = NOW + datetime.timedelta(seconds=100)
    assert renewal_delay(not_after, NOW, 0.5, 0.1, draw) == pytest.approx(expected)


def test_renewal_of_an_expired_or_expiring_certificate_is_soon_but_not_a_spin() -> None:
    assert renewal_delay(NOW - datetime.timedelta(hours=1), NOW, 0.5, 0.1, 0.0) == (
        MIN_RENEWAL_DELAY
    )
    assert renewal_delay(NOW, NOW, 0.5, 0.1, 1.0) == MIN_RENEWAL_DELAY


@pytest.mark.parametrize(("fraction", "jitter"), [(0.5, 0.5), (0.9, 0.2), (0.0, 0.0), (0.5, -0.1)])
def test_fraction_and_jitter_must_stay_inside_the_lifetime(
    tmp_path: Path, fraction: float, jitter: float
) -> None:
    with pytest.raises(ValueError, match="renew_fraction"):
        CertificateManager(
            "127.0.0.1:1",
            "127.0.0.1:2",
            b"",
            "token",
            HELLO,
            SdsServer(tmp_path / "sds.sock"),
            renew_fraction=fraction,
            jitter=jitter,
        )
