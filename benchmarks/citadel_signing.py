"""Citadel's signing throughput over its real gRPC service, against the rate of signing alone.

Why: every workload asks citadel for a certificate when it starts and again at each rotation,
so a mesh that starts (or rotates) many workloads at once queues on CreateCertificate. The
limit is the CA itself, one signature per leaf; the target is that the service reaches at least
half of that rate, i.e. that gRPC, TLS, authentication and the event loop cost no more than the
signing does.

What runs, and where:

- The limit ("raw"), in this process before the server starts: the CA that citadel will load
  (created in a temporary directory, ECDSA P-256 by default) signs leaves in a loop, once
  through its own `CertificateAuthority.sign` (parse and verify the CSR, check the names, build,
  sign, PEM-encode the chain: exactly what one request costs citadel), and once as a bare
  `x509.CertificateBuilder().sign()` of the same leaf with the same CA key (no CSR), which shows
  what the CSR handling adds. Each is timed in three rounds over 2,000 CSRs (--raw-requests in
  all) and the fastest round counts: on a shared machine noise only ever slows a round down.
  The fraction in the table is of `CertificateAuthority.sign`.
- The service, in a spawned process of its own: a real `citadel.server.Citadel` on a loopback
  address (127.0.0.1 unless --host says otherwise), on ephemeral ports (citadel accepts port 0),
  with `--workers` serving processes (default: one per core), logging as `python -m citadel`
  does (INFO) into a file in the temporary directory instead of the terminal.
- First, one CreateCertificate from this process over grpc.aio, as the agent calls it (TLS
  verified against the mesh root, bearer token minted by citadel's `TokenAuthority`, CSR made
  by the agent's `new_key`/`make_csr`), and a full check of the answer: a chain to the root, for
  the CSR's key and identity. The load then sends that same request.
- The load: h2load (nghttp2's HTTP/2 load generator, in C; `make system-packages` installs it)
  speaks gRPC's wire format (a length-prefixed protobuf POSTed with `content-type:
  application/grpc`) over TLS, one connection per caller, one call at a time on each: that
  many concurrent callers, `--requests` calls per level. A Python gRPC client would spend about
  200 µs of CPU per call on the same two cores as citadel; h2load spends about 40. Every call
  signs the same CSR, which costs citadel exactly what a fresh one does (it parses, verifies
  and signs each time; nothing is cached). h2load counts gRPC errors as HTTP 200, so what
  succeeded is counted by citadel itself: its Istio counters on /metrics, read before and after
  each level (issued, authentication failures, CSR errors). Latencies are h2load's per-request
  log (request sent to response complete); certificates per second are the certificates issued
  over the span from the first request's start to the last one's end, which leaves out the
  callers' TLS handshakes before their first request.

The raw loops are over before citadel starts, so citadel's processes and h2load share the
machine with nothing else of the benchmark. The CPU of both (utime + stime of all threads, from
/proc and getrusage) is reported per level, also per certificate for the server: that shows
whether a level was bound by the server (each process's event loop thread busy, about one core)
or by the load, and it is steadier than the rates when other work shares the machine.

Run: `python -m benchmarks.citadel_signing [--requests N] [--levels 1,10,100] [--workers N]
[--key-type ec|rsa]` (and --raw-requests, --level-timeout, --host).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Literal, get_args

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from prometheus_client.parser import text_string_to_metric_families

from agent.certificates import make_csr, new_key
from benchmarks.procstat import cpu_seconds
from citadel.ca import CertificateAuthority
from citadel.server import Citadel, CitadelOptions
from citadel.tokens import TokenAuthority
from meshcore.identity import (
    CONTROL_PLANE_HOST,
    CREATE_CERTIFICATE,
    SpiffeId,
    create_certificate_call,
)
from meshcore.logs import configure_logging
from meshcore.processes import end_process
from protos.citadel.v1 import ca_pb2

DEFAULT_LEVELS = (1, 10, 100)
DEFAULT_REQUESTS = 5000
DEFAULT_LEVEL_TIMEOUT_S = 60.0
DEFAULT_RAW_TIMEOUT_S = 30.0
DEFAULT_RAW_REQUESTS = 6000
RAW_ROUNDS = 3
TARGET_FRACTION = 0.5  # of the raw CertificateAuthority.sign rate
CALL_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 60.0  # the server processes importing their modules, loading the CA, binding
STOP_TIMEOUT_S = 15.0
IDENTITY = SpiffeId("bench", "signer")
H2LOAD = "h2load"
# Kept here rather than imported, so the benchmark does not depend on where citadel keeps them:
# citadel's key types, the CA key's file in Istio's cacerts layout, and citadel's counters.
KeyType = Literal["ec", "rsa"]
CA_KEY_FILE = "ca-key.pem"
CSRS_RECEIVED = "citadel_server_csr_count"
ISSUED = "citadel_server_success_cert_issuance_count"
AUTHENTICATION_FAILURES = "citadel_server_authentication_failure_count"
CSR_ERRORS = "citadel_server_csr_parsing_err_count"
STOP = "stop"


class BenchmarkError(RuntimeError):
    """The run could not measure what it set out to (a timeout, a crash, a wrong answer)."""


# Certificate signing requests, made before anything is timed.


@dataclass(frozen=True)
class Csr:
    pem: bytes
    public_key: ec.EllipticCurvePublicKey


def make_csrs(count: int, identity: SpiffeId = IDENTITY) -> list[Csr]:
    """`count` CSRs as the agent makes them, each over a fresh P-256 key."""
    csrs = []
    for _ in range(count):
        key = new_key()
        csrs.append(Csr(make_csr(key, identity), key.public_key()))
    return csrs


# The limit: signing in this process, without the service.


@dataclass(frozen=True)
class RawResult:
    """The fastest of `RAW_ROUNDS` rounds (noise on a shared machine only ever slows a round)."""

    path: str
    count: int  # certificates signed in all rounds
    best_count: int
    best_seconds: float

    @property
    def rate(self) -> float:
        return self.best_count / self.best_seconds

    @property
    def us_per_cert(self) -> float:
        return self.best_seconds / self.best_count * 1e6


def _timed_loop(
    path: str, sign: Callable[[Csr], object], csrs: list[Csr], timeout_s: float
) -> RawResult:
    """After one untimed call, `RAW_ROUNDS` rounds of `sign` over a share of the CSRs each,
    all of them stopping early once `timeout_s` has passed."""
    sign(csrs[0])
    deadline = time.perf_counter() + timeout_s
    per_round = max(1, len(csrs) // RAW_ROUNDS)
    rounds: list[tuple[int, float]] = []
    for start in range(0, per_round * RAW_ROUNDS, per_round):
        began = time.perf_counter()
        count = 0
        for csr in csrs[start : start + per_round] or csrs[:1]:
            sign(csr)
            count += 1
            if time.perf_counter() > deadline:
                break
        rounds.append((count, time.perf_counter() - began))
        if time.perf_counter() > deadline:
            break
    best = max(rounds, key=lambda r: r[0] / r[1])
    return RawResult(path, sum(count for count, _ in rounds), *best)


def bare_leaf(
    ca: CertificateAuthority,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    identity: SpiffeId,
) -> x509.Certificate:
    """The leaf citadel issues (its own builder, same fields and extensions), signed with the
    CA key directly: the signature without CSR parsing, checks or PEM encoding."""
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)])
    builder = ca.leaf_builder(public_key, x509.Name([]), san, ca.default_ttl)
    return builder.sign(key, hashes.SHA256())


def load_ca_key(ca_dir: Path) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """The CA's private key, read from its file in the CA directory."""
    key = serialization.load_pem_private_key((ca_dir / CA_KEY_FILE).read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise BenchmarkError(f"unexpected CA key type {type(key).__name__}")
    return key


def measure_raw(ca_dir: Path, csrs: list[Csr], timeout_s: float) -> list[RawResult]:
    """Signing rates of the CA in `ca_dir`: its own `sign`, then the bare builder."""
    ca = CertificateAuthority.load_or_create(ca_dir)
    key = load_ca_key(ca_dir)
    return [
        _timed_loop(
            "CertificateAuthority.sign (CSR parse + verify, build, sign, PEM chain)",
            lambda csr: ca.sign(csr.pem, IDENTITY),
            csrs,
            timeout_s,
        ),
        _timed_loop(
            "bare CertificateBuilder().sign() of the same leaf",
            lambda csr: bare_leaf(ca, key, csr.public_key, IDENTITY),
            csrs,
            timeout_s,
        ),
    ]


# The service, in processes of its own.


@dataclass(frozen=True)
class Serving:
    """What the citadel process reports once it serves."""

    port: int
    monitoring_port: int
    pids: tuple[int, ...]  # every serving process


def server_main(
    ca_dir: str, host: str, key_type: KeyType, workers: int, log_file: str, control: Connection
) -> None:
    """Entry point of the citadel process: serve until STOP (or EOF) on `control`."""
    # Log as `python -m citadel` does (to stderr), with stderr going to a file; the workers
    # citadel spawns inherit it.
    with open(log_file, "ab", buffering=0) as sink:
        os.dup2(sink.fileno(), 2)
    configure_logging("INFO")
    try:
        asyncio.run(_serve(Path(ca_dir), host, key_type, workers, control))
    except Exception:
        with contextlib.suppress(OSError):
            control.send(("failed", traceback.format_exc()))
        raise SystemExit(1) from None


async def _serve(
    ca_dir: Path, host: str, key_type: KeyType, workers: int, control: Connection
) -> None:
    options = CitadelOptions(
        ca_dir=ca_dir,
        host=host,
        port=0,
        mtls_port=0,
        monitoring_port=0,
        key_type=key_type,
        workers=workers,
    )
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()

    def readable() -> None:
        with contextlib.suppress(EOFError):  # the orchestrator is gone: stop as well
            if control.recv() != STOP:
                return
        stopped.set()

    async with Citadel(options) as citadel:
        pids = (os.getpid(), *citadel.worker_pids)
        control.send(("serving", Serving(citadel.port, citadel.monitoring.port, pids)))
        loop.add_reader(control.fileno(), readable)
        try:
            await stopped.wait()
        finally:
            loop.remove_reader(control.fileno())


class ServerProcess:
    """The spawned citadel; `serving` once it serves. Stopped on exit: STOP, SIGTERM, SIGKILL."""

    def __init__(self, ca_dir: Path, host: str, key_type: KeyType, workers: int, log_file: Path):
        self.host = host
        context = multiprocessing.get_context("spawn")
        self._control, theirs = context.Pipe()
        self._process: BaseProcess = context.Process(
            target=server_main,
            args=(str(ca_dir), host, key_type, workers, str(log_file), theirs),
            name="citadel-signing-server",
        )
        self._process.start()
        theirs.close()
        self.serving = self._await_serving()

    def _await_serving(self) -> Serving:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._control.poll(0.2):
                try:
                    kind, detail = self._control.recv()
                except EOFError:
                    break
                if kind == "serving":
                    return detail  # type: ignore[no-any-return]
                raise BenchmarkError(f"citadel failed to start:\n{detail}")
            if self._process.exitcode is not None:
                break
        code = self._process.exitcode
        raise BenchmarkError(
            f"citadel did not serve within {STARTUP_TIMEOUT_S:.0f} s (exit code {code})"
        )

    def cpu_seconds(self) -> float:
        """CPU used so far by every serving process."""
        return sum(cpu_seconds(pid) for pid in self.serving.pids)

    def counts(self) -> dict[str, float]:
        """citadel's own counters, as its /metrics serves them (summed over its processes)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        url = f"http://{host}:{self.serving.monitoring_port}/metrics"
        with urllib.request.urlopen(url, timeout=CALL_TIMEOUT_S) as response:
            text = response.read().decode()
        return {
            family.name: sum(sample.value for sample in family.samples)
            for family in text_string_to_metric_families(text)
        }

    def close(self) -> None:
        with contextlib.suppress(OSError):  # already gone
            self._control.send(STOP)
        end_process(self._process, STOP_TIMEOUT_S)
        self._control.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu_seconds() -> float:
    """CPU of the children waited for so far (each level's h2load, once it has ended)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# The check: one call as the agent makes it, answer verified.


def _request(csr: Csr) -> ca_pb2.IstioCertificateRequest:
    # validity 0: citadel's default lifetime, as an agent without a configured TTL asks.
    return ca_pb2.IstioCertificateRequest(csr=csr.pem.decode(), validity_duration=0)


def check_chain(
    response: ca_pb2.IstioCertificateResponse, csr: Csr, root_pem: bytes, identity: SpiffeId
) -> None:
    """A full check of one answer: a chain to our root, for the CSR's key and identity."""
    chain = list(response.cert_chain)
    if len(chain) < 2 or chain[-1].encode() != root_pem:
        raise BenchmarkError("citadel answered with a chain that does not end at its root")
    leaf = x509.load_pem_x509_certificate(chain[0].encode())
    if leaf.public_key() != csr.public_key:
        raise BenchmarkError("citadel signed another key than the CSR's")
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    if san.get_values_for_type(x509.UniformResourceIdentifier) != [identity.uri]:
        raise BenchmarkError(f"citadel's certificate does not name {identity.uri}")


async def checked_call(address: str, root_pem: bytes, token: str, csr: Csr) -> None:
    """CreateCertificate as the agent calls it, and a full check of the answer."""
    credentials = grpc.ssl_channel_credentials(root_pem)
    # Verify citadel as the agent does: against the mesh root, as istiod's name.
    options = [("grpc.ssl_target_name_override", CONTROL_PLANE_HOST)]
    async with grpc.aio.secure_channel(address, credentials, options=options) as channel:
        call = create_certificate_call(channel)
        response = await call(
            _request(csr),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=CALL_TIMEOUT_S,
        )
    check_chain(response, csr, root_pem, IDENTITY)


def grpc_frame(csr: Csr) -> bytes:
    """The request as gRPC puts it in an HTTP/2 DATA frame: uncompressed flag, length, body."""
    body = _request(csr).SerializeToString()
    return struct.pack(">BI", 0, len(body)) + body


# The load: h2load, one connection per caller.


@dataclass
class LevelResult:
    callers: int
    requests: int  # timed requests planned
    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # what citadel counted -> count
    latencies_ms: list[float] = field(default_factory=list)
    wall_s: float = math.nan
    server_cpu_s: float = math.nan
    client_cpu_s: float = math.nan
    timed_out: bool = False

    @property
    def unfinished(self) -> int:
        return self.requests - self.ok - sum(self.failures.values())

    @property
    def rate(self) -> float:
        return self.ok / self.wall_s

    def percentile_ms(self, rank: float) -> float:
        return percentile(self.latencies_ms, rank) if self.latencies_ms else math.nan


def percentile(values: Sequence[float], rank: float) -> float:
    """Nearest-rank percentile (the value at or below which `rank`% of `values` lie)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(rank / 100 * len(ordered)) - 1)]


def h2load_command(
    url: str, callers: int, requests: int, body: Path, token: str, log_file: Path
) -> list[str]:
    h2load = shutil.which(H2LOAD)
    if h2load is None:
        raise BenchmarkError(
            "h2load is not installed: it is in Debian's nghttp2-client (make system-packages)"
        )
    return [
        h2load,
        f"--clients={callers}",
        "--max-concurrent-streams=1",  # one call at a time per caller, as an agent asks
        "--threads=1",
        f"--requests={requests}",
        f"--data={body}",
        "--header=content-type: application/grpc",
        "--header=te: trailers",
        f"--header=authorization: Bearer {token}",
        f"--log-file={log_file}",
        url,
    ]


def read_h2load_log(log_file: Path) -> tuple[list[float], float]:
    """Per-request latencies (ms) and the span from the first start to the last end (s)."""
    starts, ends, latencies = [], [], []
    for line in log_file.read_text().splitlines():
        start_us, _status, duration_us = (int(part) for part in line.split("\t"))
        starts.append(start_us)
        ends.append(start_us + duration_us)
        latencies.append(duration_us / 1000)
    if not latencies:
        return [], math.nan
    return latencies, (max(ends) - min(starts)) / 1e6


def run_level(
    server: ServerProcess,
    command: Callable[[int, Path], list[str]],
    callers: int,
    requests: int,
    *,
    workdir: Path,
    timeout_s: float,
) -> LevelResult:
    """`callers` connections, `requests` calls in all; what citadel counted decides success."""
    result = LevelResult(callers, requests)
    log_file = workdir / f"h2load-{callers}.log"
    before = server.counts()
    server_before, client_before = server.cpu_seconds(), children_cpu_seconds()
    try:
        subprocess.run(
            command(callers, log_file), capture_output=True, check=False, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        result.timed_out = True
    result.server_cpu_s = server.cpu_seconds() - server_before
    result.client_cpu_s = children_cpu_seconds() - client_before
    counted = {name: value - before.get(name, 0.0) for name, value in server.counts().items()}
    result.ok = int(counted[ISSUED])
    rejected = {
        "authentication failed": counted[AUTHENTICATION_FAILURES],
        "bad CSR": counted[CSR_ERRORS],
    }
    rejected["other error"] = counted[CSRS_RECEIVED] - result.ok - sum(rejected.values())
    result.failures.update({cause: int(n) for cause, n in rejected.items() if n})
    if log_file.exists():
        result.latencies_ms, result.wall_s = read_h2load_log(log_file)
    return result


# The whole run.


@dataclass(frozen=True)
class Result:
    key_type: KeyType
    address: str
    workers: int
    requests: int
    raw: list[RawResult]
    levels: list[LevelResult]

    @property
    def raw_rate(self) -> float:
        """The limit the service is measured against: `CertificateAuthority.sign` in a loop."""
        return self.raw[0].rate

    def fraction(self, level: LevelResult) -> float:
        return level.rate / self.raw_rate

    def target_met(self, level: LevelResult) -> bool:
        return self.fraction(level) >= TARGET_FRACTION

    @property
    def all_succeeded(self) -> bool:
        return all(level.ok == level.requests for level in self.levels)


def run(
    levels: Sequence[int] = DEFAULT_LEVELS,
    requests: int = DEFAULT_REQUESTS,
    *,
    key_type: KeyType = "ec",
    host: str = "127.0.0.1",
    workers: int = os.cpu_count() or 1,
    level_timeout_s: float = DEFAULT_LEVEL_TIMEOUT_S,
    raw_requests: int = DEFAULT_RAW_REQUESTS,
    raw_timeout_s: float = DEFAULT_RAW_TIMEOUT_S,
) -> Result:
    """Create a CA, measure raw signing, start citadel, check one answer, then load it at each
    level in turn."""
    csrs = make_csrs(raw_requests + 1)
    load_csr = csrs[-1]
    with tempfile.TemporaryDirectory(prefix="citadel-signing-") as name:
        workdir = Path(name)
        ca_dir = workdir / "ca"
        ca = CertificateAuthority.load_or_create(ca_dir, key_type=key_type)
        token = TokenAuthority.load_or_create(ca_dir).mint(IDENTITY)
        body = workdir / "request.grpc"
        body.write_bytes(grpc_frame(load_csr))
        raw = measure_raw(ca_dir, csrs[:raw_requests], raw_timeout_s)
        log_file = workdir / "citadel.log"
        with ServerProcess(ca_dir, host, key_type, workers, log_file) as server:
            address = (
                f"[{host}]:{server.serving.port}"
                if ":" in host
                else f"{host}:{server.serving.port}"
            )
            asyncio.run(checked_call(address, ca.root_pem, token, load_csr))
            url = f"https://{address}{CREATE_CERTIFICATE}"

            def command(callers: int, log: Path) -> list[str]:
                return h2load_command(url, callers, requests, body, token, log)

            results = [
                run_level(
                    server, command, callers, requests, workdir=workdir, timeout_s=level_timeout_s
                )
                for callers in levels
            ]
    return Result(key_type, address, workers, requests, raw, results)


def report(result: Result) -> str:
    """The results as the tables printed and kept in BENCHMARKS.md."""
    ca = "ECDSA P-256" if result.key_type == "ec" else "RSA 2048"
    lines = [
        f"CA key {ca}, leaf keys ECDSA P-256; citadel on {result.address} in {result.workers} "
        f"serving process{'es' if result.workers > 1 else ''}; {result.requests} timed "
        "requests per level (h2load)",
        "",
        "| raw signing, one thread | certs/s | µs per cert |",
        "|---|---|---|",
        *(f"| {raw.path} | {raw.rate:.0f} | {raw.us_per_cert:.0f} |" for raw in result.raw),
        "",
        "| callers | certs/s | p50 ms | p99 ms | fraction of raw | server CPU µs per cert "
        "| server cores | client cores | failed | target (>= 0.5 of raw) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for level in result.levels:
        failed = sum(level.failures.values()) + level.unfinished
        lines.append(
            f"| {level.callers} | {level.rate:.0f} | {level.percentile_ms(50):.2f} "
            f"| {level.percentile_ms(99):.2f} | {result.fraction(level):.2f} "
            f"| {level.server_cpu_s / max(level.ok, 1) * 1e6:.0f} "
            f"| {level.server_cpu_s / level.wall_s:.2f} | {level.client_cpu_s / level.wall_s:.2f} "
            f"| {failed} | {'met' if result.target_met(level) else 'MISSED'} |"
        )
    met = [str(level.callers) for level in result.levels if result.target_met(level)]
    missed = [str(level.callers) for level in result.levels if not result.target_met(level)]
    lines += [
        "",
        f"Target, at least half the raw CertificateAuthority.sign rate "
        f"({TARGET_FRACTION * result.raw_rate:.0f} certs/s): "
        f"met at {', '.join(met) or 'no level'}; missed at {', '.join(missed) or 'no level'} "
        "(callers)",
    ]
    for level in result.levels:
        if level.failures or level.unfinished:
            causes = ", ".join(f"{cause}: {n}" for cause, n in sorted(level.failures.items()))
            lines.append(
                f"{level.callers} callers: {level.ok} of {level.requests} succeeded "
                f"({causes or 'no errors'}; {level.unfinished} never reached citadel"
                f"{', level timed out' if level.timed_out else ''})"
            )
    return "\n".join(lines)


def _levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}"
        ) from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("levels must be positive integers")
    return levels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="citadel certificate signing benchmark")
    parser.add_argument(
        "--requests", type=int, default=DEFAULT_REQUESTS, help="timed requests per level"
    )
    parser.add_argument(
        "--levels",
        type=_levels,
        default=list(DEFAULT_LEVELS),
        help="concurrent callers, comma-separated (default 1,10,100)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="citadel's serving processes (default: one per core)",
    )
    parser.add_argument("--key-type", choices=get_args(KeyType), default="ec", help="CA key")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address citadel binds")
    parser.add_argument(
        "--level-timeout",
        type=float,
        default=DEFAULT_LEVEL_TIMEOUT_S,
        help="seconds a level may run; requests not answered by then count as failed",
    )
    parser.add_argument(
        "--raw-requests",
        type=int,
        default=DEFAULT_RAW_REQUESTS,
        help="certificates each raw loop signs, in three rounds",
    )
    options = parser.parse_args(argv)
    if options.requests < 1 or options.raw_requests < 1 or options.workers < 1:
        parser.error("--requests, --raw-requests and --workers must be at least 1")
    try:
        result = run(
            options.levels,
            options.requests,
            key_type=options.key_type,
            host=options.host,
            workers=options.workers,
            level_timeout_s=options.level_timeout,
            raw_requests=options.raw_requests,
        )
    except BenchmarkError as error:
        print(f"citadel_signing: {error}", file=sys.stderr)
        return 1
    print(report(result))
    return 0 if result.all_succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
