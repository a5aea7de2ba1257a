"""`python -m localmesh up DIR`: run the local mesh described by DIR until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from localmesh.mesh import LocalMesh
from meshcore.logs import configure_logging
from pilot.registry import ConfigError


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="localmesh", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start pilot, sidecars and demo apps")
    up.add_argument("config_dir", type=Path, help="ServiceEntry + WorkloadEntry YAML")
    up.add_argument("--run-dir", type=Path, default=Path("run"), help="bootstraps and logs")
    up.add_argument("--pilot-host", default="127.0.0.1")
    up.add_argument("--citadel-host", default="127.0.0.2", help="citadel's own loopback address")
    up.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


async def up(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    mesh = LocalMesh(
        args.config_dir, args.run_dir, pilot_host=args.pilot_host, citadel_host=args.citadel_host
    )
    async with mesh:
        monitoring = f"http://{mesh.pilot.options.host}:{mesh.pilot.monitoring.port}"
        print(
            f"pilot: xDS {mesh.pilot.address} (mTLS {mesh.pilot.mtls_address}), "
            f"debug {monitoring}/debug/syncz"
        )
        print(f"citadel: CSR service {mesh.citadel.address}, CA in {args.run_dir / 'ca'}")
        not_ready = await mesh.wait_ready()
        for pod in mesh.pods:
            ports = ",".join(map(str, pod.app_ports))
            app = f"app {pod.app_address}:{ports}" if ports else ""
            state = "NOT READY" if pod.name in not_ready else "ready"
            print(f"  {pod.name:<16} {pod.workload.address:<14} {app:<28} {state}")
        if not_ready:
            print(f"not ready: {', '.join(not_ready)}; Envoy logs are under {args.run_dir}")
            return 1
        print("try:")
        for command in mesh.try_commands():
            print(f"  {command}")
        print("Ctrl-C stops the mesh.", flush=True)
        await stop.wait()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    try:
        return asyncio.run(up(args))
    except ConfigError as error:
        print(f"localmesh: invalid configuration: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
