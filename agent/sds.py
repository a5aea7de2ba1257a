"""The agent's SDS server: hands the workload certificate and the mesh roots to its Envoy.

Istio's pilot-agent keeps the workload's private key out of the control plane and out of files:
Envoy fetches it over SDS from the agent, on a Unix socket only the workload can reach, and a
rotated certificate reaches Envoy as a push on that stream, with no restart and no dropped
connections. The secret names are Istio's (`default`: chain and key; `ROOTCA`: the roots a
peer is verified against), which is what pilot's ISTIO_MUTUAL translation refers to through the
bootstrap's `sds-grpc` cluster.

The protocol (state of the world and delta, ACK/NACK, nonces) is the generic xDS server core
restricted to secrets; this module only turns a `WorkloadCertificate` into a snapshot. Where
the certificate comes from (a CA, files) is the caller's business: it calls `update()`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from meshcore.grpc_server import bind, create_server
from meshcore.lifecycle import Service
from meshcore.xds import types
from meshcore.xds.cache import SnapshotCache
from meshcore.xds.resource import Resource, Snapshot
from meshcore.xds.server import XdsServer
from meshcore.xds.status import StreamInfo

log = logging.getLogger(__name__)

WORKLOAD_SECRET = "default"
ROOT_SECRET = "ROOTCA"
# One agent serves one Envoy, so every stream watches the same snapshot.
_CACHE_KEY = "workload"


@dataclass(frozen=True)
class WorkloadCertificate:
    """PEM bytes: the workload's chain (leaf first), its private key, and the trusted roots."""

    chain_pem: bytes
    key_pem: bytes
    roots_pem: bytes


def secrets_for(cert: WorkloadCertificate) -> list[secret_pb2.Secret]:
    """The `default` and `ROOTCA` secrets, with the PEM bytes inline."""
    workload = secret_pb2.Secret(
        name=WORKLOAD_SECRET,
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=cert.chain_pem),
            private_key=base_pb2.DataSource(inline_bytes=cert.key_pem),
        ),
    )
    roots = secret_pb2.Secret(
        name=ROOT_SECRET,
        validation_context=common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(inline_bytes=cert.roots_pem)
        ),
    )
    return [workload, roots]


class _Callbacks:
    """Every stream gets the one workload snapshot; rejections are logged."""

    def on_stream_open(self, stream: StreamInfo) -> str:
        return _CACHE_KEY

    def on_stream_closed(self, stream: StreamInfo) -> None:
        pass

    def on_response_sent(
        self, stream: StreamInfo, type_url: str, resource_count: int, seconds: float
    ) -> None:
        pass

    def on_ack(self, stream: StreamInfo, type_url: str, version: str) -> None:
        log.debug("%s accepted secrets version %s", stream.node_id, version)

    def on_nack(self, stream: StreamInfo, type_url: str, error: str) -> None:
        log.warning("%s rejected the workload secrets: %s", stream.node_id, error)


class SdsServer(Service):
    """SDS on `unix:<socket_path>`; `update()` sets or rotates the certificate served.

    Until the first `update()` a subscription gets no answer, so Envoy keeps listeners that
    need the secrets warming instead of serving without them.
    """

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.cache = SnapshotCache()
        self.xds = XdsServer(self.cache, _Callbacks(), served_types=frozenset({types.SECRET}))
        self._server: grpc.aio.Server | None = None

    def update(self, cert: WorkloadCertificate) -> None:
        """Serve `cert` from now on; open streams get it pushed."""
        resources = [Resource.from_message(s.name, s) for s in secrets_for(cert)]
        self.cache.set(_CACHE_KEY, Snapshot.of({types.SECRET: resources}))

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("SdsServer already started")
        # grpc replaces a socket file an earlier agent left, and removes its own on stop.
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        server = create_server()
        self.xds.add_to(server)
        bind(server, f"unix:{self.socket_path}")
        await server.start()
        self._server = server
        log.info("SDS serving on %s", self.socket_path)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        await server.stop(grace=1.0)
