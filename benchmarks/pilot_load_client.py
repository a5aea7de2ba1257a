"""The load generator's side of the pilot load benchmark: many Envoy-like ADS streams at once.

Why: pilot's scaling targets are about thousands of sidecars, and running thousands of Envoys
is out of reach (about 67 MB each). Like Istio's `pilot-load`, one process here opens a stream
per simulated sidecar, with the node id and metadata an agent would send, and behaves as Envoy
does on the wire: ADS, clusters first, then the endpoints of the EDS clusters they name, then
listeners, then the route configurations those name; every response ACKed, the names repeated in
every state-of-the-world request, EDS and RDS subscriptions following CDS and LDS changes. Half
the streams (or whichever share the orchestrator asks for) speak delta xDS instead.

What it records, per stream: when it has its full initial config, when it has ACKed the
response that completes each change the orchestrator announces (`Expectation`), every response
with its size, and every response it did not need (`Redundant`): one that changes nothing it
holds, other than the first of a type, EDS resent once after a CDS change (cluster warming),
or a delta removal that announces a subscribed name pilot does not have. One stream may be told
to stall (stop reading) to show that a stuck proxy does not hold up the others.

Cost: the client must be cheaper than the server it measures, on the same two cores. Resources
are decoded once per distinct content (`Library`), a response's leading resources already seen
in another's are recognised by comparing bytes instead of parsed (`pilot_load_runs`), holdings
are shared between streams that hold equal content, and requests repeat pre-encoded name lists,
so a stream's work per response is a comparison, a small parse, a few lookups and a write.
Each stream is one connection speaking HTTP/2 itself (`h2_stream`): grpc.aio's client path
cost more than all of that together.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
import traceback
import weakref
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from benchmarks.control import commands
from benchmarks.h2_stream import CallEnded, GrpcCall, open_call, request_headers
from benchmarks.pilot_load_config import Mesh, Workload, node_id, node_metadata
from benchmarks.pilot_load_runs import RunIndex, body_start
from meshcore.h2_server import DEFAULT_WINDOW, MAX_WINDOW
from meshcore.xds import types

SOTW_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
DELTA_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
_HCM_TYPE = "type.googleapis.com/" + (
    http_connection_manager_pb2.HttpConnectionManager.DESCRIPTOR.full_name
)
_MESSAGES: dict[str, Any] = {
    types.CLUSTER: cluster_pb2.Cluster,
    types.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    types.LISTENER: listener_pb2.Listener,
    types.ROUTE: route_pb2.RouteConfiguration,
}
# A stalled stream lets pilot write little ahead of what it read: HTTP/2's default window.
STALLED_WINDOW = DEFAULT_WINDOW
_header_block = functools.cache(request_headers)  # per (method, target): one per process
REDUNDANT_EXAMPLES = 10
PRUNE_BYTES = 64 * 1024 * 1024  # decoded resources taken in before unheld ones are dropped
LARGE_RESOURCE = 16 * 1024  # from this size a resource is found by comparison, not hashing

log = logging.getLogger(__name__)


# What the orchestrator and the client processes tell each other (all picklable).


@dataclass(frozen=True, slots=True)
class Check:
    """After a change, resource `name` of `type_url` is held (or not), and its encoding
    contains `marker` (or not); an empty marker checks presence alone."""

    type_url: str
    name: str
    present: bool = True
    marker: bytes = b""
    marker_present: bool = True


@dataclass(frozen=True, slots=True)
class Expectation:
    change: int
    kind: str
    checks: tuple[Check, ...]
    deadline: float  # monotonic: report whoever has not converged by then


@dataclass(frozen=True, slots=True)
class Ready:
    role: str


@dataclass(frozen=True, slots=True)
class Connected:
    role: str
    complete_at: dict[str, float]  # node id -> monotonic time it held its full config
    missing: list[str]  # what the streams that did not get there before the deadline hold


@dataclass(frozen=True, slots=True)
class Converged:
    role: str
    change: int
    acked_at: dict[str, float]  # node id -> monotonic time of the ACK completing the change
    missing: list[str]


@dataclass(frozen=True, slots=True)
class Redundant:
    node: str
    type_url: str
    change: int
    reason: str


@dataclass(frozen=True, slots=True)
class Traffic:
    responses: int = 0
    resources: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class Report:
    role: str
    traffic: dict[tuple[int, str], Traffic]  # (change, type) -> received
    warming: dict[int, int]  # change -> EDS responses allowed as post-CDS warming resends
    redundant_count: int
    redundant: list[Redundant]  # the first few
    errors: list[str]


@dataclass(frozen=True, slots=True)
class Versions:
    """Per node: type ("cds", ...) -> the version of the last response it ACKed."""

    role: str
    nodes: dict[str, dict[str, str]]


@dataclass(frozen=True, slots=True)
class Holdings:
    """Per node asked about: type -> resource name -> version of the resource it holds."""

    role: str
    nodes: dict[str, dict[str, dict[str, str]]]


@dataclass(frozen=True, slots=True)
class Failed:
    role: str
    error: str


# Decoded resources and holdings, shared between the streams of one process.


class Info:
    """One distinct resource: its name, pilot-style version, and what Envoy would follow."""

    __slots__ = ("__weakref__", "_marked", "follows", "name", "value", "version")

    def __init__(self, name: str, version: str, value: bytes, follows: tuple[str, ...]) -> None:
        self.name = name
        self.version = version
        self.value = value  # the serialized resource (the Any's value)
        self.follows = follows  # EDS names of a cluster, RDS names of a listener
        self._marked: dict[bytes, bool] = {}

    def contains(self, marker: bytes) -> bool:
        """Whether the encoding contains `marker`, searched once per resource and marker:
        thousands of streams hold the same resource (a 500 KB route configuration, say) and
        each checks it after every response."""
        found = self._marked.get(marker)
        if found is None:
            found = self._marked[marker] = marker in self.value
        return found


class Holding:
    """What a stream holds of one type: immutable, shared by every stream holding the same."""

    __slots__ = ("__weakref__", "_follows", "by_name")

    def __init__(self, by_name: dict[str, Info]) -> None:
        self.by_name = by_name
        self._follows: tuple[str, ...] | None = None

    @property
    def follows(self) -> tuple[str, ...]:
        """The EDS (or RDS) names this CDS (or LDS) holding subscribes to, sorted."""
        if self._follows is None:
            self._follows = tuple(
                sorted({name for info in self.by_name.values() for name in info.follows})
            )
        return self._follows


EMPTY = Holding({})


def _fingerprint(value: bytes) -> tuple[int, bytes]:
    return len(value), value[:64]


class Library:
    """Decodes each distinct resource once and interns holdings, for all streams of a process."""

    def __init__(self) -> None:
        # Per type, the encoded resource -> its Info; plain dictionaries, since a lookup per
        # resource of every response is the client's hottest path (`prune` forgets).
        self._infos: dict[str, dict[bytes, Info]] = {t: {} for t in _MESSAGES}
        # Large resources (a route configuration of 500 KB) by length and first bytes -> the
        # stored encodings: comparing bytes is several times cheaper than hashing them anew.
        self._large: dict[tuple[int, bytes], list[bytes]] = {}
        self._taken_in = 0  # bytes of resources decoded since the last prune
        self._replaced: weakref.WeakValueDictionary[tuple[Info, ...], Holding] = (
            weakref.WeakValueDictionary()
        )
        self._merged: dict[tuple[Holding, tuple[Info, ...], tuple[str, ...]], Holding] = {}
        self._requests: dict[tuple[str, ...], bytes] = {}  # a name list, encoded
        # Leading runs of resources of earlier responses, to skip parsing them again.
        self._sotw_runs: RunIndex[Info] = RunIndex()
        self._delta_runs: RunIndex[Info] = RunIndex()

    def new_change(self, held: Iterable[Holding]) -> None:
        """Forget merge results (they keep their inputs alive) once a change is over, and
        now and then the resources no stream holds any more (`held`: every holding)."""
        self._merged.clear()
        if self._taken_in < PRUNE_BYTES:
            return
        self._taken_in = 0
        live = {
            id(info)
            for holding in {id(h): h for h in held}.values()
            for info in holding.by_name.values()
        }
        for type_url, infos in self._infos.items():
            self._infos[type_url] = {v: i for v, i in infos.items() if id(i) in live}
        self._large.clear()
        self._sotw_runs.clear()
        self._delta_runs.clear()
        for infos in self._infos.values():
            for value in infos:
                if len(value) >= LARGE_RESOURCE:
                    self._large.setdefault(_fingerprint(value), []).append(value)

    def response(self, payload: bytes, delta: bool) -> tuple[Any, tuple[Info, ...]]:
        """The response, parsed except for a leading run of resources seen before, and the
        Info of each of its resources in order (the run's first)."""
        message_type = (
            discovery_pb2.DeltaDiscoveryResponse if delta else discovery_pb2.DiscoveryResponse
        )
        runs = self._delta_runs if delta else self._sotw_runs
        start = body_start(payload)
        run = None if start is None else runs.match(payload, start)
        if start is None or run is None:
            response = message_type.FromString(payload)
            infos = self._resource_infos(response, delta)
            if start is not None:
                runs.learn(payload, start, infos)
            return response, infos
        response = message_type.FromString(payload[:start])
        response.MergeFromString(payload[start + len(run.encoded) :])
        return response, run.decoded + self._resource_infos(response, delta)

    def _resource_infos(self, response: Any, delta: bool) -> tuple[Info, ...]:
        resources = response.resources
        values = [r.resource.value for r in resources] if delta else [r.value for r in resources]
        return self.infos(response.type_url, values)

    def infos(self, type_url: str, values: list[bytes]) -> tuple[Info, ...]:
        """The Info of each encoded resource, decoding only those not seen before."""
        known = self._infos[type_url]
        if values and sum(map(len, values)) >= LARGE_RESOURCE * len(values):
            found = [self._large_info(known, value) for value in values]
        else:
            found = list(map(known.get, values))  # hashing and lookups without a Python loop
        for index, info in enumerate(found):
            if info is None:
                value = values[index]
                info = known.get(value)
                if info is None:
                    info = self._decode(type_url, value)
                    self._taken_in += len(value)
                    if len(value) >= LARGE_RESOURCE:
                        self._large.setdefault(_fingerprint(value), []).append(value)
                known[value] = found[index] = info
        return tuple(found)  # type: ignore[arg-type]  # no None left

    def _large_info(self, known: dict[bytes, Info], value: bytes) -> Info | None:
        for stored in self._large.get(_fingerprint(value), ()):
            if stored == value:
                return known.get(stored)  # the stored key's hash is computed already
        return None

    @staticmethod
    def _decode(type_url: str, value: bytes) -> Info:
        message = _MESSAGES[type_url].FromString(value)
        follows: tuple[str, ...] = ()
        if type_url == types.CLUSTER:
            name = message.name
            if message.type == cluster_pb2.Cluster.EDS:
                follows = (message.eds_cluster_config.service_name or name,)
        elif type_url == types.LISTENER:
            name = message.name
            follows = tuple(sorted(_route_names(message)))
        elif type_url == types.ENDPOINT:
            name = message.cluster_name
        else:
            name = message.name
        packed = any_pb2.Any(type_url=type_url, value=value).SerializeToString(deterministic=True)
        version = hashlib.blake2b(packed, digest_size=8).hexdigest()  # as pilot versions it
        return Info(name, version, value, follows)

    def replaced(self, infos: tuple[Info, ...]) -> Holding:
        """The holding of a full-state response."""
        found = self._replaced.get(infos)
        if found is None:
            found = Holding({info.name: info for info in infos})
            self._replaced[infos] = found
        return found

    def merged(self, old: Holding, infos: tuple[Info, ...], removed: tuple[str, ...]) -> Holding:
        """`old` with `infos` added or replaced and `removed` dropped; `old` itself if that
        changes nothing."""
        key = (old, infos, removed)
        found = self._merged.get(key)
        if found is None:
            held = old.by_name
            if all(held.get(i.name) is i for i in infos) and not any(n in held for n in removed):
                found = old
            else:
                by_name = dict(held)
                for name in removed:
                    by_name.pop(name, None)
                for info in infos:
                    by_name[info.name] = info
                found = Holding(by_name)
            self._merged[key] = found
        return found

    def restricted(self, old: Holding, names: Iterable[str]) -> Holding:
        """`old` without the resources no longer subscribed (Envoy drops them)."""
        wanted = set(names)
        gone = tuple(sorted(n for n in old.by_name if n not in wanted))
        return self.merged(old, (), gone) if gone else old

    def sotw_names(self, names: tuple[str, ...]) -> bytes:
        """A DiscoveryRequest's name list, encoded once per distinct list."""
        found = self._requests.get(names)
        if found is None:
            found = discovery_pb2.DiscoveryRequest(resource_names=names).SerializeToString()
            self._requests[names] = found
        return found


def _route_names(listener: listener_pb2.Listener) -> set[str]:
    chains = [*listener.filter_chains]
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    found = set()
    for chain in chains:
        for network_filter in chain.filters:
            if network_filter.typed_config.type_url != _HCM_TYPE:
                continue
            manager = http_connection_manager_pb2.HttpConnectionManager.FromString(
                network_filter.typed_config.value
            )
            if manager.HasField("rds"):
                found.add(manager.rds.route_config_name)
    return found


# One simulated sidecar.


@dataclass
class _TypeState:
    holding: Holding = EMPTY
    version: str = ""
    nonce: str = ""
    requested: bool = False
    responded: bool = False
    names: tuple[str, ...] = ()  # subscribed names (EDS, RDS)
    announced: set[str] = field(default_factory=set)  # delta: subscribed names said absent


class ProxyStream:
    """One ADS stream impersonating one sidecar; see the module docstring."""

    def __init__(
        self, client: LoadClient, workload: Workload, delta: bool, *, stalls: bool = False
    ) -> None:
        self.client = client
        self.delta = delta
        self.stalls = stalls
        self.node_id = node_id(workload)
        node = base_pb2.Node(id=self.node_id, cluster=f"{workload.app}.{workload.namespace}")
        node.user_agent_name = "envoy"
        node.metadata.update(node_metadata(workload))
        self._node = node
        self._state = {
            t: _TypeState() for t in (types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE)
        }
        self._call: GrpcCall | None = None
        self._warming = False  # the next EDS response may repeat content (after CDS)
        self.expectation: Expectation | None = None
        self.complete_at: float | None = None
        self.status = ""  # how the stream ended, if it did

    # Lifecycle

    async def run(self, target: str) -> None:
        """Connect and converse until the call ends; raises `CallEnded` unless it ends OK."""
        host, port = target.rsplit(":", 1)
        method = DELTA_METHOD if self.delta else SOTW_METHOD
        self._call = await open_call(
            host,
            int(port),
            _header_block(method, target),
            self._handle,
            window=STALLED_WINDOW if self.stalls else MAX_WINDOW,
        )
        try:
            self._request(types.CLUSTER, first=True)
            await self._call.ended
            self.status = "ended by pilot with status OK"
        except CallEnded as error:
            self.status = str(error)
            raise
        finally:
            self._call.close()

    def _send(self, request: bytes) -> None:
        assert self._call is not None, "requests are sent once the call is open"
        self._call.send(request)

    def stall(self) -> None:
        """Read nothing more from now on, until the load generator stops."""
        if self._call is not None:
            self._call.pause()

    # Responses

    def _handle(self, payload: bytes) -> None:
        client = self.client
        library = client.library
        response, infos = library.response(payload, self.delta)
        type_url = response.type_url
        state = self._state[type_url]
        if self.delta:
            # The resources parsed here (those after a known run) carry pilot's versions.
            versions = [r.version for r in response.resources]
            decoded = [i.version for i in infos[len(infos) - len(versions) :]]
            if versions != decoded:
                client.error(
                    f"{self.node_id}: {types.short_name(type_url)} versions "
                    f"{versions} for content {decoded}"
                )
            removed = tuple(response.removed_resources)
            holding = library.merged(state.holding, infos, removed)
            version = response.system_version_info
        else:
            removed = ()
            if type_url in types.FULL_STATE_TYPES:
                holding = library.replaced(infos)
            else:
                holding = library.merged(state.holding, infos, ())
            version = response.version_info
        client.count(type_url, len(infos), len(payload))
        self._judge(type_url, state, holding, removed)
        state.holding, state.version, state.nonce = holding, version, response.nonce
        state.responded = True
        self._warming = type_url == types.CLUSTER
        self._ack(type_url)
        self._follow(type_url)
        self._progress()

    def _judge(
        self, type_url: str, state: _TypeState, holding: Holding, removed: tuple[str, ...]
    ) -> None:
        """Record a response this proxy did not need (see the module docstring)."""
        if not state.responded or holding is not state.holding:
            return
        if type_url == types.ENDPOINT and self._warming:
            self.client.warmed()
            return
        announced = {n for n in removed if n in state.names and n not in state.announced}
        if announced:
            state.announced.update(announced)
            return
        self.client.redundant(self.node_id, type_url, "it changes nothing held")

    def _ack(self, type_url: str) -> None:
        state = self._state[type_url]
        if self.delta:
            request = discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url, response_nonce=state.nonce
            ).SerializeToString()
        else:
            request = self._sotw(type_url, state)
        self._send(request)

    def _sotw(self, type_url: str, state: _TypeState, *, first: bool = False) -> bytes:
        """A state-of-the-world request: version and nonce of the last response, and (for
        EDS and RDS) every subscribed name, as Envoy repeats them; its fields in number order,
        as Envoy writes them."""
        head: bytes = discovery_pb2.DiscoveryRequest(
            version_info=state.version, node=self._node if first else None
        ).SerializeToString()
        tail: bytes = discovery_pb2.DiscoveryRequest(
            type_url=type_url, response_nonce=state.nonce
        ).SerializeToString()
        return head + self.client.library.sotw_names(state.names) + tail

    def _request(self, type_url: str, *, first: bool = False) -> None:
        """The first request for a type (clusters and listeners: a wildcard)."""
        state = self._state[type_url]
        state.requested = True
        if self.delta:
            request = discovery_pb2.DeltaDiscoveryRequest(
                node=self._node if first else None,
                type_url=type_url,
                resource_names_subscribe=state.names,
            ).SerializeToString()
        else:
            request = self._sotw(type_url, state, first=first)
        self._send(request)

    def _follow(self, type_url: str) -> None:
        """Subscribe EDS to the clusters' EDS names and RDS to the listeners' route names;
        start listeners once the first clusters have their endpoints (as Envoy initialises)."""
        if type_url == types.CLUSTER:
            self._resubscribe(types.ENDPOINT, self._state[types.CLUSTER].holding.follows)
        elif type_url == types.LISTENER:
            self._resubscribe(types.ROUTE, self._state[types.LISTENER].holding.follows)
        listeners = self._state[types.LISTENER]
        if not listeners.requested and self._endpoints_ready():
            self._request(types.LISTENER)

    def _endpoints_ready(self) -> bool:
        endpoints = self._state[types.ENDPOINT]
        return self._state[types.CLUSTER].responded and (endpoints.responded or not endpoints.names)

    def _resubscribe(self, type_url: str, names: tuple[str, ...]) -> None:
        state = self._state[type_url]
        if state.requested and names == state.names:
            return
        old = set(state.names)
        state.names = names
        state.holding = self.client.library.restricted(state.holding, names)
        state.announced.intersection_update(names)
        if not state.requested:
            if names:
                self._request(type_url)
            return
        if self.delta:
            request = discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url,
                resource_names_subscribe=sorted(set(names) - old),
                resource_names_unsubscribe=sorted(old - set(names)),
            ).SerializeToString()
        else:
            request = self._sotw(type_url, state)
        self._send(request)

    # Progress

    def has_full_config(self) -> bool:
        """Clusters and listeners received, and every EDS and RDS name they follow held."""
        clusters, listeners = self._state[types.CLUSTER], self._state[types.LISTENER]
        if not (clusters.responded and listeners.responded):
            return False
        for type_url in (types.ENDPOINT, types.ROUTE):
            state = self._state[type_url]
            if any(name not in state.holding.by_name for name in state.names):
                return False
        return True

    def _progress(self) -> None:
        now = time.monotonic()
        if self.complete_at is None and self.has_full_config():
            self.complete_at = now
            self.client.completed(self)
        expectation = self.expectation
        if expectation is not None and all(self._holds(c) for c in expectation.checks):
            self.expectation = None
            self.client.converged(self, expectation.change, now)

    def _holds(self, check: Check) -> bool:
        info = self._state[check.type_url].holding.by_name.get(check.name)
        if (info is not None) != check.present:
            return False
        if info is None or not check.marker:
            return True
        return info.contains(check.marker) == check.marker_present

    def expect(self, expectation: Expectation) -> None:
        self.expectation = expectation
        self._progress()  # the change may have arrived before its announcement

    def describe(self) -> str:
        """Where the stream is, for a report of streams that did not get somewhere."""
        held = ", ".join(
            f"{types.short_name(t)} {len(s.holding.by_name)}/{len(s.names)}"
            + ("" if s.requested else " unrequested")
            + ("" if s.responded else " unanswered")
            for t, s in self._state.items()
        )
        return f"{self.node_id} ({'delta' if self.delta else 'sotw'}: {held}; {self.status})"

    def holding(self, type_url: str) -> Holding:
        return self._state[type_url].holding

    def versions(self) -> dict[str, str]:
        return {types.short_name(t): s.version for t, s in self._state.items()}

    def holdings(self) -> dict[str, dict[str, str]]:
        return {
            types.short_name(t): {n: i.version for n, i in s.holding.by_name.items()}
            for t, s in self._state.items()
        }


class LoadClient:
    """The streams of one load generator process, and its conversation with the orchestrator."""

    def __init__(self, role: str, target: str, events: Any) -> None:
        self.role = role
        self.target = target
        self.events = events
        self.library = Library()
        self.streams: list[ProxyStream] = []
        self.stalled: ProxyStream | None = None
        self._change = 0
        self._traffic: Counter[tuple[int, str, str]] = Counter()
        self._warming: Counter[int] = Counter()
        self._redundant: list[Redundant] = []
        self._redundant_count = 0
        self._errors: list[str] = []
        self._waiting: set[str] = set()
        self._done: dict[str, float] = {}
        self._phase_done = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # Called by streams

    def count(self, type_url: str, resources: int, size: int) -> None:
        key = types.short_name(type_url)
        self._traffic[self._change, key, "responses"] += 1
        self._traffic[self._change, key, "resources"] += resources
        self._traffic[self._change, key, "bytes"] += size

    def warmed(self) -> None:
        self._warming[self._change] += 1

    def redundant(self, node: str, type_url: str, reason: str) -> None:
        self._redundant_count += 1
        if len(self._redundant) < REDUNDANT_EXAMPLES:
            self._redundant.append(Redundant(node, type_url, self._change, reason))

    def error(self, message: str) -> None:
        if len(self._errors) < REDUNDANT_EXAMPLES:
            self._errors.append(message)

    def completed(self, stream: ProxyStream) -> None:
        if self._change == 0 and stream.node_id in self._waiting:
            self._arrived(stream, stream.complete_at or time.monotonic())

    def converged(self, stream: ProxyStream, change: int, at: float) -> None:
        if change == self._change and stream.node_id in self._waiting:
            self._arrived(stream, at)

    def _arrived(self, stream: ProxyStream, at: float) -> None:
        self._waiting.discard(stream.node_id)
        self._done[stream.node_id] = at
        if not self._waiting:
            self._phase_done.set()

    # Phases, driven by the orchestrator

    def _measured(self) -> list[ProxyStream]:
        return [s for s in self.streams if s is not self.stalled]

    async def connect(self, deadline: float) -> Connected:
        measured = self._measured()
        self._begin({s.node_id for s in measured})
        self._tasks = [asyncio.create_task(self._run(s), name=s.node_id) for s in self.streams]
        await self._wait(deadline)
        missing = [s.describe() for s in measured if s.node_id in self._waiting]
        return Connected(self.role, dict(self._done), missing)

    async def _run(self, stream: ProxyStream) -> None:
        try:
            await stream.run(self.target)
        except CallEnded as error:
            cause = error.__cause__
            detail = "".join(traceback.format_exception(cause)) if cause else str(error)
            self.error(f"{stream.node_id}: stream failed: {detail}")
        except Exception:
            self.error(f"{stream.node_id}: {traceback.format_exc()}")

    async def change(self, expectation: Expectation) -> Converged:
        self._change = expectation.change
        self.library.new_change(s.holding(t) for s in self.streams for t in _MESSAGES)
        measured = self._measured()
        self._begin({s.node_id for s in measured})
        for stream in measured:
            stream.expect(expectation)
        await self._wait(expectation.deadline)
        for stream in measured:
            stream.expectation = None
        missing = [s.describe() for s in measured if s.node_id in self._waiting]
        return Converged(self.role, expectation.change, dict(self._done), missing)

    def _begin(self, nodes: set[str]) -> None:
        self._waiting = nodes
        self._done = {}
        self._phase_done = asyncio.Event()
        if not nodes:
            self._phase_done.set()

    async def _wait(self, deadline: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._phase_done.wait(), max(0.0, deadline - time.monotonic()))

    def stall(self) -> None:
        if self.stalled is not None:
            self.stalled.stall()

    def report(self) -> Report:
        traffic: dict[tuple[int, str], Traffic] = {}
        for (change, kind, what), value in self._traffic.items():
            old = traffic.get((change, kind), Traffic())
            fields = {"responses": old.responses, "resources": old.resources, "bytes": old.bytes}
            fields[what] += value
            traffic[change, kind] = Traffic(**fields)
        return Report(
            self.role,
            traffic,
            dict(self._warming),
            self._redundant_count,
            list(self._redundant),
            list(self._errors),
        )

    def versions(self) -> Versions:
        return Versions(self.role, {s.node_id: s.versions() for s in self._measured()})

    def holdings(self, nodes: set[str]) -> Holdings:
        return Holdings(
            self.role, {s.node_id: s.holdings() for s in self._measured() if s.node_id in nodes}
        )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# The process.


@dataclass(frozen=True)
class ClientSpec:
    """Which proxies one load generator process impersonates."""

    role: str
    mesh: Mesh
    indices: tuple[int, ...]
    delta_every: int  # every n-th proxy (by index) speaks delta; 0: none
    stalled_index: int | None = None  # the proxy that stalls when told to


def client_main(spec: ClientSpec, target: str, control: Connection, events: Any) -> None:
    """Entry point of a load generator process."""
    logging.basicConfig(
        level=logging.WARNING, format=f"{spec.role} %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(_serve(spec, target, control, events))
    except Exception:
        events.put(Failed(spec.role, traceback.format_exc()))
        raise SystemExit(1) from None


async def _serve(spec: ClientSpec, target: str, control: Connection, events: Any) -> None:
    client = LoadClient(spec.role, target, events)
    for index in spec.indices:
        delta = spec.delta_every > 0 and index % spec.delta_every == spec.delta_every - 1
        stream = ProxyStream(
            client, spec.mesh.workload(index), delta, stalls=index == spec.stalled_index
        )
        client.streams.append(stream)
        if index == spec.stalled_index:
            client.stalled = stream
    events.put(Ready(spec.role))
    try:
        async for message in commands(control):
            events.put(await _dispatch(client, message))
    finally:
        await client.close()


async def _dispatch(client: LoadClient, message: tuple[str, Any]) -> Any:
    command, argument = message
    if command == "connect":
        return await client.connect(argument)
    if command == "change":
        return await client.change(argument)
    if command == "stall":
        client.stall()
        return Ready(client.role)
    if command == "report":
        return client.report()
    if command == "versions":
        return client.versions()
    if command == "holdings":
        return client.holdings(argument)
    raise ValueError(f"unknown command {command!r}")
