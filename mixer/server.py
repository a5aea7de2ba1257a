"""The Mixer service: Check and Report on 9091 (and mutual TLS on 15004), telemetry on 42422.

One gRPC server carries three services on each port: Istio's Mixer API, Envoy's ext_authz v3
(Check) and Envoy's access-log service v3 (Report). Prometheus scrapes the telemetry adapters'
metrics on `telemetry_port` (42422); Mixer's own metrics, `/ready`, `/debug/config` and
`/debug/graph` (the service graph) are on the monitoring port (15014) of `monitoring_host` (by
default the serving host: in the local mesh every service has its own address, so each keeps
Istio's port numbers).

Configuration comes from a directory or from galley (`config_source`). Every change is
compiled into a new `Runtime` (rules, instances and handlers; unchanged handlers are kept with
their state); one that fails to compile is logged and counted and the previous one stays in
force. Changes are applied by one task, latest first: a burst of changes compiles once. The
Pods and WorkloadEntries that come with the configuration (for the kubernetesenv adapter) are
indexed on every change; a change of only those keeps the runtime and empties the Check cache.

`Mixer` owns its tasks (the config source, the applier), its gRPC server, both HTTP servers and
its handlers; `stop()` ends all of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from aiohttp import web

from meshconfig import Resource
from meshcore.grpc_server import bind, create_server
from meshcore.lifecycle import Service, cancel_and_wait
from meshcore.monitoring import MonitoringServer
from meshcore.tls import MeshTls
from mixer import service_graph
from mixer.adapters.base import Environment
from mixer.api import MixerService
from mixer.checks import Checks
from mixer.config_source import DirectorySource, GalleySource
from mixer.envoy_front import AccessLogService, AuthorizationService
from mixer.metrics import MixerMetrics
from mixer.runtime import ConfigError, HandlerPool, Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MixerOptions:
    """Configuration comes from `config_dir` (read directly) or from galley at `galley`."""

    config_dir: Path | None = None
    galley: str | None = None
    host: str = "127.0.0.1"
    port: int = 9091
    # Istio's 15004: the same services over mutual TLS; Mixer's serving chain and key, and the
    # roots client certificates must chain to (all PEM).
    mtls_port: int | None = None
    tls_cert_chain: bytes = b""
    tls_key: bytes = b""
    tls_roots: bytes = b""
    # Reach galley over mutual TLS with that same certificate (galley serving with `tls`).
    galley_mtls: bool = False
    monitoring_host: str | None = None
    monitoring_port: int = 15014
    telemetry_port: int = 42422
    check_cache_entries: int = 100_000


class Mixer(Service):
    def __init__(self, options: MixerOptions) -> None:
        needs_tls = options.mtls_port is not None or options.galley_mtls
        if needs_tls and not (options.tls_cert_chain and options.tls_key and options.tls_roots):
            raise ValueError(
                "mixer's mTLS port and mutual TLS to galley need a certificate chain, a key and "
                "roots"
            )
        self.options = options
        self.metrics = MixerMetrics()
        self.env = Environment()
        self._pool = HandlerPool(self.env)
        self.runtime = Runtime.empty()
        self.checks = Checks(
            self.runtime, time.monotonic, cache_entries=options.check_cache_entries
        )
        self._config_error = ""
        self._source: DirectorySource | GalleySource
        if options.config_dir is not None:
            self._source = DirectorySource(options.config_dir, self._on_resources)
        elif options.galley is not None:
            node_id = f"mixer~{options.host}~mixer.istio-system~istio-system.svc.cluster.local"
            tls = None
            if options.galley_mtls:
                tls = MeshTls(options.tls_cert_chain, options.tls_key, options.tls_roots)
            self._source = GalleySource(
                options.galley, self._on_resources, node_id=node_id, tls=tls
            )
        else:
            raise ValueError("mixer needs a config directory or a galley address")
        self._pending: list[Resource] | None = None
        self._changed = asyncio.Event()
        self._configured = False
        self._grpc: grpc.aio.Server | None = None
        self.port = options.port
        self.mtls_port = options.mtls_port
        self.monitoring = MonitoringServer(
            options.monitoring_host or options.host,
            options.monitoring_port,
            self.metrics.registry,
            self._ready,
        )
        self.monitoring.add_get("/debug/config", self._debug_config)
        self.monitoring.add_get("/debug/graph", self._debug_graph)
        self.telemetry = MonitoringServer(
            options.host, options.telemetry_port, self.env.registry, self._ready
        )
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def config_error(self) -> str:
        """Why the latest configuration was refused (unreadable or not compilable); empty
        when the latest one is in force."""
        return self._source.last_error or self._config_error

    @property
    def address(self) -> str:
        return f"{self.options.host}:{self.port}"

    @property
    def mtls_address(self) -> str | None:
        return None if self.mtls_port is None else f"{self.options.host}:{self.mtls_port}"

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        options = self.options
        if isinstance(self._source, DirectorySource) and not await self.apply(self._source.load()):
            raise ConfigError(self.config_error)  # an invalid directory fails the start
        server = create_server(max_receive_message_bytes=4 * 1024 * 1024)
        server.add_generic_rpc_handlers(
            (
                MixerService(self.checks, self.metrics).handler(),
                AuthorizationService(self.checks, self.metrics).handler(),
                AccessLogService(self.checks, self.metrics).handler(),
            )
        )
        self.port = bind(server, f"{options.host}:{options.port}")
        if options.mtls_port is not None:
            credentials = grpc.ssl_server_credentials(
                [(options.tls_key, options.tls_cert_chain)],
                root_certificates=options.tls_roots,
                require_client_auth=True,
            )
            self.mtls_port = bind(server, f"{options.host}:{options.mtls_port}", credentials)
        self._grpc = server
        await server.start()
        await self.monitoring.start()
        await self.telemetry.start()
        self._tasks = [
            asyncio.create_task(self._apply_changes(), name="mixer-config-apply"),
            asyncio.create_task(self._source.run(), name="mixer-config-source"),
        ]
        log.info(
            "mixer serving on %s (mTLS: %s), telemetry on %s:%d, monitoring on %s:%d, "
            "config from %s",
            self.address,
            self.mtls_address or "off",
            options.host,
            self.telemetry.port,
            self.monitoring.host,
            self.monitoring.port,
            options.config_dir or f"galley at {options.galley}",
        )

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []
        if self._grpc is not None:
            await self._grpc.stop(grace=1.0)
            self._grpc = None
        await self._pool.close()
        await self.telemetry.stop()
        await self.monitoring.stop()

    async def apply(self, resources: list[Resource]) -> bool:
        """Compile `resources` and put them in force; False (and the old config kept) if not."""
        try:
            runtime = await self._pool.runtime(resources)
        except ConfigError as error:
            self._config_error = str(error)
            self.metrics.config_errors.inc()
            log.error("mixer config refused, keeping the previous one: %s", error)
            return False
        self.runtime = runtime
        self.checks.dispatcher = runtime
        self._config_error = ""
        self._configured = True
        self.metrics.config_version.inc()
        await self._pool.retire_unused()
        log.info("mixer config in force: %s", runtime.summary())
        return True

    def _on_resources(self, resources: list[Resource]) -> None:
        self._pending = resources
        self._changed.set()

    async def _apply_changes(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            resources, self._pending = self._pending, None
            if resources is not None:
                await self.apply(resources)

    def _ready(self) -> bool:
        return self._grpc is not None and self._configured and self._source.ready

    async def _debug_config(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"summary": self.runtime.summary(), "error": self.config_error or None}
        )

    async def _debug_graph(self, request: web.Request) -> web.Response:
        """The service graph the `servicegraph` adapter builds (empty without one)."""
        return web.json_response(service_graph.graph(self.env.shared).as_json())
