"""The CA issues SPIFFE X.509-SVIDs, keeps its root across restarts, and accepts Istio's cacerts."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store
from spiffe import X509Svid

from citadel.ca import CertificateAuthority, CsrError, IdentityMismatchError
from citadel.cacerts import CaMaterial, CaStoreError
from citadel.tokens import TokenAuthority, TokenError
from meshcore.identity import IdentityError, SpiffeId
from tests.support.csr import make_csr, new_key, private_pem

REVIEWS = SpiffeId("default", "reviews")


def _sign(
    ca: CertificateAuthority, ttl: datetime.timedelta | None = None
) -> tuple[ec.EllipticCurvePrivateKey, list[bytes]]:
    key = new_key()
    chain = ca.sign(make_csr(key, REVIEWS.uri), REVIEWS, ttl)
    return key, chain


def _lifetime(cert: x509.Certificate) -> datetime.timedelta:
    return cert.not_valid_after_utc - cert.not_valid_before_utc


def _verify(chain: list[bytes]) -> None:
    certs = [x509.load_pem_x509_certificate(pem) for pem in chain]
    verifier = PolicyBuilder().store(Store([certs[-1]])).build_client_verifier()
    verified = verifier.verify(certs[0], certs[1:-1])
    assert verified.chain[-1] == certs[-1]


def test_leaf_is_an_x509_svid(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    key, chain = _sign(ca)

    svid = X509Svid.parse(b"".join(chain), private_pem(key))
    assert str(svid.spiffe_id) == "spiffe://cluster.local/ns/default/sa/reviews"

    leaf = x509.load_pem_x509_certificate(chain[0])
    assert len(leaf.subject) == 0
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert list(san.value) == [x509.UniformResourceIdentifier(REVIEWS.uri)]
    constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.key_encipherment
    assert not usage.value.key_cert_sign
    extended = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(extended) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert leaf.public_key() == key.public_key()
    assert _lifetime(leaf) == datetime.timedelta(hours=24, minutes=1)
    assert len(chain) == 2 and chain[-1] == ca.root_pem
    _verify(chain)


def test_lifetime_is_capped(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(
        tmp_path, default_ttl=datetime.timedelta(hours=1), max_ttl=datetime.timedelta(hours=2)
    )
    assert _lifetime(x509.load_pem_x509_certificate(_sign(ca)[1][0])) == datetime.timedelta(
        hours=1, minutes=1
    )
    long = _sign(ca, datetime.timedelta(days=400))[1][0]
    assert _lifetime(x509.load_pem_x509_certificate(long)) == datetime.timedelta(hours=2, minutes=1)
    assert CertificateAuthority.load_or_create(tmp_path).lifetime(
        datetime.timedelta(days=400)
    ) == datetime.timedelta(days=90)


@pytest.mark.parametrize(
    ("uris", "dns"),
    [
        (("spiffe://cluster.local/ns/default/sa/ratings",), ()),
        ((REVIEWS.uri, "spiffe://cluster.local/ns/default/sa/ratings"), ()),
        ((REVIEWS.uri,), ("reviews.default.svc.cluster.local",)),
        (("spiffe://evil.example/ns/default/sa/reviews",), ()),
    ],
)
def test_csr_asking_for_another_name_is_refused(
    tmp_path: Path, uris: tuple[str, ...], dns: tuple[str, ...]
) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    with pytest.raises(IdentityMismatchError):
        ca.sign(make_csr(new_key(), *uris, dns=dns), REVIEWS)


def test_csr_without_san_gets_the_callers_identity(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    key = new_key()
    chain = ca.sign(make_csr(key), REVIEWS)
    assert str(X509Svid.parse(b"".join(chain), private_pem(key)).spiffe_id) == REVIEWS.uri


def test_bad_csrs_are_rejected(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    with pytest.raises(CsrError):
        ca.sign(b"not a csr", REVIEWS)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak_csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(weak, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    with pytest.raises(CsrError):
        ca.sign(weak_csr, REVIEWS)


def test_restart_keeps_the_root_and_the_key_is_private(tmp_path: Path) -> None:
    first = CertificateAuthority.load_or_create(tmp_path / "ca")
    assert stat.S_IMODE((tmp_path / "ca" / "ca-key.pem").stat().st_mode) == 0o600
    second = CertificateAuthority.load_or_create(tmp_path / "ca")
    assert second.root_pem == first.root_pem
    _verify([*_sign(second)[1][:-1], first.root_pem])


def test_rsa_root(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path, key_type="rsa")
    (root,) = ca.roots
    public_key = root.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert public_key.key_size == 2048
    key, chain = _sign(ca)
    X509Svid.parse(b"".join(chain), private_pem(key))
    _verify(chain)


def _ca_cert(
    key: ec.EllipticCurvePrivateKey,
    name: str,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(issuer_key, hashes.SHA256())
    )


def test_plugged_in_intermediate_from_cacerts(tmp_path: Path) -> None:
    root_key, intermediate_key = new_key(), new_key()
    root = _ca_cert(root_key, "operator root", None, root_key)
    intermediate = _ca_cert(intermediate_key, "cluster intermediate", root, root_key)
    pem = serialization.Encoding.PEM
    (tmp_path / "ca-cert.pem").write_bytes(intermediate.public_bytes(pem))
    (tmp_path / "ca-key.pem").write_bytes(private_pem(intermediate_key))
    (tmp_path / "root-cert.pem").write_bytes(root.public_bytes(pem))
    (tmp_path / "cert-chain.pem").write_bytes(
        intermediate.public_bytes(pem) + root.public_bytes(pem)
    )

    ca = CertificateAuthority.load_or_create(tmp_path)
    key, chain = _sign(ca)
    assert chain[1:] == [intermediate.public_bytes(pem), root.public_bytes(pem)]
    leaf = x509.load_pem_x509_certificate(chain[0])
    assert leaf.issuer == intermediate.subject
    # The intermediate's lifetime bounds the leaf's, never the other way round.
    assert leaf.not_valid_after_utc <= intermediate.not_valid_after_utc
    X509Svid.parse(b"".join(chain), private_pem(key))
    _verify(chain)


def test_mismatched_cacerts_are_refused(tmp_path: Path) -> None:
    root_key = new_key()
    root = _ca_cert(root_key, "operator root", None, root_key)
    pem = serialization.Encoding.PEM
    (tmp_path / "ca-cert.pem").write_bytes(root.public_bytes(pem))
    (tmp_path / "ca-key.pem").write_bytes(private_pem(new_key()))
    (tmp_path / "root-cert.pem").write_bytes(root.public_bytes(pem))
    with pytest.raises(ValueError, match="does not match"):
        CertificateAuthority.load_or_create(tmp_path)


def test_tokens_are_bound_to_one_identity(tmp_path: Path) -> None:
    tokens = TokenAuthority.load_or_create(tmp_path)
    assert stat.S_IMODE((tmp_path / "token-key").stat().st_mode) == 0o600
    token = tokens.mint(REVIEWS)
    assert TokenAuthority.load_or_create(tmp_path).verify(token) == REVIEWS
    forged = tokens.mint(SpiffeId("default", "ratings")).split(".")
    with pytest.raises(TokenError):
        tokens.verify(".".join([*token.split(".")[:2], forged[2]]))
    (tmp_path / "other").mkdir()
    with pytest.raises(TokenError):
        TokenAuthority.load_or_create(tmp_path / "other").verify(token)
    with pytest.raises(TokenError):
        tokens.verify("garbage")


def test_spiffe_id_parsing() -> None:
    assert SpiffeId.parse(REVIEWS.uri) == REVIEWS
    with pytest.raises(IdentityError):
        SpiffeId.parse("spiffe://cluster.local/ns/default/sa/a/b")
    with pytest.raises(IdentityError):
        SpiffeId("Default", "reviews")


def test_a_chain_that_leads_to_no_trusted_root_is_refused(tmp_path: Path) -> None:
    operator_key, other_key, intermediate_key = new_key(), new_key(), new_key()
    operator_root = _ca_cert(operator_key, "operator root", None, operator_key)
    other_root = _ca_cert(other_key, "another root", None, other_key)
    intermediate = _ca_cert(intermediate_key, "cluster intermediate", operator_root, operator_key)
    pem = serialization.Encoding.PEM
    (tmp_path / "ca-cert.pem").write_bytes(intermediate.public_bytes(pem))
    (tmp_path / "ca-key.pem").write_bytes(private_pem(intermediate_key))
    (tmp_path / "root-cert.pem").write_bytes(other_root.public_bytes(pem))
    with pytest.raises(ValueError, match=r"no certificate of root-cert\.pem issued"):
        CertificateAuthority.load_or_create(tmp_path)


def test_an_incomplete_ca_directory_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "ca-key.pem").write_bytes(private_pem(new_key()))
    with pytest.raises(CaStoreError, match=r"has no ca-cert\.pem or root-cert\.pem"):
        CertificateAuthority.load_or_create(tmp_path)


def test_unreadable_ca_files_are_named(tmp_path: Path) -> None:
    good = CertificateAuthority.load_or_create(tmp_path)
    root_pem = good.root_pem
    key_pem = (tmp_path / "ca-key.pem").read_bytes()
    with pytest.raises(ValueError, match=r"^ca-cert\.pem: cannot read PEM certificates"):
        CertificateAuthority.from_material(CaMaterial(b"junk", key_pem, root_pem))
    with pytest.raises(ValueError, match=r"^root-cert\.pem: cannot read PEM certificates"):
        CertificateAuthority.from_material(CaMaterial(root_pem, key_pem, b"junk"))
    with pytest.raises(ValueError, match=r"^ca-key\.pem: not a usable private key"):
        CertificateAuthority.from_material(CaMaterial(root_pem, root_pem, root_pem))


def test_server_credentials_live_as_long_as_asked_within_the_cap(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)

    def lifetime(**ttl: datetime.timedelta) -> datetime.timedelta:
        chain = ca.server_credentials("istiod.istio-system.svc", **ttl).chain_pem
        leaf = x509.load_pem_x509_certificates(chain)[0]
        return leaf.not_valid_after_utc - leaf.not_valid_before_utc

    skew = datetime.timedelta(minutes=2)
    assert lifetime() <= ca.default_ttl + skew
    assert lifetime(ttl=datetime.timedelta(days=30)) >= datetime.timedelta(days=30)
    assert lifetime(ttl=datetime.timedelta(days=900)) <= ca.max_ttl + skew
