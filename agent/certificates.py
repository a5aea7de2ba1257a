"""The agent's certificate manager: gets the workload's X.509-SVID from citadel and keeps it fresh.

Istio's pilot-agent generates the workload's private key itself, so the key never leaves the
pod: it sends citadel only a CSR. The first certificate is paid for with a bootstrap token (the
TLS port); every later one is a renewal authenticated by the certificate still in force (the
mTLS port), each with a new key, so a leaked key is only good until the next rotation. Each
certificate goes to the SDS server, which pushes it to Envoy without a restart.

Renewal happens at a fraction of the lifetime, with jitter so that workloads started together
do not renew together. A failed request is retried with bounded exponential backoff while the
current certificate keeps serving; only once it has expired does the agent fall back to its
token, since the mTLS port would refuse an expired client certificate.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.sds import SdsServer, WorkloadCertificate
from meshcore.identity import (
    CONTROL_PLANE_HOST,
    SpiffeId,
    create_certificate_call,
)
from meshcore.lifecycle import Service, cancel_and_wait
from protos.citadel.v1 import ca_pb2

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0
RETRY_INITIAL = 0.2
RETRY_MAX = 30.0
# Renewal never waits less than this, so a certificate with (almost) no lifetime left does not
# make the agent spin against the CA.
MIN_RENEWAL_DELAY = 0.05


class CertificateError(ValueError):
    """Citadel answered with something that is not a certificate for this key and identity."""


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_csr(key: ec.EllipticCurvePrivateKey, identity: SpiffeId) -> bytes:
    """A PEM CSR over `key` naming `identity` as its only (URI) SAN, with an empty subject."""
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)])
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(san, critical=True)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


def renewal_delay(
    not_after: datetime.datetime,
    now: datetime.datetime,
    fraction: float,
    jitter: float,
    draw: float,
) -> float:
    """Seconds from `now` until renewal: `fraction` ± `jitter` (`draw` in [-1, 1] picks where)
    of the lifetime left at `now`.

    The lifetime is measured from when the agent got the certificate, not from its notBefore:
    citadel back-dates notBefore for clock skew, which would otherwise make short-lived
    certificates look half spent on arrival.
    """
    remaining = (not_after - now).total_seconds()
    return max(MIN_RENEWAL_DELAY, remaining * (fraction + jitter * draw))


@dataclass(frozen=True)
class _Issued:
    certificate: WorkloadCertificate
    leaf: x509.Certificate


class CertificateManager(Service):
    """Keeps `current` a valid certificate for `identity` and pushes each one to `sds`."""

    def __init__(
        self,
        citadel_address: str,
        citadel_mtls_address: str,
        root_pem: bytes,
        token: str,
        identity: SpiffeId,
        sds: SdsServer,
        *,
        ttl: datetime.timedelta | None = None,
        renew_fraction: float = 0.5,
        jitter: float = 0.1,
    ) -> None:
        if not 0 < renew_fraction - jitter <= renew_fraction + jitter < 1:
            raise ValueError("renew_fraction ± jitter must lie strictly between 0 and 1")
        self.citadel_address = citadel_address
        self.citadel_mtls_address = citadel_mtls_address
        self.root_pem = root_pem
        self.identity = identity
        self.sds = sds
        self.ttl = ttl
        self.renew_fraction = renew_fraction
        self.jitter = jitter
        self.renewals = 0
        self._token = token
        self._issued: _Issued | None = None
        self._has_certificate = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._random = random.Random()

    @property
    def current(self) -> WorkloadCertificate | None:
        """The certificate in force (also what SDS serves), None before the first one."""
        return None if self._issued is None else self._issued.certificate

    async def wait_for_certificate(self) -> WorkloadCertificate:
        """Wait until the first certificate arrived (callers bound this with a timeout)."""
        await self._has_certificate.wait()
        assert self._issued is not None
        return self._issued.certificate

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("CertificateManager already started")
        self._task = asyncio.create_task(self._run(), name=f"certificates {self.identity}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])

    async def _run(self) -> None:
        while True:
            issued = await self._obtain()
            renewal = self._issued is not None
            self._issued = issued
            self.sds.update(issued.certificate)
            self._has_certificate.set()
            if renewal:
                self.renewals += 1
            now = datetime.datetime.now(datetime.UTC)
            delay = renewal_delay(
                issued.leaf.not_valid_after_utc,
                now,
                self.renew_fraction,
                self.jitter,
                self._random.uniform(-1.0, 1.0),
            )
            log.info(
                "certificate for %s (serial %x) valid until %s; renewing in %.1fs",
                self.identity,
                issued.leaf.serial_number,
                issued.leaf.not_valid_after_utc.isoformat(),
                delay,
            )
            await asyncio.sleep(delay)

    async def _obtain(self) -> _Issued:
        """A new certificate, retrying with bounded exponential backoff until one arrives."""
        backoff = RETRY_INITIAL
        while True:
            try:
                return await self._request()
            except (grpc.RpcError, ValueError) as error:
                log.warning(
                    "getting a certificate for %s failed (retrying in %.1fs): %s",
                    self.identity,
                    backoff,
                    error,
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RETRY_MAX)

    async def _request(self) -> _Issued:
        key = new_key()
        request = ca_pb2.IstioCertificateRequest(
            csr=make_csr(key, self.identity).decode(),
            validity_duration=0 if self.ttl is None else int(self.ttl.total_seconds()),
        )
        address, credentials, metadata = self._credentials()
        # Verify citadel as Istio's agents do: against the mesh root, as istiod's name.
        options = [("grpc.ssl_target_name_override", CONTROL_PLANE_HOST)]
        async with grpc.aio.secure_channel(address, credentials, options=options) as channel:
            call = create_certificate_call(channel)
            response = await call(request, metadata=metadata, timeout=REQUEST_TIMEOUT)
        return self._check(response, key)

    def _credentials(
        self,
    ) -> tuple[str, grpc.ChannelCredentials, tuple[tuple[str, str], ...]]:
        """Renew with the certificate in force; without one (or once expired), use the token."""
        issued = self._issued
        now = datetime.datetime.now(datetime.UTC)
        if issued is not None and now < issued.leaf.not_valid_after_utc:
            credentials = grpc.ssl_channel_credentials(
                self.root_pem, issued.certificate.key_pem, issued.certificate.chain_pem
            )
            return self.citadel_mtls_address, credentials, ()
        credentials = grpc.ssl_channel_credentials(self.root_pem)
        return self.citadel_address, credentials, (("authorization", f"Bearer {self._token}"),)

    def _check(
        self, response: ca_pb2.IstioCertificateResponse, key: ec.EllipticCurvePrivateKey
    ) -> _Issued:
        if len(response.cert_chain) < 2:
            raise CertificateError(
                "citadel must answer the chain and, last, the trust bundle; got "
                f"{len(response.cert_chain)} element(s)"
            )
        # Leaf and intermediates (during a root rotation, the bridge to the new root); the
        # last element is the whole trust bundle, possibly several roots.
        chain_pem = "".join(response.cert_chain[:-1]).encode()
        roots_pem = response.cert_chain[-1].encode()
        leaf = x509.load_pem_x509_certificate(response.cert_chain[0].encode())
        if leaf.public_key() != key.public_key():
            raise CertificateError("the certificate is not for the key of the CSR")
        try:
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            raise CertificateError("the certificate has no SAN") from None
        if san.get_values_for_type(x509.UniformResourceIdentifier) != [self.identity.uri]:
            raise CertificateError(f"the certificate does not name {self.identity.uri}")
        certificate = WorkloadCertificate(chain_pem, key_pem(key), roots_pem)
        # The bundle came over TLS verified with the trust we had: adopt it, so citadel is
        # still verified once a root rotation has dropped the old root.
        self.root_pem = roots_pem
        return _Issued(certificate, leaf)
