"""`meshctl apply`, `get` and `delete`: Istio configuration, like kubectl, for this mesh.

Every document is validated first (the same validation galley applies), and a file with any
invalid document changes nothing. The store is a directory (`--dir`; by default the one the
local mesh in the run directory watches, so a change takes effect within a second) or the
Kubernetes API (`--kubernetes in-cluster|KUBECONFIG|URL`). Kinds are named as kubectl names
them: `VirtualService`, `virtualservices`, `virtualservice` or a short name (`vs`, `dr`, `gw`,
`se`, `we`, `pa`, `ap`, `ra`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any, Final

import yaml

from localmesh.state import MeshState
from meshconfig import ConfigValidationError, Kind, Resource, load_documents, validate_document
from meshconfig.kinds import all_kinds
from meshcore.kube import api_client
from meshctl.config_stores import ConfigStore, DirectoryStore, KubernetesStore, StoreError

SHORT_NAMES: Final = {
    "vs": "VirtualService",
    "dr": "DestinationRule",
    "gw": "Gateway",
    "se": "ServiceEntry",
    "we": "WorkloadEntry",
    "wg": "WorkloadGroup",
    "pa": "PeerAuthentication",
    "ap": "AuthorizationPolicy",
    "ra": "RequestAuthentication",
}


def register(subparsers: Any) -> None:
    apply = subparsers.add_parser("apply", help="create or update configuration from a file")
    apply.add_argument("-f", "--filename", required=True, help="YAML or JSON file, - for stdin")
    _store_flags(apply)
    apply.set_defaults(run=run_apply)

    get = subparsers.add_parser("get", help="list configuration of one kind")
    get.add_argument("kind")
    get.add_argument("name", nargs="?")
    _store_flags(get)
    _namespace_flags(get)
    get.add_argument("-o", "--output", choices=["table", "yaml", "json"], default="table")
    get.set_defaults(run=run_get)

    delete = subparsers.add_parser("delete", help="delete configuration")
    delete.add_argument("kind", nargs="?")
    delete.add_argument("name", nargs="?")
    delete.add_argument("-f", "--filename", help="delete what this file defines")
    _store_flags(delete)
    _namespace_flags(delete)
    delete.set_defaults(run=run_delete)


def _store_flags(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--dir", type=Path, help="a configuration directory")
    where.add_argument("--kubernetes", metavar="WHERE", help="in-cluster, a kubeconfig or a URL")
    parser.add_argument("--run-dir", type=Path, default=Path("run"), help="the local mesh's")


def _namespace_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("-A", "--all-namespaces", action="store_true")


def find_kind(name: str) -> Kind:
    wanted = SHORT_NAMES.get(name.lower(), name).lower()
    for kind in all_kinds():
        if wanted in (kind.kind.lower(), kind.plural, f"{kind.plural}.{kind.group}"):
            return kind
    raise StoreError(f"unknown kind {name!r}")


async def _store(args: argparse.Namespace) -> ConfigStore:
    if args.kubernetes:
        return KubernetesStore(await api_client(args.kubernetes))
    if args.dir is not None:
        return DirectoryStore(args.dir)
    state = MeshState.load(args.run_dir)
    if state is None:
        raise StoreError(f"no --dir or --kubernetes, and no local mesh runs from {args.run_dir}")
    return DirectoryStore(Path(state.config_dir))


async def _close(store: ConfigStore) -> None:
    if isinstance(store, KubernetesStore):
        await store.close()


def _read(filename: str) -> list[Resource]:
    """Every document of the file, validated; any problem raises before anything is applied."""
    text = sys.stdin.read() if filename == "-" else Path(filename).read_text(encoding="utf-8")
    return [validate_document(d, filename) for d in load_documents(text, filename)]


def _run(args: argparse.Namespace, work: Any) -> int:
    try:
        return int(asyncio.run(work(args)))
    except (StoreError, ConfigValidationError, OSError) as error:
        print(f"meshctl: {error}", file=sys.stderr)
        return 1


def run_apply(args: argparse.Namespace) -> int:
    return _run(args, _apply)


async def _apply(args: argparse.Namespace) -> int:
    resources = _read(args.filename)
    store = await _store(args)
    try:
        for resource in resources:
            outcome = await store.apply(resource)
            print(f"{_name(resource)} {outcome}")
    finally:
        await _close(store)
    return 0


def run_get(args: argparse.Namespace) -> int:
    return _run(args, _get)


async def _get(args: argparse.Namespace) -> int:
    kind = find_kind(args.kind)
    store = await _store(args)
    try:
        namespace = None if args.all_namespaces or not kind.namespaced else args.namespace
        found = await store.list(kind, namespace)
    finally:
        await _close(store)
    if args.name:
        found = [r for r in found if r.metadata.name == args.name]
        if not found:
            raise StoreError(f"{kind.kind} {args.namespace}/{args.name} not found")
    found.sort(key=lambda r: r.key)
    if args.output == "table":
        print(f"{'NAMESPACE':<20} NAME")
        for resource in found:
            print(f"{resource.metadata.namespace:<20} {resource.metadata.name}")
    else:
        documents = [r.to_document() for r in found]
        if args.output == "json":
            print(json.dumps(documents[0] if args.name else documents, indent=2))
        else:
            print(yaml.safe_dump_all(documents, sort_keys=False), end="")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    return _run(args, _delete)


async def _delete(args: argparse.Namespace) -> int:
    if args.filename:
        targets = [(r.kind, r.metadata.namespace, r.metadata.name) for r in _read(args.filename)]
    elif args.kind and args.name:
        targets = [(find_kind(args.kind), args.namespace, args.name)]
    else:
        raise StoreError("delete needs KIND NAME or -f FILE")
    store = await _store(args)
    try:
        for kind, namespace, name in targets:
            await store.delete(kind, namespace, name)
            print(f"{kind.kind.lower()}.{kind.group or 'core'}/{name} deleted")
    finally:
        await _close(store)
    return 0


def _name(resource: Resource) -> str:
    kind = resource.kind
    return f"{kind.kind.lower()}.{kind.group or 'core'}/{resource.metadata.name}"
