"""X.509 building blocks of the mesh CA: keys, PEM, self-signed roots and cross-signed roots.

The CA (`ca`) signs leaves; this module makes the CA certificates themselves, which the first
start and a root rotation both need. A rotation introduces a new root while workloads still
trust only the old one, so it also makes the bridge between them: the new root's name and key
certified by the old root (a cross-signed certificate), with which a peer that trusts only the
old root still accepts what the new root signs.
"""

from __future__ import annotations

import datetime
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

ROOT_TTL = datetime.timedelta(days=3650)
# Certificates are back-dated a little so a peer whose clock runs slightly behind accepts them.
CLOCK_SKEW = datetime.timedelta(minutes=1)

KeyType = Literal["ec", "rsa"]
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

_CA_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def generate_key(key_type: KeyType) -> SigningKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: SigningKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_key(pem: bytes) -> SigningKey:
    key = serialization.load_pem_private_key(pem, None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"unsupported CA key type {type(key).__name__}")
    return key


def pem(certificates: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def is_self_signed(certificate: x509.Certificate) -> bool:
    return issued_by(certificate, certificate)


def issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer`'s name and key signed `certificate`."""
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def same_ca(first: x509.Certificate, second: x509.Certificate) -> bool:
    """Whether both certify the same CA (name and key), as a root and its cross-signed twin."""
    return first.subject == second.subject and first.public_key() == second.public_key()


def self_signed_root(key: SigningKey, trust_domain: str) -> x509.Certificate:
    """A root shaped like Istio's self-signed one (O=<trust domain>, ten years).

    Its serial number is also in its name, so two roots of one trust domain (during a rotation)
    never share a name: chain building, which looks issuers up by name, cannot mix them up.
    """
    serial = x509.random_serial_number()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, f"{serial:x}"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    return (
        _ca_builder(name, key.public_key(), now - CLOCK_SKEW, now + ROOT_TTL)
        .issuer_name(name)
        .serial_number(serial)
        .sign(key, hashes.SHA256())
    )


def cross_signed(
    root: x509.Certificate, issuer: x509.Certificate, issuer_key: SigningKey
) -> x509.Certificate:
    """`root`'s name and key certified by `issuer`: what a leaf of `root` chains through to
    reach `issuer` for a peer that trusts only `issuer`. It lasts no longer than either."""
    now = datetime.datetime.now(datetime.UTC)
    not_after = min(root.not_valid_after_utc, issuer.not_valid_after_utc)
    public_key = root.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise ValueError(f"unsupported root key type {type(public_key).__name__}")
    return (
        _ca_builder(root.subject, public_key, now - CLOCK_SKEW, not_after)
        .issuer_name(issuer.subject)
        .serial_number(x509.random_serial_number())
        .add_extension(authority_key_id(issuer), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """What a certificate `issuer` signs names as its authority key."""
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        public_key = issuer.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise ValueError(f"unsupported CA key type {type(public_key).__name__}") from None
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)


def _ca_builder(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public_key)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
