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

One process signs on one core; `workers` > 1 starts that many processes in all, sharing the
ports (`citadel.workers`), each loading the CA itself and counting into shared counters
(`citadel.metrics`).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path

import grpc
from cryptography import x509
from kubernetes_asyncio import client

from citadel.authn import AuthenticationError, Authenticator, AuthenticatorUnavailable
from citadel.ca import DEFAULT_TTL, MAX_TTL, CertificateAuthority, CsrError, IdentityMismatchError
from citadel.ca_secret import DEFAULT_NAMESPACE, SecretStore
from citadel.cacerts import CaStore, DirectoryStore
from citadel.metrics import CitadelCounter, CitadelMetrics, SharedCounters
from citadel.pki import KeyType
from citadel.serving import ServingCertificate
from citadel.tokenreview import ISTIO_CA_AUDIENCE, TokenReviewAuthenticator
from citadel.tokens import TokenAuthority
from citadel.workers import SERVING, WorkerPool
from meshcore.grpc_server import create_server
from meshcore.identity import CONTROL_PLANE_HOST, TRUST_DOMAIN, IdentityError, SpiffeId
from meshcore.kube import api_client
from meshcore.lifecycle import Service
from meshcore.logs import configure_logging
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
    workers: int = 1  # serving processes in all

    def __post_init__(self) -> None:
        if self.ca_dir is None and self.kubernetes is None:
            raise ValueError("citadel needs a CA directory (ca_dir) or Kubernetes (kubernetes)")
        if self.workers < 1:
            raise ValueError(f"citadel needs at least one serving process, not {self.workers}")

    def store(self, api: client.ApiClient | None) -> CaStore:
        """Where the CA is kept; `api` is the Kubernetes client of Kubernetes mode."""
        if self.ca_dir is not None:
            return DirectoryStore(self.ca_dir)
        if api is None:
            raise ValueError("the CA secret needs a Kubernetes client")
        return SecretStore(api, self.ca_secret_namespace)


@dataclass(frozen=True)
class WorkerRole:
    """What makes a `Citadel` one of the extra serving processes (its options name the ports
    the first process bound): the shared counters, its row in them, and its end of the pipe to
    the first process."""

    index: int
    counters: SharedCounters
    control: Connection


class Citadel(Service):
    """The service; with `worker`, one of the extra processes of `options.workers` (no
    monitoring server, no workers of its own)."""

    def __init__(self, options: CitadelOptions, worker: WorkerRole | None = None) -> None:
        self.options = options
        self._worker = worker
        if worker is None:
            self.metrics = CitadelMetrics(SharedCounters(options.workers))
        else:
            self.metrics = CitadelMetrics(worker.counters, worker.index)
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
        self._workers: WorkerPool | None = None

    @property
    def ca(self) -> CertificateAuthority:
        """The CA, read from its store when the service started."""
        if self._ca is None:
            raise RuntimeError("citadel is not started: its CA is not loaded yet")
        return self._ca

    @property
    def tokens(self) -> TokenAuthority:
        """The local mesh's bootstrap tokens; replacing it (a new key) applies to the next call
        this process serves (workers read the key file when they start)."""
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
    def worker_pids(self) -> list[int]:
        """The extra serving processes (none when one process serves)."""
        return [] if self._workers is None else self._workers.pids

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
        server = create_server(max_receive_message_bytes=64 * 1024, reuse_port=options.workers > 1)
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
        if self._worker is not None:
            self._worker.control.send(SERVING)
            return
        if options.workers > 1:
            self._workers = WorkerPool(
                functools.partial(
                    serve_as_worker,
                    replace(options, port=self.port, mtls_port=self.mtls_port),
                    self.metrics.counters,
                    logging.getLevelName(logging.getLogger().getEffectiveLevel()),
                ),
                options.workers - 1,
            )
            await self._workers.start()
        await self.monitoring.start()
        log.info(
            "citadel serving certificates on %s (%s) and %s (mTLS) in %d process%s, "
            "monitoring on %s:%d, CA in %s%s",
            self.address,
            "service-account tokens" if options.kubernetes is not None else "bootstrap tokens",
            self.mtls_address,
            options.workers,
            "es" if options.workers > 1 else "",
            options.host,
            self.monitoring.port,
            store.description,
            " (root rotation in progress)" if self.ca.rotating else "",
        )

    async def stop(self) -> None:
        if self._workers is not None:
            await self._workers.stop()
            self._workers = None
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
        metrics.inc(CitadelCounter.CSRS)
        try:
            identity = await self.authenticate(context)
        except AuthenticationError as error:
            metrics.inc(CitadelCounter.AUTHENTICATION_FAILURES)
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
            metrics.inc(CitadelCounter.CSR_ERRORS)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except IdentityMismatchError as error:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(error))
        metrics.inc(CitadelCounter.ISSUED)
        log.debug("issued a certificate for %s", identity)
        return ca_pb2.IstioCertificateResponse(cert_chain=[pem.decode() for pem in chain])


def serve_as_worker(
    options: CitadelOptions,
    counters: SharedCounters,
    log_level: str,
    index: int,
    control: Connection,
) -> None:
    """A worker process's life (`WorkerPool` target): serve on the first process's ports
    until the pipe to it closes, or SIGTERM / SIGINT."""
    configure_logging(log_level)
    role = WorkerRole(index, counters, control)
    asyncio.run(_serve_until_released(Citadel(options, worker=role), control))


async def _serve_until_released(citadel: Citadel, control: Connection) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # The first process never writes after start: readable means it closed the pipe or died.
    loop.add_reader(control.fileno(), stop.set)
    async with citadel:
        await stop.wait()


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
