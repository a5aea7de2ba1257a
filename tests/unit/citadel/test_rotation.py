"""Root rotation: during the overlap both roots are trusted and a bridge links them; finishing
drops the old root. Chains are checked with cryptography's own path builder."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from spiffe import X509Svid

from citadel.ca import CertificateAuthority, RotationError
from citadel.cacerts import CaMaterial, write_directory
from citadel.pki import (
    cross_signed,
    generate_key,
    is_self_signed,
    key_pem,
    pem,
    self_signed_root,
)
from meshcore.identity import SpiffeId
from tests.support.csr import make_csr, new_key, private_pem

REVIEWS = SpiffeId("default", "reviews")


def _certs(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def _issue(ca: CertificateAuthority) -> list[bytes]:
    """A signed chain as citadel answers it: leaf, intermediates, then the bundle."""
    key = new_key()
    chain = ca.sign(make_csr(key, REVIEWS.uri), REVIEWS)
    X509Svid.parse(b"".join(chain), private_pem(key))
    return chain


def _verifies(chain: list[bytes], trusted: list[x509.Certificate]) -> bool:
    """Whether a peer trusting `trusted` accepts the leaf with what is sent beside it."""
    leaf, *intermediates = [x509.load_pem_x509_certificate(pem) for pem in chain[:-1]]
    verifier = PolicyBuilder().store(Store(trusted)).build_client_verifier()
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError:
        return False
    return True


def _rotated(tmp_path: Path) -> tuple[CertificateAuthority, CertificateAuthority]:
    old = CertificateAuthority.load_or_create(tmp_path)
    return old, CertificateAuthority.from_material(old.rotate_root("ec", "cluster.local"))


def test_overlap_trusts_both_roots_and_signs_with_the_new_one(tmp_path: Path) -> None:
    old, rotating = _rotated(tmp_path)
    (old_root,) = old.roots
    new_root, kept = rotating.roots
    assert kept == old_root
    assert rotating.rotating and not old.rotating
    assert rotating.signing_cert == new_root and is_self_signed(new_root)
    assert new_root.subject != old_root.subject
    assert _certs(rotating.root_pem) == [new_root, old_root]

    new_chain = _issue(rotating)
    assert x509.load_pem_x509_certificate(new_chain[0]).issuer == new_root.subject
    # The bridge: the new root's name and key, certified by the old root.
    (bridge,) = rotating.intermediates
    assert new_chain[1:] == [pem([bridge]), rotating.root_pem]
    assert bridge.subject == new_root.subject and bridge.issuer == old_root.subject
    assert bridge.public_key() == new_root.public_key()

    old_chain = _issue(old)
    for chain in (old_chain, new_chain):
        assert _verifies(chain, rotating.roots)
    # Peers that have not learnt the bundle yet still accept the new leaves, via the bridge.
    assert _verifies(new_chain, [old_root])
    assert not _verifies(old_chain, [new_root])


def test_finishing_drops_the_old_root(tmp_path: Path) -> None:
    old, rotating = _rotated(tmp_path)
    finished = CertificateAuthority.from_material(rotating.finish_root_rotation())
    new_root = rotating.signing_cert
    assert finished.roots == [new_root] and finished.chain == [new_root]
    assert not finished.rotating and finished.intermediates == []

    assert _verifies(_issue(finished), finished.roots)
    assert _verifies(_issue(rotating), finished.roots)
    assert not _verifies(_issue(old), finished.roots)
    assert not _verifies(_issue(finished), old.roots)
    # Rotating again starts from the new root.
    again = CertificateAuthority.from_material(finished.rotate_root("ec", "cluster.local"))
    assert again.roots[1:] == [new_root] and again.roots[0].subject != new_root.subject


def test_the_overlap_survives_a_restart(tmp_path: Path) -> None:
    old = CertificateAuthority.load_or_create(tmp_path)
    write_directory(tmp_path, old.rotate_root("rsa", "cluster.local"))
    reloaded = CertificateAuthority.load_or_create(tmp_path)
    assert reloaded.rotating and reloaded.roots[1:] == old.roots
    assert isinstance(reloaded.signing_cert.public_key(), rsa.RSAPublicKey)
    assert _verifies(_issue(reloaded), old.roots)


def test_steps_out_of_order_are_refused(tmp_path: Path) -> None:
    old, rotating = _rotated(tmp_path)
    with pytest.raises(RotationError, match="already in progress"):
        rotating.rotate_root("ec", "cluster.local")
    with pytest.raises(RotationError, match="no root rotation"):
        old.finish_root_rotation()


def test_a_plugged_in_intermediate_is_not_rotated() -> None:
    root_key, intermediate_key = generate_key("ec"), generate_key("ec")
    root = self_signed_root(root_key, "operator.example")
    intermediate = cross_signed(self_signed_root(intermediate_key, "cluster.local"), root, root_key)
    ca = CertificateAuthority.from_material(
        CaMaterial(pem([intermediate]), key_pem(intermediate_key), pem([root]))
    )
    assert ca.chain == [intermediate, root] and not ca.rotating
    with pytest.raises(RotationError, match="intermediate"):
        ca.rotate_root("ec", "cluster.local")
