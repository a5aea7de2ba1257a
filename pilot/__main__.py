"""`python -m pilot` / `pilot-discovery`: run pilot alone until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path

from meshcore.lifecycle import run_until_signalled
from meshcore.logs import configure_logging
from meshcore.malloc_tuning import keep_freed_memory
from meshcore.quiet_gc import QuietCollector
from pilot.mesh_config import DEFAULT_MESH, MeshConfig, MeshConfigError
from pilot.registry import ConfigError
from pilot.registry.autoregister import DEFAULT_GRACE_PERIOD
from pilot.server import Pilot, PilotOptions


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pilot-discovery", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config-dir", type=Path, help="read ServiceEntry/WorkloadEntry YAML here")
    source.add_argument("--galley", help="consume configuration from galley at host:port")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--grpc-port", type=int, default=15010)
    parser.add_argument("--monitoring-port", type=int, default=15014)
    parser.add_argument("--debounce", type=float, default=0.1, help="quiet period, seconds")
    parser.add_argument("--debounce-max", type=float, default=1.0, help="longest wait, seconds")
    parser.add_argument(
        "--workload-entry-grace-period",
        type=float,
        default=DEFAULT_GRACE_PERIOD,
        help="seconds an auto-registered WorkloadEntry outlives its proxy's connection",
    )
    parser.add_argument("--mtls-port", type=int, help="also serve xDS over mutual TLS (15011)")
    parser.add_argument(
        "--tls-cert", type=Path, help="pilot's certificate chain (PEM), for --mtls-port"
    )
    parser.add_argument("--tls-key", type=Path, help="pilot's private key (PEM), for --mtls-port")
    parser.add_argument("--tls-roots", type=Path, help="the mesh root certificates (PEM)")
    parser.add_argument(
        "--galley-mtls", action="store_true", help="reach galley over mutual TLS (--tls-*)"
    )
    parser.add_argument(
        "--mesh-config", type=Path, help="Istio MeshConfig YAML (Mixer: policy checks, reports)"
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    tls_given = args.tls_cert and args.tls_key and args.tls_roots
    if (args.mtls_port is not None or args.galley_mtls) and not tls_given:
        parser.error("--mtls-port and --galley-mtls need --tls-cert, --tls-key and --tls-roots")
    return args


async def run(args: argparse.Namespace) -> None:
    options = PilotOptions(
        config_dir=args.config_dir,
        galley=args.galley,
        host=args.host,
        grpc_port=args.grpc_port,
        monitoring_port=args.monitoring_port,
        debounce=args.debounce,
        debounce_max=args.debounce_max,
        workload_entry_grace_period=args.workload_entry_grace_period,
        mtls_port=args.mtls_port,
        tls_cert_chain=_read(args.tls_cert),
        tls_key=_read(args.tls_key),
        tls_roots=_read(args.tls_roots),
        galley_mtls=args.galley_mtls,
        mesh=DEFAULT_MESH if args.mesh_config is None else MeshConfig.load(args.mesh_config),
    )
    await run_until_signalled(QuietCollector(), Pilot(options))


def _read(path: Path | None) -> bytes:
    return b"" if path is None else path.read_bytes()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    keep_freed_memory()  # each push frees and allocates again a response per stream
    try:
        asyncio.run(run(args))
    except (ConfigError, MeshConfigError) as error:
        print(f"pilot: invalid configuration: {error}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
