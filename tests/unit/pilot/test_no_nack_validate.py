"""Nothing pilot serves in the bookinfo scenarios would be NACKed: real Envoy validates it.

For every bookinfo networking sample that concerns bookinfo's services, the registry of the
integration tests (one ServiceEntry per app, a WorkloadEntry per version, a client) plus the
sample (VirtualService samples together with destination-rule-all.yaml, as the integration
tests apply them) goes through pilot's own pipeline: `load_config_directory`, `PushContext`,
then `SnapshotGenerator().full()` for sidecars exactly as the local mesh starts them, and for
an ingress gateway labelled as Istio's (what bookinfo-gateway.yaml selects). The whole
snapshot (clusters, listeners, every route config inline in a listener, every load assignment
in a static cluster) is embedded in a bootstrap and checked by `envoy --mode validate`.
The snapshot is also checked for what Envoy accepts but then waits on or answers 503 for: an
assignment for each EDS cluster, a route config for each RDS name a listener uses, a cluster
for each name a route sends to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message

from agent.bootstrap import ProxySpec, ProxyType, build_bootstrap
from meshcore.xds import types
from meshcore.xds.resource import EMPTY_TYPE, Snapshot
from pilot.config_files import load_config_directory
from pilot.model import NodeType, Proxy
from pilot.push_context import PushContext
from pilot.snapshots import SnapshotGenerator
from tests.integration.mesh import service_entry, workload_entry
from tests.support.shared import BOOKINFO_NETWORKING
from tests.unit.pilot.test_gen_whole_config import _bootstrap, _envoy_validate

pytestmark = pytest.mark.envoy

# Workloads as tests/integration/test_bookinfo_routing.py runs them: name -> (app, version).
WORKLOADS = {
    "productpage-v1": ("productpage", "v1"),
    "details-v1": ("details", "v1"),
    "details-v2": ("details", "v2"),
    "reviews-v1": ("reviews", "v1"),
    "reviews-v2": ("reviews", "v2"),
    "reviews-v3": ("reviews", "v3"),
    "ratings-v1": ("ratings", "v1"),
}
BLOCK = "127.40.200"
IPS = {name: f"{BLOCK}.{n}" for n, name in enumerate([*WORKLOADS, "client"], start=2)}
# Not about bookinfo's services: another application's gateway, and an egress example.
UNRELATED = {"certmanager-gateway.yaml", "egress-rule-google-apis.yaml"}
SAMPLES = sorted(p for p in BOOKINFO_NETWORKING.glob("*.yaml") if p.name not in UNRELATED)
DESTINATION_RULES = BOOKINFO_NETWORKING / "destination-rule-all.yaml"
HCM = "envoy.filters.network.http_connection_manager"
# The proxies validated: the caller of everything, one that backs a subset, the bare client,
# and an ingress gateway as Istio labels it (bookinfo-gateway.yaml selects it).
PROXIES = ("productpage-v1", "reviews-v2", "client", "istio-ingressgateway")
GATEWAY_IP = f"{BLOCK}.50"


def _registry() -> str:
    documents = [service_entry(app, 9080) for app in sorted({a for a, _ in WORKLOADS.values()})]
    for name, (app, version) in WORKLOADS.items():
        documents.append(
            workload_entry(name, IPS[name], app).replace(
                f"labels: {{app: {app}}}", f"labels: {{app: {app}, version: {version}}}"
            )
        )
    documents.append(workload_entry("client", IPS["client"], "client"))
    return "---\n".join(documents)


def _context(sample: Path, directory: Path) -> PushContext:
    """The push context pilot builds from the registry and the sample, as the mesh writes them."""
    (directory / "registry.yaml").write_text(_registry())
    text = sample.read_text()
    (directory / "sample.yaml").write_text(text)
    if "kind: DestinationRule" not in text:
        (directory / "destination-rules.yaml").write_text(DESTINATION_RULES.read_text())
    loaded = load_config_directory(directory)
    return PushContext.build(loaded.registry, "1", loaded.istio)


def _proxy(name: str) -> Proxy:
    """The proxy pilot sees when tests/integration/mesh.py starts sidecar `name` (or the
    agent starts the ingress gateway)."""
    if name == "istio-ingressgateway":
        spec = ProxySpec(
            ip=GATEWAY_IP,
            pod=f"{name}-0",
            namespace="istio-system",
            proxy_type=ProxyType.ROUTER,
            service_account=f"{name}-service-account",
            labels={"app": name, "istio": "ingressgateway"},
        )
    else:
        app, version = WORKLOADS.get(name, (name, ""))
        last = int(IPS[name].rsplit(".", 1)[1])
        spec = ProxySpec(
            ip=IPS[name],
            pod=name,
            namespace="default",
            service_account=name,
            labels={"app": app, "version": version} if version else {"app": app},
            http_proxy_port=15080,
            app_address=f"{BLOCK}.{last + 100}",
        )
    node = json_format.ParseDict(build_bootstrap(spec)["node"], base_pb2.Node())
    return Proxy.from_node(node)


_MESSAGES: dict[str, type[Message]] = {
    types.CLUSTER: cluster_pb2.Cluster,
    types.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    types.LISTENER: listener_pb2.Listener,
    types.ROUTE: route_pb2.RouteConfiguration,
    types.SECRET: secret_pb2.Secret,
}
_KINDS = {
    types.CLUSTER: "clusters",
    types.ENDPOINT: "endpoints",
    types.LISTENER: "listeners",
    types.ROUTE: "routes",
    types.SECRET: "secrets",
}


def _decoded(snapshot: Snapshot) -> dict[str, list[Any]]:
    """The snapshot's resources as messages, by the kinds `_bootstrap` takes (and secrets)."""
    assert set(_MESSAGES) - {types.SECRET} <= set(snapshot.types) <= set(_MESSAGES)
    out: dict[str, list[Any]] = {}
    for type_url, message_type in _MESSAGES.items():
        found = snapshot.types.get(type_url, EMPTY_TYPE)
        messages = []
        for name in sorted(found.resources):
            packed = any_pb2.Any.FromString(found.resources[name].any_bytes)
            assert packed.type_url == type_url, (name, packed.type_url)
            messages.append(message_type.FromString(packed.value))
        out[_KINDS[type_url]] = messages
    return out


def _rds_names(listener: listener_pb2.Listener) -> set[str]:
    names = set()
    for chain in [*listener.filter_chains, listener.default_filter_chain]:
        for network_filter in chain.filters:
            if network_filter.name != HCM:
                continue
            manager = hcm_pb2.HttpConnectionManager()
            assert network_filter.typed_config.Unpack(manager)
            if manager.HasField("rds"):
                names.add(manager.rds.route_config_name)
    return names


def _route_clusters(config: route_pb2.RouteConfiguration) -> set[str]:
    """Every cluster a route config sends to: routes, weighted splits, mirrors."""
    names = set()
    for host in config.virtual_hosts:
        for route in host.routes:
            if not route.HasField("route"):
                continue
            action = route.route
            if action.cluster:
                names.add(action.cluster)
            names.update(c.name for c in action.weighted_clusters.clusters)
            names.update(m.cluster for m in action.request_mirror_policies)
    return names


def _assert_complete(proxy: Proxy, generated: dict[str, list[Any]]) -> None:
    """What Envoy does not reject but would wait on, or answer 503 for: every EDS cluster has
    an assignment (and only those), every RDS name has a route config, and every cluster a
    route uses exists (pilot sets `validate_clusters: false`, so Envoy would not check)."""
    clusters = {c.name for c in generated["clusters"]}
    eds = {c.name for c in generated["clusters"] if c.type == cluster_pb2.Cluster.EDS}
    assigned = {a.cluster_name for a in generated["endpoints"]}
    assert eds == assigned, (proxy.pod_name, sorted(eds ^ assigned))
    wanted = set().union(*(_rds_names(listener) for listener in generated["listeners"]))
    served = {r.name for r in generated["routes"]}
    assert wanted <= served, (proxy.pod_name, sorted(wanted - served))
    used = set().union(*(_route_clusters(config) for config in generated["routes"]))
    assert used <= clusters, (proxy.pod_name, sorted(used - clusters))


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_envoy_accepts_the_full_config(sample: Path, tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    ctx = _context(sample, config_dir)
    generator = SnapshotGenerator()
    for name in PROXIES:
        proxy = _proxy(name)
        generated = _decoded(generator.full(ctx, proxy))
        assert generated["clusters"], name
        if proxy.type is NodeType.SIDECAR or sample.name == "bookinfo-gateway.yaml":
            assert generated["listeners"] and generated["routes"], name
        _assert_complete(proxy, generated)
        bootstrap = _bootstrap(proxy, generated)
        bootstrap.static_resources.secrets.extend(generated["secrets"])
        result = _envoy_validate(bootstrap, tmp_path)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
        assert "OK" in result.stdout
