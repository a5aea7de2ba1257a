"""Pilot's own CPU per stream for a push, with grpc out of the way.

Why: in `pilot_load` an endpoint change costs pilot about 250 µs of CPU per proxy, most of it
grpc.aio (the write, the ACK's read, its poller thread) and the kernel's loopback, and runs on
two cores shared with the load generator vary by 10-15%. What pilot adds itself (the push loop,
generation, the protocol objects, each stream's coroutines and callbacks) is lost in that noise.
This runs the same objects in one process: `XdsServer`'s handlers, registered as on a grpc
server and called as grpc calls them, with `DiscoveryService` behind them, but each stream's
context and request iterator are in-process stand-ins for grpc.aio's: every response is
answered at once with the ACK Envoy sends (state-of-the-world ACKs repeat the names, as
Envoy's do). Pilot's share is the process's CPU less what the stand-ins spend (timed apart:
reading each response's envelope, writing its ACK). Runs in one sitting agree to a few percent
(the machine's speed drifts more within a day), so a change to pilot's per-stream work is judged
against its base run alternately beside it. It is not a latency figure: `pilot_load` is.

First every stream connects from cold and is answered with its clusters, endpoints, listeners
and routes (`connect`, measured once). Then each round makes one change of each kind the way
pilot meets it (a file rewritten, the
directory read again, the change classified, a push context built, the push): an endpoint
added to a service (the previous round's removed), the VirtualService edited, a service added
and that service removed. After a response that changes its clusters a stream asks for the
endpoints of the clusters it now holds, as Envoy does (the whole list for state of the world,
the difference for delta): the stand-ins are told which names a change adds or removes instead
of reading them from the clusters. Every stream must get exactly the responses the change calls
for (`EXPECTED`), and ACK them; anything else ends the run with an error.
The garbage collector is set as `python -m pilot` sets it (`QuietCollector`), with its quiet
moment's collection before each change, where pilot has its quiet moments: otherwise a change
now and then pays for a collection of all the objects made since the last one.

Run: `python -m benchmarks.pilot_push_cost --services 1000 --proxies 2000 [--rounds 5]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format

from benchmarks import pilot_load_config as config
from benchmarks.cpu_breakdown import Breakdown
from benchmarks.pilot_load_runs import body_start
from meshcore.quiet_gc import QuietCollector
from meshcore.xds import types
from meshcore.xds.cache import SnapshotCache
from meshcore.xds.delta import DeltaProtocol
from meshcore.xds.server import XdsServer
from meshcore.xds.sotw import SotwProtocol
from meshcore.xds.wire import length_delimited, string_field
from pilot.config_files import DirectoryReader, PilotInput
from pilot.debounce import PushRequest
from pilot.discovery import DiscoveryService
from pilot.metrics import PilotMetrics
from pilot.push_context import PushContext
from pilot.server import classify_change
from pilot.snapshots import SnapshotGenerator

_ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
KINDS = ("endpoint", "route", "service-add", "service-remove")
CONNECT = "connect"  # every stream opened and answered from cold
# DiscoveryRequest and DeltaDiscoveryRequest fields, as numbered in their protos.
_VERSION, _NODE, _NAMES, _TYPE_URL, _NONCE = 1, 2, 3, 4, 5
_DELTA_NODE, _DELTA_TYPE_URL, _UNSUBSCRIBE, _DELTA_NONCE = 1, 2, 4, 6


# The responses each change calls for, sorted, by kind and whether the stream speaks delta.
_ALL_THREE = sorted([types.CLUSTER, types.ENDPOINT, types.ROUTE])
EXPECTED: dict[tuple[str, bool], list[str]] = {
    ("endpoint", False): [types.ENDPOINT],
    ("endpoint", True): [types.ENDPOINT],
    ("route", False): [types.ROUTE],
    ("route", True): [types.ROUTE],
    ("service-add", False): _ALL_THREE,
    ("service-add", True): _ALL_THREE,
    ("service-remove", False): sorted([types.CLUSTER, types.ROUTE]),
    # Delta streams are also told that the removed cluster's endpoints are gone.
    ("service-remove", True): _ALL_THREE,
}


class BenchmarkError(RuntimeError):
    """A stream did not get exactly what the change called for."""


@dataclass(frozen=True, slots=True)
class Options:
    services: int
    proxies: int
    rounds: int = 5
    breakdown: str | None = None  # a kind of change whose CPU to break down by function


@dataclass
class KindCost:
    """Per change of one kind: the process's CPU and the stand-ins' share of it, seconds."""

    total_s: list[float] = field(default_factory=list)
    streams_s: list[float] = field(default_factory=list)

    def pilot_us_per_stream(self, streams: int) -> list[float]:
        return [(t - s) / streams * 1e6 for t, s in zip(self.total_s, self.streams_s, strict=True)]


@dataclass
class Result:
    streams: int
    kinds: dict[str, KindCost]
    breakdown: Breakdown | None = None  # counting during the pushes of `breakdown_kind`
    breakdown_kind: str | None = None


class _Details:
    """What grpc tells a generic handler about a call: its method."""

    def __init__(self, method: str) -> None:
        self.method = method


class _Handlers:
    """Takes `XdsServer`'s handlers as a grpc server would."""

    def __init__(self) -> None:
        self.generic: tuple[Any, ...] = ()

    def add_generic_rpc_handlers(self, handlers: tuple[Any, ...]) -> None:
        self.generic = handlers

    def method(self, name: str) -> grpc.RpcMethodHandler:
        for handler in self.generic:
            found = handler.service(_Details(_ADS + name))
            if found is not None:
                return found
        raise LookupError(name)


def _envelope(payload: bytes, delta: bool) -> tuple[str, str, str]:
    """Version, type URL and nonce of a response: only the fields before its first resource
    are parsed (pilot writes the envelope first)."""
    start = body_start(payload)
    if start is None:
        raise BenchmarkError("a response's envelope has fields the reader does not walk")
    if delta:
        changes = discovery_pb2.DeltaDiscoveryResponse.FromString(payload[:start])
        return changes.system_version_info, changes.type_url, changes.nonce
    response = discovery_pb2.DiscoveryResponse.FromString(payload[:start])
    return response.version_info, response.type_url, response.nonce


@dataclass
class _Subscriptions:
    """What every stream subscribes to, and the endpoint names the latest change of clusters
    added and removed (a stream that gets that change asks for them, as Envoy does)."""

    # type URL -> its names, encoded as state-of-the-world requests carry them
    names: dict[str, bytes]
    endpoints_serial: int = 0  # one more for every change of the endpoint names
    subscribe: tuple[str, ...] = ()
    unsubscribe: tuple[str, ...] = ()

    def change_endpoints(
        self, names: list[str], subscribe: tuple[str, ...], unsubscribe: tuple[str, ...]
    ) -> None:
        self.names[types.ENDPOINT] = _encoded_names(names)
        self.endpoints_serial += 1
        self.subscribe, self.unsubscribe = subscribe, unsubscribe


class _Stream:
    """One simulated sidecar's ADS stream: a grpc.aio servicer context and request iterator
    in one, answering each response with its ACK at once (and after a change of clusters with
    the endpoint subscription that follows it)."""

    def __init__(
        self,
        node: bytes,
        delta: bool,
        subscriptions: _Subscriptions,
        deserialize: Callable[..., Any],
    ) -> None:
        self.delta = delta
        self.responses: list[str] = []  # type URLs, since the last `expect`
        self.cpu_s = 0.0  # spent here, not in pilot
        self._node = node
        self._subscriptions = subscriptions
        self._endpoints_serial = subscriptions.endpoints_serial  # the names last asked for
        self._last: dict[str, tuple[str, str]] = {}  # type URL -> version, nonce received
        self._deserialize = deserialize
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._want = 0
        self._done: asyncio.Event | None = None

    def expect(self, responses: int, done: asyncio.Event) -> None:
        """Set `done` once this stream has had `responses` more responses and pilot has taken
        every request they caused."""
        self.responses.clear()
        self._want, self._done = responses, done

    # grpc.aio.ServicerContext, the parts the xDS server uses
    def peer(self) -> str:
        return "ipv4:127.0.0.1:15000"

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise BenchmarkError(f"pilot ended a stream: {code.name}: {details}")

    async def write(self, payload: bytes) -> None:
        began = time.process_time()
        version, type_url, nonce = _envelope(payload, self.delta)
        self.responses.append(type_url)
        self._last[type_url] = version, nonce
        self._queue.put_nowait(self._ack(type_url))
        subscriptions = self._subscriptions
        if type_url == types.CLUSTER and self._endpoints_serial != subscriptions.endpoints_serial:
            self._endpoints_serial = subscriptions.endpoints_serial
            self._queue.put_nowait(self._endpoints_request())
        self.cpu_s += time.process_time() - began

    def _ack(self, type_url: str) -> bytes:
        version, nonce = self._last[type_url]
        if self.delta:
            return string_field(_DELTA_TYPE_URL, type_url) + string_field(_DELTA_NONCE, nonce)
        return (
            string_field(_VERSION, version)
            + self._subscriptions.names.get(type_url, b"")
            + string_field(_TYPE_URL, type_url)
            + string_field(_NONCE, nonce)
        )

    def _endpoints_request(self) -> bytes:
        subscriptions = self._subscriptions
        if self.delta:
            return (
                string_field(_DELTA_TYPE_URL, types.ENDPOINT)
                + b"".join(string_field(_NAMES, name) for name in subscriptions.subscribe)
                + b"".join(string_field(_UNSUBSCRIBE, name) for name in subscriptions.unsubscribe)
            )
        return self._ack(types.ENDPOINT)  # the last version and nonce, the names now held

    async def requests(self) -> AsyncIterator[Any]:
        """The subscriptions, in the order Envoy makes them, then every ACK."""
        for index, type_url in enumerate(types.PUSH_ORDER[:4]):
            yield self._deserialize(self._subscription(type_url, first=index == 0))
        while True:
            yield self._deserialize(await self._queue.get())
            # Back here when pilot asks for the next request: it has applied this one.
            done = self._done
            if done is not None and len(self.responses) >= self._want and self._queue.empty():
                done.set()

    def _subscription(self, type_url: str, first: bool) -> bytes:
        # field 3 in both: names, names to subscribe
        names = self._subscriptions.names.get(type_url, b"")
        if self.delta:
            node = length_delimited(_DELTA_NODE, self._node) if first else b""
            return node + string_field(_DELTA_TYPE_URL, type_url) + names
        node = length_delimited(_NODE, self._node) if first else b""
        return node + names + string_field(_TYPE_URL, type_url)


def _clusters(mesh: config.Mesh) -> list[str]:
    return [mesh.cluster(index) for index in range(mesh.services)]


def _encoded_names(names: list[str]) -> bytes:
    return b"".join(string_field(_NAMES, name) for name in names)


async def _all_answered(
    streams: list[_Stream], responses: dict[bool, int], within_s: float
) -> None:
    """Wait until every stream has had as many responses as `responses` says for its protocol
    (delta or not), and pilot has taken all it sent back."""
    events = []
    for stream in streams:
        done = asyncio.Event()
        stream.expect(responses[stream.delta], done)
        events.append(done)
    try:
        async with asyncio.timeout(within_s):
            for event in events:
                await event.wait()
    except TimeoutError:
        late = sum(not event.is_set() for event in events)
        raise BenchmarkError(f"{late} streams lacked responses after {within_s} s") from None


class _Mesh:
    """The generated mesh in a directory, read and pushed as pilot does on each change."""

    def __init__(self, directory: Path, mesh: config.Mesh) -> None:
        self.directory = directory
        self.mesh = mesh
        config.write_mesh(directory, mesh)
        self._reader = DirectoryReader()
        self.input: PilotInput = self._reader.read(directory)
        self._versions = 1
        self.context = self._build()

    def _build(self) -> PushContext:
        return PushContext.build(self.input.registry, str(self._versions), self.input.istio)

    def change(self, write: Callable[[], None]) -> tuple[PushRequest, PushContext]:
        write()
        before, self.input = self.input, self._reader.read(self.directory)
        request = classify_change(before.registry, self.input.registry)
        if before.istio != self.input.istio:
            request = PushRequest(full=True, reason="config")
        self._versions += 1
        self.context = self._build()
        return request, self.context


# Where a push's CPU goes in pilot (`--breakdown`): the snapshot generator's per-proxy and
# per-view work, the stream's request handling and responses, the callbacks, and the stand-ins.
BREAKDOWN_TARGETS: tuple[tuple[Any, str], ...] = (
    (SnapshotGenerator, "full"),
    (SnapshotGenerator, "endpoints_only"),
    (SnapshotGenerator, "_view"),
    (SnapshotGenerator, "_own_config"),
    (SnapshotGenerator, "_own_resources"),
    (SnapshotCache, "set"),
    (XdsServer, "_apply"),
    (XdsServer, "_send"),
    (SotwProtocol, "responses"),
    (DeltaProtocol, "responses"),
    (DiscoveryService, "on_response_sent"),
    (_Stream, "write"),
)


async def run_async(options: Options, breakdown: Breakdown | None = None) -> Result:
    with tempfile.TemporaryDirectory(prefix="pilot-push-cost-") as workdir:
        mesh = config.Mesh(services=options.services, endpoints=2, proxies=options.proxies)
        world = _Mesh(Path(workdir), mesh)
        discovery = DiscoveryService(world.context, PilotMetrics())
        handlers = _Handlers()
        XdsServer(discovery.cache, discovery).add_to(handlers)
        sotw = handlers.method("StreamAggregatedResources")
        delta = handlers.method("DeltaAggregatedResources")
        subscriptions = _Subscriptions(
            {
                types.ENDPOINT: _encoded_names(_clusters(mesh)),
                types.ROUTE: _encoded_names([config.ROUTE_NAME]),
            }
        )
        streams = []
        for index, workload in enumerate(mesh.proxy_workloads()):
            node = base_pb2.Node(id=config.node_id(workload))
            json_format.ParseDict(config.node_metadata(workload), node.metadata)
            stream = _Stream(
                node.SerializeToString(),
                bool(index % 2),
                subscriptions,
                (delta if index % 2 else sotw).request_deserializer,
            )
            streams.append(stream)
        calls: list[asyncio.Task[None]] = []
        try:
            async with QuietCollector() as collector:
                result = Result(
                    len(streams),
                    {kind: KindCost() for kind in (CONNECT, *KINDS)},
                    breakdown,
                    options.breakdown,
                )
                if breakdown is not None:
                    breakdown.counting = options.breakdown == CONNECT
                began = time.process_time()
                for stream in streams:
                    method = delta if stream.delta else sotw
                    calls.append(
                        asyncio.create_task(method.stream_stream(stream.requests(), stream))
                    )
                # CDS, EDS, LDS, RDS
                await _all_answered(streams, {False: 4, True: 4}, within_s=600)
                connect = result.kinds[CONNECT]
                connect.total_s.append(time.process_time() - began)
                connect.streams_s.append(sum(s.cpu_s for s in streams))
                if breakdown is not None:
                    breakdown.counting = False
                for round_ in range(options.rounds):
                    await _push(world, discovery, streams, subscriptions, result, round_, collector)
                return result
        finally:
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)


async def _push(
    world: _Mesh,
    discovery: DiscoveryService,
    streams: list[_Stream],
    subscriptions: _Subscriptions,
    result: Result,
    round_: int,
    collector: QuietCollector,
) -> None:
    mesh = world.mesh
    document, _ = mesh.churn_endpoint(round_, (round_ * 7919) % mesh.services)
    added, services = mesh.extra_service(round_)
    clusters, extra = _clusters(mesh), mesh.cluster(added)
    changes: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {
        "endpoint": (
            lambda: config.write_file(world.directory, config.CHURN_ENDPOINT_FILE, [document]),
            lambda: None,
        ),
        "route": (
            lambda: config.write_file(
                world.directory, config.VIRTUAL_SERVICE_FILE, [mesh.virtual_service(round_ + 1)]
            ),
            lambda: None,
        ),
        "service-add": (
            lambda: config.write_file(world.directory, config.CHURN_SERVICES_FILE, services),
            lambda: subscriptions.change_endpoints([*clusters, extra], (extra,), ()),
        ),
        "service-remove": (
            lambda: config.remove_file(world.directory, config.CHURN_SERVICES_FILE),
            lambda: subscriptions.change_endpoints(clusters, (), (extra,)),
        ),
    }
    for kind, (write, subscribe) in changes.items():
        request, context = world.change(write)
        subscribe()
        for stream in streams:
            stream.cpu_s = 0.0
        collector.settle()
        if result.breakdown is not None:
            result.breakdown.counting = kind == result.breakdown_kind
        began = time.process_time()
        counts = {delta: len(EXPECTED[kind, delta]) for delta in (False, True)}
        answered = asyncio.create_task(_all_answered(streams, counts, within_s=120))
        await asyncio.sleep(0)  # every stream expects its responses before the push starts
        await discovery.push(request, context)
        await answered
        if result.breakdown is not None:
            result.breakdown.counting = False
        cost = result.kinds[kind]
        cost.total_s.append(time.process_time() - began)
        cost.streams_s.append(sum(s.cpu_s for s in streams))
        wrong = [s for s in streams if sorted(s.responses) != EXPECTED[kind, s.delta]]
        if wrong:
            protocol = "delta" if wrong[0].delta else "state of the world"
            got = [types.short_name(t) for t in wrong[0].responses]
            want = [types.short_name(t) for t in EXPECTED[kind, wrong[0].delta]]
            raise BenchmarkError(
                f"{kind} change: {len(wrong)} streams got other responses than {want}, "
                f"a {protocol} one {got}"
            )


def run(options: Options) -> Result:
    if options.breakdown is None:
        return asyncio.run(run_async(options))
    breakdown = Breakdown(BREAKDOWN_TARGETS)
    with breakdown.patched():
        return asyncio.run(run_async(options, breakdown))


def report(options: Options, result: Result) -> str:
    lines = [
        f"{options.services} services, {result.streams} streams (1 in 2 delta), "
        f"{options.rounds} rounds; pilot's own CPU per stream for the connect and for one push, µs "
        "(the process's CPU less the in-process streams')",
        "",
        "| change | median | min | max | streams' own µs per stream |",
        "|---|---|---|---|---|",
    ]
    for kind, cost in result.kinds.items():
        pilot = cost.pilot_us_per_stream(result.streams)
        own = statistics.median(cost.streams_s) / result.streams * 1e6
        lines.append(
            f"| {kind} | {statistics.median(pilot):.1f} | {min(pilot):.1f} | {max(pilot):.1f} "
            f"| {own:.1f} |"
        )
    if result.breakdown is not None:
        lines += [
            "",
            f"{result.breakdown_kind}: CPU by function (inclusive; the stand-ins' `write` "
            "is theirs, the rest pilot's)",
            "",
            *result.breakdown.table(1 if result.breakdown_kind == CONNECT else options.rounds),
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--proxies", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--breakdown",
        choices=(CONNECT, *KINDS),
        help="also break the CPU of the connect or of that kind of change down by function",
    )
    args = parser.parse_args()
    options = Options(args.services, args.proxies, args.rounds, args.breakdown)
    print(report(options, run(options)))


if __name__ == "__main__":
    main()
