"""`mesh-agent` / `python -m agent`: run one workload's Envoy and its health endpoint.

`mesh-agent iptables ...` is the capture set-up instead (the istio-init role, `agent.capture`).
The agent itself is the process-level wrapper: it parses flags into a `ProxySpec`, runs the
`EnvoyProcess` supervisor and the `HealthServer` until SIGTERM or SIGINT, then drains Envoy
and exits 0. The event loop is owned by `main()` (asyncio.run); both services own their own
tasks.
"""

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from agent.bootstrap import (
    PILOT_PORT,
    InterceptionMode,
    ProxySpec,
    ProxyType,
    XdsApi,
    parse_host_port,
)
from agent.capture import cli as capture_cli
from agent.envoy_process import EnvoyOptions
from agent.health import HealthServer
from agent.workload import CitadelAccess, WorkloadProxy

RENEWAL_PORT = 8061  # citadel's mutual-TLS port for renewals

_XDS_APIS = {"grpc": XdsApi.GRPC, "delta": XdsApi.DELTA_GRPC}


def _labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"label {item!r} is not key=value")
        labels[key.strip()] = value.strip()
    return labels


def _pilot(text: str) -> str:
    try:
        parse_host_port(text, PILOT_PORT)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mesh-agent", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--ip", required=True, help="the workload's own address; Envoy binds its ports here")
    add("--pod", required=True, help="workload (pod) name")
    add("--namespace", default="default")
    add("--service-account", default="default")
    add("--labels", type=_labels, default={}, help="k=v,k2=v2")
    add("--pilot", type=_pilot, default=f"127.0.0.1:{PILOT_PORT}", help="pilot xDS host:port")
    add("--type", choices=[t.value for t in ProxyType], default=ProxyType.SIDECAR.value)
    add("--xds", choices=list(_XDS_APIS), default="grpc", help="state of the world or delta")
    add("--interception", choices=[m.value for m in InterceptionMode], default="NONE")
    add("--http-proxy-port", type=int, help="port of the sidecar's outbound HTTP proxy listener")
    add("--app-address", default="127.0.0.1", help="where the application listens")
    add("--cluster-id", default="Kubernetes")
    add("--mesh-id", default="cluster.local")
    add("--initial-fetch-timeout", type=float, default=0.0, help="seconds; 0 waits for pilot")
    add(
        "--auto-register",
        metavar="GROUP",
        default="",
        help="have pilot register this workload in WorkloadGroup GROUP of its namespace",
    )
    add("--drain-seconds", type=float, default=5.0)
    add("--run-dir", type=Path, help="bootstrap and Envoy log (default: a per-pod temp dir)")
    add("--log-level", default="info", help="Envoy's log level")
    add("--citadel", help="citadel's CSR address host:port: get the workload certificate there")
    add("--citadel-mtls", help="citadel's renewal (mutual TLS) address (default: port 8061)")
    add("--citadel-root", type=Path, help="citadel's root certificate (PEM file)")
    add("--token-file", type=Path, help="the workload's bootstrap token for citadel")
    add(
        "--pilot-mtls",
        action="store_true",
        help="reach pilot (its mTLS port, 15011) with the workload certificate; needs --citadel",
    )
    return parser.parse_args(argv)


def spec_from_args(args: argparse.Namespace) -> ProxySpec:
    return ProxySpec(
        ip=args.ip,
        pod=args.pod,
        namespace=args.namespace,
        pilot=args.pilot,
        proxy_type=ProxyType(args.type),
        xds_api=_XDS_APIS[args.xds],
        service_account=args.service_account,
        labels=args.labels,
        interception=InterceptionMode(args.interception),
        http_proxy_port=args.http_proxy_port,
        app_address=args.app_address,
        cluster_id=args.cluster_id,
        mesh_id=args.mesh_id,
        initial_fetch_timeout=args.initial_fetch_timeout,
        auto_register_group=args.auto_register,
        pilot_mtls=args.pilot_mtls,
    )


async def run(args: argparse.Namespace) -> None:
    pod_dir = Path(tempfile.gettempdir(), "mesh-agent", f"{args.pod}.{args.namespace}")
    run_dir = args.run_dir or pod_dir
    spec = spec_from_args(args)
    proxy = WorkloadProxy(
        spec,
        run_dir,
        EnvoyOptions(log_level=args.log_level, drain_seconds=args.drain_seconds),
        citadel_access(args),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with proxy, HealthServer(spec.ip, spec.admin_url):
            await stop.wait()
            logging.info("stopping: draining envoy for up to %.1fs", args.drain_seconds)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def citadel_access(args: argparse.Namespace) -> CitadelAccess | None:
    """How to get the workload's SVID from citadel: first with the bootstrap token, then
    renewed over mutual TLS; None without --citadel."""
    if not args.citadel:
        if args.pilot_mtls:
            raise SystemExit("--pilot-mtls needs --citadel (the certificate it presents)")
        return None
    if args.citadel_root is None or args.token_file is None:
        raise SystemExit("--citadel needs --citadel-root and --token-file")
    host, _ = parse_host_port(args.citadel, 8060)
    return CitadelAccess(
        args.citadel,
        args.citadel_mtls or f"{host}:{RENEWAL_PORT}",
        args.citadel_root.read_bytes(),
        args.token_file.read_text().strip(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent; `mesh-agent iptables ...` is the capture set-up (`agent.capture.cli`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["iptables"]:
        return capture_cli.main(args[1:])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run(parse_args(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
