"""`python -m agent.injector`: serve sidecar injection over HTTPS until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path

from agent.injector.cli import add_config_arguments, config_from
from agent.injector.server import DEFAULT_PORT, InjectionWebhook
from meshcore.lifecycle import run_until_signalled
from meshcore.logs import configure_logging


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sidecar-injector", description=__doc__)
    add = parser.add_argument
    add("--tls-cert", type=Path, required=True, help="serving certificate chain (PEM)")
    add("--tls-key", type=Path, required=True, help="its private key (PEM)")
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    add("--port", type=int, default=DEFAULT_PORT)
    add_config_arguments(parser)
    add("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    webhook = InjectionWebhook(
        config_from(args), args.tls_cert, args.tls_key, host=args.host, port=args.port
    )
    asyncio.run(run_until_signalled(webhook))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
