"""The mesh certificate authority: one signing key, persisted, that issues X.509-SVIDs.

Workloads trust each other through a root they all share, so the root must survive restarts:
the CA lives in a directory in Istio's `cacerts` layout (`ca-cert.pem`, `ca-key.pem`,
`root-cert.pem`, `cert-chain.pem`). An operator may put an intermediate there (plugged-in CA);
otherwise the CA creates a self-signed root once and reuses it. Leaf certificates follow the
SPIFFE X.509-SVID standard, and their identity always comes from the caller's authenticated
credential: a CSR is only a carrier for the public key, and one asking for any other name is
refused.
"""

from __future__ import annotations

import datetime
import itertools
import os
import tempfile
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshcore.identity import TRUST_DOMAIN, SpiffeId

CA_CERT = "ca-cert.pem"
CA_KEY = "ca-key.pem"
ROOT_CERT = "root-cert.pem"
CERT_CHAIN = "cert-chain.pem"

DEFAULT_TTL = datetime.timedelta(hours=24)
MAX_TTL = datetime.timedelta(days=90)
ROOT_TTL = datetime.timedelta(days=3650)
# Leaves are back-dated a little so a peer whose clock runs slightly behind accepts them.
CLOCK_SKEW = datetime.timedelta(minutes=1)

KeyType = Literal["ec", "rsa"]
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class CsrError(ValueError):
    """The CSR cannot be parsed, is not self-consistent, or carries an unacceptable key."""


class IdentityMismatchError(PermissionError):
    """The CSR asks for a name other than the identity the caller authenticated as."""


@dataclass(frozen=True)
class ServerCredentials:
    """A certificate chain (leaf first, PEM) and its private key (PEM, PKCS#8)."""

    chain_pem: bytes
    key_pem: bytes


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


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, readable only by the owner (mode 0600)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _pem(certificates: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def _self_signed_root(key: SigningKey, trust_domain: str) -> x509.Certificate:
    """A root shaped like Istio's self-signed one: subject O=<trust domain>, ten years."""
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + ROOT_TTL)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


class CertificateAuthority:
    """Signs leaves with `signing_cert`; `chain` is what follows a leaf, up to the root."""

    def __init__(
        self,
        signing_cert: x509.Certificate,
        signing_key: SigningKey,
        chain: list[x509.Certificate],
        *,
        default_ttl: datetime.timedelta = DEFAULT_TTL,
        max_ttl: datetime.timedelta = MAX_TTL,
    ) -> None:
        if default_ttl <= datetime.timedelta(0) or max_ttl < default_ttl:
            raise ValueError("need 0 < default TTL <= max TTL")
        if signing_cert.public_key() != signing_key.public_key():
            raise ValueError("the CA key does not match the CA certificate")
        try:
            constraints = signing_cert.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.value.ca:
            raise ValueError("the CA certificate is not a CA (basicConstraints CA:true)")
        for child, parent in itertools.pairwise(chain):
            child.verify_directly_issued_by(parent)
        self.signing_cert = signing_cert
        self._key = signing_key
        try:
            ski = signing_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)
        except x509.ExtensionNotFound:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key())
        self._authority_key_id = aki
        self.chain = chain
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl

    @classmethod
    def load_or_create(
        cls,
        directory: Path,
        *,
        key_type: KeyType = "ec",
        trust_domain: str = TRUST_DOMAIN,
        default_ttl: datetime.timedelta = DEFAULT_TTL,
        max_ttl: datetime.timedelta = MAX_TTL,
    ) -> CertificateAuthority:
        """Load the CA in `directory`, creating a self-signed root there if it holds none."""
        directory.mkdir(parents=True, exist_ok=True)
        if not (directory / CA_KEY).exists():
            key = generate_key(key_type)
            root_pem = _pem([_self_signed_root(key, trust_domain)])
            (directory / CA_CERT).write_bytes(root_pem)
            (directory / ROOT_CERT).write_bytes(root_pem)
            # Written last: its presence marks a complete CA directory.
            write_private(directory / CA_KEY, key_pem(key))
        signing_cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        loaded = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError(f"unsupported CA key type {type(loaded).__name__}")
        root = x509.load_pem_x509_certificate((directory / ROOT_CERT).read_bytes())
        chain_file = directory / CERT_CHAIN
        chain = [signing_cert]
        if chain_file.exists() and chain_file.stat().st_size:
            chain = x509.load_pem_x509_certificates(chain_file.read_bytes())
        if chain[0] != signing_cert:
            chain.insert(0, signing_cert)
        if chain[-1] != root:
            chain.append(root)
        return cls(signing_cert, loaded, chain, default_ttl=default_ttl, max_ttl=max_ttl)

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1]

    @property
    def root_pem(self) -> bytes:
        return _pem([self.root])

    def lifetime(self, requested: datetime.timedelta | None) -> datetime.timedelta:
        """The requested lifetime, or the default when there is none, capped at the maximum."""
        if requested is None or requested <= datetime.timedelta(0):
            return self.default_ttl
        return min(requested, self.max_ttl)

    def sign(
        self, csr_pem: bytes, identity: SpiffeId, ttl: datetime.timedelta | None = None
    ) -> list[bytes]:
        """An X.509-SVID for `identity` over the CSR's key; PEM chain, leaf first, root last."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as error:
            raise CsrError(f"cannot parse the CSR: {error}") from error
        if not csr.is_signature_valid:
            raise CsrError("the CSR's signature does not verify")
        _check_requested_names(csr, identity)
        public_key = csr.public_key()
        if isinstance(public_key, rsa.RSAPublicKey):
            if public_key.key_size < 2048:
                raise CsrError("RSA keys must have at least 2048 bits")
        elif not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise CsrError(f"unsupported key type {type(public_key).__name__}")
        san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)])
        leaf = self._issue(public_key, x509.Name([]), san, self.lifetime(ttl))
        return [c.public_bytes(serialization.Encoding.PEM) for c in [leaf, *self.chain]]

    def server_credentials(self, *hosts: str) -> ServerCredentials:
        """A fresh key and a serving certificate for `hosts` (DNS names or IP addresses)."""
        key = generate_key("ec")
        names: list[x509.GeneralName] = []
        for host in hosts:
            address = _ip(host)
            names.append(x509.DNSName(host) if address is None else x509.IPAddress(address))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
        leaf = self._issue(
            key.public_key(), subject, x509.SubjectAlternativeName(names), self.default_ttl
        )
        return ServerCredentials(_pem([leaf, *self.chain]), key_pem(key))

    def _issue(
        self,
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
        subject: x509.Name,
        san: x509.SubjectAlternativeName,
        ttl: datetime.timedelta,
    ) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        # A leaf never outlives the certificate that signs it.
        not_after = min(now + ttl, self.signing_cert.not_valid_after_utc)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.signing_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            # RFC 5280: with an empty subject the SAN extension must be critical.
            .add_extension(san, critical=len(subject) == 0)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(self._authority_key_id, critical=False)
            .sign(self._key, hashes.SHA256())
        )


def _check_requested_names(csr: x509.CertificateSigningRequest, identity: SpiffeId) -> None:
    """Refuse a CSR that names anything but `identity`; asking for nothing is fine."""
    try:
        requested = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return
    for name in requested:
        if not (isinstance(name, x509.UniformResourceIdentifier) and name.value == identity.uri):
            raise IdentityMismatchError(
                f"the CSR asks for {name.value!r} but the caller is {identity.uri}"
            )


def _ip(host: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(host)
    except ValueError:
        return None
