"""`python -m citadel`: run the mesh CA alone until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import datetime
from collections.abc import Sequence
from pathlib import Path

from citadel.ca import DEFAULT_TTL, MAX_TTL
from citadel.server import Citadel, CitadelOptions
from meshcore.lifecycle import run_until_signalled
from meshcore.logs import configure_logging


def _hours(text: str) -> datetime.timedelta:
    return datetime.timedelta(hours=float(text))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="citadel", description=__doc__)
    parser.add_argument("--ca-dir", type=Path, required=True, help="cacerts directory (kept)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8060, help="TLS port for bootstrap tokens")
    parser.add_argument("--mtls-port", type=int, default=8061, help="mTLS port for renewals")
    parser.add_argument("--monitoring-port", type=int, default=15014)
    parser.add_argument(
        "--ttl", type=_hours, default=DEFAULT_TTL, help="default certificate lifetime, hours"
    )
    parser.add_argument(
        "--max-ttl", type=_hours, default=MAX_TTL, help="longest certificate lifetime, hours"
    )
    parser.add_argument("--key-type", choices=["ec", "rsa"], default="ec", help="for a new root")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    options = CitadelOptions(
        ca_dir=args.ca_dir,
        host=args.host,
        port=args.port,
        mtls_port=args.mtls_port,
        monitoring_port=args.monitoring_port,
        default_ttl=args.ttl,
        max_ttl=args.max_ttl,
        key_type=args.key_type,
    )
    asyncio.run(run_until_signalled(Citadel(options)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
