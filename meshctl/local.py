"""`meshctl up`, `down` and `status`: the local mesh on this machine, as one command each.

`up` runs the mesh a directory describes (`localmesh.LocalMesh`: galley, pilot, citadel, the
ingress gateway and every workload with its sidecar) in the foreground until Ctrl-C, or with
`-d` in a detached process that outlives the terminal; either way it prints progress while
things start and, once everything is ready, the URLs to try. The run directory (default
`run/`) holds the logs, the CA and the state file through which `status` and `down` find the
mesh (`localmesh.state`); a second `up` with a mesh already running there says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import aiohttp

from localmesh.mesh import LocalMesh, MeshAddresses
from localmesh.state import Endpoint, MeshState, process_alive
from pilot.registry import ConfigError

DEFAULT_DIR: Final = Path("examples/bookinfo")
DEFAULT_RUN_DIR: Final = Path("run")
DETACHED_LOG: Final = "meshctl-up.log"
UP_TIMEOUT: Final = 120.0  # seconds a detached `up` waits for the mesh to be ready
DOWN_TIMEOUT: Final = 30.0


def register(subparsers: Any) -> None:
    up = subparsers.add_parser("up", help="run the local mesh a directory describes")
    up.add_argument("config_dir", nargs="?", type=Path, default=DEFAULT_DIR)
    up.add_argument("-d", "--detach", action="store_true", help="run in the background")
    _run_dir(up)
    defaults = MeshAddresses()
    for service in ("pilot", "citadel", "galley", "mixer", "gateway"):
        default = getattr(defaults, service)
        up.add_argument(
            f"--{service}-host", default=default, help=f"{service}'s address ({default})"
        )
    up.set_defaults(run=run_up)

    down = subparsers.add_parser("down", help="stop the local mesh")
    _run_dir(down)
    down.set_defaults(run=run_down)

    status = subparsers.add_parser("status", help="what runs in the local mesh and its health")
    _run_dir(status)
    status.add_argument("-o", "--output", choices=["table", "json"], default="table")
    status.set_defaults(run=run_status)


def _run_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="logs, CA and state (run/)"
    )


def _running(run_dir: Path) -> MeshState | None:
    try:
        return MeshState.load(run_dir)
    except ValueError as error:
        print(f"meshctl: {error}", file=sys.stderr)
        return None


def run_up(args: argparse.Namespace) -> int:
    running = _running(args.run_dir)
    if running is not None:
        print(
            f"a local mesh is already running from {running.config_dir} (pid {running.pid}); "
            f"`meshctl down --run-dir {args.run_dir}` stops it"
        )
        return 1
    if not args.config_dir.is_dir():
        print(f"meshctl: {args.config_dir} is not a directory", file=sys.stderr)
        return 2
    if args.detach:
        return _up_detached(args)
    try:
        return asyncio.run(_up(args))
    except ConfigError as error:
        print(f"meshctl: invalid configuration: {error}", file=sys.stderr)
        return 2


async def _up(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    addresses = MeshAddresses(
        pilot=args.pilot_host,
        citadel=args.citadel_host,
        galley=args.galley_host,
        mixer=args.mixer_host,
        gateway=args.gateway_host,
    )
    mesh = LocalMesh(args.config_dir, args.run_dir, addresses=addresses, progress=_progress)
    try:
        async with mesh:
            not_ready = await mesh.wait_ready()
            state = mesh.state(ready=not not_ready)
            state.save(args.run_dir)
            _print_summary(state, not_ready, args.run_dir)
            if not_ready:
                return 1
            print("Ctrl-C stops the mesh.", flush=True)
            await stop.wait()
            print("stopping the mesh...", flush=True)
    finally:
        MeshState.remove(args.run_dir)
    return 0


def _progress(message: str) -> None:
    print(f"  {message}", flush=True)


def _print_summary(state: MeshState, not_ready: list[str], run_dir: Path) -> None:
    print("control plane:")
    for endpoint in state.control_plane:
        print(f"  {endpoint.name:<22} {endpoint.address}")
    print("workloads:")
    for pod in state.pods:
        mark = "NOT READY" if pod.name in not_ready else "ready"
        print(f"  {pod.name:<22} {pod.address:<16} {mark}")
    if not_ready:
        print(f"not ready: {', '.join(not_ready)}; logs are under {run_dir}")
        return
    if state.urls:
        print("try:")
        for url in state.urls:
            print(f"  curl {url}")
    print("meshctl status / meshctl down", flush=True)


def _up_detached(args: argparse.Namespace) -> int:
    """Start `meshctl up` (without -d) in its own session, wait until it is ready."""
    argv = [sys.executable, "-m", "meshctl", "up", str(args.config_dir)]
    argv += ["--run-dir", str(args.run_dir)]
    for service in ("pilot", "citadel", "galley", "mixer", "gateway"):
        argv += [f"--{service}-host", getattr(args, f"{service}_host")]
    args.run_dir.mkdir(parents=True, exist_ok=True)
    log_path = args.run_dir / DETACHED_LOG
    with log_path.open("ab") as log:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + UP_TIMEOUT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            print(f"meshctl: the mesh did not start; see {log_path}", file=sys.stderr)
            return 1
        state = _running(args.run_dir)
        if state is not None and state.pid == child.pid:
            _print_summary(state, [] if state.ready else ["(see status)"], args.run_dir)
            return 0 if state.ready else 1
        time.sleep(0.2)
    print(f"meshctl: the mesh was not ready within {UP_TIMEOUT:.0f}s; see {log_path}")
    return 1


def run_down(args: argparse.Namespace) -> int:
    state = _running(args.run_dir)
    if state is None:
        print(f"no local mesh is running from {args.run_dir}")
        return 0
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + DOWN_TIMEOUT
    while process_alive(state.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if process_alive(state.pid):
        print(f"meshctl: the mesh (pid {state.pid}) did not stop in {DOWN_TIMEOUT:.0f}s")
        return 1
    print(f"stopped the local mesh (pid {state.pid})")
    return 0


def run_status(args: argparse.Namespace) -> int:
    state = _running(args.run_dir)
    if state is None:
        print(f"no local mesh is running from {args.run_dir}")
        return 1
    health = asyncio.run(_health([*state.control_plane, *state.pods]))
    if args.output == "json":
        rows = [
            {"name": e.name, "address": e.address, "healthy": health[e.name]}
            for e in [*state.control_plane, *state.pods]
        ]
        print(
            json.dumps(
                {"pid": state.pid, "config_dir": state.config_dir, "components": rows}, indent=2
            )
        )
    else:
        print(f"local mesh from {state.config_dir} (pid {state.pid})")
        print(f"{'NAME':<24} {'ADDRESS':<22} HEALTH")
        for endpoint in [*state.control_plane, *state.pods]:
            mark = "healthy" if health[endpoint.name] else "UNHEALTHY"
            print(f"{endpoint.name:<24} {endpoint.address:<22} {mark}")
    return 0 if all(health.values()) else 1


async def _health(endpoints: list[Endpoint]) -> dict[str, bool]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:

        async def probe(endpoint: Endpoint) -> bool:
            try:
                async with session.get(endpoint.health_url) as response:
                    return response.status == 200
            except (aiohttp.ClientError, OSError, TimeoutError):
                return False

        results = await asyncio.gather(*(probe(e) for e in endpoints))
    return {e.name: ok for e, ok in zip(endpoints, results, strict=True)}
