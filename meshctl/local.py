"""`meshctl up`, `down` and `status`: the local mesh on this machine, as one command each.

`up` runs the mesh a directory describes (`localmesh.LocalMesh`: galley, pilot, citadel, the
ingress gateway and every workload with its sidecar) in the foreground until Ctrl-C, or with
`-d` in a detached process that outlives the terminal; either way it prints progress while
things start and, once everything is ready, the URLs to try. The run directory (default
`run/`) holds the logs, the CA and the state file through which `status` and `down` find the
mesh (`localmesh.state`); a second `up` with a mesh already running there says so.

`up --capture` (root only) runs the same mesh with every workload in a network namespace of its
own and its traffic captured by iptables, the applications unmodified (`localmesh.capture`):
the control plane and the gateway in a hub namespace this process's event loop runs in, the
gateway reached from here over a link of its own. The run directory's `capture.json` names
what it made, so `down` removes all of it even when the mesh died, and `status` asks its
components from inside the hub.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import aiohttp

from localmesh.capture import CaptureError, CaptureMesh, CaptureRecord, CaptureSite
from localmesh.mesh import LocalMesh, MeshAddresses
from localmesh.netns import NetnsError, entered
from localmesh.state import Endpoint, MeshState, process_alive
from pilot.registry import ConfigError

DEFAULT_DIR: Final = Path("examples/bookinfo")
DEFAULT_RUN_DIR: Final = Path("run")
DETACHED_LOG: Final = "meshctl-up.log"
UP_TIMEOUT: Final = 120.0  # seconds a detached `up` waits for the mesh to be ready
DOWN_TIMEOUT: Final = 30.0
CAPTURE_NEEDS_ROOT: Final = "meshctl: --capture needs root (network namespaces and iptables)"


def register(subparsers: Any) -> None:
    up = subparsers.add_parser("up", help="run the local mesh a directory describes")
    up.add_argument("config_dir", nargs="?", type=Path, default=DEFAULT_DIR)
    up.add_argument("-d", "--detach", action="store_true", help="run in the background")
    up.add_argument(
        "--capture",
        action="store_true",
        help="each workload in its own network namespace, traffic captured by iptables (root)",
    )
    _run_dir(up)
    defaults = MeshAddresses()
    for service in ("pilot", "citadel", "galley", "mixer", "gateway"):
        default = getattr(defaults, service)
        up.add_argument(
            f"--{service}-host",
            default=default,
            help=f"{service}'s address ({default}; --capture chooses its own)",
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


@contextlib.contextmanager
def mesh_network(run_dir: Path, pid: int) -> Iterator[None]:
    """Where the mesh `pid` running from `run_dir` is reached: a --capture mesh's components
    from its hub namespace (as its pods reach them; root only), others from here."""
    record = _capture(run_dir, pid)
    if record is None:
        yield
        return
    if os.geteuid() != 0:
        raise PermissionError("reaching a --capture mesh needs root (its hub namespace)")
    with entered(record.hub):
        yield


def _capture(run_dir: Path, pid: int | None = None) -> CaptureRecord | None:
    """The capture record in `run_dir` (of the mesh `pid` only, if given: a record a dead
    capture mesh left says nothing of another mesh run from there since)."""
    try:
        record = CaptureRecord.load(run_dir)
    except ValueError as error:
        print(f"meshctl: {error}", file=sys.stderr)
        return None
    return record if record is None or pid in (None, record.pid) else None


def run_up(args: argparse.Namespace) -> int:
    if args.capture and os.geteuid() != 0:
        print(CAPTURE_NEEDS_ROOT, file=sys.stderr)
        return 2
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
        return _up_capture(args) if args.capture else asyncio.run(_up(args))
    except ConfigError as error:
        print(f"meshctl: invalid configuration: {error}", file=sys.stderr)
        return 2
    except (CaptureError, NetnsError) as error:
        print(f"meshctl: {error}", file=sys.stderr)
        return 1


def _up_capture(args: argparse.Namespace) -> int:
    """Make the namespaces from here (the root namespace), run the mesh with this thread inside
    the hub, remove the namespaces once it stops."""
    site = CaptureSite.create(args.config_dir, args.run_dir)
    try:
        _progress(f"network namespaces {site.record.tag}-* made")
        with entered(site.record.hub):
            return asyncio.run(_up(args, site))
    finally:
        site.close()


async def _up(args: argparse.Namespace, site: CaptureSite | None = None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    mesh: LocalMesh
    if site is not None:
        mesh = CaptureMesh(site, args.run_dir, progress=_progress)
    else:
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
    record = _capture(run_dir, state.pid)
    if state.urls or record is not None:
        print("try:")
    for url in state.urls:
        print(f"  curl {url}")
    if record is not None:
        pods = f"{record.tag}-<workload>.<namespace>"
        print(f"  ip netns exec {pods} curl http://<service>:<port>/   (inside a pod)")
        print(f"control plane and gateway in {record.hub.name}, each workload in {pods}")
    print("meshctl status / meshctl down", flush=True)


def _up_detached(args: argparse.Namespace) -> int:
    """Start `meshctl up` (without -d) in its own session, wait until it is ready."""
    argv = [sys.executable, "-m", "meshctl", "up", str(args.config_dir)]
    argv += ["--run-dir", str(args.run_dir)]
    for service in ("pilot", "citadel", "galley", "mixer", "gateway"):
        argv += [f"--{service}-host", getattr(args, f"{service}_host")]
    if args.capture:
        argv.append("--capture")
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
    """Stop the mesh; then remove what a capture mesh left, if it could not (it died)."""
    state = _running(args.run_dir)
    record = _capture(args.run_dir)
    pid = state.pid if state is not None else None
    if pid is None and record is not None and process_alive(record.pid):
        pid = record.pid  # a capture mesh still starting
    if pid is None and record is None:
        print(f"no local mesh is running from {args.run_dir}")
        return 0
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + DOWN_TIMEOUT
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_alive(pid):
            print(f"meshctl: the mesh (pid {pid}) did not stop in {DOWN_TIMEOUT:.0f}s")
            return 1
        print(f"stopped the local mesh (pid {pid})")
    record = _capture(args.run_dir)  # a mesh that stopped cleanly removed its own
    if record is not None:
        try:
            record.remove(args.run_dir)
        except NetnsError as error:
            print(f"meshctl: {error}", file=sys.stderr)
            return 1
        print(f"removed the network namespaces {record.tag}-* the mesh (pid {record.pid}) left")
    return 0


def run_status(args: argparse.Namespace) -> int:
    state = _running(args.run_dir)
    if state is None:
        print(f"no local mesh is running from {args.run_dir}")
        return 1
    try:
        with mesh_network(args.run_dir, state.pid):
            health = asyncio.run(_health([*state.control_plane, *state.pods]))
    except PermissionError as error:
        print(f"meshctl: {error}", file=sys.stderr)
        return 2
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
