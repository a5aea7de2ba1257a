"""Mixer's cost: ext_authz Checks per second on one core, and CPU per 1000 reported requests.

Why: the issue's targets are Check overhead (Istio's Mixer added about 7 ms at p90) and
telemetry under 0.1 vCPU per 1000 requests per second (Istio's took 0.6). Mixer runs alone in
a spawned process (one core: it is single-threaded asyncio) with Istio's bookinfo deny-label
and ratings rate-limit samples and the standard telemetry config; this process is the load
generator. Checks are Envoy-shaped ext_authz requests (headers, a forwarded source, the
workload's context extensions) with a fresh request id each, from a few source workloads, so
the check cache is used the way it is with real traffic. Reports are Envoy-shaped HTTP
access-log entries streamed in batches, as Envoy's http_grpc logger sends them.

Mixer's CPU seconds (utime + stime) come from /proc/<pid>/stat before and after each phase,
so the load generator's own work is not counted. Every wait is bounded; the Mixer process is
stopped through its pipe (or killed) on every exit.

Run: `python -m benchmarks.mixer_throughput [--checks N] [--reports M] [--concurrency C]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import grpc
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2
from google.protobuf import struct_pb2

from benchmarks.procstat import cpu_seconds
from mixer.envoy_attributes import FORWARDED_ATTRIBUTES_HEADER, forward_header
from mixer.server import Mixer, MixerOptions

REPOSITORY = Path(__file__).resolve().parents[1]
POLICY = REPOSITORY.parent / "shared" / "istio-1.4" / "samples" / "bookinfo" / "policy"
CONFIG_FILES = (
    POLICY / "mixer-rule-deny-label.yaml",
    POLICY / "mixer-rule-ratings-ratelimit.yaml",
    REPOSITORY / "mixer" / "telemetry.yaml",
)
SOURCES = (("reviews", "v1"), ("reviews", "v2"), ("reviews", "v3"), ("productpage", "v1"))
DESTINATION = {
    "destination.labels": "app=ratings,version=v1",
    "destination.workload.name": "ratings-v1",
    "destination.workload.namespace": "default",
    "destination.service.host": "ratings.default.svc.cluster.local",
    "destination.service.name": "ratings",
    "destination.service.namespace": "default",
}
CHECK = "/envoy.service.auth.v3.Authorization/Check"
STREAM = "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs"
START_TIMEOUT_S = 60.0
PHASE_TIMEOUT_S = 600.0
BATCH = 100  # entries per access-log message


def _serve(config_dir: str, host: str, control: Connection) -> None:
    """The Mixer process: serve until the control pipe says stop (or closes)."""

    async def main() -> None:
        options = MixerOptions(
            config_dir=Path(config_dir), host=host, port=0, monitoring_port=0, telemetry_port=0
        )
        async with Mixer(options) as mixer:
            control.send(("ready", os.getpid(), mixer.address))
            loop = asyncio.get_running_loop()
            while True:
                if await loop.run_in_executor(None, control.poll, 0.2):
                    message = control.recv()
                    if message == "stop":
                        return
                    reported = mixer.metrics.registry.get_sample_value(
                        "mixer_reported_attribute_sets_total", {"front": "access_log"}
                    )
                    cache = mixer.checks.cache
                    control.send(("stats", cache.hits, cache.misses, int(reported or 0)))

    with contextlib.suppress(EOFError, BrokenPipeError):
        asyncio.run(main())


def _address(ip: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=ip, port_value=port)
    )


def check_request(number: int) -> external_auth_pb2.CheckRequest:
    app, version = SOURCES[number % len(SOURCES)]
    context = attribute_context_pb2.AttributeContext
    headers = {
        ":authority": "ratings:9080",
        ":method": "GET",
        ":path": f"/ratings/{number % 7}",
        "user-agent": "python-requests/2.31",
        "accept": "*/*",
        "x-request-id": f"req-{number}",
        "x-b3-traceid": f"{number:032x}",
        "x-forwarded-proto": "http",
        FORWARDED_ATTRIBUTES_HEADER: forward_header(
            {
                "source.labels": {"app": app, "version": version},
                "source.workload.name": f"{app}-{version}",
                "source.namespace": "default",
            }
        ),
    }
    return external_auth_pb2.CheckRequest(
        attributes=context(
            source=context.Peer(address=_address("127.0.0.5", 40000 + number % 1000)),
            destination=context.Peer(address=_address("127.0.0.6", 9080)),
            request=context.Request(
                http=context.HttpRequest(
                    id=f"req-{number}",
                    method="GET",
                    path=headers[":path"],
                    host="ratings:9080",
                    scheme="http",
                    protocol="HTTP/1.1",
                    headers=headers,
                )
            ),
            context_extensions=DESTINATION,
        )
    )


def log_entry(number: int) -> accesslog_pb2.HTTPAccessLogEntry:
    app, version = SOURCES[number % len(SOURCES)]
    common = accesslog_pb2.AccessLogCommon(
        downstream_remote_address=_address("127.0.0.5", 40000 + number % 1000),
        downstream_local_address=_address("127.0.0.6", 9080),
        upstream_cluster="inbound|9080||",
        custom_tags=DESTINATION,
    )
    common.start_time.GetCurrentTime()
    common.time_to_last_downstream_tx_byte.FromMicroseconds(800 + number % 5000)
    entry = accesslog_pb2.HTTPAccessLogEntry(
        common_properties=common,
        protocol_version=accesslog_pb2.HTTPAccessLogEntry.HTTP11,
        request=accesslog_pb2.HTTPRequestProperties(
            request_method=base_pb2.GET,
            scheme="http",
            authority="ratings:9080",
            path=f"/ratings/{number % 7}",
            user_agent="python-requests/2.31",
            request_id=f"req-{number}",
            request_headers_bytes=220,
            request_headers={
                FORWARDED_ATTRIBUTES_HEADER: forward_header(
                    {
                        "source.labels": {"app": app, "version": version},
                        "source.workload.name": f"{app}-{version}",
                    }
                )
            },
        ),
        response=accesslog_pb2.HTTPResponseProperties(
            response_headers_bytes=150, response_body_bytes=48 + number % 100
        ),
    )
    entry.response.response_code.value = 403 if version == "v3" else 200
    return entry


def access_log_messages(count: int) -> list[als_pb2.StreamAccessLogsMessage]:
    node_metadata = struct_pb2.Struct()
    node_metadata.update(
        {"NAMESPACE": "default", "NAME": "ratings-v1", "LABELS": {"app": "ratings"}}
    )
    messages = []
    for start in range(0, count, BATCH):
        message = als_pb2.StreamAccessLogsMessage(
            http_logs=als_pb2.StreamAccessLogsMessage.HTTPAccessLogEntries(
                log_entry=[log_entry(n) for n in range(start, min(start + BATCH, count))]
            )
        )
        if start == 0:
            message.identifier.node.CopyFrom(
                base_pb2.Node(id="sidecar~127.0.0.6~ratings-v1", metadata=node_metadata)
            )
            message.identifier.log_name = "inbound"
        messages.append(message)
    return messages


@dataclass(frozen=True)
class Phase:
    count: int
    wall_s: float
    mixer_cpu_s: float

    @property
    def per_second(self) -> float:
        return self.count / self.wall_s

    @property
    def cpu_us_each(self) -> float:
        return self.mixer_cpu_s / self.count * 1e6


async def run_checks(address: str, pid: int, count: int, concurrency: int) -> Phase:
    requests = [check_request(n) for n in range(count)]
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(
            CHECK,
            request_serializer=external_auth_pb2.CheckRequest.SerializeToString,
            response_deserializer=external_auth_pb2.CheckResponse.FromString,
        )
        await call(requests[0], timeout=10)  # connect before the clock starts
        queue = iter(requests)

        async def worker() -> None:
            for request in queue:
                await call(request, timeout=10)

        cpu, start = cpu_seconds(pid), time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(*(worker() for _ in range(concurrency))), PHASE_TIMEOUT_S
        )
        return Phase(count, time.monotonic() - start, cpu_seconds(pid) - cpu)


async def run_reports(address: str, pid: int, count: int) -> Phase:
    messages = access_log_messages(count)
    async with grpc.aio.insecure_channel(address) as channel:
        stream = channel.stream_unary(
            STREAM,
            request_serializer=als_pb2.StreamAccessLogsMessage.SerializeToString,
            response_deserializer=als_pb2.StreamAccessLogsResponse.FromString,
        )
        await channel.channel_ready()
        cpu, start = cpu_seconds(pid), time.monotonic()
        await asyncio.wait_for(stream(iter(messages), timeout=PHASE_TIMEOUT_S), PHASE_TIMEOUT_S)
        return Phase(count, time.monotonic() - start, cpu_seconds(pid) - cpu)


@dataclass(frozen=True)
class Result:
    checks: Phase
    cache_hits: int
    cache_misses: int
    reports: Phase


def run(checks: int, reports: int, concurrency: int, host: str = "127.0.0.1") -> Result:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    with tempfile.TemporaryDirectory(prefix="mixer-bench-") as scratch:
        for file in CONFIG_FILES:
            shutil.copy(file, Path(scratch) / file.name)
        process = context.Process(target=_serve, args=(scratch, host, theirs), daemon=True)
        process.start()
        try:
            if not ours.poll(START_TIMEOUT_S):
                raise TimeoutError("mixer did not start")
            _, pid, address = ours.recv()
            check_phase = asyncio.run(run_checks(address, pid, checks, concurrency))
            report_phase = asyncio.run(run_reports(address, pid, reports))
            ours.send("stats")
            if not ours.poll(10):
                raise TimeoutError("mixer did not report its counts")
            _, hits, misses, reported = ours.recv()
            if reported != reports:
                raise AssertionError(f"mixer reported {reported} of {reports} entries")
            ours.send("stop")
            process.join(10)
        finally:
            if process.is_alive():
                process.kill()
                process.join(5)
    return Result(check_phase, hits, misses, report_phase)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=20_000)
    parser.add_argument("--reports", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    result = run(args.checks, args.reports, args.concurrency)
    checks, reports = result.checks, result.reports
    print(
        f"ext_authz Check: {checks.count} in {checks.wall_s:.2f} s = {checks.per_second:.0f}/s "
        f"(concurrency {args.concurrency}); mixer CPU {checks.cpu_us_each:.0f} us per check, "
        f"{checks.mixer_cpu_s / checks.wall_s:.2f} cores; check cache {result.cache_hits} hits, "
        f"{result.cache_misses} misses"
    )
    print(
        f"access-log Report: {reports.count} entries in {reports.wall_s:.2f} s = "
        f"{reports.per_second:.0f}/s; mixer CPU {reports.cpu_us_each:.0f} us per entry = "
        f"{reports.cpu_us_each / 1000:.3f} vCPU per 1000 requests/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
