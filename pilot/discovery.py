"""Pilot's side of the xDS server: which proxies are connected, and pushing to them.

`DiscoveryService` implements the core's `StreamCallbacks`: a new stream's node is parsed into
a `Proxy` (a malformed node is refused with the reason), and the proxy's snapshot is published
in the cache under its node id. On each debounced change, `push` installs the new push context
and republishes every connected proxy's snapshot (full, or only the endpoints that moved); the
streams take it from there. It also feeds pilot's metrics. All of it runs on the event loop.

A proxy that asks to be auto-registered in a WorkloadGroup (`pilot.registry.autoregister`) is
reported to pilot's `AutoRegistration` when its first stream opens and when its last one closes.

On the mutual-TLS port a stream is only accepted if one SPIFFE identity of the peer's client
certificate matches the proxy's claims, as Istio checks them: the namespace of its node id and,
when the node names one, its SERVICE_ACCOUNT. Anything else is refused with PERMISSION_DENIED.
Plaintext streams carry no certificate and are not checked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import grpc

from meshcore.identity import IdentityError, SpiffeId
from meshcore.xds import types
from meshcore.xds.cache import SnapshotCache
from meshcore.xds.status import StreamError, StreamInfo
from pilot.debounce import PushRequest
from pilot.metrics import PilotMetrics
from pilot.model import Proxy
from pilot.push_context import PushContext
from pilot.registry import autoregister
from pilot.snapshots import SnapshotGenerator

log = logging.getLogger(__name__)

_PROXIES_PER_TURN = 50


@dataclass(slots=True)
class _Connection:
    proxy: Proxy
    registration: autoregister.Registration | None
    streams: set[int] = field(default_factory=set)
    push_started: float | None = None  # monotonic time of the change being delivered


class DiscoveryService:
    def __init__(
        self,
        context: PushContext,
        metrics: PilotMetrics,
        registrations: autoregister.AutoRegistration | None = None,
    ) -> None:
        self.cache = SnapshotCache()
        self.context = context
        self._metrics = metrics
        self._registrations = registrations
        self._generator = SnapshotGenerator()
        self._connections: dict[str, _Connection] = {}

    def proxies(self) -> dict[str, Proxy]:
        return {key: c.proxy for key, c in self._connections.items()}

    # StreamCallbacks

    def on_stream_open(self, stream: StreamInfo) -> str:
        key = stream.node_id
        connection = self._connections.get(key)
        proxy = Proxy.from_node(stream.node) if connection is None else connection.proxy
        if stream.peer_identities is not None:
            authorize(proxy, stream.peer_identities)
        if connection is None:
            registration = autoregister.registration(proxy, stream.node)
            connection = self._connections[key] = _Connection(proxy, registration)
            self.cache.set(key, self._generator.full(self.context, proxy))
            if registration is not None and self._registrations is not None:
                self._registrations.connect(key, registration)
        connection.streams.add(stream.stream_id)
        self._metrics.connected.inc()  # counted per stream, not by walking every connection
        return key

    def on_stream_closed(self, stream: StreamInfo) -> None:
        connection = self._connections.get(stream.cache_key)
        if connection is not None and stream.stream_id in connection.streams:
            connection.streams.discard(stream.stream_id)
            self._metrics.connected.dec()
            if not connection.streams:
                del self._connections[stream.cache_key]
                self.cache.delete(stream.cache_key)
                if connection.registration is not None and self._registrations is not None:
                    self._registrations.disconnect(stream.cache_key, connection.registration)

    def on_response_sent(
        self, stream: StreamInfo, type_url: str, resource_count: int, seconds: float
    ) -> None:
        self._metrics.response_sent(type_url, seconds)
        connection = self._connections.get(stream.cache_key)
        if connection is not None and connection.push_started is not None:
            self._metrics.convergence.observe(time.monotonic() - connection.push_started)
            connection.push_started = None

    def on_ack(self, stream: StreamInfo, type_url: str, version: str) -> None:
        pass

    def on_nack(self, stream: StreamInfo, type_url: str, error: str) -> None:
        self._metrics.rejects.labels(types.short_name(type_url)).inc()

    # Pushes

    async def push(self, request: PushRequest, context: PushContext) -> None:
        """Install `context` and republish the snapshot of every connected proxy.

        A proxy whose config did not change keeps its snapshot, and its streams are not woken.
        Every few proxies the event loop gets a turn, so that streams start sending what is
        ready while the rest is generated.
        """
        self.context = context
        self._metrics.full_pushes.labels("full" if request.full else "endpoint").inc()
        for index, (key, connection) in enumerate(list(self._connections.items())):
            if index % _PROXIES_PER_TURN == _PROXIES_PER_TURN - 1:
                await asyncio.sleep(0)
            if self._connections.get(key) is not connection:
                continue  # it disconnected meanwhile
            previous = self.cache.get(key)
            proxy = connection.proxy
            if request.full or previous is None or proxy.ip in request.workload_addresses:
                snapshot = self._generator.full(context, proxy, previous)
            else:
                snapshot = self._generator.endpoints_only(
                    previous, context, proxy, request.endpoints
                )
            if snapshot is not previous:
                connection.push_started = request.started
                self.cache.set(key, snapshot)
        log.debug(
            "pushed %s (%s) to %d proxies",
            "full" if request.full else f"eds {sorted(request.endpoints)}",
            request.reason,
            len(self._connections),
        )


def authorize(proxy: Proxy, identities: tuple[str, ...]) -> None:
    """Accept a peer with an identity in the proxy's namespace and service account.

    Raises a PERMISSION_DENIED `StreamError` naming both sides when none matches.
    """
    for name in identities:
        try:
            identity = SpiffeId.parse(name)
        except IdentityError:
            continue  # a DNS name or a URI of another scheme
        if identity.namespace != proxy.namespace:
            continue
        if proxy.service_account and identity.service_account != proxy.service_account:
            continue
        return
    claimed = f"namespace {proxy.namespace!r}, service account {proxy.service_account!r}"
    raise StreamError(
        grpc.StatusCode.PERMISSION_DENIED,
        f"the client certificate's identities {list(identities)} do not match node "
        f"{proxy.id!r} ({claimed})",
    )
