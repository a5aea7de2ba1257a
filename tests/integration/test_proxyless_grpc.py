"""Proxyless gRPC: grpcio's own xDS client, configured by pilot, calls two grpc.aio backends.

Service `echo` (gRPC, 7070) has workloads v1 and v2, each a grpc.aio server answering which
workload it is. The client runs in a subprocess, since grpcio reads its xDS bootstrap once per
process: for each line `<target> <calls> [<header>=<value>...]` on its stdin it calls
`xds:///<target>` and answers with a JSON count of who answered (or which status code failed
the call).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from tests.integration.mesh import Mesh, allocate_block, eventually

ECHO = "echo.default.svc.cluster.local"
PORT = 7070
METHOD = "/test.Echo/Which"
REPLY_SECONDS = 10.0

CLIENT = textwrap.dedent(
    """\
    import collections, json, sys

    import grpc

    channels = {}
    for line in sys.stdin:
        target, calls, *headers = line.split()
        if target not in channels:
            channels[target] = grpc.insecure_channel(f"xds:///{target}")
        which = channels[target].unary_unary("/test.Echo/Which")
        metadata = [tuple(header.split("=", 1)) for header in headers]
        counts = collections.Counter()
        for _ in range(int(calls)):
            try:
                answer = which(b"", timeout=5, metadata=metadata, wait_for_ready=True)
                counts[answer.decode()] += 1
            except grpc.RpcError as error:
                counts[f"error:{error.code().name}"] += 1
        print(json.dumps(counts), flush=True)
    """
)


def _echo_entries(v1_ip: str, v2_ip: str, policy: str = "") -> str:
    """The service, its two workloads, and a DestinationRule with a subset for each."""
    return textwrap.dedent(
        f"""\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: echo, namespace: default}}
        spec:
          hosts: [{ECHO}]
          location: MESH_INTERNAL
          resolution: STATIC
          ports: [{{number: {PORT}, name: grpc, protocol: GRPC}}]
          workloadSelector: {{labels: {{app: echo}}}}
        ---
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {{name: echo-v1, namespace: default}}
        spec: {{address: {v1_ip}, labels: {{app: echo, version: v1}}}}
        ---
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {{name: echo-v2, namespace: default}}
        spec: {{address: {v2_ip}, labels: {{app: echo, version: v2}}}}
        ---
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {{name: echo, namespace: default}}
        spec:
          host: {ECHO}
          subsets:
          - {{name: v1, labels: {{version: v1}}}}
          - {{name: v2, labels: {{version: v2}}}}
        """
    ) + (f"  trafficPolicy: {policy}\n" if policy else "")


def _split(v1: int, v2: int) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: echo, namespace: default}}
        spec:
          hosts: [echo]
          http:
          - route:
            - {{destination: {{host: echo, subset: v1}}, weight: {v1}}}
            - {{destination: {{host: echo, subset: v2}}, weight: {v2}}}
        """
    )


@asynccontextmanager
async def _backend(name: str, ip: str) -> AsyncIterator[None]:
    """A grpc.aio server on ip:PORT whose one method answers with `name`."""

    async def which(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return name.encode()

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(which)
    service, method = METHOD.strip("/").split("/")
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(service, {method: handler})]
    )
    server.add_insecure_port(f"{ip}:{PORT}")
    await server.start()
    try:
        yield
    finally:
        await server.stop(grace=None)


class _Client:
    """The xDS client subprocess; `calls` asks it to make some calls and returns who answered."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def calls(self, target: str, count: int, *headers: str) -> Counter[str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(" ".join((target, str(count), *headers)).encode() + b"\n")
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), REPLY_SECONDS)
        assert line, "the gRPC client exited"
        return Counter(json.loads(line))


def _bootstrap(mesh: Mesh, client_ip: str) -> str:
    """grpcio's xDS bootstrap for a client in `default`, as Istio's agent writes it."""
    bootstrap = {
        "xds_servers": [
            {
                "server_uri": f"{mesh.pilot_ip}:15010",
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
        ],
        "node": {
            "id": f"sidecar~{client_ip}~client.default~default.svc.cluster.local",
            "metadata": {"GENERATOR": "grpc", "NAMESPACE": "default"},
        },
    }
    return json.dumps(bootstrap)


@asynccontextmanager
async def _client(mesh: Mesh, tmp_path: Path) -> AsyncIterator[_Client]:
    script = tmp_path / "xds_client.py"
    script.write_text(CLIENT)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "GRPC_XDS_BOOTSTRAP_CONFIG": _bootstrap(mesh, mesh.next_ip())},
    )
    try:
        yield _Client(process)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    built = Mesh(allocate_block(), config_dir, tmp_path / "run")
    try:
        yield built
    finally:
        await built.close()
        current = asyncio.current_task()
        leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        assert not leftover, f"tasks left pending after the mesh stopped: {leftover}"


@asynccontextmanager
async def _echo_mesh(mesh: Mesh, *documents: str, policy: str = "") -> AsyncIterator[None]:
    v1_ip, v2_ip = mesh.next_ip(), mesh.next_ip()
    mesh.write("mesh", _echo_entries(v1_ip, v2_ip, policy))
    if documents:
        mesh.write("routes", *documents)
    async with _backend("echo-v1", v1_ip), _backend("echo-v2", v2_ip):
        await mesh.start_pilot()
        yield


async def test_calls_reach_every_backend_by_any_name(mesh: Mesh, tmp_path: Path) -> None:
    async with _echo_mesh(mesh), _client(mesh, tmp_path) as client:
        for target in (f"{ECHO}:{PORT}", f"echo:{PORT}", f"echo.default:{PORT}"):
            # Round robin over the ready backends: both, once both connections are up.
            answered: Counter[str] = Counter()
            for _ in range(10):
                answered += await client.calls(target, 10)
                if answered.keys() == {"echo-v1", "echo-v2"}:
                    break
            assert answered.keys() == {"echo-v1", "echo-v2"}, (target, answered)


async def test_weighted_split_and_live_route_change(mesh: Mesh, tmp_path: Path) -> None:
    target = f"{ECHO}:{PORT}"
    async with _echo_mesh(mesh, _split(80, 20)), _client(mesh, tmp_path) as client:
        answered = await client.calls(target, 400)
        assert answered.keys() == {"echo-v1", "echo-v2"}, answered
        assert 0.72 <= answered["echo-v1"] / 400 <= 0.88, answered

        mesh.write("routes", _split(0, 100))

        async def all_to_v2() -> Counter[str] | None:
            answered = await client.calls(target, 20)
            return answered if answered == {"echo-v2": 20} else None

        await eventually(all_to_v2, "every call answered by echo-v2", attempts=40)


async def test_faults_retries_timeouts_and_ring_hash_are_accepted(
    mesh: Mesh, tmp_path: Path
) -> None:
    """Everything the sidecar routes carry that gRPC reads (or must be spared) is ACKed, and
    an abort injected by the route's fault config fails the calls it matches."""
    rules = textwrap.dedent(
        """\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: echo, namespace: default}
        spec:
          hosts: [echo]
          http:
          - match: [{headers: {x-fault: {exact: "1"}}}]
            fault: {abort: {grpcStatus: ABORTED, percentage: {value: 100}}}
            route: [{destination: {host: echo}}]
          - match: [{queryParams: {v: {exact: "1"}}}]
            route: [{destination: {host: echo, subset: v1}}]
          - timeout: 5s
            retries: {attempts: 2, retryOn: unavailable, perTryTimeout: 1s}
            corsPolicy: {allowOrigins: [{exact: "https://example.com"}]}
            headers: {request: {set: {x-mesh: "1"}}}
            route: [{destination: {host: echo}}]
        """
    )
    target = f"{ECHO}:{PORT}"
    hashing = "{loadBalancer: {consistentHash: {httpHeaderName: x-user}}}"
    async with _echo_mesh(mesh, rules, policy=hashing), _client(mesh, tmp_path) as client:
        answered = await client.calls(target, 20, "x-user=alice")
        assert len(answered) == 1 and sum(answered.values()) == 20, answered  # one hash, one host
        assert await client.calls(target, 5, "x-fault=1") == {"error:ABORTED": 5}
        entries = await mesh.synced({"client"})
        assert all(entries["client"][t]["state"] == "SYNCED" for t in ("lds", "rds", "cds", "eds"))
