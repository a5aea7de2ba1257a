"""`meshctl proxy-status` and `proxy-config`: what pilot sent each proxy, and what Envoy holds.

proxy-status reads pilot's `/debug/syncz` (one entry per connected stream) and shows, like
istioctl, each proxy's state per xDS type: SYNCED (the last response was acknowledged), STALE
(sent, no answer yet), NOT SENT, or NACK. proxy-config asks the proxy's own Envoy for its
`/config_dump` (its admin port 15000 on the proxy's address, found from pilot) and prints one
section: clusters, listeners, routes, endpoints, secrets or the bootstrap. Pilot's monitoring
address defaults to the one the local mesh in the run directory recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Final

import aiohttp
import yaml

from localmesh.state import MeshState
from meshctl.local import mesh_network

TYPES: Final = ("cds", "lds", "eds", "rds", "sds")
ADMIN_PORT: Final = 15000
DEFAULT_PILOT: Final = "127.0.0.1:15014"
# proxy-config sections: the config_dump resource (or section) that holds each, and the key
# of the config inside every entry.
SECTIONS: Final = {
    "cluster": ("dynamic_active_clusters", "cluster"),
    "listener": ("dynamic_listeners", "active_state"),
    "route": ("dynamic_route_configs", "route_config"),
    "endpoint": ("dynamic_endpoint_configs", "endpoint_config"),
    "secret": ("dynamic_active_secrets", "secret"),
    "bootstrap": ("bootstrap", ""),
}


class MeshctlError(Exception):
    """A failure to report as one line: unknown proxy, unreachable control plane."""


def register(subparsers: Any) -> None:
    status = subparsers.add_parser("proxy-status", help="each proxy's xDS sync state")
    _common(status)
    status.set_defaults(run=run_proxy_status)
    config = subparsers.add_parser("proxy-config", help="one section of a proxy's Envoy config")
    config.add_argument("section", choices=sorted(SECTIONS))
    config.add_argument("proxy", help="<pod>.<namespace> as proxy-status names it")
    _common(config)
    config.set_defaults(run=run_proxy_config)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pilot", help=f"pilot's monitoring host:port (default {DEFAULT_PILOT})")
    parser.add_argument("--run-dir", type=Path, default=Path("run"), help="the local mesh's")
    parser.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")


def run_proxy_status(args: argparse.Namespace) -> int:
    try:
        with _network(args):
            entries = asyncio.run(_syncz(_pilot(args)))
    except (MeshctlError, PermissionError) as error:
        print(f"meshctl: {error}", file=sys.stderr)
        return 1
    rows = [_status_row(entry) for entry in entries]
    if args.output != "table":
        _dump(rows, args.output)
    else:
        header = ["NAME", *(t.upper() for t in TYPES), "XDS"]
        table = [header, *([r["name"], *(r[t] for t in TYPES), r["xds"]] for r in rows)]
        widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
        for row in table:
            print(
                "  ".join(
                    str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )
    return 0


def run_proxy_config(args: argparse.Namespace) -> int:
    try:
        with _network(args):
            section = asyncio.run(_proxy_config(_pilot(args), args.proxy, args.section))
    except (MeshctlError, PermissionError) as error:
        print(f"meshctl: {error}", file=sys.stderr)
        return 1
    _dump(section, "yaml" if args.output == "yaml" else "json")
    return 0


def _network(args: argparse.Namespace) -> contextlib.AbstractContextManager[None]:
    """The local mesh's network (a --capture mesh's hub) unless pilot is named explicitly."""
    state = None if args.pilot else MeshState.load(args.run_dir)
    return contextlib.nullcontext() if state is None else mesh_network(args.run_dir, state.pid)


def _pilot(args: argparse.Namespace) -> str:
    if args.pilot:
        return str(args.pilot)
    state = MeshState.load(args.run_dir)
    for endpoint in state.control_plane if state is not None else ():
        if endpoint.name == "pilot":
            return endpoint.address
    return DEFAULT_PILOT


async def _get_json(url: str, what: str) -> Any:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(url) as response,
        ):
            response.raise_for_status()
            return await response.json(content_type=None)
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        raise MeshctlError(f"cannot reach {what} at {url}: {error}") from error


async def _syncz(pilot: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = await _get_json(f"http://{pilot}/debug/syncz", "pilot")
    return entries


def _status_row(entry: dict[str, Any]) -> dict[str, str]:
    row = {"name": entry["proxy"], "xds": "delta" if entry.get("delta") else "sotw"}
    for type_name in TYPES:
        status = entry.get(type_name)
        row[type_name] = status["state"] if status else "NOT SENT"
    return row


async def _proxy_config(pilot: str, proxy: str, section: str) -> Any:
    entries = await _syncz(pilot)
    node = next((e["node_id"] for e in entries if e["proxy"] == proxy), None)
    if node is None:
        known = ", ".join(sorted({e["proxy"] for e in entries})) or "none"
        raise MeshctlError(f"no proxy {proxy!r} is connected to pilot (connected: {known})")
    address = node.split("~")[1]
    host = f"[{address}]" if ":" in address else address
    resource, key = SECTIONS[section]
    if section == "bootstrap":
        dump = await _get_json(f"http://{host}:{ADMIN_PORT}/config_dump", f"{proxy}'s Envoy")
        return next((c["bootstrap"] for c in dump.get("configs", []) if "bootstrap" in c), {})
    url = f"http://{host}:{ADMIN_PORT}/config_dump?resource={resource}"
    dump = await _get_json(url, f"{proxy}'s Envoy")
    return [entry.get(key, entry) for entry in dump.get("configs", [])]


def _dump(value: Any, output: str) -> None:
    if output == "yaml":
        print(yaml.safe_dump(value, sort_keys=False), end="")
    else:
        print(json.dumps(value, indent=2))
