"""Pilot at scale: thousands of simulated sidecars, churn, and how fast each change converges.

Why: issue #7 asks pilot to beat istiod's published figures on a two-core machine (1000
services, 2000 sidecars; an endpoint change on every proxy at p99 under 0.5 s, a change that
touches every proxy under 1.5 s, peak RSS under 600 MB, 2000 proxies connected from cold within
5 s) and to show that the cost grows no worse than linearly. This reproduces that setting the way
Istio's `pilot-load` does, with each side in its own process so each is measured apart:

- pilot: `python -m pilot --config-dir <tmp>` on a loopback address of its own, reading the
  generated Istio YAML (`pilot_load_config`); its CPU (utime + stime from /proc/<pid>/stat) and
  peak RSS (VmHWM) are read while it runs.
- load generator: one or more spawned processes (`pilot_load_client`), each opening ADS streams
  that behave like Envoy's, state of the world and delta mixed, and reporting when each stream
  has its full config and when it ACKed the response completing each change.
- this process writes the config, makes the churn by rewriting files in the config directory
  (pilot's directory watcher is its normal input), and reads the clock and /proc.

Churn, in rounds: an endpoint added to one service (and the previous round's removed), a
VirtualService change that changes every proxy's routes, a service added, that service removed.
For each kind it reports the time from writing the file until every stream has ACKed (p50, p99
and max over all streams and changes of the kind), the responses and bytes the streams
received, pilot's CPU per change and per proxy, and the load generator's CPU, so that a saturated
client shows. One extra stream stalls (stops reading) before the churn: the others must not
wait for it, and pilot must end it after its send timeout.

After pilot, the same run measures the bare grpc.aio server of the issue's prototype figures
(`xds_baseline`: the same address, as many streams, the same transport on both sides, pushes of
pre-encoded responses and nothing else) and sets pilot's CPU per proxy for each phase beside
what that server needs for the same messages and bytes (`--no-baseline` skips it).

Correctness is checked in the same run, and a failure ends it with an error: every stream
converges on every change; no stream receives a response it did not need (see
`pilot_load_client`); at the end every stream's ACKed versions are the versions pilot's
`/debug/syncz` reports as synced, and for `--verify` proxies (all with `--verify 0`) every
resource the stream holds is exactly what `/debug/config_dump` shows for it.

Timing uses `time.monotonic()` (CLOCK_MONOTONIC, one clock for every process on Linux). Every
wait is bounded; pilot and the load generators are stopped on every exit.

Run: `python -m benchmarks.pilot_load --services 1000 --proxies 2000 [--rounds N] ...`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import multiprocessing
import os
import queue
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, TypeVar

from benchmarks import pilot_load_config as config
from benchmarks import xds_baseline
from benchmarks.control import STOP
from benchmarks.pilot_load_client import (
    Check,
    ClientSpec,
    Connected,
    Converged,
    Expectation,
    Failed,
    Holdings,
    Ready,
    Redundant,
    Report,
    Versions,
    client_main,
)
from benchmarks.procstat import cpu_seconds, minor_faults, peak_rss_mib
from meshcore.processes import end_process
from meshcore.xds import types

DEFAULT_ENDPOINTS = 2
DEFAULT_ROUNDS = 5
DEFAULT_CLIENTS = 2
DEFAULT_VERIFY = 20
KINDS = ("endpoint", "route", "service-add", "service-remove")
TARGET_ENDPOINT_P99_S = 0.5
TARGET_EVERY_PROXY_P99_S = 1.5
TARGET_CONNECT_S = 5.0
TARGET_RSS_BYTES = 600_000_000  # the 600 MB: 572 MiB
TARGET_BASELINE_RATIO = 2.0  # pilot CPU per proxy against the bare grpc.aio server's
PILOT_START_TIMEOUT_S = 120.0
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
PROFILER_ATTACH_S = 1.0
SETTLE_S = 0.5  # quiet time after each change, so pushes of one change do not count for the next
DEBOUNCE = "pilot_debounce_time"  # pilot's histograms: first config event -> push starts
CONVERGENCE = "pilot_proxy_convergence_time"  # first config event -> a proxy's response sent

T = TypeVar("T")


class BenchmarkError(RuntimeError):
    """The run could not measure what it set out to, or pilot served something wrong."""


def percentile(values: list[float], rank: float) -> float:
    """Nearest-rank percentile (the value at or below which `rank`% of `values` lie)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(rank / 100 * len(ordered)) - 1)]


# Pilot, in its own process.


class PilotProcess:
    """`python -m pilot` on `host`, its log in a file, and its /proc counters."""

    def __init__(self, config_dir: Path, host: str, log_path: Path) -> None:
        self.host = host
        self.grpc = f"{host}:15010"
        self.monitoring = f"http://{host}:15014"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pilot",
                "--config-dir",
                str(config_dir),
                "--host",
                host,
                "--log-level",
                "WARNING",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchmarkError(f"pilot exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError):
                if self.get("/ready") == b"ready\n":
                    return
            time.sleep(0.05)
        raise BenchmarkError(f"pilot not ready within {timeout:.0f} s:\n{self.log()}")

    def get(self, path: str, timeout: float = 120.0) -> bytes:
        with urllib.request.urlopen(self.monitoring + path, timeout=timeout) as response:
            body: bytes = response.read()
            return body

    def json(self, path: str) -> Any:
        return json.loads(self.get(path))

    def histograms(self) -> dict[str, float]:
        """The `_sum` and `_count` of pilot's histograms, from /metrics."""
        found: dict[str, float] = {}
        for line in self.get("/metrics").decode().splitlines():
            name, _, value = line.partition(" ")
            if name.endswith(("_sum", "_count")) and "{" not in name:
                found[name] = float(value)
        return found

    @property
    def cpu_s(self) -> float:
        return cpu_seconds(self.process.pid)

    @property
    def minor_faults(self) -> int:
        return minor_faults(self.process.pid)

    @property
    def peak_rss_mib(self) -> float:
        return peak_rss_mib(self.process.pid)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class Profiler:
    """py-spy sampling pilot and the load generators during each phase: one raw (collapsed
    stacks) file per process and phase, `<phase>.<process>.txt`."""

    def __init__(self, directory: Path | None, pids: dict[str, int]) -> None:
        self.directory = directory
        self.pids = pids

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self.directory is None:
            yield
            return
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        record = [spy, "record", "-f", "raw", "--rate", "200", "--nonblocking"]
        samplers = [
            subprocess.Popen(
                [*record, "-p", str(pid), "-o", str(self.directory / f"{name}.{role}.txt")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for role, pid in self.pids.items()
        ]
        time.sleep(PROFILER_ATTACH_S)
        try:
            yield
        finally:
            for sampler in samplers:
                sampler.send_signal(signal.SIGINT)
            for sampler in samplers:
                try:
                    sampler.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    sampler.kill()
                    sampler.wait()


# The load generator processes.


class Clients:
    """The spawned load generator processes, their control pipes and their event queue."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self.events: Any = self._context.Queue()
        self._children: dict[str, tuple[BaseProcess, Connection]] = {}

    def start(self, spec: ClientSpec, target: str) -> None:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=client_main, args=(spec, target, theirs, self.events), name=spec.role
        )
        process.start()
        theirs.close()
        self._children[spec.role] = (process, ours)

    @property
    def roles(self) -> list[str]:
        return list(self._children)

    def pid(self, role: str) -> int:
        pid = self._children[role][0].pid
        if pid is None:
            raise BenchmarkError(f"{role} has not started")
        return pid

    def send(self, command: str, argument: Any = None) -> None:
        for _, control in self._children.values():
            control.send((command, argument))

    def collect(self, kind: type[T], deadline: float, waiting_for: str) -> dict[str, T]:
        """One message of type `kind` from every client process."""
        got: dict[str, T] = {}
        while got.keys() != self._children.keys():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = ", ".join(sorted(self._children.keys() - got.keys()))
                raise BenchmarkError(f"gave up waiting for {waiting_for} (from {missing})")
            try:
                message = self.events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                for role, (process, _) in self._children.items():
                    if process.exitcode is not None:
                        raise BenchmarkError(
                            f"{role} exited with {process.exitcode} while waiting for {waiting_for}"
                        ) from None
                continue
            if isinstance(message, Failed):
                raise BenchmarkError(f"{message.role} failed:\n{message.error}")
            if not isinstance(message, kind):
                raise BenchmarkError(f"unexpected {message!r} while waiting for {waiting_for}")
            got[message.role] = message  # type: ignore[attr-defined]
        return got

    def close(self) -> None:
        for _, control in self._children.values():
            with contextlib.suppress(OSError):
                control.send(STOP)
            control.close()
        for process, _ in self._children.values():
            end_process(process, STOP_TIMEOUT_S)
        self._children.clear()
        self.events.close()
        self.events.join_thread()


# Results.


@dataclass(frozen=True)
class Options:
    services: int
    proxies: int
    endpoints: int = DEFAULT_ENDPOINTS
    namespaces: int = 10
    rounds: int = DEFAULT_ROUNDS
    clients: int = DEFAULT_CLIENTS
    delta_every: int = 2
    verify: int = DEFAULT_VERIFY  # proxies compared with /debug/config_dump; 0: all
    host: str = ""
    connect_timeout: float = 60.0
    change_timeout: float = 30.0
    stall: bool = True
    profile: Path | None = None  # a directory for py-spy's profiles of pilot, one per phase
    baseline: bool = True  # measure the bare grpc.aio server after pilot (`xds_baseline`)


@dataclass
class KindResult:
    latencies_s: list[float] = field(default_factory=list)  # every stream, every change
    slowest_s: list[float] = field(default_factory=list)  # per change: until all had ACKed
    pilot_cpu_s: list[float] = field(default_factory=list)  # per change
    pilot_faults: list[int] = field(default_factory=list)  # per change: pilot's minor faults
    client_cpu_s: list[float] = field(default_factory=list)  # per change, all processes
    traffic: Counter[str] = field(default_factory=Counter)  # "<type> responses|bytes"
    # Pilot's own metrics over the changes: seconds summed, and how many observations.
    debounce: dict[str, float] = field(default_factory=lambda: {"sum": 0.0, "count": 0.0})
    convergence: dict[str, float] = field(default_factory=lambda: {"sum": 0.0, "count": 0.0})


@dataclass(frozen=True)
class StallResult:
    node: str
    cut_after_s: float | None  # stall -> pilot ended the stream (None: it had not)
    in_syncz: bool  # still listed as connected at the end


@dataclass(frozen=True)
class AgainstBaseline:
    """One phase, per proxy: what the streams received, pilot's CPU and the bare server's."""

    label: str
    messages: float
    mib: float
    pilot_us: float
    baseline_us: float

    @property
    def ratio(self) -> float:
        return self.pilot_us / self.baseline_us if self.baseline_us > 0 else math.inf


@dataclass
class Result:
    options: Options
    resources: int
    pilot_start_s: float
    pilot_start_cpu_s: float
    connect_s: list[float]  # per stream: launch of the streams -> full config held
    connect_pilot_cpu_s: float
    connect_pilot_faults: int
    connect_client_cpu_s: float
    connect_traffic: Counter[str]
    kinds: dict[str, KindResult]
    pilot_peak_rss_mib: float
    client_peak_rss_mib: dict[str, float]
    redundant: int
    redundant_examples: list[Redundant]
    redundant_changes: list[int]
    warming: int
    stall: StallResult | None
    verified_syncz: int
    verified_dump: int
    load_average: tuple[float, float, float]
    pilot_warnings: Counter[str]
    baseline: xds_baseline.MessageCost | None = None

    def p(self, kind: str, rank: float) -> float:
        return percentile(self.kinds[kind].latencies_s, rank)

    def against_baseline(self) -> list[AgainstBaseline]:
        """Every phase beside the baseline's cost for the same messages; empty without one."""
        if self.baseline is None:
            return []
        n = self.options.proxies
        phases = [("cold connect", [self.connect_pilot_cpu_s], self.connect_traffic, 1)]
        phases += [
            (kind, k.pilot_cpu_s, k.traffic, len(k.slowest_s)) for kind, k in self.kinds.items()
        ]
        compared = []
        for label, pilot_cpu, traffic, changes in phases:
            pushes, sent = _per_change(traffic, changes)
            messages, mib = pushes / n, sent / n / 2**20
            pilot_us = sum(pilot_cpu) / changes / n * 1e6
            compared.append(
                AgainstBaseline(label, messages, mib, pilot_us, self.baseline.of(messages, mib))
            )
        return compared

    @property
    def targets(self) -> dict[str, bool]:
        """The issue's targets that this run's size speaks to, met or not."""
        every_proxy = max(self.p(kind, 99) for kind in ("route", "service-add", "service-remove"))
        targets = {
            f"endpoint change p99 < {TARGET_ENDPOINT_P99_S} s": (
                self.p("endpoint", 99) < TARGET_ENDPOINT_P99_S
            ),
            f"every-proxy change p99 < {TARGET_EVERY_PROXY_P99_S} s": (
                every_proxy < TARGET_EVERY_PROXY_P99_S
            ),
            f"cold connect, all within {TARGET_CONNECT_S:.0f} s": (
                max(self.connect_s) < TARGET_CONNECT_S
            ),
            f"pilot peak RSS < {TARGET_RSS_BYTES / 1e6:.0f} MB "
            f"({TARGET_RSS_BYTES / 2**20:.0f} MiB)": self.pilot_peak_rss_mib * 2**20
            < TARGET_RSS_BYTES,
        }
        compared = self.against_baseline()
        if compared:
            worst = max(compared, key=lambda phase: phase.ratio)
            name = (
                f"pilot CPU per proxy within {TARGET_BASELINE_RATIO:.0f}x of the bare server's, "
                f"every phase (worst: {worst.label}, {worst.ratio:.2f}x)"
            )
            targets[name] = worst.ratio <= TARGET_BASELINE_RATIO
        return targets


# The run.


def run(options: Options) -> Result:
    mesh = config.Mesh(options.services, options.endpoints, options.proxies, options.namespaces)
    host = options.host or f"127.{random.randint(200, 250)}.{random.randint(0, 255)}.1"
    with tempfile.TemporaryDirectory(prefix="pilot-load-") as workdir:
        config_dir = Path(workdir, "config")
        config_dir.mkdir()
        resources = config.write_mesh(config_dir, mesh)
        clients = Clients()
        launched = time.monotonic()
        pilot = PilotProcess(config_dir, host, Path(workdir, "pilot.log"))
        try:
            pilot.wait_ready(PILOT_START_TIMEOUT_S)
            start_s, start_cpu = time.monotonic() - launched, pilot.cpu_s
            result = _measure(
                options, mesh, config_dir, pilot, clients, resources, start_s, start_cpu
            )
        finally:
            clients.close()
            pilot.stop()
    if options.baseline:
        result.baseline = xds_baseline.measure(
            host, options.proxies, rounds=options.rounds, timeout=options.change_timeout
        )
    return result


def _specs(options: Options, mesh: config.Mesh) -> Iterator[ClientSpec]:
    stalled = options.proxies if options.stall else None  # one proxy beyond the measured ones
    everyone = list(range(options.proxies + (1 if options.stall else 0)))
    for number in range(options.clients):
        yield ClientSpec(
            role=f"client-{number}",
            mesh=mesh,
            indices=tuple(everyone[number :: options.clients]),
            delta_every=options.delta_every,
            stalled_index=stalled,
        )


def _measure(
    options: Options,
    mesh: config.Mesh,
    config_dir: Path,
    pilot: PilotProcess,
    clients: Clients,
    resources: int,
    start_s: float,
    start_cpu: float,
) -> Result:
    for spec in _specs(options, mesh):
        clients.start(spec, pilot.grpc)
    clients.collect(Ready, time.monotonic() + STARTUP_TIMEOUT_S, "load generators to start")

    # From cold: every stream opened at once.
    pids = {"pilot": pilot.process.pid, **{role: clients.pid(role) for role in clients.roles}}
    profiler = Profiler(options.profile, pids)
    with profiler.phase("connect"):
        client_cpu, pilot_cpu, pilot_faults = _client_cpu(clients), pilot.cpu_s, pilot.minor_faults
        began = time.monotonic()
        clients.send("connect", began + options.connect_timeout)
        connected = clients.collect(
            Connected, began + options.connect_timeout + STARTUP_TIMEOUT_S, "streams to connect"
        )
        connect_pilot_cpu = pilot.cpu_s - pilot_cpu
        connect_pilot_faults = pilot.minor_faults - pilot_faults
        connect_client_cpu = _client_cpu(clients) - client_cpu
    missing = [node for c in connected.values() for node in c.missing]
    if missing:
        raise BenchmarkError(
            f"{len(missing)} streams had no full config after {options.connect_timeout:.0f} s "
            f"(--connect-timeout), e.g. {missing[:3]}\n" + "\n".join(_pilot_said(pilot.log_path))
        )
    connect_s = [at - began for c in connected.values() for at in c.complete_at.values()]
    time.sleep(SETTLE_S)

    stalled_at = time.time()  # wall clock, as pilot's log lines carry it
    if options.stall:
        _ask(clients, "stall", Ready)
    kinds = {kind: KindResult() for kind in KINDS}
    churn = _Churn(mesh, config_dir)
    change_kinds: dict[int, str] = {}
    for _ in range(options.rounds):
        for kind in KINDS:
            with profiler.phase(f"{churn.changes + 1:03d}-{kind}"):
                expectation, write = churn.next(kind, options.change_timeout)
                change_kinds[expectation.change] = kind
                _change(pilot, clients, kinds[kind], expectation, write)

    time.sleep(1.0)  # whatever is still in flight lands before anything is compared
    stall = (
        _stall_result(pilot, mesh.workload(options.proxies), stalled_at) if options.stall else None
    )
    verified_syncz = _verify_syncz(pilot, clients)
    verified_dump = _verify_dump(pilot, clients, options)
    reports = _ask(clients, "report", Report)
    errors = [e for r in reports.values() for e in r.errors]
    if errors:
        raise BenchmarkError("the load generator saw errors:\n" + "\n".join(errors))
    for kind, result in kinds.items():
        numbers = {n for n, k in change_kinds.items() if k == kind}
        result.traffic = _traffic(reports, numbers.__contains__)
    return Result(
        options=options,
        resources=resources,
        pilot_start_s=start_s,
        pilot_start_cpu_s=start_cpu,
        connect_s=connect_s,
        connect_pilot_cpu_s=connect_pilot_cpu,
        connect_pilot_faults=connect_pilot_faults,
        connect_client_cpu_s=connect_client_cpu,
        connect_traffic=_traffic(reports, lambda n: n == 0),
        kinds=kinds,
        pilot_peak_rss_mib=pilot.peak_rss_mib,
        client_peak_rss_mib={role: peak_rss_mib(clients.pid(role)) for role in clients.roles},
        redundant=sum(r.redundant_count for r in reports.values()),
        redundant_examples=[e for r in reports.values() for e in r.redundant][:10],
        redundant_changes=sorted({e.change for r in reports.values() for e in r.redundant}),
        warming=sum(sum(r.warming.values()) for r in reports.values()),
        stall=stall,
        verified_syncz=verified_syncz,
        verified_dump=verified_dump,
        load_average=os.getloadavg(),
        pilot_warnings=_warnings(pilot.log_path),
    )


def _client_cpu(clients: Clients) -> float:
    return sum(cpu_seconds(clients.pid(role)) for role in clients.roles)


def _ask(clients: Clients, command: str, kind: type[T], argument: Any = None) -> dict[str, T]:
    clients.send(command, argument)
    return clients.collect(kind, time.monotonic() + STARTUP_TIMEOUT_S, f"answers to {command}")


def _traffic(reports: dict[str, Report], wanted: Callable[[int], bool]) -> Counter[str]:
    """Responses and bytes per type ("cds responses", "cds bytes", ...) in the changes wanted."""
    total: Counter[str] = Counter()
    for report in reports.values():
        for (change, kind), traffic in report.traffic.items():
            if wanted(change):
                total[f"{kind} responses"] += traffic.responses
                total[f"{kind} bytes"] += traffic.bytes
    return total


def _address_marker(address: str) -> bytes:
    """How an endpoint address appears in a ClusterLoadAssignment: SocketAddress.address
    (field 2) with its length, so 10.192.0.1 does not also match 10.192.0.10."""
    encoded = address.encode()
    return bytes([0x12, len(encoded)]) + encoded


class _Churn:
    """Each change as a file to write and what every stream must then hold."""

    def __init__(self, mesh: config.Mesh, directory: Path) -> None:
        self.mesh = mesh
        self.directory = directory
        self.changes = 0
        self._endpoint: tuple[int, str] | None = None  # service index and address, while present
        self._revision = 0
        self._extra = 0  # extra services added so far
        self._added: int | None = None  # index of the extra service, while it exists

    def next(self, kind: str, timeout: float) -> tuple[Expectation, Callable[[], None]]:
        self.changes += 1
        make = {
            "endpoint": self._move_endpoint,
            "route": self._edit_route,
            "service-add": self._add_service,
            "service-remove": self._remove_service,
        }[kind]
        checks, write = make()
        return Expectation(self.changes, kind, tuple(checks), time.monotonic() + timeout), write

    def _move_endpoint(self) -> tuple[list[Check], Callable[[], None]]:
        """An endpoint for another service at a fresh address; the previous one goes away."""
        mesh, serial = self.mesh, self.changes
        service = (serial * 7919) % mesh.services
        document, address = mesh.churn_endpoint(serial, service)
        checks = [Check(types.ENDPOINT, mesh.cluster(service), marker=_address_marker(address))]
        if self._endpoint is not None:
            old_service, old_address = self._endpoint
            checks.append(
                Check(
                    types.ENDPOINT,
                    mesh.cluster(old_service),
                    marker=_address_marker(old_address),
                    marker_present=False,
                )
            )
        self._endpoint = (service, address)
        return checks, lambda: config.write_file(
            self.directory, config.CHURN_ENDPOINT_FILE, [document]
        )

    def _edit_route(self) -> tuple[list[Check], Callable[[], None]]:
        self._revision += 1
        document = self.mesh.virtual_service(self._revision)
        marker = config.revision_marker(self._revision).encode()
        checks = [Check(types.ROUTE, config.ROUTE_NAME, marker=marker)]
        return checks, lambda: config.write_file(
            self.directory, config.VIRTUAL_SERVICE_FILE, [document]
        )

    def _add_service(self) -> tuple[list[Check], Callable[[], None]]:
        index, documents = self.mesh.extra_service(self._extra)
        self._extra += 1
        self._added = index
        cluster, host = self.mesh.cluster(index), self.mesh.hostname(index)
        first_address = documents[1]["spec"]["address"]
        checks = [
            Check(types.CLUSTER, cluster),
            Check(types.ENDPOINT, cluster, marker=_address_marker(first_address)),
            Check(types.ROUTE, config.ROUTE_NAME, marker=host.encode()),
        ]
        return checks, lambda: config.write_file(
            self.directory, config.CHURN_SERVICES_FILE, documents
        )

    def _remove_service(self) -> tuple[list[Check], Callable[[], None]]:
        if self._added is None:
            raise BenchmarkError("no added service to remove")
        cluster, host = self.mesh.cluster(self._added), self.mesh.hostname(self._added)
        self._added = None
        checks = [
            Check(types.CLUSTER, cluster, present=False),
            Check(types.ENDPOINT, cluster, present=False),
            Check(types.ROUTE, config.ROUTE_NAME, marker=host.encode(), marker_present=False),
        ]
        return checks, lambda: config.remove_file(self.directory, config.CHURN_SERVICES_FILE)


def _change(
    pilot: PilotProcess,
    clients: Clients,
    result: KindResult,
    expectation: Expectation,
    write: Callable[[], None],
) -> None:
    """Announce the change, make it, and wait until every stream has ACKed it."""
    pilot_cpu, client_cpu, metrics = pilot.cpu_s, _client_cpu(clients), pilot.histograms()
    pilot_faults = pilot.minor_faults
    clients.send("change", expectation)
    written = time.monotonic()
    write()
    converged = clients.collect(
        Converged,
        expectation.deadline + STARTUP_TIMEOUT_S,
        f"change {expectation.change} ({expectation.kind}) to converge",
    )
    missing = [node for c in converged.values() for node in c.missing]
    if missing:
        raise BenchmarkError(
            f"change {expectation.change} ({expectation.kind}) had not reached {len(missing)} "
            f"streams by its deadline (--change-timeout), e.g. {missing[:3]}\n"
            + "\n".join(_pilot_said(pilot.log_path))
        )
    latencies = [at - written for c in converged.values() for at in c.acked_at.values()]
    result.latencies_s.extend(latencies)
    result.slowest_s.append(max(latencies))
    time.sleep(SETTLE_S)
    result.pilot_cpu_s.append(pilot.cpu_s - pilot_cpu)
    result.pilot_faults.append(pilot.minor_faults - pilot_faults)
    result.client_cpu_s.append(_client_cpu(clients) - client_cpu)
    after = pilot.histograms()
    for total, metric in ((result.debounce, DEBOUNCE), (result.convergence, CONVERGENCE)):
        for part in ("sum", "count"):
            total[part] += after[f"{metric}_{part}"] - metrics[f"{metric}_{part}"]


def _verify_syncz(pilot: PilotProcess, clients: Clients) -> int:
    """Every stream's ACKed versions are what pilot sent it last, and pilot calls it SYNCED."""
    versions = {
        n: v for c in _ask(clients, "versions", Versions).values() for n, v in c.nodes.items()
    }
    streams = {entry["node_id"]: entry for entry in pilot.json("/debug/syncz")}
    problems = []
    for node, held in versions.items():
        entry = streams.get(node)
        if entry is None:
            problems.append(f"{node}: no stream in /debug/syncz")
            continue
        for kind, version in held.items():
            status = entry.get(kind)
            if status is None and not version:
                continue  # a type this proxy never needed (no EDS clusters, say)
            if status is None or (status["state"], status["acked_version"]) != ("SYNCED", version):
                problems.append(f"{node} {kind}: holds version {version!r}, syncz says {status}")
    if problems:
        raise BenchmarkError(
            f"{len(problems)} proxies disagree with /debug/syncz:\n" + "\n".join(problems[:10])
        )
    return len(versions)


_DUMP_KINDS = {
    "type.googleapis.com/envoy.admin.v3.ClustersConfigDump": (
        "cds",
        "dynamicActiveClusters",
        "cluster",
        "name",
    ),
    "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump": (
        "eds",
        "dynamicEndpointConfigs",
        "endpointConfig",
        "clusterName",
    ),
    "type.googleapis.com/envoy.admin.v3.RoutesConfigDump": (
        "rds",
        "dynamicRouteConfigs",
        "routeConfig",
        "name",
    ),
}


def dumped_versions(dump: dict[str, Any]) -> dict[str, dict[str, str]]:
    """type -> resource name -> version, from pilot's /debug/config_dump of one proxy."""
    found: dict[str, dict[str, str]] = {"cds": {}, "eds": {}, "lds": {}, "rds": {}}
    for section in dump["configs"]:
        if section["@type"].endswith("ListenersConfigDump"):
            for listener in section.get("dynamicListeners", []):
                found["lds"][listener["name"]] = listener["activeState"]["versionInfo"]
            continue
        kind, entries, inner, name = _DUMP_KINDS[section["@type"]]
        for entry in section.get(entries, []):
            found[kind][entry[inner][name]] = entry["versionInfo"]
    return found


def _verify_dump(pilot: PilotProcess, clients: Clients, options: Options) -> int:
    """The sampled streams hold exactly the resources /debug/config_dump shows for them: all of
    its clusters and listeners, and of its endpoints and route configurations those the proxy
    subscribes to (pilot's snapshot may hold more than a proxy asks for)."""
    measured = options.proxies
    step = 1 if options.verify == 0 else max(1, measured // options.verify)
    mesh = config.Mesh(options.services, options.endpoints, options.proxies, options.namespaces)
    sample = {config.node_id(mesh.workload(i)) for i in range(0, measured, step)}
    holdings = {
        n: h
        for c in _ask(clients, "holdings", Holdings, sample).values()
        for n, h in c.nodes.items()
    }
    problems = []
    for node, held in sorted(holdings.items()):
        query = urllib.parse.quote(node)
        dumped = dumped_versions(pilot.json(f"/debug/config_dump?proxyID={query}"))
        for kind, resources in held.items():
            expected = dumped[kind]
            if kind in ("eds", "rds"):
                expected = {n: v for n, v in expected.items() if n in resources}
            if resources != expected:
                extra = sorted(resources.keys() - expected.keys())[:3]
                lacking = sorted(expected.keys() - resources.keys())[:3]
                differ = sorted(
                    n for n in resources.keys() & expected.keys() if resources[n] != expected[n]
                )[:3]
                problems.append(
                    f"{node} {kind}: holds extra {extra}, lacks {lacking}, differs in {differ}"
                )
    if problems:
        raise BenchmarkError(
            f"{len(problems)} differences from /debug/config_dump:\n" + "\n".join(problems[:10])
        )
    return len(holdings)


def _stall_result(pilot: PilotProcess, workload: config.Workload, stalled_at: float) -> StallResult:
    """Whether and when pilot ended the stalled stream, from its log and /debug/syncz."""
    node = config.node_id(workload)
    cut_after = None
    for line in pilot.log_path.read_text(errors="replace").splitlines():
        if node in line and "timed out" in line:
            logged = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            cut_after = logged.timestamp() - stalled_at
    in_syncz = any(entry["node_id"] == node for entry in pilot.json("/debug/syncz"))
    return StallResult(node, cut_after, in_syncz)


def _stall_line(stall: StallResult | None) -> str:
    if stall is None:
        return "no stalled stream"
    if stall.cut_after_s is not None:
        ended = f"ended by pilot's send timeout {stall.cut_after_s:.1f} s after it stopped reading"
    else:
        ended = "not ended by pilot (its writes never blocked long enough)"
    listed = "still" if stall.in_syncz else "no longer"
    return f"stalled stream {stall.node}: {ended}; {listed} in /debug/syncz"


def _warnings(log: Path) -> Counter[str]:
    """Pilot's warning lines, by message with the numbers taken out (repeats show as counts)."""
    found: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        if " WARNING " in line or " ERROR " in line:
            found["".join("#" if c.isdigit() else c for c in line.split(" ", 2)[-1])[:200]] += 1
    return found


def _pilot_said_lines(warnings: Counter[str]) -> list[str]:
    return [f"pilot logged {count}x: {line}" for line, count in warnings.most_common(5)]


def _pilot_said(log: Path) -> list[str]:
    """Pilot's most repeated warnings so far, for an error that ends the run early."""
    return _pilot_said_lines(_warnings(log))


def _protocols(options: Options) -> str:
    if options.delta_every < 1:
        return "all state of the world"
    return f"1 in {options.delta_every} on delta xDS"


def _mean_ms(histogram: dict[str, float]) -> str:
    return f"{histogram['sum'] / histogram['count'] * 1000:.0f}" if histogram["count"] else "-"


def _mib(size: float) -> str:
    return f"{size / 1024 / 1024:.1f}"


def _per_change(traffic: Counter[str], changes: int) -> tuple[float, float]:
    """Responses and bytes the streams received per change."""
    pushes = sum(v for k, v in traffic.items() if k.endswith("responses")) / changes
    sent = sum(v for k, v in traffic.items() if k.endswith("bytes")) / changes
    return pushes, sent


def _row(
    label: str,
    values: list[float],
    pilot_cpu: list[float],
    client_cpu: list[float],
    traffic: Counter[str],
    proxies: int,
    changes: int,
) -> str:
    pushes, sent = _per_change(traffic, changes)
    pilot = sum(pilot_cpu) / changes
    return (
        f"| {label} | {changes} | {percentile(values, 50) * 1000:.0f} "
        f"| {percentile(values, 99) * 1000:.0f} | {max(values) * 1000:.0f} "
        f"| {pushes:.0f} | {_mib(sent)} | {pilot:.2f} | {pilot / proxies * 1e6:.0f} "
        f"| {sum(client_cpu) / changes:.2f} |"
    )


def _baseline_lines(result: Result) -> list[str]:
    """Pilot's CPU per proxy for each phase beside the bare server's for the same messages."""
    cost = result.baseline
    if cost is None:
        return []
    lines = [
        "",
        "Against the bare grpc.aio server measured after pilot in this run (`xds_baseline`: "
        f"{cost.per_message_us:.0f} µs a message + {cost.per_mib_us:.0f} µs a MiB, per stream)",
        "",
        "| phase | messages/proxy | MiB/proxy | pilot µs/proxy | baseline µs/proxy "
        "| pilot/baseline |",
        "|---|---|---|---|---|---|",
    ]
    for phase in result.against_baseline():
        ratio = f"{phase.ratio:.2f}" if math.isfinite(phase.ratio) else "-"
        lines.append(
            f"| {phase.label} | {phase.messages:.2f} | {phase.mib:.3f} | {phase.pilot_us:.0f} "
            f"| {phase.baseline_us:.0f} | {ratio} |"
        )
    return lines


def report(result: Result) -> str:
    """The results as printed and kept in BENCHMARKS.md."""
    options = result.options
    n = options.proxies
    connect_pushes = sum(v for k, v in result.connect_traffic.items() if k.endswith("responses"))
    connect_bytes = sum(v for k, v in result.connect_traffic.items() if k.endswith("bytes"))
    lines = [
        f"{options.services} services x {options.endpoints} endpoints in {options.namespaces} "
        f"namespaces ({result.resources} resources); {n} proxies ({_protocols(options)}) from "
        f"{options.clients} load generator processes; "
        f"{options.rounds} rounds of churn",
        "",
        f"pilot start (read config, serve): {result.pilot_start_s:.2f} s, "
        f"{result.pilot_start_cpu_s:.2f} CPU s",
        "",
        "| phase | changes | p50 ms | p99 ms | max ms | responses/change | MiB/change "
        "| pilot CPU s/change | pilot µs/proxy | client CPU s/change |",
        "|---|---|---|---|---|---|---|---|---|---|",
        _row(
            "cold connect",
            result.connect_s,
            [result.connect_pilot_cpu_s],
            [result.connect_client_cpu_s],
            result.connect_traffic,
            n,
            1,
        ),
        *(
            _row(kind, k.latencies_s, k.pilot_cpu_s, k.client_cpu_s, k.traffic, n, len(k.slowest_s))
            for kind, k in result.kinds.items()
        ),
        "",
        "Where the time goes, per kind (means): pilot's own metrics time from the first config "
        "event (the directory read and validated) to the push and to each proxy's response",
        "",
        "| kind | write -> ACK ms | event -> push starts ms | event -> response sent ms |",
        "|---|---|---|---|",
        *(
            f"| {kind} | {statistics.fmean(k.latencies_s) * 1000:.0f} "
            f"| {_mean_ms(k.debounce)} | {_mean_ms(k.convergence)} |"
            for kind, k in result.kinds.items()
        ),
        "",
        f"cold connect: {connect_pushes} responses, {_mib(connect_bytes)} MiB; "
        f"pilot peak RSS {result.pilot_peak_rss_mib:.0f} MiB; load generators' peak RSS "
        + ", ".join(f"{v:.0f}" for v in result.client_peak_rss_mib.values())
        + " MiB",
        "per type, all churn: "
        + ", ".join(
            f"{t} {sum(k.traffic[f'{t} responses'] for k in result.kinds.values())} responses "
            f"{_mib(sum(k.traffic[f'{t} bytes'] for k in result.kinds.values()))} MiB"
            for t in ("cds", "eds", "lds", "rds")
        ),
        f"pilot's page faults (minor) per change: cold connect {result.connect_pilot_faults}, "
        + ", ".join(
            f"{kind} {statistics.fmean(k.pilot_faults):.0f}" for kind, k in result.kinds.items()
        ),
        f"checks: {result.verified_syncz} proxies synced per /debug/syncz, "
        f"{result.verified_dump} identical to /debug/config_dump; "
        f"{result.redundant} unneeded responses"
        + (f" (in changes {result.redundant_changes})" if result.redundant else "")
        + f"; {result.warming} EDS resends after CDS (warming)",
        *(f"  unneeded: {r}" for r in result.redundant_examples),
        _stall_line(result.stall),
        "load average at the end: " + " ".join(f"{v:.2f}" for v in result.load_average),
        *_pilot_said_lines(result.pilot_warnings),
        "",
        *_baseline_lines(result),
        "",
        *(f"target {name}: {'met' if met else 'MISSED'}" for name, met in result.targets.items()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="pilot load and convergence benchmark")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--proxies", type=int, default=2000)
    parser.add_argument("--endpoints", type=int, default=DEFAULT_ENDPOINTS, help="per service")
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="of the 4 changes")
    parser.add_argument("--clients", type=int, default=DEFAULT_CLIENTS, help="processes")
    parser.add_argument("--delta-every", type=int, default=2, help="every n-th proxy is delta")
    parser.add_argument(
        "--verify", type=int, default=DEFAULT_VERIFY, help="proxies to compare with config_dump"
    )
    parser.add_argument("--host", default="", help="loopback address for pilot (default random)")
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument("--change-timeout", type=float, default=30.0)
    parser.add_argument("--no-stall", action="store_true", help="no stalled stream")
    parser.add_argument(
        "--profile", type=Path, help="directory for py-spy profiles of pilot, one per phase"
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the bare grpc.aio server after pilot"
    )
    args = parser.parse_args(argv)
    for flag in ("services", "proxies", "endpoints", "namespaces", "rounds", "clients"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1")
    options = Options(
        services=args.services,
        proxies=args.proxies,
        endpoints=args.endpoints,
        namespaces=args.namespaces,
        rounds=args.rounds,
        clients=args.clients,
        delta_every=args.delta_every,
        verify=args.verify,
        host=args.host,
        connect_timeout=args.connect_timeout,
        change_timeout=args.change_timeout,
        stall=not args.no_stall,
        profile=args.profile,
        baseline=not args.no_baseline,
    )
    try:
        result = run(options)
    except BenchmarkError as error:
        print(f"pilot_load: {error}", file=sys.stderr)
        return 1
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
