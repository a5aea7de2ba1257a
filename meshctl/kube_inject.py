"""`meshctl kube-inject`: add the sidecar to Kubernetes manifests offline, like `istioctl
kube-inject`, for clusters without the injector webhook or to see what it would do.

Every pod template in the input (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob,
bare Pods, also inside a `List`) goes through the webhook's own policy and `sidecar.inject`
with the same settings flags, so the output is the pod the webhook would have made; other
documents pass through unchanged. Exit codes: 0 on success, 2 for usage errors, unreadable
input, or a pod that cannot be injected (an invalid annotation, named in the message).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from agent.injector import InjectionConfig, InjectionError, MeshConfigError, inject, skip_reason
from agent.injector.cli import add_config_arguments, config_from

EXIT_INPUT = 2
# Where each workload kind keeps its pod template; a Pod is its own.
TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "kube-inject",
        help="inject the sidecar into Kubernetes manifests",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-f", "--filename", required=True, metavar="FILE", help='manifests ("-" for stdin)'
    )
    parser.add_argument("-o", "--output", type=Path, metavar="FILE", help="default: stdout")
    add_config_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from(args)
        text = sys.stdin.read() if args.filename == "-" else Path(args.filename).read_text()
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
        injected = [inject_document(doc, config) for doc in documents]
    except (OSError, yaml.YAMLError, MeshConfigError, InjectionError) as error:
        print(f"Error: {error}", file=sys.stderr)
        return EXIT_INPUT
    output = yaml.safe_dump_all(injected, sort_keys=False)
    if args.output is None:
        sys.stdout.write(output)
    else:
        args.output.write_text(output)
    return 0


def inject_document(document: Any, config: InjectionConfig) -> Any:
    """`document` with the sidecar in its pod template, if it has one that policy injects.

    Raises InjectionError naming the document if its pod cannot be injected.
    """
    if not isinstance(document, Mapping):
        return document
    kind = document.get("kind")
    if kind == "List":
        items = document.get("items") or []
        return {**document, "items": [inject_document(item, config) for item in items]}
    path = TEMPLATE_PATHS.get(str(kind))
    template = _at(document, path) if path is not None else None
    metadata = document.get("metadata") or {}
    if path is None or template is None or skip_reason(template, metadata.get("namespace", "")):
        return document
    # A workload names its pods; a bare Pod's workload is derived as the webhook derives it.
    workload = str(metadata.get("name", "")) if path else ""
    try:
        injected = inject(template, config, workload=workload)
    except InjectionError as error:
        raise InjectionError(f"{kind} {metadata.get('name', '')}: {error}") from None
    return _replaced(document, path, injected)


def _at(document: Mapping[str, Any], path: tuple[str, ...]) -> Mapping[str, Any] | None:
    node: Any = document
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else None


def _replaced(node: Mapping[str, Any], path: tuple[str, ...], value: Any) -> Any:
    if not path:
        return value
    return {**node, path[0]: _replaced(node[path[0]], path[1:], value)}
