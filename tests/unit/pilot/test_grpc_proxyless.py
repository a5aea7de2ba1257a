"""Config for proxyless gRPC clients: what grpcio's xDS client needs, and nothing it rejects.

`tests/integration/test_proxyless_grpc.py` runs grpcio's own client against this config; these
tests pin the shape: listener names and `api_listener`s, route configs named as istiod names
them with the sidecars' VirtualService routes fitted for gRPC, plain EDS clusters, and the
snapshot a `GENERATOR: grpc` node gets.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2

from meshcore.xds import types
from pilot.config_files import load_config_directory
from pilot.generators import grpc_proxyless
from pilot.generators.filters import FAULT, ROUTER
from pilot.model import NodeType, Proxy, ProxyView
from pilot.push_context import PushContext
from pilot.snapshots import SnapshotGenerator
from tests.unit.pilot.conftest import SAMPLE_MESH, MakeProxy, WriteConfig
from tests.unit.pilot.vs_support import build, service, virtual_service

Cluster = cluster_pb2.Cluster
DEFAULT = ProxyView(NodeType.SIDECAR, "default")
ECHO = "echo.default.svc.cluster.local"
CLIENT_ID = "sidecar~127.0.1.9~client.default~default.svc.cluster.local"
SUBSETS = f"""\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo, namespace: default}}
spec:
  host: {ECHO}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - name: v2
    labels: {{version: v2}}
    trafficPolicy: {{loadBalancer: {{consistentHash: {{httpHeaderName: x-user}}}}}}
"""
WORKLOADS = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v1, namespace: default}
spec: {address: 127.0.1.2, labels: {app: echo, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v2, namespace: default}
spec: {address: 127.0.1.3, labels: {app: echo, version: v2}, locality: eu/a}
"""


def _echo(
    write_config: WriteConfig, *documents: str, workloads: str = WORKLOADS, version: str = "1"
) -> PushContext:
    """The echo service (gRPC 7070, subsets v1 and v2) and `documents`."""
    text = "\n---\n".join((service("echo", 7070, protocol="GRPC"), workloads, SUBSETS, *documents))
    loaded = load_config_directory(write_config(text))
    return PushContext.build(loaded.registry, version, loaded.istio)


def _manager(packed: any_pb2.Any) -> hcm_pb2.HttpConnectionManager:
    manager = hcm_pb2.HttpConnectionManager()
    assert packed.Unpack(manager)
    return manager


def test_a_grpc_node_is_recognised(make_proxy: MakeProxy) -> None:
    client = make_proxy(CLIENT_ID, GENERATOR="grpc", NAMESPACE="default")
    assert client.proxyless_grpc and client.type is NodeType.SIDECAR
    assert not make_proxy(CLIENT_ID).proxyless_grpc


def test_a_listener_per_name_a_client_may_dial(write_config: WriteConfig) -> None:
    ctx = _echo(write_config)
    found = {listener.name: listener for listener in grpc_proxyless.listeners(ctx, DEFAULT)}
    assert [n for n in found if "echo" in n] == [
        "echo.default.svc.cluster.local:7070",
        "echo.default.svc:7070",
        "echo.default:7070",
        "echo:7070",
    ]
    for listener in found.values():
        assert not listener.HasField("address") and not listener.filter_chains
        manager = _manager(listener.api_listener.api_listener)
        assert [f.name for f in manager.http_filters] == [FAULT, ROUTER]
        port = listener.name.rsplit(":", 1)[1]
        assert manager.rds.route_config_name.startswith(f"outbound|{port}||")
        assert manager.rds.config_source.HasField("ads")
    assert _manager(found["echo:7070"].api_listener.api_listener).rds.route_config_name == (
        f"outbound|7070||{ECHO}"
    )
    other = ProxyView(NodeType.SIDECAR, "shop")
    names = {listener.name for listener in grpc_proxyless.listeners(ctx, other)}
    assert "echo.default:7070" in names and "echo:7070" not in names


def test_a_host_named_like_another_services_short_name_keeps_its_listener(
    write_config: WriteConfig,
) -> None:
    ctx = _echo(write_config, service("other", 7070, host="echo.default"))
    found = {listener.name: listener for listener in grpc_proxyless.listeners(ctx, DEFAULT)}
    manager = _manager(found["echo.default:7070"].api_listener.api_listener)
    assert manager.rds.route_config_name == "outbound|7070||echo.default"


def test_only_eds_services_are_served(write_config: WriteConfig) -> None:
    ctx = build(write_config, SAMPLE_MESH)
    listeners = {listener.name for listener in grpc_proxyless.listeners(ctx, DEFAULT)}
    assert {"reviews:9090", "reviews:3306", "ratings.shop:9080"} <= listeners
    clusters = {c.name for c in grpc_proxyless.clusters(ctx, DEFAULT)}
    assert "outbound|9090||reviews.default.svc.cluster.local" in clusters
    for names in (listeners, clusters):
        assert not any("googleapis" in n or "passthrough" in n for n in names)
    assert "BlackHoleCluster" not in clusters and "PassthroughCluster" not in clusters


def test_default_route_and_domains(write_config: WriteConfig) -> None:
    ctx = _echo(write_config)
    configs = {c.name: c for c in grpc_proxyless.route_configs(ctx, DEFAULT)}
    config = configs[f"outbound|7070||{ECHO}"]
    [host] = config.virtual_hosts
    assert host.name == f"{ECHO}:7070"
    assert list(host.domains) == [
        f"{ECHO}:7070",
        ECHO,
        "echo.default.svc:7070",
        "echo.default.svc",
        "echo.default:7070",
        "echo.default",
        "echo:7070",
        "echo",
    ]
    [route] = host.routes
    assert route.match.prefix == "/"
    assert route.route.cluster == f"outbound|7070||{ECHO}"


def test_virtual_service_routes_fitted_for_grpc(write_config: WriteConfig) -> None:
    vs = virtual_service(
        "echo",
        """\
        hosts: [echo]
        http:
        - match: [{queryParams: {debug: {exact: "1"}}}]
          route: [{destination: {host: echo, subset: v1}}]
        - match: [{headers: {x-canary: {exact: "yes"}}}]
          timeout: 2s
          corsPolicy: {allowOrigins: [{exact: "https://example.com"}]}
          fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 10}}}
          route: [{destination: {host: echo, subset: v2}}]
        - route:
          - {destination: {host: echo, subset: v1}, weight: 80}
          - {destination: {host: echo, subset: v2}, weight: 20}
        """,
    )
    ctx = _echo(write_config, vs)
    [config] = [c for c in grpc_proxyless.route_configs(ctx, DEFAULT) if ECHO in c.name]
    canary, split = config.virtual_hosts[0].routes  # the query parameter route is dropped
    assert [h.name for h in canary.match.headers] == ["x-canary"]
    assert list(canary.typed_per_filter_config) == [FAULT]
    assert canary.route.cluster == f"outbound|7070|v2|{ECHO}"
    assert canary.route.max_stream_duration.grpc_timeout_header_max.seconds == 2
    weights = {w.name: w.weight.value for w in split.route.weighted_clusters.clusters}
    assert weights == {f"outbound|7070|v1|{ECHO}": 80, f"outbound|7070|v2|{ECHO}": 20}
    assert not split.route.HasField("max_stream_duration")


def test_eds_clusters_with_subsets(write_config: WriteConfig) -> None:
    ctx = _echo(write_config)
    clusters = {c.name: c for c in grpc_proxyless.clusters(ctx, DEFAULT)}
    echo = {n for n in clusters if n.endswith(ECHO)}
    assert echo == {f"outbound|7070|{subset}|{ECHO}" for subset in ("", "v1", "v2")}
    for name in echo:
        cluster = clusters[name]
        assert cluster.type == cluster.EDS
        assert cluster.eds_cluster_config.service_name == name
        assert cluster.eds_cluster_config.eds_config.HasField("ads")
        assert not cluster.HasField("transport_socket") and not cluster.circuit_breakers.thresholds
    assert clusters[f"outbound|7070||{ECHO}"].lb_policy == Cluster.ROUND_ROBIN
    ring = clusters[f"outbound|7070|v2|{ECHO}"]
    assert ring.lb_policy == ring.RING_HASH
    assert ring.ring_hash_lb_config.minimum_ring_size.value == 1024


def test_snapshot_of_a_grpc_node(write_config: WriteConfig, make_proxy: MakeProxy) -> None:
    ctx = _echo(write_config)
    client: Proxy = make_proxy(CLIENT_ID, GENERATOR="grpc", NAMESPACE="default")
    generator = SnapshotGenerator()
    snapshot = generator.full(ctx, client)
    assert generator.full(ctx, client) is snapshot
    listeners = snapshot.get(types.LISTENER)
    assert listeners is not None and "echo:7070" in listeners.resources
    assert "virtualOutbound" not in listeners.resources
    endpoints = snapshot.get(types.ENDPOINT)
    assert endpoints is not None
    assert set(endpoints.resources) >= {f"outbound|7070|{s}|{ECHO}" for s in ("", "v1", "v2")}
    for resource in endpoints.resources.values():
        assignment = endpoint_pb2.ClusterLoadAssignment()
        assert any_pb2.Any.FromString(resource.any_bytes).Unpack(assignment)
        # gRPC drops a locality without a weight, and then has "no children" to call.
        assert all(locality.load_balancing_weight.value for locality in assignment.endpoints)
    sidecar = generator.full(ctx, make_proxy(CLIENT_ID))
    # The same assignments as a sidecar's.
    assert sidecar.get(types.ENDPOINT).version == endpoints.version  # type: ignore[union-attr]


def test_an_endpoints_push_updates_only_eds(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    client: Proxy = make_proxy(CLIENT_ID, GENERATOR="grpc", NAMESPACE="default")
    generator = SnapshotGenerator()
    before = generator.full(_echo(write_config), client)
    moved = _echo(write_config, workloads=WORKLOADS.replace("127.0.1.3", "127.0.1.4"), version="2")
    after = generator.endpoints_only(before, moved, client, frozenset({ECHO}))
    assert after.get(types.LISTENER) is before.get(types.LISTENER)
    assert after.get(types.ENDPOINT) != before.get(types.ENDPOINT)


def test_the_sidecar_resource_scopes_a_grpc_node(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    scoped = """\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress: [{hosts: ["shop/*"]}]
"""
    ctx = build(write_config, SAMPLE_MESH, scoped)
    client: Proxy = make_proxy(CLIENT_ID, GENERATOR="grpc", NAMESPACE="default")
    listeners = SnapshotGenerator().full(ctx, client).get(types.LISTENER)
    assert listeners is not None
    assert sorted(listeners.resources) == [
        "ratings.shop.svc.cluster.local:9080",
        "ratings.shop.svc:9080",
        "ratings.shop:9080",
    ]
