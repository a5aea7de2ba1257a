"""`python -m mixer`: run Mixer alone until SIGTERM or Ctrl-C.

Configuration from `--config-dir` (watched) or from galley (`--galley host:port`). Serves the
Mixer API, Envoy's ext_authz and access-log services on `--port` (9091), and over mutual TLS
on `--mtls-port` (15004) with `--tls-cert`, `--tls-key` and `--tls-roots`; telemetry on
`--telemetry-port` (42422); its own metrics and readiness on `--monitoring-port` (15014) of
`--monitoring-host`.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path

from meshconfig import ConfigValidationError
from meshcore.lifecycle import run_until_signalled
from meshcore.logs import configure_logging
from mixer.config_source import SourceError
from mixer.runtime import ConfigError
from mixer.server import Mixer, MixerOptions


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mixer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config-dir", type=Path, help="read Mixer's config.istio.io YAML here")
    source.add_argument("--galley", help="consume configuration from galley at host:port")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9091)
    parser.add_argument("--mtls-port", type=int, help="also serve over mutual TLS (15004)")
    parser.add_argument("--tls-cert", type=Path, help="Mixer's certificate chain (PEM)")
    parser.add_argument("--tls-key", type=Path, help="Mixer's private key (PEM)")
    parser.add_argument("--tls-roots", type=Path, help="the mesh root certificates (PEM)")
    parser.add_argument(
        "--galley-mtls", action="store_true", help="reach galley over mutual TLS (--tls-*)"
    )
    parser.add_argument("--monitoring-host", help="address of the monitoring port (default --host)")
    parser.add_argument("--monitoring-port", type=int, default=15014)
    parser.add_argument("--telemetry-port", type=int, default=42422)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    needs_tls = args.mtls_port is not None or args.galley_mtls
    if needs_tls and None in (args.tls_cert, args.tls_key, args.tls_roots):
        parser.error("--mtls-port and --galley-mtls need --tls-cert, --tls-key and --tls-roots")
    return args


def _read(path: Path | None) -> bytes:
    return b"" if path is None else path.read_bytes()


async def run(args: argparse.Namespace) -> None:
    options = MixerOptions(
        config_dir=args.config_dir,
        galley=args.galley,
        host=args.host,
        port=args.port,
        mtls_port=args.mtls_port,
        tls_cert_chain=_read(args.tls_cert),
        tls_key=_read(args.tls_key),
        tls_roots=_read(args.tls_roots),
        galley_mtls=args.galley_mtls,
        monitoring_host=args.monitoring_host,
        monitoring_port=args.monitoring_port,
        telemetry_port=args.telemetry_port,
    )
    await run_until_signalled(Mixer(options))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    try:
        asyncio.run(run(args))
    except (ConfigError, ConfigValidationError, SourceError) as error:
        print(f"mixer: invalid configuration: {error}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
