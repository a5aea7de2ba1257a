"""The pilot service object: xDS on 15010 (and mTLS 15011), monitoring on 15014, pushes.

`Pilot` composes the pieces and owns their lifecycles: the registry watcher and the debouncer
run as tasks of its TaskGroup-like set, the gRPC and monitoring servers are started and
stopped with it. It runs alone (`python -m pilot`) or inside another process (the local mesh,
tests) through `async with Pilot(options)`.

The registry pilot serves is its configured one plus the WorkloadEntries of auto-registered
proxies (`AutoRegistration`). Both kinds of change go through the debouncer; at push time the
registry is rebuilt once and compared with the one last pushed, which decides between a full
and an EDS-only push.

Cleartext xDS is served by `meshcore.h2_server` (HTTP/2 and gRPC framed on asyncio's own
transports: a fifth of grpc.aio's CPU per message, the bulk of a push's cost). With
`mtls_port` set, the same xDS server also listens there on grpc.aio over TLS with pilot's
serving certificate, requiring a client certificate signed by the mesh root (Istio's 15011);
the discovery service checks that certificate's identity against each node's claims.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

import grpc
from aiohttp import web

from meshcore.grpc_server import bind, create_server
from meshcore.h2_server import H2Server
from meshcore.lifecycle import Service, cancel_and_wait
from meshcore.monitoring import MonitoringServer
from meshcore.tls import MeshTls
from meshcore.xds.server import XdsServer
from pilot import debug, model
from pilot.config_files import PilotInput
from pilot.config_galley import GalleyConfig
from pilot.config_watch import ConfigWatcher
from pilot.debounce import Debouncer, PushRequest
from pilot.discovery import DiscoveryService
from pilot.jwks import JwksResolver, jwks_locations
from pilot.mesh_config import DEFAULT_MESH, MeshConfig
from pilot.metrics import PilotMetrics
from pilot.push_context import PushContext
from pilot.registry import RegistrySnapshot
from pilot.registry.autoregister import DEFAULT_GRACE_PERIOD, AutoRegistration

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PilotOptions:
    """Configuration comes from `config_dir` (read directly) or from galley at `galley`."""

    config_dir: Path | None = None
    galley: str | None = None
    host: str = "127.0.0.1"
    grpc_port: int = 15010
    monitoring_port: int = 15014
    debounce: float = 0.1
    debounce_max: float = 1.0
    send_timeout: float = 10.0
    max_request_bytes: int = 1024 * 1024
    # How long an auto-registered WorkloadEntry outlives its proxy's last stream (Istio's
    # PILOT_WORKLOAD_ENTRY_GRACE_PERIOD).
    workload_entry_grace_period: float = DEFAULT_GRACE_PERIOD
    # Mutual-TLS xDS (Istio's 15011; None: off): pilot's serving chain and key, and the roots
    # client certificates must chain to (all PEM).
    mtls_port: int | None = None
    # Istio's MeshConfig (pilot.mesh_config): whether and where sidecars call Mixer.
    mesh: MeshConfig = DEFAULT_MESH
    tls_cert_chain: bytes = b""
    tls_key: bytes = b""
    tls_roots: bytes = b""
    # Reach galley over mutual TLS with that same certificate (galley serving with `tls`).
    galley_mtls: bool = False


class Pilot(Service):
    def __init__(self, options: PilotOptions) -> None:
        needs_tls = options.mtls_port is not None or options.galley_mtls
        if needs_tls and not (options.tls_cert_chain and options.tls_key and options.tls_roots):
            raise ValueError(
                "pilot's mTLS port and mutual TLS to galley need a certificate chain, a key and "
                "roots"
            )
        self.options = options
        self.metrics = PilotMetrics()
        self._versions = itertools.count(1)
        self._config: ConfigWatcher | GalleyConfig
        if options.config_dir is not None:
            self._config = ConfigWatcher(options.config_dir, self._on_input)
            self._input = self._config.load()
        elif options.galley is not None:
            node_id = f"pilot~{options.host}~pilot.istio-system~istio-system.svc.cluster.local"
            tls = None
            if options.galley_mtls:
                tls = MeshTls(options.tls_cert_chain, options.tls_key, options.tls_roots)
            self._config = GalleyConfig(options.galley, self._on_input, node_id=node_id, tls=tls)
            self._input = PilotInput()
        else:
            raise ValueError("pilot needs a config directory or a galley address")
        self.registrations = AutoRegistration(
            options.workload_entry_grace_period, self._on_registration
        )
        self._registry = self.registrations.registry(self._input.registry)
        self.discovery = DiscoveryService(
            self._context(self._registry, self._input), self.metrics, self.registrations
        )
        self.xds = XdsServer(
            self.discovery.cache,
            self.discovery,
            send_timeout=options.send_timeout,
            max_request_bytes=options.max_request_bytes,
        )
        self._debouncer = Debouncer(
            self._push,
            quiet=options.debounce,
            max_wait=options.debounce_max,
            on_debounced=self.metrics.debounce.observe,
        )
        self._h2: H2Server | None = None  # cleartext xDS
        self._grpc: grpc.aio.Server | None = None  # mutual-TLS xDS
        self.grpc_port = options.grpc_port
        self.mtls_port = options.mtls_port
        self.monitoring = MonitoringServer(
            options.host, options.monitoring_port, self.metrics.registry, self._ready
        )
        self.monitoring.add_get("/debug/syncz", self._syncz)
        self.monitoring.add_get("/debug/config_dump", self._config_dump)
        self.monitoring.add_get("/debug/registryz", self._registryz)
        # RequestAuthentication key sets named by URL: fetched here, inlined into proxies.
        self.jwks = JwksResolver(self._on_jwks_change)
        self._tasks: list[asyncio.Task[None]] = []
        self._pushed_input = True  # the input in force is the one the push context holds

    @property
    def address(self) -> str:
        return f"{self.options.host}:{self.grpc_port}"

    @property
    def mtls_address(self) -> str | None:
        """Where xDS is served over mutual TLS, if it is."""
        return None if self.mtls_port is None else f"{self.options.host}:{self.mtls_port}"

    async def start(self) -> None:
        self._h2 = H2Server(self.xds.h2_methods())
        self.grpc_port = await self._h2.start(self.options.host, self.options.grpc_port)
        if self.options.mtls_port is not None:
            self._grpc = create_server()
            self.xds.add_to(self._grpc)
            credentials = grpc.ssl_server_credentials(
                [(self.options.tls_key, self.options.tls_cert_chain)],
                root_certificates=self.options.tls_roots,
                require_client_auth=True,
            )
            address = f"{self.options.host}:{self.options.mtls_port}"
            self.mtls_port = bind(self._grpc, address, credentials)
            await self._grpc.start()
        await self.monitoring.start()
        await self.jwks.start()
        if self._jwks_locations():  # the first context was built without fetched keys
            self._debouncer.submit(PushRequest(full=True, reason="jwks"))
        self._tasks = [
            asyncio.create_task(self._debouncer.run(), name="pilot-debounce"),
            asyncio.create_task(self._config.run(), name="pilot-config"),
        ]
        log.info(
            "pilot serving xDS on %s (mTLS: %s), monitoring on %s:%d, config from %s",
            self.address,
            self.mtls_address or "off",
            self.options.host,
            self.monitoring.port,
            self.options.config_dir or f"galley at {self.options.galley}",
        )

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []
        await self.jwks.stop()
        if self._h2 is not None:
            await self._h2.stop()
            self._h2 = None
        if self._grpc is not None:
            await self._grpc.stop(grace=1.0)
            self._grpc = None
        self.registrations.close()
        await self.monitoring.stop()

    @property
    def config_error(self) -> str:
        """Why the config directory's current content was rejected; empty when it is in force."""
        return self._config.last_error

    def _context(
        self,
        registry: RegistrySnapshot,
        update: PilotInput,
        jwks: Mapping[str, str] = MappingProxyType({}),
    ) -> PushContext:
        self.metrics.services.set(len(registry.services))
        version = str(next(self._versions))
        return PushContext.build(
            registry, version=version, config=update.istio, jwks=jwks, mesh=self.options.mesh
        )

    def _jwks_locations(self) -> dict[str, float]:
        return jwks_locations(self._input.istio.security.request_authentications)

    def _on_input(self, update: PilotInput) -> None:
        previous, self._input = self._input, update
        if update == previous:
            return
        self._pushed_input = False
        if update.istio != previous.istio:
            self._debouncer.submit(PushRequest(full=True, reason="config"))
        else:
            self._debouncer.submit(PushRequest(full=False, reason="registry"))

    def _on_jwks_change(self) -> None:
        self._debouncer.submit(PushRequest(full=True, reason="jwks"))

    def _on_registration(self) -> None:
        self._debouncer.submit(PushRequest(full=False, reason="autoregistration"))

    async def _push(self, request: PushRequest) -> None:
        registry = self.registrations.registry(self._input.registry)
        if not request.full:
            request = request.merge(classify_change(self._registry, registry))
        self._registry = registry
        key_sets = await self.jwks.resolve(self._jwks_locations())
        pushing = self._input
        await self.discovery.push(request, self._context(registry, pushing, key_sets))
        if pushing is self._input:
            self._pushed_input = True

    def _ready(self) -> bool:
        """Serving, and (fed by galley) the configuration received is in the push context, so a
        proxy connecting now gets it."""
        if isinstance(self._config, GalleyConfig):
            config_ready = self._config.ready and self._pushed_input
        else:
            config_ready = True
        return self._h2 is not None and config_ready

    async def _syncz(self, request: web.Request) -> web.Response:
        return web.json_response(debug.syncz(self.xds.streams.values()))

    async def _registryz(self, request: web.Request) -> web.Response:
        registrations = self.registrations.describe()
        return web.json_response(debug.registryz(self._registry, registrations))

    async def _config_dump(self, request: web.Request) -> web.Response:
        wanted = request.query.get("proxyID", "")
        for key in self.discovery.cache.node_keys():
            if wanted in (key, debug.proxy_id(key)):
                snapshot = self.discovery.cache.get(key)
                if snapshot is not None:
                    return web.json_response(debug.config_dump(snapshot))
        return web.json_response(
            {"error": f"no connected proxy with proxyID {wanted!r}"}, status=404
        )


def classify_change(before: RegistrySnapshot, after: RegistrySnapshot) -> PushRequest:
    """Full if services changed in more than their endpoints; else EDS for the services whose
    endpoints changed or whose selected workloads moved.

    Endpoints alone are EDS only for STATIC services whose endpoints keep their service
    accounts: other resolutions carry endpoints in clusters or listeners, and a cluster lists
    its endpoints' identities. A proxy whose own workload moved still gets a full push (its
    inbound side depends on it).
    """
    old_services = {service.hostname: service for service in before.services}
    if len(old_services) != len(after.services):
        return PushRequest(full=True, reason="services")
    hosts: set[str] = set()
    moved: list[model.WorkloadInstance] = []
    for service in after.services:
        old = old_services.get(service.hostname)
        if old == service:
            continue
        if old is None or not _endpoints_only(old, service):
            return PushRequest(full=True, reason="services")
        hosts.add(service.hostname)
        moved += _moved(old.endpoints, service.endpoints)
    moved_workloads = _moved(before.workloads, after.workloads)
    hosts.update(
        service.hostname
        for service in after.services
        if any(service.selects(workload) for workload in moved_workloads)
    )
    return PushRequest(
        full=False,
        endpoints=frozenset(hosts),
        workload_addresses=frozenset(w.address for w in (*moved, *moved_workloads)),
        reason="endpoints",
    )


def _endpoints_only(before: model.Service, after: model.Service) -> bool:
    """Whether only the endpoints of a STATIC service changed, and not their identities."""
    return (
        after.resolution is model.Resolution.STATIC
        and replace(before, endpoints=()) == replace(after, endpoints=())
        and _accounts(before) == _accounts(after)
    )


def _accounts(service: model.Service) -> set[str]:
    return {w.service_account for w in service.endpoints if w.ready}


def _moved(
    before: Iterable[model.WorkloadInstance], after: Iterable[model.WorkloadInstance]
) -> list[model.WorkloadInstance]:
    """The workloads added, removed or changed, old and new versions both."""
    old = {(w.namespace, w.name, w.address): w for w in before}
    new = {(w.namespace, w.name, w.address): w for w in after}
    moved = [w for key, w in old.items() if new.get(key) != w]
    moved += [w for key, w in new.items() if old.get(key) != w]
    return moved
