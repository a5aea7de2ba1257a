"""The gRPC transport of the xDS server: ADS and the per-type services, SotW and delta.

One coroutine per stream owns two tasks: a reader that applies requests to the stream's
protocol object, and a pusher that wakes on a request or a snapshot change, asks the protocol
what to send, and writes it with a send timeout (`send_deadline`: a stuck client loses its
stream instead of holding resources). At most `max_concurrent_pushes` streams build and write
responses at once (Istio's push throttle): a change that reaches thousands of streams would
otherwise hold thousands of encoded responses, and the transport's copies of them, in memory at
once while slow readers drain. Wake-ups that arrive while a stream waits for its turn merge
into one push of the latest snapshot. Responses are pre-encoded bytes (see `resource.py`), so
the response serializer is the identity; requests reach the stream as bytes (`Received`) and
are parsed only when they are more than a plain ACK (state of the world:
`SotwProtocol.plain_ack`), and the names they carry are found in their bytes
(`sotw.wire_names`, `delta.subscribed_names`). Protocol violations end the stream with a clear
gRPC status and a log line; other streams are unaffected. Requests larger than
`max_request_bytes` are refused by the stream itself (RESOURCE_EXHAUSTED naming the sizes); the
transport's own limit, set higher, only backs that up.

The handlers run on grpc.aio (`add_to`) or on `meshcore.h2_server` (`h2_methods`: pilot's
cleartext port), which gives them a context with the same `write`, `abort`, `peer` and
`auth_context`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import DecodeError

from meshcore import h2_server
from meshcore.xds import types
from meshcore.xds.cache import SnapshotCache, SnapshotWatch
from meshcore.xds.delta import DeltaProtocol, subscribed_names
from meshcore.xds.errors import InvalidNode
from meshcore.xds.protocol import ClientReply
from meshcore.xds.resource import Snapshot
from meshcore.xds.send_deadline import SendDeadlines
from meshcore.xds.sotw import SotwProtocol, wire_names
from meshcore.xds.status import StreamCallbacks, StreamError, StreamInfo

log = logging.getLogger(__name__)

# service name -> (type it is restricted to, SotW method, delta method)
_SERVICES: dict[str, tuple[str | None, str, str]] = {
    "envoy.service.discovery.v3.AggregatedDiscoveryService": (
        None,
        "StreamAggregatedResources",
        "DeltaAggregatedResources",
    ),
    "envoy.service.cluster.v3.ClusterDiscoveryService": (
        types.CLUSTER,
        "StreamClusters",
        "DeltaClusters",
    ),
    "envoy.service.endpoint.v3.EndpointDiscoveryService": (
        types.ENDPOINT,
        "StreamEndpoints",
        "DeltaEndpoints",
    ),
    "envoy.service.listener.v3.ListenerDiscoveryService": (
        types.LISTENER,
        "StreamListeners",
        "DeltaListeners",
    ),
    "envoy.service.route.v3.RouteDiscoveryService": (types.ROUTE, "StreamRoutes", "DeltaRoutes"),
    "envoy.service.secret.v3.SecretDiscoveryService": (
        types.SECRET,
        "StreamSecrets",
        "DeltaSecrets",
    ),
}

# How long a refused stream's status may take to go out; only a peer that reads nothing takes
# longer (its status waits behind unread responses), and it is then dropped without one.
_ABORT_TIMEOUT_S = 1.0

Protocol = SotwProtocol | DeltaProtocol
# The context is grpc.aio's `ServicerContext`, or `h2_server.CallContext` (the same methods).
StreamHandler = Callable[[AsyncIterator[Any], Any], Awaitable[None]]


def _identity(payload: bytes) -> bytes:
    return payload


class Received:
    """A request as it came, parsed when first asked for: most state-of-the-world requests are
    plain ACKs that the stream recognises from their bytes (`SotwProtocol.plain_ack`)."""

    __slots__ = ("_message", "_type", "payload")

    def __init__(self, payload: bytes, message_type: Any) -> None:
        self.payload = payload
        self._type = message_type
        self._message: Any = None

    @property
    def message(self) -> Any:
        if self._message is None:
            try:
                self._message = self._type.FromString(self.payload)
            except DecodeError as error:
                raise StreamError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"request is not a valid {self._type.DESCRIPTOR.name}: {error}",
                ) from None
        return self._message


@dataclass(frozen=True, slots=True)
class OversizedRequest:
    """Stands in for a request too large to parse, so the stream can refuse it by name."""

    size: int
    limit: int


def _bounded_receiver(
    message_type: Any, limit: int
) -> Callable[[bytes], Received | OversizedRequest]:
    def receive(payload: bytes) -> Received | OversizedRequest:
        if len(payload) > limit:
            return OversizedRequest(len(payload), limit)
        return Received(payload, message_type)

    return receive


def _peer_identities(context: grpc.aio.ServicerContext) -> tuple[str, ...] | None:
    """The SANs of the peer's verified client certificate, or None when it presented none."""
    auth = context.auth_context()
    if not auth.get("x509_pem_cert"):
        return None
    return tuple(name.decode() for name in auth.get("x509_subject_alternative_name", ()))


class XdsServer:
    """Serves snapshots from a `SnapshotCache` to xDS clients; see the module docstring."""

    def __init__(
        self,
        cache: SnapshotCache,
        callbacks: StreamCallbacks,
        *,
        served_types: frozenset[str] = frozenset(types.PUSH_ORDER),
        send_timeout: float = 10.0,
        max_request_bytes: int = 1024 * 1024,
        max_concurrent_pushes: int = 32,
    ) -> None:
        self.cache = cache
        self.streams: dict[int, StreamInfo] = {}
        self._callbacks = callbacks
        self._served_types = served_types
        self._deadlines = SendDeadlines(send_timeout)
        self._max_request_bytes = max_request_bytes
        self._push_slots = asyncio.Semaphore(max_concurrent_pushes)
        self._ids = itertools.count(1)

    def add_to(self, server: grpc.aio.Server) -> None:
        """Register ADS and every per-type discovery service on a grpc.aio server."""
        handlers = []
        for service, (fixed_type, sotw_method, delta_method) in _SERVICES.items():
            methods = {
                sotw_method: self._handler(discovery_pb2.DiscoveryRequest, False, fixed_type),
                delta_method: self._handler(discovery_pb2.DeltaDiscoveryRequest, True, fixed_type),
            }
            handlers.append(grpc.method_handlers_generic_handler(service, methods))
        server.add_generic_rpc_handlers(tuple(handlers))

    def h2_methods(self) -> dict[str, h2_server.Method]:
        """ADS and every per-type discovery service, by path, for `meshcore.h2_server`."""
        methods = {}
        for service, (fixed_type, sotw_method, delta_method) in _SERVICES.items():
            for method, request_type, delta in (
                (sotw_method, discovery_pb2.DiscoveryRequest, False),
                (delta_method, discovery_pb2.DeltaDiscoveryRequest, True),
            ):
                methods[f"/{service}/{method}"] = h2_server.Method(
                    _bounded_receiver(request_type, self._max_request_bytes),
                    self._stream_handler(delta, fixed_type),
                )
        return methods

    def _handler(
        self, request_type: Any, delta: bool, fixed_type: str | None
    ) -> grpc.RpcMethodHandler:
        return grpc.stream_stream_rpc_method_handler(
            self._stream_handler(delta, fixed_type),
            request_deserializer=_bounded_receiver(request_type, self._max_request_bytes),
            response_serializer=_identity,
        )

    def _stream_handler(self, delta: bool, fixed_type: str | None) -> StreamHandler:
        async def handle(requests: AsyncIterator[Any], context: Any) -> None:
            await self._serve(requests, context, delta, fixed_type)

        return handle

    async def _serve(
        self,
        requests: AsyncIterator[Any],
        context: grpc.aio.ServicerContext,
        delta: bool,
        fixed_type: str | None,
    ) -> None:
        info = StreamInfo(
            stream_id=next(self._ids),
            peer=context.peer(),
            delta=delta,
            peer_identities=_peer_identities(context),
        )
        protocol: Protocol = (DeltaProtocol if delta else SotwProtocol)(
            info, self._served_types, fixed_type
        )
        wake = asyncio.Event()
        watch: SnapshotWatch | None = None
        tasks: list[asyncio.Task[None]] = []
        opened = False
        try:
            iterator = aiter(requests)
            try:
                first = await anext(iterator)
            except StopAsyncIteration:
                return
            if isinstance(first, OversizedRequest):
                self._apply(protocol, first)
            self._accept_node(info, first.message.node)
            info.cache_key = self._callbacks.on_stream_open(info)
            opened = True
            self.streams[info.stream_id] = info
            watch = self.cache.watch(info.cache_key, wake.set)
            self._apply(protocol, first)
            wake.set()
            log.info("xDS stream %d opened by %s (%s)", info.stream_id, info.node_id, info.peer)
            reader = asyncio.create_task(self._read(iterator, protocol, wake))
            pusher = asyncio.create_task(self._push(context, protocol, watch, wake))
            tasks = [reader, pusher]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            # The client half-closed: it sends no more requests but is still subscribed, so
            # pushes go on until the call ends.
            await pusher
        except InvalidNode as error:
            refusal = StreamError(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            await self._abort(context, info, refusal)
        except StreamError as error:
            await self._abort(context, info, error)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if watch is not None:
                watch.close()
            if opened:
                del self.streams[info.stream_id]
                self._callbacks.on_stream_closed(info)
                log.info("xDS stream %d from %s closed", info.stream_id, info.node_id)

    @staticmethod
    def _accept_node(info: StreamInfo, node: Any) -> None:
        if not node.id:
            raise StreamError(
                grpc.StatusCode.INVALID_ARGUMENT, "the first request of a stream must carry node.id"
            )
        info.node = node
        info.node_id = node.id

    async def _abort(
        self, context: grpc.aio.ServicerContext, info: StreamInfo, error: StreamError
    ) -> None:
        log.warning(
            "xDS stream %d from %s (%s) rejected: %s: %s",
            info.stream_id,
            info.node_id or "unknown node",
            info.peer,
            error.code.name,
            error.message,
        )
        try:
            await asyncio.wait_for(context.abort(error.code, error.message), _ABORT_TIMEOUT_S)
        except TimeoutError:
            # The status queues behind the responses a stuck peer does not read, and would
            # wait for it forever: give up on the call instead (grpc then cancels it).
            raise asyncio.CancelledError from None

    async def _read(
        self, iterator: AsyncIterator[Any], protocol: Protocol, wake: asyncio.Event
    ) -> None:
        async for request in iterator:
            self._apply(protocol, request)
            # Not held while waiting for the next one: an ACK can repeat a thousand names, and
            # thousands of streams wait at once.
            del request
            if protocol.needs_evaluation():  # a plain ACK needs no pusher turn
                wake.set()

    def _apply(self, protocol: Protocol, request: Received | OversizedRequest) -> None:
        if isinstance(request, OversizedRequest):
            raise StreamError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"request of {request.size} bytes exceeds the limit of {request.limit} bytes",
            )
        if isinstance(protocol, SotwProtocol):
            reply = protocol.plain_ack(request.payload)
            if reply is None:
                message = request.message
                reply = protocol.on_request(message, wire_names(request.payload, message))
        else:
            message = request.message
            reply = protocol.on_request(message, subscribed_names(request.payload, message))
        if reply is not None:
            self._report(protocol.info, reply)

    def _report(self, info: StreamInfo, reply: ClientReply) -> None:
        if reply.error is None:
            self._callbacks.on_ack(info, reply.type_url, reply.version)
            return
        log.warning(
            "%s rejected %s (keeping version %r): %s",
            info.node_id,
            types.short_name(reply.type_url),
            reply.version,
            reply.error,
        )
        self._callbacks.on_nack(info, reply.type_url, reply.error)

    async def _push(
        self,
        context: grpc.aio.ServicerContext,
        protocol: Protocol,
        watch: SnapshotWatch,
        wake: asyncio.Event,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        while True:
            await wake.wait()
            async with self._push_slots:
                wake.clear()
                snapshot = watch.snapshot
                if snapshot is not None:
                    await self._send(context, protocol, snapshot, task)

    async def _send(
        self,
        context: grpc.aio.ServicerContext,
        protocol: Protocol,
        snapshot: Snapshot,
        task: asyncio.Task[None],
    ) -> None:
        began = time.perf_counter()
        # Last first, so that each response is let go once written (grpc keeps a copy), and
        # joined only when its turn comes: a cold connect's four responses are 1.5 MB a
        # stream at 1000 services.
        pending = protocol.responses(snapshot)[::-1]
        while pending:
            outgoing = pending.pop()
            type_url, count = outgoing.type_url, outgoing.resource_count
            stream_id = protocol.info.stream_id
            self._deadlines.writing(stream_id, task)
            try:
                await context.write(outgoing.payload)
            except asyncio.CancelledError:
                if not self._deadlines.expired(stream_id):
                    raise
                task.uncancel()
                raise StreamError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"sending {types.short_name(type_url)} timed out after "
                    f"{self._deadlines.timeout}s",
                ) from None
            finally:
                self._deadlines.written(stream_id)
            del outgoing
            self._callbacks.on_response_sent(
                protocol.info, type_url, count, time.perf_counter() - began
            )
