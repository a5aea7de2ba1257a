"""What the injector puts in every pod: the proxy image and where the control plane is.

The same settings drive the webhook and `meshctl kube-inject`, so a manifest injected offline is
the pod the cluster would have made. The defaults are the addresses of the Services in deploy/;
the mesh ConfigMap's `mesh` key (Istio's MeshConfig YAML) overrides what it names:
`defaultConfig.discoveryAddress` (pilot's mutual-TLS xDS address),
`defaultConfig.proxyMetadata.CA_ADDR` (citadel's CSR address, as Istio's agent reads it) and
`trustDomain` (the mesh id, as Istio derives it). Pure values: no I/O but the caller's text.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import yaml

from meshcore.identity import TRUST_DOMAIN

IMAGE_NAME = "pymesh/pymesh"
DEFAULT_IMAGE = f"{IMAGE_NAME}:{importlib.metadata.version('pymesh')}"
# Pilot's Service is named for the name its certificate carries and sidecars verify.
DEFAULT_PILOT = "istiod.istio-system.svc:15011"
DEFAULT_CITADEL = "istio-citadel.istio-system.svc:8060"
DEFAULT_CLUSTER_ID = "Kubernetes"


class MeshConfigError(ValueError):
    """The mesh config is not a MeshConfig mapping with string fields where they are read."""


class InjectionError(ValueError):
    """The pod asks for something the injector cannot do (an invalid annotation, say)."""


@dataclass(frozen=True)
class InjectionConfig:
    image: str = DEFAULT_IMAGE
    pilot: str = DEFAULT_PILOT
    citadel: str = DEFAULT_CITADEL
    mesh_id: str = TRUST_DOMAIN
    cluster_id: str = DEFAULT_CLUSTER_ID
    # Istio CNI sets up the capture: no istio-init container, the settings go in annotations.
    cni: bool = False

    def with_mesh_config(self, text: str) -> InjectionConfig:
        """This config with what the MeshConfig YAML `text` sets."""
        try:
            mesh = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise MeshConfigError(f"mesh config is not YAML: {error}") from None
        mesh = _mapping(mesh if mesh is not None else {}, "mesh config")
        default_config = _mapping(mesh.get("defaultConfig", {}), "defaultConfig")
        metadata = _mapping(default_config.get("proxyMetadata", {}), "defaultConfig.proxyMetadata")
        return replace(
            self,
            pilot=_string(default_config, "discoveryAddress", self.pilot, "defaultConfig."),
            citadel=_string(metadata, "CA_ADDR", self.citadel, "defaultConfig.proxyMetadata."),
            mesh_id=_string(mesh, "trustDomain", self.mesh_id, ""),
        )


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MeshConfigError(f"{where} must be a mapping")
    return value


def _string(fields: Mapping[str, Any], key: str, default: str, prefix: str) -> str:
    value = fields.get(key, default)
    if not isinstance(value, str) or not value:
        raise MeshConfigError(f"{prefix}{key} must be a non-empty string")
    return value
