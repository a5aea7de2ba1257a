"""Builders for pilot's pure unit tests: registry directories, xDS nodes, a sample mesh."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from textwrap import dedent

import pytest
from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

from pilot.config_files import load_config_directory
from pilot.model import Proxy
from pilot.push_context import PushContext
from pilot.registry import RegistrySnapshot

WriteConfig = Callable[..., Path]


def load_directory(directory: Path) -> RegistrySnapshot:
    """The registry part of what pilot reads from a directory."""
    return load_config_directory(directory).registry


MakeNode = Callable[..., base_pb2.Node]
MakeProxy = Callable[..., Proxy]
BuildContext = Callable[..., PushContext]

SIDECAR_ID = "sidecar~127.0.1.2~reviews-v1.default~default.svc.cluster.local"

# A small mesh: reviews (STATIC, selector; HTTP, gRPC and TCP ports; two workloads, one with a
# locality), ratings in another namespace, an external DNS host and a NONE passthrough host.
SAMPLE_MESH = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  addresses: [240.0.0.10]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 9080, name: http}
  - {number: 9090, name: grpc-api, targetPort: 19090}
  - {number: 3306, name: tcp-db, protocol: TCP}
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec:
  address: 127.0.1.2
  labels: {app: reviews, version: v1}
  locality: us-east/zone-a
  ports: {http: 19080}
---
apiVersion: networking.istio.io/v1alpha3
kind: WorkloadEntry
metadata: {name: reviews-v2, namespace: default}
spec: {address: 127.0.1.3, labels: {app: reviews, version: v2}, weight: 3}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: shop}
spec:
  hosts: [ratings.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http-ratings}]
  endpoints: [{address: 127.0.2.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: googleapis}
spec:
  hosts: [www.googleapis.com]
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: anything}
spec:
  hosts: [passthrough.example.com]
  ports: [{number: 8000, name: tcp}]
  resolution: NONE
"""


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """write_config(text, name="mesh.yaml") -> the directory, holding the dedented text."""

    def write(text: str, name: str = "mesh.yaml") -> Path:
        (tmp_path / name).write_text(dedent(text))
        return tmp_path

    return write


@pytest.fixture
def make_node() -> MakeNode:
    """make_node(id=SIDECAR_ID, **metadata) -> an Envoy node."""

    def make(node_id: str = SIDECAR_ID, **metadata: object) -> base_pb2.Node:
        struct = struct_pb2.Struct()
        struct.update(metadata)
        return base_pb2.Node(id=node_id, metadata=struct)

    return make


@pytest.fixture
def make_proxy(make_node: MakeNode) -> MakeProxy:
    """make_proxy(id=SIDECAR_ID, **metadata) -> a parsed Proxy."""

    def make(node_id: str = SIDECAR_ID, **metadata: object) -> Proxy:
        return Proxy.from_node(make_node(node_id, **metadata))

    return make


@pytest.fixture
def build_context(write_config: WriteConfig) -> BuildContext:
    """build_context(yaml=SAMPLE_MESH, version="1") -> a push context of that registry."""

    def build(text: str = SAMPLE_MESH, version: str = "1") -> PushContext:
        return PushContext.build(load_directory(write_config(text)), version)

    return build


@pytest.fixture
def sample_mesh() -> str:
    return SAMPLE_MESH


@pytest.fixture
def ctx(build_context: BuildContext) -> PushContext:
    return build_context()


@pytest.fixture
def sidecar(make_proxy: MakeProxy) -> Proxy:
    """The reviews-v1 sidecar of the sample mesh, in the local mesh's NONE mode."""
    return make_proxy(INTERCEPTION_MODE="NONE", HTTP_PROXY_PORT="15080", APP_ADDRESS="127.0.100.2")
