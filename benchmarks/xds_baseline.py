"""The bare grpc.aio ADS server of issue #7's figures, measured again in each pilot_load run.

Why: the issue asks for pilot's push CPU per proxy within 2x of a bare grpc.aio prototype, and
gives the prototype's figures as measured once (130 µs a stream for a one-resource push and its
ACK, 205 µs for 1000 pre-encoded clusters). This machine's speed drifts by a third within an
hour (BENCHMARKS.md), so a comparison with figures from another hour says little. pilot_load
therefore measures the prototype itself, right after pilot, on the same address, with as many
streams, the same load generator transport and the same grpc server options as pilot.

- Server (a spawned process): grpc.aio with `meshcore.grpc_server.create_server`'s options,
  one ADS call per stream, its first request taken as the subscription. On command it writes
  `count` copies of one pre-encoded response of about `size` bytes to every stream, at most
  `CONCURRENT_WRITES` streams at a time (pilot's push throttle), and waits for one ACK per
  response. It generates, parses and compares nothing: what it costs is the least that grpc.aio
  and the kernel cost to send that response and take its ACK in. Its CPU for the push is read
  in the process (all threads, `time.process_time`).
- Clients (spawned processes): one `h2_stream` connection per stream, as pilot_load's load
  generator opens them, each answering every response with the same small request (an ACK
  without names: state-of-the-world EDS ACKs that repeat a thousand names cost pilot more, so
  the baseline is a floor).

Two pushes fit the cost of a response to a stream, `MessageCost`: a small one (about an
endpoint change's response) and a large one (about a VirtualService edit's). A change that
sends each proxy m messages carrying b MiB then costs the prototype at least m x per message +
b x per MiB a proxy, which pilot_load sets beside pilot's own CPU per proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from benchmarks.control import STOP, commands
from benchmarks.h2_stream import GrpcCall, open_call, request_headers
from meshcore.grpc_server import bind, create_server
from meshcore.processes import end_process
from meshcore.xds import types

SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
METHOD = "StreamAggregatedResources"
CONCURRENT_WRITES = 32  # XdsServer's default max_concurrent_pushes
SMALL_BYTES = 1024  # about one ClusterLoadAssignment: an endpoint change
LARGE_BYTES = 512 * 1024  # about a 1000-virtual-host route configuration: a VirtualService edit
STOP_TIMEOUT_S = 10.0

_ACK = discovery_pb2.DiscoveryRequest(
    version_info="1", type_url=types.ENDPOINT, response_nonce="1"
).SerializeToString()


def response(size: int) -> bytes:
    """An encoded EDS response carrying one resource of `size` bytes."""
    resource = any_pb2.Any(type_url=types.ENDPOINT, value=bytes(size))
    encoded: bytes = discovery_pb2.DiscoveryResponse(
        version_info="1", type_url=types.ENDPOINT, nonce="1", resources=[resource]
    ).SerializeToString()
    return encoded


@dataclass(frozen=True)
class MessageCost:
    """The least CPU a push costs a server per stream: for each message, and per MiB."""

    per_message_us: float
    per_mib_us: float

    def of(self, messages: float, mib: float) -> float:
        """µs per stream for a push of `messages` carrying `mib` in all."""
        return messages * self.per_message_us + mib * self.per_mib_us

    @classmethod
    def fit(cls, small: tuple[float, float], large: tuple[float, float]) -> MessageCost:
        """The line through two (MiB a message, µs a stream) points."""
        (small_mib, small_us), (large_mib, large_us) = small, large
        if large_mib <= small_mib:
            raise ValueError("the large message must be larger than the small one")
        per_mib = (large_us - small_us) / (large_mib - small_mib)
        return cls(small_us - small_mib * per_mib, per_mib)


# The server.


class BaselineServer:
    """ADS calls that are written pre-encoded responses and counted ACKs; nothing else."""

    def __init__(self) -> None:
        self.streams: list[Any] = []  # the calls' contexts
        self._acked = 0
        self._wanted = 0
        self._all_acked = asyncio.Event()
        self._slots = asyncio.Semaphore(CONCURRENT_WRITES)

    def handler(self) -> grpc.GenericRpcHandler:
        method = grpc.stream_stream_rpc_method_handler(
            self.serve, request_deserializer=None, response_serializer=None
        )
        return grpc.method_handlers_generic_handler(SERVICE, {METHOD: method})

    async def serve(self, requests: AsyncIterator[bytes], context: Any) -> None:
        """One call (grpc.aio's context, or another with the same `write`)."""
        iterator = aiter(requests)
        try:
            await anext(iterator)
        except StopAsyncIteration:
            return
        self.streams.append(context)
        try:
            async for _ in iterator:
                self._acked += 1
                if self._acked == self._wanted:
                    self._all_acked.set()
        finally:
            self.streams.remove(context)

    async def push(self, count: int, size: int) -> tuple[float, float]:
        """Write `count` responses of `size` bytes to every stream and wait for each ACK:
        (seconds, CPU seconds of this process)."""
        payload = response(size)
        streams = list(self.streams)
        self._acked, self._wanted = 0, count * len(streams)
        self._all_acked.clear()
        began, began_cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(self._write(stream, payload, count) for stream in streams))
        if self._wanted:
            await self._all_acked.wait()
        return time.perf_counter() - began, time.process_time() - began_cpu

    async def _write(self, stream: Any, payload: bytes, count: int) -> None:
        async with self._slots:
            for _ in range(count):
                await stream.write(payload)


def server_main(host: str, control: Connection) -> None:
    """Entry point of the server process: sends its port, then answers commands."""
    asyncio.run(_run_server(host, control))


async def _run_server(host: str, control: Connection) -> None:
    server = create_server()
    baseline = BaselineServer()
    server.add_generic_rpc_handlers((baseline.handler(),))
    port = bind(server, f"{host}:0")
    await server.start()
    control.send(port)
    try:
        await answer_commands(baseline, control)
    finally:
        await server.stop(grace=None)


async def answer_commands(baseline: BaselineServer, control: Connection) -> None:
    """The harness's commands to the server process, until it says stop."""
    async for command, argument in commands(control):
        if command == "streams":
            control.send(len(baseline.streams))
        elif command == "push":
            count, size, timeout = argument
            async with asyncio.timeout(timeout):
                control.send(await baseline.push(count, size))
        else:
            raise ValueError(f"unknown command {command!r}")


# The clients.


class _Acker:
    """Answers each response on its call with the same ACK."""

    def __init__(self) -> None:
        self.call: GrpcCall | None = None

    def __call__(self, message: bytes) -> None:
        if self.call is not None:
            self.call.send(_ACK)


async def _open(host: str, port: int, header_block: bytes, index: int) -> GrpcCall:
    acker = _Acker()
    acker.call = call = await open_call(host, port, header_block, acker)
    first = discovery_pb2.DiscoveryRequest(
        node=base_pb2.Node(id=f"baseline-{index}"), type_url=types.ENDPOINT
    )
    call.send(first.SerializeToString())
    return call


def clients_main(host: str, port: int, first: int, streams: int, control: Connection) -> None:
    """Entry point of a client process: opens `streams` calls, says how many, and keeps them
    until told to stop."""
    asyncio.run(_clients(host, port, first, streams, control))


async def _clients(host: str, port: int, first: int, streams: int, control: Connection) -> None:
    header_block = request_headers(f"/{SERVICE}/{METHOD}", f"{host}:{port}")
    calls = await asyncio.gather(
        *(_open(host, port, header_block, first + n) for n in range(streams))
    )
    control.send(len(calls))
    try:
        async for message in commands(control):
            raise ValueError(f"unknown command {message!r}")
    finally:
        for call in calls:
            call.close()


# The harness, in the benchmark's process.


ServerMain = Callable[[str, Connection], None]


class Baseline:
    """The server (`server_main`, or another answering the same commands) and `processes`
    client processes holding `streams` streams to it."""

    def __init__(
        self,
        host: str,
        streams: int,
        *,
        processes: int = 2,
        timeout: float,
        server: ServerMain = server_main,
    ) -> None:
        self._timeout = timeout
        self._context = multiprocessing.get_context("spawn")
        self._children: list[tuple[BaseProcess, Connection]] = []
        try:
            server_process = self._start(server, host)
            port = self._receive(server_process, "the baseline server to start")
            share, extra = divmod(streams, processes)
            first = 0
            for number in range(processes):
                count = share + (1 if number < extra else 0)
                self._start(clients_main, host, port, first, count)
                first += count
            for child in self._children[1:]:
                self._receive(child, "baseline streams to open")
            deadline = time.monotonic() + timeout
            while self._ask("streams") < streams:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"gave up waiting for {streams} baseline streams")
                time.sleep(0.05)
        except BaseException:
            self.close()
            raise

    def push(self, count: int, size: int) -> tuple[float, float]:
        """(seconds, server CPU seconds) to write `count` responses of `size` bytes to every
        stream and take every ACK."""
        wall_s, cpu_s = self._ask("push", (count, size, self._timeout))
        return wall_s, cpu_s

    def close(self) -> None:
        # The clients end their calls first; the server then has none left to cancel.
        for process, control in reversed(self._children):
            with contextlib.suppress(OSError):
                control.send(STOP)
            control.close()
            end_process(process, STOP_TIMEOUT_S)
        self._children.clear()

    def _start(self, target: Any, *args: Any) -> tuple[BaseProcess, Connection]:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=target, args=(*args, theirs))
        process.start()
        theirs.close()
        self._children.append((process, ours))
        return process, ours

    def _receive(self, child: tuple[BaseProcess, Connection], waiting_for: str) -> Any:
        process, control = child
        if not control.poll(self._timeout):
            raise TimeoutError(f"gave up waiting for {waiting_for}")
        try:
            return control.recv()
        except EOFError:
            raise RuntimeError(f"{waiting_for}: exited with {process.exitcode}") from None

    def _ask(self, command: str, argument: Any = None) -> Any:
        server = self._children[0]
        server[1].send((command, argument))
        return self._receive(server, f"the baseline server's answer to {command}")


def measure(
    host: str, streams: int, *, rounds: int, timeout: float, server: ServerMain = server_main
) -> MessageCost:
    """The baseline's cost per stream, from `rounds` small and large pushes, alternated, each
    kind's median CPU taken."""
    small: list[float] = []
    large: list[float] = []
    with contextlib.closing(Baseline(host, streams, timeout=timeout, server=server)) as baseline:
        for _ in range(rounds):
            small.append(baseline.push(1, SMALL_BYTES)[1])
            large.append(baseline.push(1, LARGE_BYTES)[1])
    return MessageCost.fit(
        (len(response(SMALL_BYTES)) / 2**20, statistics.median(small) / streams * 1e6),
        (len(response(LARGE_BYTES)) / 2**20, statistics.median(large) / streams * 1e6),
    )
