"""Builders shared by the Sidecar tests: a three-namespace mesh, Sidecars, proxies, output."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent, indent

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

from meshcore.xds import types
from pilot.config_files import load_config_directory
from pilot.generators import clusters, endpoints, listeners, routes
from pilot.model import Proxy
from pilot.push_context import PushContext
from pilot.snapshots import SnapshotGenerator

WriteConfig = Callable[..., Path]
MakeProxy = Callable[..., Proxy]

A1 = "a1.a.svc.cluster.local"
B1 = "b1.b.svc.cluster.local"
SYS = "sys.istio-system.svc.cluster.local"
EXTERNAL = "api.example.com"
A1_IP = "127.0.5.1"
A1_APP = "127.0.105.1"

# a1 (namespace a: HTTP 8080, TCP 9000), b1 (namespace b: the same ports), sys (istio-system:
# HTTP 8080), and api.example.com (a DNS host declared in namespace b).
MESH = f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: a1, namespace: a}}
spec:
  hosts: [{A1}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 8080, name: http}}, {{number: 9000, name: tcp, protocol: TCP}}]
  endpoints: [{{address: {A1_IP}, labels: {{app: a1}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: b1, namespace: b}}
spec:
  hosts: [{B1}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 8080, name: http}}, {{number: 9000, name: tcp, protocol: TCP}}]
  endpoints: [{{address: 127.0.5.2}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: sys, namespace: istio-system}}
spec:
  hosts: [{SYS}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 8080, name: http}}]
  endpoints: [{{address: 127.0.5.3}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external, namespace: b}}
spec:
  hosts: [{EXTERNAL}]
  resolution: DNS
  ports: [{{number: 80, name: http, protocol: HTTP}}]
"""


def sidecar(name: str, namespace: str, spec: str) -> str:
    """A Sidecar document with `spec` (YAML, dedented) as its spec."""
    body = indent(dedent(spec).strip(), "  ")
    return (
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{body}\n"
    )


def context(write_config: WriteConfig, *documents: str) -> PushContext:
    """A push context of MESH plus `documents`."""
    text = "---\n".join((MESH, *documents))
    loaded = load_config_directory(write_config(text))
    return PushContext.build(loaded.registry, "1", loaded.istio)


def proxy_in(make_proxy: MakeProxy, namespace: str, ip: str = "127.0.6.1", **labels: str) -> Proxy:
    """A sidecar in the local mesh's NONE mode, with `labels`."""
    node_id = f"sidecar~{ip}~client.{namespace}~{namespace}.svc.cluster.local"
    return make_proxy(
        node_id,
        INTERCEPTION_MODE="NONE",
        HTTP_PROXY_PORT="15080",
        APP_ADDRESS=A1_APP,
        LABELS=labels or {"app": "client"},
    )


def resource_names(ctx: PushContext, proxy: Proxy) -> dict[str, set[str]]:
    """The names of what the proxy is served, by type: cds, eds, lds, rds."""
    snapshot = SnapshotGenerator().full(ctx, proxy)
    short = {types.CLUSTER: "cds", types.ENDPOINT: "eds", types.LISTENER: "lds"}
    found = {name: set(snapshot.types[url].resources) for url, name in short.items()}
    found["rds"] = set(snapshot.types[types.ROUTE].resources)
    return found


@dataclass
class Generated:
    """Everything generated for one proxy, as messages."""

    clusters: list[cluster_pb2.Cluster]
    endpoints: list[endpoint_pb2.ClusterLoadAssignment]
    routes: list[route_pb2.RouteConfiguration]
    listeners: list[listener_pb2.Listener]

    def route(self, name: str) -> route_pb2.RouteConfiguration:
        return next(r for r in self.routes if r.name == name)

    def listener(self, name: str) -> listener_pb2.Listener:
        return next(x for x in self.listeners if x.name == name)

    def cluster(self, name: str) -> cluster_pb2.Cluster:
        return next(c for c in self.clusters if c.name == name)


def generate(ctx: PushContext, proxy: Proxy) -> Generated:
    view = ctx.view_for(proxy)
    return Generated(
        clusters=clusters.outbound_clusters(ctx, view) + clusters.inbound_clusters(ctx, proxy),
        endpoints=endpoints.load_assignments(ctx, view),
        routes=routes.outbound_routes(ctx, view),
        listeners=listeners.outbound_listeners(ctx, view) + listeners.proxy_listeners(ctx, proxy),
    )
