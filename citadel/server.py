"""Citadel as a service: Istio's IstioCertificateService over TLS, and its monitoring server.

Workloads call CreateCertificate over TLS whose server certificate citadel signs with its own
CA, so a workload that holds the root can verify it. The caller's identity comes from its
credential, never from the request: a bootstrap token minted by `tokens` for a first
certificate (on 8060, Istio's legacy Citadel port), or a client certificate of the mesh to renew
one. grpcio's Python API cannot make client certificates optional on one port (the server either
requires them or never asks), so renewal has its own port (`mtls_port`) that requires them;
both ports serve the same service and accept either credential the transport lets through.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from prometheus_client import CollectorRegistry, Counter

from citadel.ca import (
    DEFAULT_TTL,
    MAX_TTL,
    CertificateAuthority,
    CsrError,
    IdentityMismatchError,
    KeyType,
)
from citadel.tokens import TokenAuthority
from meshcore.grpc_server import create_server
from meshcore.identity import CONTROL_PLANE_HOST, TRUST_DOMAIN, SpiffeId
from meshcore.lifecycle import Service
from meshcore.monitoring import MonitoringServer
from protos.citadel.v1 import ca_pb2

log = logging.getLogger(__name__)

# The name Istio's agents verify the CA's serving certificate against.
SERVICE = "istio.v1.auth.IstioCertificateService"


@dataclass(frozen=True)
class CitadelOptions:
    ca_dir: Path
    host: str = "127.0.0.1"
    port: int = 8060
    mtls_port: int = 8061
    monitoring_port: int = 15014
    default_ttl: datetime.timedelta = DEFAULT_TTL
    max_ttl: datetime.timedelta = MAX_TTL
    key_type: KeyType = "ec"
    trust_domain: str = TRUST_DOMAIN


class AuthenticationError(ValueError):
    """The caller presented no credential, or one that names no identity of the mesh."""


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
        self.ca = CertificateAuthority.load_or_create(
            options.ca_dir,
            key_type=options.key_type,
            trust_domain=options.trust_domain,
            default_ttl=options.default_ttl,
            max_ttl=options.max_ttl,
        )
        self.tokens = TokenAuthority.load_or_create(options.ca_dir)
        self.port = options.port
        self.mtls_port = options.mtls_port
        self.monitoring = MonitoringServer(
            options.host, options.monitoring_port, self.metrics.registry, self._ready
        )
        self._grpc: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        """Where to ask with a bootstrap token."""
        return f"{self.options.host}:{self.port}"

    @property
    def mtls_address(self) -> str:
        """Where to renew with a client certificate."""
        return f"{self.options.host}:{self.mtls_port}"

    def _ready(self) -> bool:
        return self._grpc is not None

    async def start(self) -> None:
        serving = self.ca.server_credentials(CONTROL_PLANE_HOST, self.options.host)
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
        for port, mutual in ((self.options.port, False), (self.options.mtls_port, True)):
            credentials = grpc.ssl_server_credentials(
                [(serving.key_pem, serving.chain_pem)],
                root_certificates=self.ca.root_pem,
                require_client_auth=mutual,
            )
            address = f"{self.options.host}:{port}"
            ports.append(int(server.add_secure_port(address, credentials)))
            if ports[-1] == 0:
                raise OSError(f"cannot bind citadel to {address}")
        self.port, self.mtls_port = ports
        await server.start()
        self._grpc = server
        await self.monitoring.start()
        log.info(
            "citadel serving certificates on %s (token) and %s (mTLS), monitoring on %s:%d, "
            "CA in %s",
            self.address,
            self.mtls_address,
            self.options.host,
            self.monitoring.port,
            self.options.ca_dir,
        )

    async def stop(self) -> None:
        if self._grpc is not None:
            await self._grpc.stop(grace=1.0)
            self._grpc = None
        await self.monitoring.stop()

    def authenticate(self, context: grpc.aio.ServicerContext) -> SpiffeId:
        """The caller's identity: its verified client certificate, else its bootstrap token."""
        peer_certs = context.auth_context().get("x509_pem_cert")
        if peer_certs:
            leaf = x509.load_pem_x509_certificate(peer_certs[0])
            return _certificate_identity(leaf)
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, token = value.partition(" ")
                if scheme.lower() == "bearer":
                    return self.tokens.verify(token.strip())
        raise AuthenticationError("no client certificate and no bearer token")

    async def _create_certificate(
        self, request: ca_pb2.IstioCertificateRequest, context: grpc.aio.ServicerContext
    ) -> ca_pb2.IstioCertificateResponse:
        metrics = self.metrics
        metrics.csrs.inc()
        try:
            identity = self.authenticate(context)
        except ValueError as error:  # AuthenticationError, TokenError, IdentityError
            metrics.authentication_failures.inc()
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"authentication failed: {error}")
        # Capped here already: an int64 of seconds can overflow a timedelta.
        max_seconds = int(self.ca.max_ttl.total_seconds())
        ttl = datetime.timedelta(seconds=min(request.validity_duration, max_seconds))
        try:
            # RSA CSRs and signatures take milliseconds; keep the event loop free meanwhile.
            chain = await asyncio.to_thread(self.ca.sign, request.csr.encode(), identity, ttl)
        except CsrError as error:
            metrics.csr_errors.inc()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except IdentityMismatchError as error:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(error))
        metrics.issued.inc()
        log.info("issued a certificate for %s", identity)
        return ca_pb2.IstioCertificateResponse(cert_chain=[pem.decode() for pem in chain])


def _certificate_identity(leaf: x509.Certificate) -> SpiffeId:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as error:
        raise AuthenticationError("the client certificate has no SAN") from error
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise AuthenticationError("the client certificate needs exactly one URI SAN")
    return SpiffeId.parse(uris[0])
