"""The mesh certificate authority: one signing key, persisted, that issues X.509-SVIDs.

The CA is built from Istio's `cacerts` layout (`cacerts.CaMaterial`), wherever it is kept: an
operator may plug in an intermediate; otherwise the CA creates a self-signed root once and
reuses it. Leaf certificates follow the SPIFFE X.509-SVID standard, and their identity always
comes from the caller's authenticated credential: a CSR is only a carrier for the public key,
and one asking for any other name is refused.

A self-signed root rotates in two steps (`rotate_root`, then `finish_root_rotation`), each
returning the material to store and restart from. During the overlap the CA signs with the new
root, the trust bundle holds both roots, and the chain sent after each leaf carries the new
root cross-signed by the old one, so peers and agents that still trust only the old root accept
the new leaves (and citadel's own serving certificate) until they have learnt the bundle.
Finishing drops the old root and the bridge; anything that only trusts the old root then stops
verifying new certificates, and leaves of the old root stop verifying.
"""

from __future__ import annotations

import datetime
import itertools
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from citadel.cacerts import (
    CA_CERT,
    CA_KEY,
    CERT_CHAIN,
    ROOT_CERT,
    CaMaterial,
    CaStore,
    read_directory,
    write_directory,
)
from citadel.pki import (
    CLOCK_SKEW,
    KeyType,
    SigningKey,
    authority_key_id,
    cross_signed,
    generate_key,
    is_self_signed,
    issued_by,
    key_pem,
    load_key,
    pem,
    same_ca,
    self_signed_root,
)
from meshcore.identity import TRUST_DOMAIN, SpiffeId

DEFAULT_TTL = datetime.timedelta(hours=24)
MAX_TTL = datetime.timedelta(days=90)


class CsrError(ValueError):
    """The CSR cannot be parsed, is not self-consistent, or carries an unacceptable key."""


class IdentityMismatchError(PermissionError):
    """The CSR asks for a name other than the identity the caller authenticated as."""


class RotationError(ValueError):
    """The CA cannot take this rotation step in its current state."""


@dataclass(frozen=True)
class ServerCredentials:
    """A certificate chain (leaf first, PEM) and its private key (PEM, PKCS#8)."""

    chain_pem: bytes
    key_pem: bytes


def new_root_material(key_type: KeyType, trust_domain: str) -> CaMaterial:
    """A fresh self-signed CA, as Istio's istio-ca-secret holds it (no cert-chain)."""
    key = generate_key(key_type)
    root = pem([self_signed_root(key, trust_domain)])
    return CaMaterial(ca_cert=root, ca_key=key_pem(key), root_cert=root)


class CertificateAuthority:
    """Signs leaves with `signing_cert`.

    `chain` leads from the signing certificate (or its cross-signed twin) up to a root of
    `roots`, the trust bundle. What follows a leaf on the wire is every chain certificate that
    is not itself a root (`intermediates`), then the bundle.
    """

    def __init__(
        self,
        signing_cert: x509.Certificate,
        signing_key: SigningKey,
        chain: list[x509.Certificate],
        roots: list[x509.Certificate],
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
        if not chain or not same_ca(chain[0], signing_cert):
            raise ValueError("the certificate chain does not start with the CA certificate")
        if chain[-1] not in roots:
            raise ValueError("the certificate chain does not end with a root of the bundle")
        for child, parent in itertools.pairwise(chain):
            child.verify_directly_issued_by(parent)
        self.signing_cert = signing_cert
        self._key = signing_key
        self._authority_key_id = authority_key_id(signing_cert)
        self.chain = chain
        self.roots = roots
        # What follows every leaf on the wire never changes: encoded once, not per request.
        self._chain_tail = [pem([c]) for c in self.intermediates] + [pem(roots)]
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl

    @classmethod
    def from_material(
        cls,
        material: CaMaterial,
        *,
        default_ttl: datetime.timedelta = DEFAULT_TTL,
        max_ttl: datetime.timedelta = MAX_TTL,
    ) -> CertificateAuthority:
        """The CA in `material`. A chain that omits the CA certificate or the root it leads
        to is completed, as Istio's operators often write `cert-chain.pem` either way."""
        signing_cert = _certificates(material.ca_cert, CA_CERT)[0]
        roots = _certificates(material.root_cert, ROOT_CERT)
        chain = []
        if material.cert_chain.strip():
            chain = _certificates(material.cert_chain, CERT_CHAIN)
        try:
            signing_key = load_key(material.ca_key)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{CA_KEY}: not a usable private key: {error}") from error
        if not chain or not same_ca(chain[0], signing_cert):
            chain.insert(0, signing_cert)
        if chain[-1] not in roots:
            issuer = next((root for root in roots if issued_by(chain[-1], root)), None)
            if issuer is None:
                raise ValueError(
                    f"no certificate of {ROOT_CERT} issued the last certificate of the chain "
                    f"({chain[-1].subject.rfc4514_string()})"
                )
            chain.append(issuer)
        return cls(
            signing_cert,
            signing_key,
            chain,
            roots,
            default_ttl=default_ttl,
            max_ttl=max_ttl,
        )

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
        material = read_directory(directory)
        if material is None:
            material = new_root_material(key_type, trust_domain)
            write_directory(directory, material)
        return cls.from_material(material, default_ttl=default_ttl, max_ttl=max_ttl)

    @classmethod
    async def open(
        cls,
        store: CaStore,
        *,
        key_type: KeyType = "ec",
        trust_domain: str = TRUST_DOMAIN,
        default_ttl: datetime.timedelta = DEFAULT_TTL,
        max_ttl: datetime.timedelta = MAX_TTL,
    ) -> CertificateAuthority:
        """The CA in `store`, creating a self-signed root there if it holds none."""
        material = await store.load()
        if material is None:
            material = await store.create(new_root_material(key_type, trust_domain))
        return cls.from_material(material, default_ttl=default_ttl, max_ttl=max_ttl)

    @property
    def root_pem(self) -> bytes:
        """The trust bundle: every root a mesh certificate may chain to (two in a rotation)."""
        return self._chain_tail[-1]

    @property
    def intermediates(self) -> list[x509.Certificate]:
        return [c for c in self.chain if c not in self.roots]

    @property
    def rotating(self) -> bool:
        """Whether a root rotation is in progress: a self-signed root whose chain starts with
        its cross-signed twin (the bridge to the old root)."""
        return self.chain[0] != self.signing_cert and is_self_signed(self.signing_cert)

    def lifetime(self, requested: datetime.timedelta | None) -> datetime.timedelta:
        """The requested lifetime, or the default when there is none, capped at the maximum."""
        if requested is None or requested <= datetime.timedelta(0):
            return self.default_ttl
        return min(requested, self.max_ttl)

    def sign(
        self, csr_pem: bytes, identity: SpiffeId, ttl: datetime.timedelta | None = None
    ) -> list[bytes]:
        """An X.509-SVID for `identity` over the CSR's key, as Istio's CA answers: the leaf,
        each intermediate, then the trust bundle as one last element (several PEM blocks
        during a rotation)."""
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
        return [pem([leaf]), *self._chain_tail]

    def server_credentials(
        self, *hosts: str, ttl: datetime.timedelta | None = None
    ) -> ServerCredentials:
        """A fresh key and a serving certificate for `hosts` (DNS names or IP addresses),
        living `ttl` (the default lifetime if None; capped like any certificate)."""
        key = generate_key("ec")
        names: list[x509.GeneralName] = []
        for host in hosts:
            address = _ip(host)
            names.append(x509.DNSName(host) if address is None else x509.IPAddress(address))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
        leaf = self._issue(
            key.public_key(), subject, x509.SubjectAlternativeName(names), self.lifetime(ttl)
        )
        return ServerCredentials(pem([leaf, *self.chain]), key_pem(key))

    def rotate_root(self, key_type: KeyType, trust_domain: str) -> CaMaterial:
        """The material of this CA after starting a root rotation: a new root signs, the bundle
        trusts it beside the old ones, and the new root cross-signed by the old one bridges
        the two for peers that trust only the old root."""
        if not is_self_signed(self.signing_cert):
            raise RotationError(
                "this CA signs with an intermediate of "
                f"{self.signing_cert.issuer.rfc4514_string()}: its root belongs to the "
                "operator, so rotate by replacing cacerts"
            )
        if self.rotating:
            raise RotationError("a root rotation is already in progress: finish it first")
        key = generate_key(key_type)
        root = self_signed_root(key, trust_domain)
        bridge = cross_signed(root, self.signing_cert, self._key)
        return CaMaterial(
            ca_cert=pem([root]),
            ca_key=key_pem(key),
            root_cert=pem([root, *self.roots]),
            cert_chain=pem([bridge, self.signing_cert]),
        )

    def finish_root_rotation(self) -> CaMaterial:
        """The material of this CA once the old root is no longer trusted: the bundle without
        it, and no bridge. Only once every workload renewed since the rotation began: certs
        of the old root stop verifying, and so does anyone who still trusts only that root."""
        if not self.rotating:
            raise RotationError("no root rotation is in progress")
        old_root = self.chain[-1]
        return CaMaterial(
            ca_cert=pem([self.signing_cert]),
            ca_key=key_pem(self._key),
            root_cert=pem([root for root in self.roots if root != old_root]),
        )

    def leaf_builder(
        self,
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
        subject: x509.Name,
        san: x509.SubjectAlternativeName,
        ttl: datetime.timedelta,
    ) -> x509.CertificateBuilder:
        """The leaf this CA issues for `public_key`, not yet signed (the signing benchmark
        signs it bare, to compare the service with the signature alone)."""
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
        )

    def _issue(
        self,
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
        subject: x509.Name,
        san: x509.SubjectAlternativeName,
        ttl: datetime.timedelta,
    ) -> x509.Certificate:
        return self.leaf_builder(public_key, subject, san, ttl).sign(self._key, hashes.SHA256())


def _certificates(data: bytes, name: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as error:
        raise ValueError(f"{name}: cannot read PEM certificates: {error}") from error


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
