"""The injection settings as command-line flags, one spelling for the webhook's command and
`meshctl kube-inject`, so the same flags give the same sidecar in and out of the cluster."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.injector.config import DEFAULT_CLUSTER_ID, DEFAULT_IMAGE, InjectionConfig


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--mesh-config", type=Path, help="MeshConfig YAML (the istio ConfigMap's `mesh` key)")
    add("--proxy-image", default=DEFAULT_IMAGE, help=f"sidecar image (default {DEFAULT_IMAGE})")
    add("--cluster-id", default=DEFAULT_CLUSTER_ID)
    add("--cni", action="store_true", help="Istio CNI captures traffic: no istio-init container")


def config_from(args: argparse.Namespace) -> InjectionConfig:
    """Raises OSError if the mesh config cannot be read, MeshConfigError if it is invalid."""
    config = InjectionConfig(image=args.proxy_image, cluster_id=args.cluster_id, cni=args.cni)
    if args.mesh_config is not None:
        config = config.with_mesh_config(args.mesh_config.read_text())
    return config
