"""Own sides shared between replicas (`own_side.sharing_key`).

The key leaves a proxy's IP and pod name out where its own side does not use them. These tests
hold that claim to account: proxies that differ only in what the key leaves out must get
byte-identical own sides from the generators themselves, across the features an own side is
made from (ports of several protocols and a target port, PeerAuthentication per port,
AuthorizationPolicy for HTTP and TCP, RequestAuthentication, a Sidecar, capture by REDIRECT and
TPROXY). Where the key keeps the IP or the name, the sides really differ.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from meshcore.xds import types
from pilot.config_files import load_config_directory
from pilot.generators.clusters import inbound_clusters
from pilot.generators.listeners import proxy_listeners
from pilot.mesh_config import MeshConfig
from pilot.model import InterceptionMode, NodeType, Proxy
from pilot.own_side import sharing_key
from pilot.push_context import PushContext
from pilot.snapshots import SnapshotGenerator

JWKS = json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "BBBB"}]})

REGISTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 9080, name: http}
  - {number: 9090, name: grpc-api, targetPort: 19090}
  - {number: 3306, name: tcp-db, protocol: TCP}
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-1, namespace: default}
spec: {address: 10.0.0.1, labels: {app: reviews, version: v1}, serviceAccount: reviews}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-2, namespace: default}
spec: {address: 10.0.0.2, labels: {app: reviews, version: v1}, serviceAccount: reviews}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-3, namespace: default}
spec: {address: 10.0.0.3, labels: {app: reviews, version: v2}, serviceAccount: reviews}
"""

POLICIES = f"""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: reviews, namespace: default}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  mtls: {{mode: STRICT}}
  portLevelMtls: {{"9080": {{mode: PERMISSIVE}}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: reviews, namespace: default}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  rules:
  - from: [{{source: {{principals: [cluster.local/ns/default/sa/productpage]}}}}]
    to: [{{operation: {{methods: [GET], ports: ["9080"]}}}}]
  - to: [{{operation: {{ports: ["3306"]}}}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: reviews, namespace: default}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  jwtRules: [{{issuer: "https://issuer.example.com", jwks: '{JWKS}'}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: default}}
spec:
  egress: [{{hosts: ["./*"]}}]
"""

INGRESS_SIDECAR = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  ingress: [{port: {number: 9080, protocol: HTTP, name: http}, defaultEndpoint: "0.0.0.0:19080"}]
  egress: [{hosts: ["./*"]}]
"""

# Two services on the same ports, each with one endpoint: workloads alike but for the service.
TWO_SERVICES = "---\n".join(
    f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{name}.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 9080, name: http}}, {{number: 3306, name: tcp-db, protocol: TCP}}]
  endpoints: [{{address: {address}, labels: {{app: reviews, version: v1}}}}]
"""
    for name, address in (("alpha", "10.0.0.4"), ("beta", "10.0.0.5"))
)

MIXER = MeshConfig(
    disable_policy_checks=False,
    mixer_check_server="10.9.9.9:9091",
    mixer_report_server="10.9.9.9:9091",
)


def context(tmp_path: Path, *documents: str, mesh: MeshConfig | None = None) -> PushContext:
    (tmp_path / "mesh.yaml").write_text("---\n".join((REGISTRY, *documents)))
    loaded = load_config_directory(tmp_path)
    if mesh is None:
        return PushContext.build(loaded.registry, "1", loaded.istio)
    return PushContext.build(loaded.registry, "1", loaded.istio, mesh=mesh)


def replica(number: int, fields: Mapping[str, object] | None = None, version: str = "v1") -> Proxy:
    """The sidecar of WorkloadEntry reviews-<number>, captured by REDIRECT unless told."""
    ip = f"10.0.0.{number}"
    settings: dict[str, object] = {
        "interception_mode": InterceptionMode.REDIRECT,
        "sds": True,
        "service_account": "reviews",
        **(fields or {}),
    }
    return Proxy(
        id=f"sidecar~{ip}~reviews-{number}.default~default.svc.cluster.local",
        type=NodeType.SIDECAR,
        ip=ip,
        pod_name=f"reviews-{number}",
        namespace="default",
        dns_domain="default.svc.cluster.local",
        labels={"app": "reviews", "version": version},
        **settings,  # type: ignore[arg-type]
    )


def own_side(ctx: PushContext, proxy: Proxy) -> list[bytes]:
    """The proxy's own side as generated for it alone, encoded."""
    messages = [*inbound_clusters(ctx, proxy), *proxy_listeners(ctx, proxy)]
    return [m.SerializeToString(deterministic=True) for m in messages]


def key(ctx: PushContext, proxy: Proxy) -> object:
    return sharing_key(ctx, proxy, ctx.instances_for(proxy))


@pytest.mark.parametrize("mode", [InterceptionMode.REDIRECT, InterceptionMode.TPROXY])
def test_replicas_share_a_key_and_their_sides_are_identical(
    tmp_path: Path, mode: InterceptionMode
) -> None:
    ctx = context(tmp_path, POLICIES)
    first, second = replica(1, {"interception_mode": mode}), replica(2, {"interception_mode": mode})
    assert len(ctx.instances_for(first)) == 3  # every port of the service, with its policies
    assert key(ctx, first) == key(ctx, second)
    assert own_side(ctx, first) == own_side(ctx, second)


def test_a_replica_on_another_address_family_has_a_key_of_its_own(tmp_path: Path) -> None:
    ctx = context(tmp_path, POLICIES)
    assert key(ctx, replica(1)) != key(ctx, replace_ip(replica(2), "fd00::2"))


def replace_ip(proxy: Proxy, ip: str) -> Proxy:
    fields = {f: getattr(proxy, f) for f in proxy.__dataclass_fields__}
    return Proxy(**{**fields, "ip": ip})


@pytest.mark.parametrize(
    ("documents", "mesh", "fields", "what"),
    [
        ((POLICIES,), None, {"interception_mode": InterceptionMode.NONE}, "listeners on its IP"),
        ((POLICIES,), None, {"http_proxy_port": 15080}, "the HTTP proxy listener on its IP"),
        ((INGRESS_SIDECAR,), None, {}, "a Sidecar's ingress listener"),
        ((POLICIES,), MIXER, {}, "Mixer's attributes naming the workload"),
    ],
)
def test_where_the_side_names_the_proxy_replicas_do_not_share(
    tmp_path: Path,
    documents: tuple[str, ...],
    mesh: MeshConfig | None,
    fields: dict[str, object],
    what: str,
) -> None:
    ctx = context(tmp_path, *documents, mesh=mesh)
    first, second = replica(1, fields), replica(2, fields)
    assert own_side(ctx, first) != own_side(ctx, second), what
    assert key(ctx, first) != key(ctx, second), what


def test_workloads_that_policies_tell_apart_do_not_share(tmp_path: Path) -> None:
    version_two = POLICIES.replace(
        "matchLabels: {app: reviews}}\n  mtls", "matchLabels: {version: v2}}\n  mtls"
    )
    ctx = context(tmp_path, version_two)
    v1, v2 = replica(1), replica(3, version="v2")
    assert own_side(ctx, v1) != own_side(ctx, v2)
    assert key(ctx, v1) != key(ctx, v2)


def test_replicas_are_served_one_generated_side(tmp_path: Path) -> None:
    ctx = context(tmp_path, POLICIES)
    generator = SnapshotGenerator()
    first, second = generator.full(ctx, replica(1)), generator.full(ctx, replica(2))
    for type_url in (types.CLUSTER, types.LISTENER):
        assert first.types[type_url] is second.types[type_url]
    separate = [replica(n, {"interception_mode": InterceptionMode.NONE}) for n in (1, 2)]
    apart = [generator.full(ctx, proxy).types[types.LISTENER] for proxy in separate]
    assert apart[0].version != apart[1].version


@pytest.mark.parametrize(("mesh", "shared"), [(None, True), (MIXER, False)])
def test_workloads_of_different_services_on_the_same_ports(
    tmp_path: Path, mesh: MeshConfig | None, shared: bool
) -> None:
    """Alike but for the service they serve: one side, unless Mixer's attributes name it."""
    ctx = context(tmp_path, TWO_SERVICES, mesh=mesh)
    alpha, beta = replica(4), replica(5)
    assert [i.service.hostname.split(".")[0] for i in ctx.instances_for(alpha)] == ["alpha"] * 2
    assert [i.service.hostname.split(".")[0] for i in ctx.instances_for(beta)] == ["beta"] * 2
    assert (own_side(ctx, alpha) == own_side(ctx, beta)) is shared
    assert (key(ctx, alpha) == key(ctx, beta)) is shared
