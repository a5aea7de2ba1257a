"""`python -m citadel`: run the mesh CA alone until SIGTERM or Ctrl-C, or take a root rotation
step on its stored CA (`rotate-root`, later `finish-rotation`; restart citadel after each).

The local mesh: `--ca-dir DIR` (CA and bootstrap-token key). Kubernetes: `--kubernetes WHERE`
("in-cluster", a kubeconfig path, or the API's URL, as galley takes it) checks service-account
tokens with the API server and keeps the CA in the Secret istio-ca-secret, or in a plugged-in
`cacerts` Secret, of `--ca-secret-namespace` (istio-system), or in `--ca-dir` if given.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys
from collections.abc import Sequence
from pathlib import Path

from citadel.ca import DEFAULT_TTL, MAX_TTL, CertificateAuthority
from citadel.ca_secret import DEFAULT_NAMESPACE
from citadel.cacerts import CaStoreError
from citadel.rotation import finish_stored_rotation, rotate_stored_root
from citadel.server import Citadel, CitadelOptions
from meshcore.identity import TRUST_DOMAIN
from meshcore.kube import api_client
from meshcore.lifecycle import run_until_signalled
from meshcore.logs import configure_logging

SERVE = "serve"
ROTATE_ROOT = "rotate-root"
FINISH_ROTATION = "finish-rotation"


def _hours(text: str) -> datetime.timedelta:
    return datetime.timedelta(hours=float(text))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="citadel", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=[SERVE, ROTATE_ROOT, FINISH_ROTATION],
        default=SERVE,
        help="serve (default); rotate-root: a new root signs, both are trusted; "
        "finish-rotation: the old root is no longer trusted",
    )
    parser.add_argument("--ca-dir", type=Path, help="cacerts directory (kept)")
    parser.add_argument(
        "--kubernetes",
        help='Kubernetes mode: "in-cluster", a kubeconfig path, or an API URL',
    )
    parser.add_argument(
        "--ca-secret-namespace",
        help=f"Kubernetes mode: namespace of the CA secret (default {DEFAULT_NAMESPACE})",
    )
    parser.add_argument("--trust-domain", default=TRUST_DOMAIN, help="of the SPIFFE IDs")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8060, help="TLS port for bearer tokens")
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
    args = parser.parse_args(argv)
    if args.ca_dir is None and args.kubernetes is None:
        parser.error("give --ca-dir (local mesh) or --kubernetes (service-account tokens)")
    if args.ca_secret_namespace is not None:
        if args.kubernetes is None:
            parser.error("--ca-secret-namespace needs --kubernetes")
        if args.ca_dir is not None:
            parser.error("--ca-dir and --ca-secret-namespace both say where the CA is: give one")
    return args


def options_from(args: argparse.Namespace) -> CitadelOptions:
    return CitadelOptions(
        ca_dir=args.ca_dir,
        host=args.host,
        port=args.port,
        mtls_port=args.mtls_port,
        monitoring_port=args.monitoring_port,
        default_ttl=args.ttl,
        max_ttl=args.max_ttl,
        key_type=args.key_type,
        trust_domain=args.trust_domain,
        kubernetes=args.kubernetes,
        ca_secret_namespace=args.ca_secret_namespace or DEFAULT_NAMESPACE,
    )


async def rotation_step(args: argparse.Namespace) -> CertificateAuthority:
    """Take the rotation step `args.command` on the stored CA."""
    options = options_from(args)
    api = None if options.kubernetes is None else await api_client(options.kubernetes)
    try:
        store = options.store(api)
        if args.command == ROTATE_ROOT:
            return await rotate_stored_root(
                store, key_type=options.key_type, trust_domain=options.trust_domain
            )
        return await finish_stored_rotation(store)
    finally:
        if api is not None:
            await api.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    if args.command == SERVE:
        asyncio.run(run_until_signalled(Citadel(options_from(args))))
        return 0
    try:
        ca = asyncio.run(rotation_step(args))
    except (ValueError, CaStoreError) as error:  # RotationError, or a CA that does not load
        print(f"citadel {args.command}: {error}", file=sys.stderr)
        return 1
    roots = ", ".join(root.subject.rfc4514_string() for root in ca.roots)
    print(f"citadel {args.command}: trusted roots now {roots}; restart citadel to apply")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
