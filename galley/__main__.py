"""`python -m galley`: ingest, validate and distribute configuration until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path

from galley.server import Galley, GalleyOptions
from meshcore.lifecycle import run_until_signalled
from meshcore.logs import configure_logging
from meshcore.quiet_gc import QuietCollector
from meshcore.tls import from_files


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="galley", description=__doc__)
    parser.add_argument("--config-dir", type=Path, help="Istio YAML/JSON tree to watch")
    parser.add_argument(
        "--kubernetes",
        help='read the Kubernetes API: "in-cluster", a kubeconfig path, or an API URL',
    )
    parser.add_argument("--namespace", action="append", help="limit Kubernetes to these")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--grpc-port", type=int, default=9901)
    parser.add_argument("--monitoring-port", type=int, default=15014)
    parser.add_argument("--webhook-port", type=int, help="serve the validating webhook (9443)")
    parser.add_argument("--webhook-dir", type=Path, help="where its certificate is written")
    parser.add_argument("--tls-cert", type=Path, help="serve over mutual TLS: certificate chain")
    parser.add_argument("--tls-key", type=Path, help="serve over mutual TLS: private key")
    parser.add_argument("--tls-roots", type=Path, help="the mesh root(s) clients must chain to")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.config_dir is None and args.kubernetes is None:
        parser.error("give --config-dir, --kubernetes, or both")
    try:
        args.tls = from_files(args.tls_cert, args.tls_key, args.tls_roots)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    return args


async def run(args: argparse.Namespace) -> None:
    options = GalleyOptions(
        config_dir=args.config_dir,
        kubernetes=args.kubernetes,
        namespaces=tuple(args.namespace) if args.namespace else None,
        host=args.host,
        grpc_port=args.grpc_port,
        monitoring_port=args.monitoring_port,
        webhook_port=args.webhook_port,
        webhook_dir=args.webhook_dir,
        tls=args.tls,
    )
    await run_until_signalled(QuietCollector(), Galley(options))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
