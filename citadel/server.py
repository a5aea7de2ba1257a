"""Citadel as a service: Istio's IstioCertificateService over TLS, and its monitoring server.

Workloads call CreateCertificate over TLS whose server certificate citadel signs with its own
CA, so a workload that holds the root can verify it. The caller's identity comes from its
credential, never from the request: a bearer token for a first certificate (on 8060, Istio's
legacy Citadel port), or a client certificate of the mesh to renew one. grpcio's Python API
cannot make client certificates optional on one port (the server either requires them or never
asks), so renewal has its own port (`mtls_port`) that requires them; both ports serve the same
service and accept either credential the transport lets through.

Two modes, by option. The local mesh (the default) checks bootstrap tokens it minted itself
(`tokens`) and keeps its CA in a directory. Kubernetes mode (`kubernetes`) checks
service-account JWTs with the API server (`tokenreview`) and keeps its CA in a Secret
(`ca_secret`), or in a directory when one is given (a mounted `cacerts`, say). The CA is read
when the service starts, so a root rotation done on the store (`rotation`) takes effect at the
next start.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry, Counter

from citadel.authn import AuthenticationError, Authenticator, AuthenticatorUnavailable
from citadel.ca import DEFAULT_TTL, MAX_TTL, CertificateAuthority, CsrError, IdentityMismatchError
from citadel.ca_secret import DEFAULT_NAMESPACE, SecretStore
from citadel.cacerts import CaStore, DirectoryStore
from citadel.pki import KeyType
from citadel.serving import ServingCertificate
from citadel.tokenreview import ISTIO_CA_AUDIENCE, TokenReviewAuthenticator
from citadel.tokens import TokenAuthority
from meshcore.grpc_server import create_server
from meshcore.identity import CONTROL_PLANE_HOST, TRUST_DOMAIN, IdentityError, SpiffeId
from meshcore.kube import api_client
from meshcore.lifecycle import Service
from meshcore.monitoring import MonitoringServer
from protos.citadel.v1 import ca_pb2

log = logging.getLogger(__name__)

# The name Istio's agents verify the CA's serving certificate against.
SERVICE = "istio.v1.auth.IstioCertificateService"


@dataclass(frozen=True)
class CitadelOptions:
    """`ca_dir` alone: the local mesh. `kubernetes` ("in-cluster", a kubeconfig path or an API
    URL): Kubernetes mode, with the CA in `ca_dir` if given, else in `ca_secret_namespace`."""

    ca_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8060
    mtls_port: int = 8061
    monitoring_port: int = 15014
    default_ttl: datetime.timedelta = DEFAULT_TTL
    max_ttl: datetime.timedelta = MAX_TTL
    key_type: KeyType = "ec"
    trust_domain: str = TRUST_DOMAIN
    kubernetes: str | None = None
    ca_secret_namespace: str = DEFAULT_NAMESPACE
    token_audiences: Sequence[str] = (ISTIO_CA_AUDIENCE,)

    def __post_init__(self) -> None:
        if self.ca_dir is None and self.kubernetes is None:
            raise ValueError("citadel needs a CA directory (ca_dir) or Kubernetes (kubernetes)")

    def store(self, api: client.ApiClient | None) -> CaStore:
        """Where the CA is kept; `api` is the Kubernetes client of Kubernetes mode."""
        if self.ca_dir is not None:
            return DirectoryStore(self.ca_dir)
        if api is None:
            raise ValueError("the CA secret needs a Kubernetes client")
        return SecretStore(api, self.ca_secret_namespace)


class CitadelMetrics:
    """Counters named as Istio's citadel names them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.csrs = Counter(
            "citadel_server_csr_count", "The number of CSRs received.", registry=self.registry
        )
        self.issued = Counter(
            "citadel_server_success_cert_issuance_count",
            "The number of certificates issuances that have succeeded.",
            registry=self.registry,
        )
        self.authentication_failures = Counter(
            "citadel_server_authentication_failure_count",
            "The number of authentication failures.",
            registry=self.registry,
        )
        self.csr_errors = Counter(
            "citadel_server_csr_parsing_err_count",
            "The number of errors occurred when parsing the CSR.",
            registry=self.registry,
        )


class Citadel(Service):
    def __init__(self, options: CitadelOptions) -> None:
        self.options = options
        self.metrics = CitadelMetrics()
        self._tokens: TokenAuthority | None = None
        if options.kubernetes is None and options.ca_dir is not None:
            self._tokens = TokenAuthority.load_or_create(options.ca_dir)
        self._reviewer: TokenReviewAuthenticator | None = None
        self._api: client.ApiClient | None = None
        self._ca: CertificateAuthority | None = None
        self.port = options.port
        self.mtls_port = options.mtls_port
        self.monitoring = MonitoringServer(
            options.host, options.monitoring_port, self.metrics.registry, self._ready
        )
        self._grpc: grpc.aio.Server | None = None

    @property
    def ca(self) -> CertificateAuthority:
        """The CA, read from its store when the service started."""
        if self._ca is None:
            raise RuntimeError("citadel is not started: its CA is not loaded yet")
        return self._ca

    @property
    def tokens(self) -> TokenAuthority:
        """The local mesh's bootstrap tokens; replacing it (a new key) applies to the next call."""
        if self._tokens is None:
            raise RuntimeError("in Kubernetes mode citadel checks service-account tokens only")
        return self._tokens

    @tokens.setter
    def tokens(self, authority: TokenAuthority) -> None:
        self._tokens = authority

    @property
    def authenticator(self) -> Authenticator:
        """What checks bearer tokens: the token authority, or the API server's reviews."""
        if self._tokens is not None:
            return self._tokens
        if self._reviewer is None:
            raise RuntimeError("citadel is not started: no token reviews yet")
        return self._reviewer

    @property
    def address(self) -> str:
        """Where to ask with a bearer token."""
        return f"{self.options.host}:{self.port}"

    @property
    def mtls_address(self) -> str:
        """Where to renew with a client certificate."""
        return f"{self.options.host}:{self.mtls_port}"

    def _ready(self) -> bool:
        return self._grpc is not None

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        options = self.options
        if options.kubernetes is not None:
            self._api = await api_client(options.kubernetes)
            self._reviewer = TokenReviewAuthenticator(
                self._api, options.trust_domain, options.token_audiences
            )
        store = options.store(self._api)
        self._ca = await CertificateAuthority.open(
            store,
            key_type=options.key_type,
            trust_domain=options.trust_domain,
            default_ttl=options.default_ttl,
            max_ttl=options.max_ttl,
        )
        self.serving = ServingCertificate(self.ca, CONTROL_PLANE_HOST, options.host)
        server = create_server(max_receive_message_bytes=64 * 1024)
        create = grpc.unary_unary_rpc_method_handler(
            self._create_certificate,
            request_deserializer=ca_pb2.IstioCertificateRequest.FromString,
            response_serializer=ca_pb2.IstioCertificateResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"CreateCertificate": create}),)
        )
        ports = []
        for port, mutual in ((options.port, False), (options.mtls_port, True)):
            credentials = self.serving.credentials(require_client_auth=mutual)
            address = f"{options.host}:{port}"
            ports.append(int(server.add_secure_port(address, credentials)))
            if ports[-1] == 0:
                raise OSError(f"cannot bind citadel to {address}")
        self.port, self.mtls_port = ports
        await server.start()
        self._grpc = server
        await self.monitoring.start()
        log.info(
            "citadel serving certificates on %s (%s) and %s (mTLS), monitoring on %s:%d, "
            "CA in %s%s",
            self.address,
            "service-account tokens" if options.kubernetes is not None else "bootstrap tokens",
            self.mtls_address,
            options.host,
            self.monitoring.port,
            store.description,
            " (root rotation in progress)" if self.ca.rotating else "",
        )

    async def stop(self) -> None:
        if self._grpc is not None:
            await self._grpc.stop(grace=1.0)
            self._grpc = None
        await self.monitoring.stop()
        if self._api is not None:
            await self._api.close()
            self._api = None

    async def authenticate(self, context: grpc.aio.ServicerContext) -> SpiffeId:
        """The caller's identity: its verified client certificate, else its bearer token."""
        peer_certs = context.auth_context().get("x509_pem_cert")
        if peer_certs:
            leaf = x509.load_pem_x509_certificate(peer_certs[0])
            return _certificate_identity(leaf)
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, token = value.partition(" ")
                if scheme.lower() == "bearer":
                    return await self.authenticator.authenticate(token.strip())
        raise AuthenticationError("no client certificate and no bearer token")

    async def _create_certificate(
        self, request: ca_pb2.IstioCertificateRequest, context: grpc.aio.ServicerContext
    ) -> ca_pb2.IstioCertificateResponse:
        metrics = self.metrics
        metrics.csrs.inc()
        try:
            identity = await self.authenticate(context)
        except AuthenticationError as error:
            metrics.authentication_failures.inc()
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"authentication failed: {error}")
        except AuthenticatorUnavailable as error:
            log.warning("cannot authenticate a caller now: %s", error)
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot authenticate now: {error}")
        # Capped here already: an int64 of seconds can overflow a timedelta.
        max_seconds = int(self.ca.max_ttl.total_seconds())
        ttl = datetime.timedelta(seconds=min(request.validity_duration, max_seconds))
        try:
            # On the event loop: an ECDSA signature (~134 µs) costs less than the gRPC call
            # around it, and signing in threads gains no parallelism (the GIL) but costs a
            # hand-off each way, ~130 µs of CPU per certificate (BENCHMARKS.md).
            chain = self.ca.sign(request.csr.encode(), identity, ttl)
        except CsrError as error:
            metrics.csr_errors.inc()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except IdentityMismatchError as error:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(error))
        metrics.issued.inc()
        log.debug("issued a certificate for %s", identity)
        return ca_pb2.IstioCertificateResponse(cert_chain=[pem.decode() for pem in chain])


def _certificate_identity(leaf: x509.Certificate) -> SpiffeId:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as error:
        raise AuthenticationError("the client certificate has no SAN") from error
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise AuthenticationError("the client certificate needs exactly one URI SAN")
    try:
        return SpiffeId.parse(uris[0])
    except IdentityError as error:
        raise AuthenticationError(str(error)) from error
