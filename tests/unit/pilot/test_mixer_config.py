"""Pilot's Mixer configuration for sidecars: ext_authz, access log, source header, cluster."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from pilot.config_files import load_config_directory
from pilot.generators.clusters import outbound_clusters
from pilot.generators.listeners import proxy_listeners
from pilot.mesh_config import DEFAULT_MESH, MeshConfig
from pilot.model import InterceptionMode, NodeType, Proxy
from pilot.push_context import PushContext
from pilot.registry import ConfigError
from protos.mixer.v1 import attributes_pb2

REGISTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http}]
  workloadSelector: {labels: {app: ratings}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-v1, namespace: default}
spec: {address: 10.0.0.1, labels: {app: ratings, version: v1}, serviceAccount: ratings}
"""
ON = MeshConfig(
    disable_policy_checks=False,
    policy_check_fail_open=True,
    mixer_check_server="10.9.9.9:9091",
    mixer_report_server="10.9.9.9:9091",
)
MIXER_CLUSTER = "outbound|9091||10.9.9.9"


def context(tmp_path: Path, mesh: MeshConfig) -> PushContext:
    (tmp_path / "registry.yaml").write_text(REGISTRY)
    loaded = load_config_directory(tmp_path)
    return PushContext.build(loaded.registry, "1", loaded.istio, mesh=mesh)


PROXY = Proxy(
    id="sidecar~10.0.0.1~ratings-v1.default~default.svc.cluster.local",
    type=NodeType.SIDECAR,
    ip="10.0.0.1",
    pod_name="ratings-v1",
    namespace="default",
    dns_domain="default.svc.cluster.local",
    labels={"app": "ratings", "version": "v1"},
    interception_mode=InterceptionMode.NONE,
    http_proxy_port=15080,
)


def manager(ctx: PushContext, listener_name: str) -> hcm_pb2.HttpConnectionManager:
    listener = {x.name: x for x in proxy_listeners(ctx, PROXY)}[listener_name]
    found = hcm_pb2.HttpConnectionManager()
    listener.filter_chains[0].filters[0].typed_config.Unpack(found)
    return found


def test_inbound_checks_and_reports_with_the_destination_attributes(tmp_path: Path) -> None:
    inbound = manager(context(tmp_path, ON), "10.0.0.1_9080")
    assert inbound.http_filters[0].name == "envoy.filters.http.ext_authz"
    check = ext_authz_pb2.ExtAuthz()
    inbound.http_filters[0].typed_config.Unpack(check)
    assert check.failure_mode_allow and check.grpc_service.envoy_grpc.cluster_name == MIXER_CLUSTER
    route = inbound.route_config.virtual_hosts[0].routes[0]
    per_route = ext_authz_pb2.ExtAuthzPerRoute()
    route.typed_per_filter_config["envoy.filters.http.ext_authz"].Unpack(per_route)
    extensions = dict(per_route.check_settings.context_extensions)
    assert extensions["destination.labels"] == "app=ratings,version=v1"
    assert extensions["destination.service.host"] == "ratings.default.svc.cluster.local"
    (log,) = inbound.access_log
    config = als_pb2.HttpGrpcAccessLogConfig()
    log.typed_config.Unpack(config)
    tags = {t.tag: t.literal.value for t in config.common_config.custom_tags}
    assert tags["context.reporter.kind"] == "inbound"
    assert tags["destination.workload.name"] == "ratings-v1"


def test_the_client_proxy_states_its_identity(tmp_path: Path) -> None:
    outbound = manager(context(tmp_path, ON), "10.0.0.1_15080")
    header = header_mutation_pb2.HeaderMutation()
    outbound.http_filters[0].typed_config.Unpack(header)
    (mutation,) = header.mutations.request_mutations
    assert mutation.append.header.key == "x-istio-attributes"
    attributes = attributes_pb2.Attributes.FromString(
        base64.b64decode(mutation.append.header.value)
    )
    assert dict(attributes.attributes["source.labels"].string_map_value.entries) == PROXY.labels
    assert attributes.attributes["source.workload.name"].string_value == "ratings-v1"


def test_the_mixer_cluster_speaks_http2(tmp_path: Path) -> None:
    ctx = context(tmp_path, ON)
    clusters = {c.name: c for c in outbound_clusters(ctx, ctx.view_for(PROXY))}
    assert MIXER_CLUSTER in clusters
    assert (
        clusters[MIXER_CLUSTER]
        .load_assignment.endpoints[0]
        .lb_endpoints[0]
        .endpoint.address.socket_address.port_value
        == 9091
    )


def test_nothing_of_mixer_without_it(tmp_path: Path) -> None:
    ctx = context(tmp_path, DEFAULT_MESH)
    inbound = manager(ctx, "10.0.0.1_9080")
    assert "envoy.filters.http.ext_authz" not in [f.name for f in inbound.http_filters]
    assert not inbound.access_log
    assert not inbound.route_config.virtual_hosts[0].routes[0].typed_per_filter_config
    assert "envoy.filters.http.header_mutation" not in [
        f.name for f in manager(ctx, "10.0.0.1_15080").http_filters
    ]
    assert MIXER_CLUSTER not in {c.name for c in outbound_clusters(ctx, ctx.view_for(PROXY))}


def test_a_service_can_be_exempt_from_policy_checks(tmp_path: Path) -> None:
    (tmp_path / "registry.yaml").write_text(
        REGISTRY.replace(
            "metadata: {name: ratings, namespace: default}",
            "metadata:\n  name: ratings\n  namespace: default\n"
            "  annotations: {policy.pymesh.dev/check: disable}",
            1,
        )
    )
    loaded = load_config_directory(tmp_path)
    ctx = PushContext.build(loaded.registry, "1", loaded.istio, mesh=ON)
    route = manager(ctx, "10.0.0.1_9080").route_config.virtual_hosts[0].routes[0]
    per_route = ext_authz_pb2.ExtAuthzPerRoute()
    route.typed_per_filter_config["envoy.filters.http.ext_authz"].Unpack(per_route)
    assert per_route.disabled


def test_a_bad_check_annotation_is_named(tmp_path: Path) -> None:
    (tmp_path / "registry.yaml").write_text(
        REGISTRY.replace(
            "metadata: {name: ratings, namespace: default}",
            "metadata:\n  name: ratings\n  namespace: default\n"
            "  annotations: {policy.pymesh.dev/check: later}",
            1,
        )
    )
    with pytest.raises(ConfigError, match=r"policy.pymesh.dev/check\]: must be enable or disable"):
        load_config_directory(tmp_path)
