"""Galley under load: N resources to two subscribers, and how fast one edited file reaches them.

Why: galley's issue set two targets. Ten thousand realistic resources (VirtualServices with
several HTTP routes, DestinationRules with subsets, ServiceEntries, Gateways; 100 per file) must
be read, validated and distributed to subscribers, and one changed file must reach every
subscriber with a p99 under 100 ms. This reproduces both and reports galley's cost apart from
its clients': galley and each subscriber (one state-of-the-world, one delta, both
`galley.client.ConfigClient`) run in their own spawned process, and this process only writes
files, relays galley's address and reads the clock and /proc.

Timing uses `time.monotonic()`, which is CLOCK_MONOTONIC and therefore one clock for every
process on Linux: a subscriber stamps the moment its `on_change` sees a resource, and the
orchestrator subtracts the moment just before it wrote the file. CPU seconds (utime + stime,
the counters `resource.getrusage` reads) come from /proc/<pid>/stat and peak RSS from VmHWM in
/proc/<pid>/status, so each process is measured while it runs and apart from the others. Every
wait is bounded; processes are stopped through their control pipe (or killed) on every exit.

Run: `python -m benchmarks.galley_load [--resources N] [--changes M] [--per-file K]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import math
import multiprocessing
import os
import queue
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, TypeVar

import yaml

from benchmarks.procstat import cpu_seconds, peak_rss_mib
from galley.client import ConfigClient
from galley.server import Galley, GalleyOptions
from meshconfig import Kind, Resource
from meshconfig.kinds import kind_by_id
from meshcore.processes import end_process
from meshcore.quiet_gc import QuietCollector

DEFAULT_RESOURCES = 10_000
DEFAULT_CHANGES = 200
DEFAULT_PER_FILE = 100
DEFAULT_LOAD_TIMEOUT_S = 600.0
TARGET_P99_MS = 100.0
CHANGE_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 60.0  # a process importing its modules and saying so
STOP_TIMEOUT_S = 10.0

GROUP = "networking.istio.io"
API_VERSION = f"{GROUP}/v1"
KIND_IDS = tuple(
    f"{GROUP}/{kind}" for kind in ("VirtualService", "DestinationRule", "ServiceEntry", "Gateway")
)
VIRTUAL_SERVICE = KIND_IDS[0]
REVISION_ANNOTATION = "bench.pymesh.io/revision"
REVISION_HEADER = "x-bench-revision"
# Resources come in blocks: three services, each with a VirtualService, a DestinationRule and a
# ServiceEntry, and one Gateway that exposes them; blocks spread over this many namespaces.
SERVICES_PER_BLOCK = 3
BLOCK = SERVICES_PER_BLOCK * 3 + 1
NAMESPACES = 20
SUBSCRIBERS = (("sotw", False), ("delta", True))  # role, delta protocol
GALLEY = "galley"
STOP = "stop"
DIGEST = "digest"
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

Document = dict[str, Any]


class BenchmarkError(RuntimeError):
    """The run could not measure what it set out to (a timeout, a crash, wrong content)."""


# Generated configuration.


def _virtual_service(service: str, namespace: str, gateway: str) -> Document:
    host = f"{service}.{namespace}.svc.cluster.local"
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualService",
        "metadata": {
            "name": service,
            "namespace": namespace,
            "annotations": {REVISION_ANNOTATION: "0"},
        },
        "spec": {
            "hosts": [host, f"{service}.example.com"],
            "gateways": [gateway, "mesh"],
            "http": [
                {
                    "name": "canary-users",
                    "match": [{"headers": {"end-user": {"exact": "canary"}}}],
                    "route": [
                        {
                            "destination": {"host": host, "subset": "v2", "port": {"number": 8080}},
                            "headers": {"request": {"set": {REVISION_HEADER: "0"}}},
                        }
                    ],
                },
                {
                    "name": "api",
                    "match": [{"uri": {"prefix": "/api/v1/"}}, {"uri": {"exact": "/api"}}],
                    "route": [
                        {"destination": {"host": host, "subset": "v1"}, "weight": 90},
                        {"destination": {"host": host, "subset": "v2"}, "weight": 10},
                    ],
                    "timeout": "5s",
                    "retries": {
                        "attempts": 3,
                        "perTryTimeout": "2s",
                        "retryOn": "5xx,connect-failure",
                    },
                },
                {
                    "name": "default",
                    "route": [{"destination": {"host": host, "subset": "v1"}}],
                    "fault": {"delay": {"fixedDelay": "100ms", "percentage": {"value": 0.5}}},
                },
            ],
        },
    }


def _destination_rule(service: str, namespace: str) -> Document:
    return {
        "apiVersion": API_VERSION,
        "kind": "DestinationRule",
        "metadata": {"name": service, "namespace": namespace},
        "spec": {
            "host": f"{service}.{namespace}.svc.cluster.local",
            "trafficPolicy": {
                "tls": {"mode": "ISTIO_MUTUAL"},
                "connectionPool": {
                    "tcp": {"maxConnections": 100, "connectTimeout": "3s"},
                    "http": {"http1MaxPendingRequests": 64, "maxRequestsPerConnection": 10},
                },
                "outlierDetection": {
                    "consecutive5xxErrors": 5,
                    "interval": "10s",
                    "baseEjectionTime": "30s",
                    "maxEjectionPercent": 50,
                },
                "loadBalancer": {"simple": "LEAST_REQUEST"},
            },
            "subsets": [
                {"name": version, "labels": {"version": version}} for version in ("v1", "v2", "v3")
            ],
        },
    }


def _service_entry(service: str, namespace: str) -> Document:
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceEntry",
        "metadata": {"name": service, "namespace": namespace},
        "spec": {
            "hosts": [f"{service}.{namespace}.svc.cluster.local"],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "ports": [
                {"number": 8080, "name": "http", "protocol": "HTTP"},
                {"number": 9090, "name": "grpc", "protocol": "GRPC"},
            ],
            "workloadSelector": {"labels": {"app": service}},
        },
    }


def _gateway(name: str, namespace: str, services: list[str]) -> Document:
    hosts = [f"{service}.example.com" for service in services]
    return {
        "apiVersion": API_VERSION,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": hosts},
                {
                    "port": {"number": 8443, "name": "https", "protocol": "HTTPS"},
                    "hosts": hosts,
                    "tls": {"mode": "SIMPLE", "credentialName": f"{name}-cert"},
                },
            ],
        },
    }


def generate(count: int) -> list[Document]:
    """`count` valid resources: 30% each of VS, DR and ServiceEntry, 10% Gateway, in blocks."""
    documents: list[Document] = []
    for block in range(math.ceil(count / BLOCK)):
        namespace = f"team-{block % NAMESPACES:02d}"
        gateway = f"gateway-{block:05d}"
        services = [f"svc-{block * SERVICES_PER_BLOCK + i:05d}" for i in range(SERVICES_PER_BLOCK)]
        for service in services:
            documents.append(_virtual_service(service, namespace, gateway))
            documents.append(_destination_rule(service, namespace))
            documents.append(_service_entry(service, namespace))
        documents.append(_gateway(gateway, namespace, services))
    return documents[:count]


def set_revision(document: Document, revision: int) -> None:
    """Edit a generated VirtualService: its annotation and a request header its first route sets."""
    document["metadata"]["annotations"][REVISION_ANNOTATION] = str(revision)
    headers = document["spec"]["http"][0]["route"][0]["headers"]
    headers["request"]["set"][REVISION_HEADER] = str(revision)


def object_name(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


@dataclass
class ConfigFile:
    path: Path
    documents: list[Document]

    def text(self) -> str:
        return str(yaml.dump_all(self.documents, Dumper=_DUMPER, sort_keys=False))

    def write(self, text: str) -> None:
        """Replace the file as a ConfigMap update or an editor's save does: write, then rename."""
        hidden = self.path.with_name(f".{self.path.name}.tmp")  # galley never reads hidden files
        hidden.write_text(text, encoding="utf-8")
        os.replace(hidden, self.path)


def write_config(directory: Path, documents: list[Document], per_file: int) -> list[ConfigFile]:
    files = [
        ConfigFile(
            directory / f"config-{index // per_file:04d}.yaml", documents[index : index + per_file]
        )
        for index in range(0, len(documents), per_file)
    ]
    for file in files:
        file.write(file.text())
    return files


def change_targets(files: list[ConfigFile]) -> list[tuple[ConfigFile, Document]]:
    """Every VirtualService, ordered so that consecutive changes edit different files."""
    by_file = [
        [(file, doc) for doc in file.documents if doc["kind"] == "VirtualService"] for file in files
    ]
    deepest = max((len(targets) for targets in by_file), default=0)
    return [
        targets[depth] for depth in range(deepest) for targets in by_file if depth < len(targets)
    ]


def content_digest(items: Iterable[tuple[str, str, str, Mapping[str, Any]]]) -> str:
    """One digest of (kind id, namespace, name, spec) for a whole set, in any order."""
    lines = sorted(
        f"{kind_id} {object_name(namespace, name)} "
        + json.dumps(spec, sort_keys=True, separators=(",", ":"))
        for kind_id, namespace, name, spec in items
    )
    return hashlib.blake2b("\n".join(lines).encode(), digest_size=16).hexdigest()


def documents_digest(documents: Iterable[Document]) -> str:
    return content_digest(
        (
            f"{doc['apiVersion'].rpartition('/')[0]}/{doc['kind']}",
            doc["metadata"]["namespace"],
            doc["metadata"]["name"],
            doc["spec"],
        )
        for doc in documents
    )


# Messages from the child processes to the orchestrator (all on one queue).


@dataclass(frozen=True)
class Ready:
    role: str


@dataclass(frozen=True)
class Serving:
    role: str
    port: int
    resources: int
    errors: dict[str, str]
    start_s: float  # how long Galley.start() took: read, validate, index, bind


@dataclass(frozen=True)
class Loaded:
    role: str
    at: float  # time.monotonic() in the subscriber when it first held every resource


@dataclass(frozen=True)
class Digest:
    role: str
    resources: int
    digest: str


@dataclass(frozen=True)
class Seen:
    role: str
    at: float  # time.monotonic() as on_change began with the edited resource in hand
    name: str
    revision: str
    spec: dict[str, Any]


@dataclass(frozen=True)
class Failed:
    role: str
    error: str


Message = Ready | Serving | Loaded | Digest | Seen | Failed
M = TypeVar("M", Ready, Serving, Loaded, Digest, Seen)


# The child processes.


def _child(role: str, events: Any, body: Callable[[], None]) -> None:
    """Run a child's body; a crash goes on the queue (the orchestrator prints it) and exits 1."""
    logging.basicConfig(level=logging.WARNING, format=f"{role} %(levelname)s %(name)s: %(message)s")
    try:
        body()
    except Exception:
        events.put(Failed(role, traceback.format_exc()))
        raise SystemExit(1) from None


async def _until_stopped(control: Connection, handlers: Mapping[str, Callable[[], None]]) -> None:
    """Serve control messages until STOP, or until the orchestrator's end of the pipe closes."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()

    def readable() -> None:
        try:
            message = control.recv()
        except EOFError:
            message = STOP
        if message == STOP:
            stopped.set()
        elif message in handlers:
            handlers[message]()
        else:
            logging.error("ignoring unknown control message %r", message)

    loop.add_reader(control.fileno(), readable)
    try:
        await stopped.wait()
    finally:
        loop.remove_reader(control.fileno())


def galley_main(config_dir: str, host: str, control: Connection, events: Any) -> None:
    """Entry point of the galley process."""
    _child(GALLEY, events, lambda: asyncio.run(_serve(Path(config_dir), host, control, events)))


async def _serve(config_dir: Path, host: str, control: Connection, events: Any) -> None:
    options = GalleyOptions(config_dir=config_dir, host=host, grpc_port=0, monitoring_port=0)
    began = time.monotonic()
    async with QuietCollector(), Galley(options) as galley:  # as `python -m galley` runs
        errors = dict(galley.directory.errors) if galley.directory is not None else {}
        resources = len(galley.store.snapshot.resources)
        events.put(Serving(GALLEY, galley.grpc_port, resources, errors, time.monotonic() - began))
        await _until_stopped(control, {})


class _Holdings:
    """What one subscriber holds, reporting its milestones to the orchestrator."""

    def __init__(self, role: str, expected: int, events: Any) -> None:
        self.role = role
        self.expected = expected
        self.events = events
        self.by_kind: dict[str, list[Resource]] = {}
        self.revisions: dict[str, str] = {}  # VirtualService name -> revision annotation
        self.loaded = False

    def on_change(self, kind: Kind, resources: list[Resource]) -> None:
        at = time.monotonic()
        self.by_kind[kind.id] = resources
        if kind.id == VIRTUAL_SERVICE:
            for resource in resources:
                meta = resource.metadata
                name = object_name(meta.namespace, meta.name)
                revision = meta.annotations.get(REVISION_ANNOTATION, "")
                previous = self.revisions.get(name)
                self.revisions[name] = revision
                if previous is not None and previous != revision:
                    self.events.put(Seen(self.role, at, name, revision, resource.spec_dict()))
        if not self.loaded and self.count() == self.expected:
            self.loaded = True
            self.events.put(Loaded(self.role, at))

    def count(self) -> int:
        return sum(len(resources) for resources in self.by_kind.values())

    def report_digest(self) -> None:
        digest = content_digest(
            (r.kind.id, r.metadata.namespace, r.metadata.name, r.spec_dict())
            for resources in self.by_kind.values()
            for r in resources
        )
        self.events.put(Digest(self.role, self.count(), digest))


def subscriber_main(
    role: str, delta: bool, expected: int, control: Connection, events: Any
) -> None:
    """Entry point of a subscriber process; it connects once the orchestrator sends an address."""

    def body() -> None:
        events.put(Ready(role))
        try:
            address = control.recv()
        except EOFError:
            return
        if address == STOP:  # the run ended before galley served
            return
        asyncio.run(_subscribe(role, delta, expected, address, control, events))

    _child(role, events, body)


def _kinds() -> list[Kind]:
    found = {kind_id: kind_by_id(kind_id) for kind_id in KIND_IDS}
    unknown = [kind_id for kind_id, kind in found.items() if kind is None]
    if unknown:
        raise BenchmarkError(f"meshconfig does not know {', '.join(unknown)}")
    return [kind for kind in found.values() if kind is not None]


async def _subscribe(
    role: str, delta: bool, expected: int, address: str, control: Connection, events: Any
) -> None:
    holdings = _Holdings(role, expected, events)
    client = ConfigClient(
        address, _kinds(), holdings.on_change, node_id=f"bench~{role}", delta=delta
    )
    task = asyncio.create_task(client.run(), name=f"{role}-client")
    try:
        await _until_stopped(control, {DIGEST: holdings.report_digest})
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# The orchestrator.


class Processes:
    """The spawned galley and subscriber processes, their control pipes and their event queue."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self.events: Any = self._context.Queue()
        self._children: dict[str, tuple[BaseProcess, Connection]] = {}

    def start(self, role: str, target: Callable[..., None], *args: Any) -> None:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=target, args=(*args, theirs, self.events), name=f"galley-load-{role}"
        )
        process.start()
        theirs.close()
        self._children[role] = (process, ours)

    def pid(self, role: str) -> int:
        pid = self._children[role][0].pid
        if pid is None:
            raise BenchmarkError(f"{role} has not started")
        return pid

    def send(self, role: str, message: str) -> None:
        self._children[role][1].send(message)

    def next_event(self, deadline: float, waiting_for: str) -> Message:
        """The next message from any child; BenchmarkError on a crash or at `deadline`."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchmarkError(f"gave up waiting for {waiting_for}")
            try:
                message: Message = self.events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                for role, (process, _) in self._children.items():
                    if process.exitcode is not None:
                        raise BenchmarkError(
                            f"{role} exited with code {process.exitcode} while waiting for "
                            f"{waiting_for}"
                        ) from None
                continue
            if isinstance(message, Failed):
                raise BenchmarkError(f"{message.role} failed:\n{message.error}")
            return message

    def close(self) -> None:
        """Stop every child: STOP on its pipe, then SIGTERM, then SIGKILL, each bounded."""
        for _, control in self._children.values():
            with contextlib.suppress(OSError):  # the child is already gone
                control.send(STOP)
            control.close()
        for process, _ in self._children.values():
            end_process(process, STOP_TIMEOUT_S)
        self._children.clear()
        self.events.close()
        self.events.join_thread()


@dataclass(frozen=True)
class LoadResult:
    resources: int
    files: int
    galley_start_s: float  # Galley.start(): read, validate and index every file, then serve
    until_loaded_s: dict[str, float]  # galley process launch -> subscriber holds every resource
    cpu_s: dict[str, float]  # galley from launch, subscribers from connecting

    @property
    def total_s(self) -> float:
        return max(self.until_loaded_s.values())


@dataclass(frozen=True)
class ChangeResult:
    latencies_ms: dict[str, list[float]]  # per subscriber, in change order
    cpu_s: dict[str, float]


@dataclass(frozen=True)
class Result:
    load: LoadResult
    changes: ChangeResult
    peak_rss_mib: dict[str, float]

    @property
    def target_met(self) -> bool:
        return all(
            percentile(latencies, 99) < TARGET_P99_MS
            for latencies in self.changes.latencies_ms.values()
        )


def percentile(values: list[float], rank: float) -> float:
    """Nearest-rank percentile (the value at or below which `rank`% of `values` lie)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(rank / 100 * len(ordered)) - 1)]


def run(
    resources: int,
    changes: int,
    *,
    per_file: int = DEFAULT_PER_FILE,
    host: str = "127.0.0.1",
    load_timeout_s: float = DEFAULT_LOAD_TIMEOUT_S,
) -> Result:
    """Generate the config, start galley and both subscribers, measure loading, then changes."""
    documents = generate(resources)
    with tempfile.TemporaryDirectory(prefix="galley-load-") as workdir:
        files = write_config(Path(workdir), documents, per_file)
        processes = Processes()
        try:
            load = _load(processes, files, documents, host, load_timeout_s)
            latencies, cpu = _change(processes, files, changes)
            peak = {role: peak_rss_mib(processes.pid(role)) for role in _roles()}
        finally:
            processes.close()
    return Result(load, ChangeResult(latencies, cpu), peak)


def _roles() -> list[str]:
    return [GALLEY, *(role for role, _ in SUBSCRIBERS)]


def _load(
    processes: Processes,
    files: list[ConfigFile],
    documents: list[Document],
    host: str,
    timeout_s: float,
) -> LoadResult:
    for role, delta in SUBSCRIBERS:
        processes.start(role, subscriber_main, role, delta, len(documents))
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    _collect(processes, Ready, {role for role, _ in SUBSCRIBERS}, deadline, "subscribers to start")

    launched = time.monotonic()
    processes.start(GALLEY, galley_main, str(files[0].path.parent), host)
    serving = _collect(processes, Serving, {GALLEY}, launched + timeout_s, "galley to serve")[
        GALLEY
    ]
    if serving.errors or serving.resources != len(documents):
        problems = "\n".join(serving.errors.values())
        raise BenchmarkError(
            f"galley accepted {serving.resources} of {len(documents)} resources:\n{problems}"
        )
    cpu_before = {role: cpu_seconds(processes.pid(role)) for role, _ in SUBSCRIBERS}
    for role, _ in SUBSCRIBERS:
        processes.send(role, f"{host}:{serving.port}")
    loaded = _collect(
        processes,
        Loaded,
        set(cpu_before),
        launched + timeout_s,
        f"both subscribers to hold {len(documents)} resources (--load-timeout)",
    )
    cpu = {GALLEY: cpu_seconds(processes.pid(GALLEY))}
    cpu.update((role, cpu_seconds(processes.pid(role)) - cpu_before[role]) for role in cpu_before)

    for role in loaded:
        processes.send(role, DIGEST)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    digests = _collect(processes, Digest, set(loaded), deadline, "the subscribers' digests")
    expected = documents_digest(documents)
    for role, digest in digests.items():
        if digest.digest != expected:
            raise BenchmarkError(
                f"{role} holds {digest.resources} resources, not exactly the "
                f"{len(documents)} written"
            )
    return LoadResult(
        resources=len(documents),
        files=len(files),
        galley_start_s=serving.start_s,
        until_loaded_s={role: message.at - launched for role, message in loaded.items()},
        cpu_s=cpu,
    )


def _collect(
    processes: Processes, kind: type[M], roles: set[str], deadline: float, waiting_for: str
) -> dict[str, M]:
    """Exactly one message of type `kind` from each of `roles`, and nothing else meanwhile."""
    got: dict[str, M] = {}
    while got.keys() != roles:
        missing = ", ".join(sorted(roles - got.keys()))
        message = processes.next_event(deadline, f"{waiting_for} (no word yet from {missing})")
        if not isinstance(message, kind) or message.role not in roles - got.keys():
            raise BenchmarkError(f"unexpected {message!r} while waiting for {waiting_for}")
        got[message.role] = message
    return got


def _change(
    processes: Processes, files: list[ConfigFile], count: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Edit one VirtualService per change; wait until both subscribers hold exactly that."""
    targets = change_targets(files)
    if not targets:
        raise BenchmarkError("the generated config has no VirtualService to edit")
    roles = {role for role, _ in SUBSCRIBERS}
    latencies: dict[str, list[float]] = {role: [] for role in roles}
    cpu_before = {role: cpu_seconds(processes.pid(role)) for role in _roles()}
    for revision in range(1, count + 1):
        file, document = targets[(revision - 1) % len(targets)]
        set_revision(document, revision)
        text = file.text()
        name = object_name(document["metadata"]["namespace"], document["metadata"]["name"])
        written = time.monotonic()
        file.write(text)
        seen = _collect(
            processes,
            Seen,
            roles,
            written + CHANGE_TIMEOUT_S,
            f"change {revision} ({name} in {file.path.name}) to reach both subscribers "
            f"within {CHANGE_TIMEOUT_S:.0f} s",
        )
        for role, message in seen.items():
            if (message.name, message.revision) != (name, str(revision)):
                raise BenchmarkError(
                    f"{role} saw {message.name} at revision {message.revision}, "
                    f"expected {name} at revision {revision}"
                )
            if message.spec != document["spec"]:
                raise BenchmarkError(f"{role} holds {name} with other content than was written")
            latencies[role].append((message.at - written) * 1000)
    cpu = {role: cpu_seconds(processes.pid(role)) - cpu_before[role] for role in _roles()}
    return latencies, cpu


def report(result: Result) -> str:
    """The results as the table printed and kept in BENCHMARKS.md."""
    load, changes = result.load, result.changes
    subscribers = [role for role, _ in SUBSCRIBERS]
    lines = [
        f"Load: {load.resources} resources in {load.files} files, to {', '.join(subscribers)}",
        "",
        "| step | seconds |",
        "|---|---|",
        f"| Galley.start() (read, validate, index, serve) | {load.galley_start_s:.2f} |",
        *(
            f"| galley launch -> {role} holds all | {load.until_loaded_s[role]:.2f} |"
            for role in subscribers
        ),
        f"| total: galley launch -> both hold all | {load.total_s:.2f} |",
        "",
        "| process | CPU s, load | CPU s, changes | peak RSS MiB |",
        "|---|---|---|---|",
        *(
            f"| {role} | {load.cpu_s[role]:.2f} | {changes.cpu_s[role]:.2f} "
            f"| {result.peak_rss_mib[role]:.0f} |"
            for role in _roles()
        ),
        "",
        f"Change propagation: {len(changes.latencies_ms[subscribers[0]])} changes, "
        "one VirtualService in one file each",
        "",
        "| subscriber | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|",
        *(
            f"| {role} | {percentile(changes.latencies_ms[role], 50):.1f} "
            f"| {percentile(changes.latencies_ms[role], 99):.1f} "
            f"| {max(changes.latencies_ms[role]):.1f} |"
            for role in subscribers
        ),
        "",
        f"p99 target (< {TARGET_P99_MS:.0f} ms): {'met' if result.target_met else 'MISSED'}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="galley load and change-propagation benchmark")
    parser.add_argument("--resources", type=int, default=DEFAULT_RESOURCES)
    parser.add_argument("--changes", type=int, default=DEFAULT_CHANGES)
    parser.add_argument("--per-file", type=int, default=DEFAULT_PER_FILE)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address galley binds")
    parser.add_argument(
        "--load-timeout",
        type=float,
        default=DEFAULT_LOAD_TIMEOUT_S,
        help="seconds from galley's launch until both subscribers must hold everything",
    )
    options = parser.parse_args(argv)
    for flag in ("resources", "changes", "per_file"):
        if getattr(options, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    try:
        result = run(
            options.resources,
            options.changes,
            per_file=options.per_file,
            host=options.host,
            load_timeout_s=options.load_timeout,
        )
    except BenchmarkError as error:
        print(f"galley_load: {error}", file=sys.stderr)
        return 1
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
