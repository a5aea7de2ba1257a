"""`python -m citadel`: run the mesh CA alone until SIGTERM or Ctrl-C, or take a root rotation
step on its stored CA (`rotate-root`, later `finish-rotation`; restart citadel after each).

Two commands prepare a mesh whose parts start separately (docker-compose): `mint-token` writes
a workload's bootstrap token (`--namespace`, `--service-account`, `--out FILE`), and
`server-cert` a serving certificate for control-plane names (`--name`, repeatable) as
`tls.crt`, `tls.key` and `ca.crt` in `--out-dir`, the layout of a Kubernetes TLS Secret. Both
create the CA in `--ca-dir` if it has none yet, as serving would.

The local mesh: `--ca-dir DIR` (CA and bootstrap-token key). Kubernetes: `--kubernetes WHERE`
("in-cluster", a kubeconfig path, or the API's URL, as galley takes it) checks service-account
tokens with the API server and keeps the CA in the Secret istio-ca-secret, or in a plugged-in
`cacerts` Secret, of `--ca-secret-namespace` (istio-system), or in `--ca-dir` if given.

`--workers N` serves from N processes on the same ports, for machines with cores to spare.
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
from citadel.cacerts import CaStoreError, write_private
from citadel.rotation import finish_stored_rotation, rotate_stored_root
from citadel.server import Citadel, CitadelOptions
from citadel.tokens import TokenAuthority
from meshcore.identity import TRUST_DOMAIN, SpiffeId
from meshcore.kube import api_client
from meshcore.lifecycle import run_until_signalled
from meshcore.logs import configure_logging

SERVE = "serve"
ROTATE_ROOT = "rotate-root"
FINISH_ROTATION = "finish-rotation"
MINT_TOKEN = "mint-token"
SERVER_CERT = "server-cert"


def _hours(text: str) -> datetime.timedelta:
    return datetime.timedelta(hours=float(text))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="citadel", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=[SERVE, ROTATE_ROOT, FINISH_ROTATION, MINT_TOKEN, SERVER_CERT],
        default=SERVE,
        help="serve (default); rotate-root: a new root signs, both are trusted; "
        "finish-rotation: the old root is no longer trusted; mint-token; server-cert",
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
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="serving processes sharing the ports (SO_REUSEPORT); one signs on one core",
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--namespace", help="mint-token: the workload's namespace")
    parser.add_argument("--service-account", help="mint-token: the workload's service account")
    parser.add_argument("--out", type=Path, help="mint-token: the token file to write")
    parser.add_argument(
        "--name", action="append", default=[], help="server-cert: a DNS name or IP (repeatable)"
    )
    parser.add_argument("--out-dir", type=Path, help="server-cert: where tls.crt/tls.key go")
    args = parser.parse_args(argv)
    if args.command == MINT_TOKEN and not (
        args.ca_dir and args.namespace and args.service_account and args.out
    ):
        parser.error("mint-token needs --ca-dir, --namespace, --service-account and --out")
    if args.command == SERVER_CERT and not (args.ca_dir and args.name and args.out_dir):
        parser.error("server-cert needs --ca-dir, at least one --name, and --out-dir")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, not {args.workers}")
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
        workers=args.workers,
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


def mint_token(args: argparse.Namespace) -> None:
    """A bootstrap token for the identity, written where only its workload should read it."""
    identity = SpiffeId(args.namespace, args.service_account, args.trust_domain)
    token = TokenAuthority.load_or_create(args.ca_dir).mint(identity)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_private(args.out, token.encode())


def server_cert(args: argparse.Namespace) -> None:
    """A serving certificate (and the mesh's trust bundle) for control-plane names."""
    ca = CertificateAuthority.load_or_create(
        args.ca_dir, key_type=args.key_type, trust_domain=args.trust_domain, default_ttl=args.ttl
    )
    serving = ca.server_credentials(*args.name)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "tls.crt").write_bytes(serving.chain_pem)
    write_private(args.out_dir / "tls.key", serving.key_pem)
    (args.out_dir / "ca.crt").write_bytes(ca.root_pem)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    if args.command == MINT_TOKEN:
        mint_token(args)
        return 0
    if args.command == SERVER_CERT:
        server_cert(args)
        return 0
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
