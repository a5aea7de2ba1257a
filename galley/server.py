"""The galley service object: sources -> validated, versioned store -> xDS on 9901.

`Galley` composes the store, its sources (a directory and/or the Kubernetes API), the
distribution server, the validating webhook (9443, optional) and the monitoring server (15014,
with `/debug/history` and `/debug/errors`), and owns their lifecycles and tasks. It runs alone
(`python -m galley`) or inside another process through `async with Galley(options)`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from aiohttp import web
from prometheus_client import CollectorRegistry

from galley.distribution import ConfigDistributor
from galley.sources.directory import DirectorySource, validation_failures
from galley.sources.kubernetes import KubernetesSource
from galley.store import ConfigStore
from galley.validation import ChangeValidator
from galley.webhook import ValidationWebhook
from meshconfig import all_kinds
from meshcore.grpc_server import bind, create_server
from meshcore.kube import api_client_factory
from meshcore.lifecycle import Service, cancel_and_wait
from meshcore.monitoring import MonitoringServer
from meshcore.tls import MeshTls
from meshcore.xds.server import XdsServer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GalleyOptions:
    config_dir: Path | None = None
    # Read configuration from the Kubernetes API too: "in-cluster", a kubeconfig path, or an
    # API URL (tests, `kubectl proxy`). Namespaces limit it; None watches all.
    kubernetes: str | None = None
    namespaces: tuple[str, ...] | None = None
    host: str = "127.0.0.1"
    grpc_port: int = 9901
    monitoring_port: int = 15014
    webhook_port: int | None = None  # 9443 to serve the validating webhook
    webhook_dir: Path | None = None  # where its self-signed certificate is written
    history: int = 100
    # Serve configuration (Secrets among it) over mutual TLS only: clients need a certificate
    # of the mesh. None: plaintext, for a galley only loopback clients reach.
    tls: MeshTls | None = None


class Galley(Service):
    def __init__(self, options: GalleyOptions) -> None:
        self.options = options
        self.registry = CollectorRegistry()
        self.store = ConfigStore(history_limit=options.history)
        failures = validation_failures(self.registry)
        # Judges each change across resources (Mixer rules and what they name) before the
        # directory source takes it or the webhook admits it.
        self.validator = ChangeValidator(self.store)
        self.directory = (
            DirectorySource(
                options.config_dir, self.store, failures=failures, validator=self.validator
            )
            if options.config_dir is not None
            else None
        )
        self.kubernetes = (
            KubernetesSource(
                self.store,
                api_client_factory(options.kubernetes, unlimited_connections=True),
                namespaces=options.namespaces,
                failures=failures,
            )
            if options.kubernetes is not None
            else None
        )
        self.distributor = ConfigDistributor(self.store, all_kinds(), self.registry)
        self.xds = XdsServer(
            self.distributor.cache,
            self.distributor,
            served_types=self.distributor.type_urls,
        )
        self.webhook = (
            ValidationWebhook(
                host=options.host,
                port=options.webhook_port,
                run_dir=options.webhook_dir or Path("run") / "galley",
                failures=failures,
                validator=self.validator,
            )
            if options.webhook_port is not None
            else None
        )
        self.monitoring = MonitoringServer(
            options.host, options.monitoring_port, self.registry, lambda: self._grpc is not None
        )
        self.monitoring.add_get("/debug/history", self._history)
        self.monitoring.add_get("/debug/errors", self._errors)
        self._grpc: grpc.aio.Server | None = None
        self.grpc_port = options.grpc_port
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def address(self) -> str:
        return f"{self.options.host}:{self.grpc_port}"

    async def start(self) -> None:
        if self.directory is not None:
            for file, error in self.directory.load().items():
                log.error("%s refused at start-up: %s", file, error)
            self._tasks.append(asyncio.create_task(self.directory.run(), name="galley-directory"))
        if self.kubernetes is not None:
            self._tasks.append(asyncio.create_task(self.kubernetes.run(), name="galley-kubernetes"))
        self._grpc = create_server()
        self.xds.add_to(self._grpc)
        credentials = None if self.options.tls is None else self.options.tls.server_credentials()
        address = f"{self.options.host}:{self.options.grpc_port}"
        self.grpc_port = bind(self._grpc, address, credentials)
        await self._grpc.start()
        await self.monitoring.start()
        if self.webhook is not None:
            await self.webhook.start()
        log.info(
            "galley serving %d resources (version %d) on %s",
            len(self.store.snapshot.resources),
            self.store.snapshot.version,
            self.address,
        )

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []
        if self.webhook is not None:
            await self.webhook.stop()
        if self._grpc is not None:
            await self._grpc.stop(grace=1.0)
            self._grpc = None
        await self.monitoring.stop()

    async def _history(self, request: web.Request) -> web.Response:
        return web.json_response(
            [
                {
                    "version": change.version,
                    "at": change.at,
                    "origin": change.origin,
                    "added": ["/".join(key) for key in change.added],
                    "updated": ["/".join(key) for key in change.updated],
                    "removed": ["/".join(key) for key in change.removed],
                }
                for change in self.store.history()
            ]
        )

    async def _errors(self, request: web.Request) -> web.Response:
        errors = dict(self.directory.errors) if self.directory is not None else {}
        if self.kubernetes is not None:
            errors.update(
                (f"kubernetes:{'/'.join(k)}", m) for k, m in self.kubernetes.errors.items()
            )
        return web.json_response(errors)
