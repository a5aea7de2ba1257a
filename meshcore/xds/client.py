"""A generic ADS client: subscribe to whole types, keep their resources, ACK, NACK, resync.

Services that consume xDS rather than serve it (pilot and mixer reading galley, load
generators, tests) use this instead of hand-written streams. It subscribes to each type as a
wildcard, decodes every resource with a caller-supplied function (a decoding error becomes a
NACK naming the problem, and the last good state stays), ACKs everything else, and reports the
complete current set of a type after each accepted response. After a disconnect it reconnects
with backoff; over delta it sends `initial_resource_versions`, so only what changed meanwhile is
resent. `run()` is the client's one task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2

log = logging.getLogger(__name__)

T = TypeVar("T")
Decoder = Callable[[str, any_pb2.Any], tuple[str, T]]
OnUpdate = Callable[[str, Mapping[str, T]], None]

_INVALID_ARGUMENT = 3
WILDCARD = "*"  # explicit: an empty list is a wildcard only for LDS and CDS
MAX_RESPONSE_BYTES = 256 * 1024 * 1024


@dataclass
class _TypeState(Generic[T]):
    version: str = ""
    resources: dict[str, T] = field(default_factory=dict)
    resource_versions: dict[str, str] = field(default_factory=dict)  # delta only
    # State of the world resends every resource each time: decode only bytes not seen before.
    decoded: dict[bytes, tuple[str, T]] = field(default_factory=dict)
    received: bool = False


class XdsClient(Generic[T]):
    def __init__(
        self,
        target: str,
        node: Any,
        type_urls: Sequence[str],
        decode: Decoder[T],
        on_update: OnUpdate[T],
        *,
        delta: bool = False,
        credentials: grpc.ChannelCredentials | None = None,
        server_name: str = "",
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
    ) -> None:
        self.target = target
        self._node = node
        self._type_urls = tuple(type_urls)
        self._decode = decode
        self._on_update = on_update
        self._delta = delta
        self._credentials = credentials
        self._server_name = server_name  # the name the server's certificate is verified for
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._state: dict[str, _TypeState[T]] = {t: _TypeState() for t in self._type_urls}
        self.synced = asyncio.Event()  # every type has had one accepted response
        self.connected = False
        self.last_error = ""

    def resources(self, type_url: str) -> Mapping[str, T]:
        return dict(self._state[type_url].resources)

    def version(self, type_url: str) -> str:
        return self._state[type_url].version

    async def run(self) -> None:
        delay = self._backoff_initial
        while True:
            try:
                await self._session()
            except grpc.aio.AioRpcError as error:
                self.last_error = f"{error.code().name}: {error.details()}"
                log.warning("xDS stream to %s ended: %s", self.target, self.last_error)
            finally:
                self.connected = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff_max)
            if self.synced.is_set():
                delay = self._backoff_initial

    async def _session(self) -> None:
        requests: asyncio.Queue[Any] = asyncio.Queue()
        # A state-of-the-world response carries a whole type: grpc's default 4 MB limit would
        # fail a large configuration (3,800 VirtualServices) outright.
        options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", MAX_RESPONSE_BYTES)]
        if self._server_name:
            options.append(("grpc.ssl_target_name_override", self._server_name))
        channel = (
            grpc.aio.secure_channel(self.target, self._credentials, options=options)
            if self._credentials is not None
            else grpc.aio.insecure_channel(self.target, options=options)
        )
        async with channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            method = (
                stub.DeltaAggregatedResources if self._delta else stub.StreamAggregatedResources
            )
            call = method(_drain(requests))
            try:
                for index, type_url in enumerate(self._type_urls):
                    requests.put_nowait(self._initial_request(type_url, with_node=index == 0))
                async for response in call:
                    self.connected = True
                    requests.put_nowait(self._handle(response))
            finally:
                # End the request iterator and the call, so grpc's own task that feeds requests
                # finishes too, even when this session is cancelled.
                requests.put_nowait(None)
                call.cancel()

    def _initial_request(self, type_url: str, *, with_node: bool) -> Any:
        state = self._state[type_url]
        node = self._node if with_node else None
        if self._delta:
            return discovery_pb2.DeltaDiscoveryRequest(
                node=node, type_url=type_url, initial_resource_versions=state.resource_versions
            )
        return discovery_pb2.DiscoveryRequest(
            node=node, type_url=type_url, version_info=state.version, resource_names=[WILDCARD]
        )

    def _handle(self, response: Any) -> Any:
        type_url = response.type_url
        state = self._state.get(type_url)
        if state is None:
            return self._reply(type_url, response.nonce, "", f"not subscribed to {type_url}")
        try:
            if self._delta:
                named = _named(response)
                decoded = {name: self._decode(type_url, r.resource)[1] for name, r in named}
            else:
                known, fresh = state.decoded, {}
                for packed in response.resources:
                    raw = packed.value
                    fresh[raw] = known.get(raw) or self._decode(type_url, packed)
                decoded = dict(fresh.values())
        except Exception as error:  # any decoding failure is the server's config problem
            message = f"{type_url}: {error}"
            log.warning("rejecting %s from %s: %s", type_url, self.target, message)
            return self._reply(type_url, response.nonce, state.version, message)
        if self._delta:
            for name, resource in named:
                state.resource_versions[name] = resource.version
            for name in response.removed_resources:
                state.resources.pop(name, None)
                state.resource_versions.pop(name, None)
            state.resources.update(decoded)
            state.version = response.system_version_info
        else:
            state.decoded = fresh
            state.resources = decoded
            state.version = response.version_info
        state.received = True
        if all(s.received for s in self._state.values()):
            self.synced.set()
        self._on_update(type_url, dict(state.resources))
        return self._reply(type_url, response.nonce, state.version, None)

    def _reply(self, type_url: str, nonce: str, version: str, error: str | None) -> Any:
        detail = None if error is None else status_pb2.Status(code=_INVALID_ARGUMENT, message=error)
        if self._delta:
            return discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url, response_nonce=nonce, error_detail=detail
            )
        return discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            response_nonce=nonce,
            version_info=version,
            error_detail=detail,
            resource_names=[WILDCARD],  # every state-of-the-world request repeats the names
        )


def _named(response: Any) -> list[tuple[str, Any]]:
    return [(resource.name, resource) for resource in response.resources]


async def _drain(queue: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    while (request := await queue.get()) is not None:
        yield request
