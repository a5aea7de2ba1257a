"""`meshctl version`: the installed project's version, and the Envoy binary it runs."""

from __future__ import annotations

import argparse
import subprocess
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from meshcore.envoy_binary import envoy_path

DISTRIBUTION = "pymesh"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("version", help="the mesh's and Envoy's versions")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        mesh = version(DISTRIBUTION)
    except PackageNotFoundError:
        mesh = "unknown (not installed)"
    print(f"mesh: {mesh}")
    try:
        result = subprocess.run(
            [envoy_path(), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
        envoy = result.stdout.strip().rsplit("version: ", 1)[-1] or result.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as error:
        envoy = f"unavailable ({error})"
    print(f"envoy: {envoy}")
    return 0
