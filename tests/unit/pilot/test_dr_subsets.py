"""DestinationRule subsets: one cluster per subset, holding only the endpoints with its labels.

Bookinfo's own rules (destination-rule-all.yaml, destination-rule-reviews.yaml) run against
ServiceEntries and WorkloadEntries standing in for its deployments; real Envoy validates the
generated clusters, traffic policies included, with their load assignments inline.
"""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path
from textwrap import dedent

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf import json_format

from meshcore.envoy_binary import envoy_path
from meshcore.xds import types
from pilot.config_files import load_config_directory
from pilot.generators.clusters import outbound_clusters
from pilot.generators.endpoints import load_assignment, load_assignments
from pilot.model import NodeType, Proxy, ProxyView
from pilot.push_context import PushContext
from pilot.snapshots import SnapshotGenerator
from tests.support.shared import BOOKINFO_NETWORKING
from tests.unit.pilot.conftest import MakeProxy, WriteConfig

Cluster = cluster_pb2.Cluster
VIEW = ProxyView(NodeType.SIDECAR, "default")
REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.default.svc.cluster.local"

# Bookinfo's services as ServiceEntries, and a WorkloadEntry per deployment (ratings has only
# v1, so its v2 subsets select nothing).
WORKLOADS = {
    "productpage-v1": ("10.1.0.1", "productpage", "v1"),
    "details-v1": ("10.1.1.1", "details", "v1"),
    "ratings-v1": ("10.1.2.1", "ratings", "v1"),
    "reviews-v1": ("10.1.3.1", "reviews", "v1"),
    "reviews-v2": ("10.1.3.2", "reviews", "v2"),
    "reviews-v3": ("10.1.3.3", "reviews", "v3"),
}


def bookinfo_registry() -> str:
    documents = [
        dedent(
            f"""\
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {{name: {app}, namespace: default}}
            spec:
              hosts: [{app}.default.svc.cluster.local]
              location: MESH_INTERNAL
              resolution: STATIC
              ports: [{{number: 9080, name: http}}]
              workloadSelector: {{labels: {{app: {app}}}}}
            """
        )
        for app in ("productpage", "details", "ratings", "reviews")
    ]
    documents += [
        dedent(
            f"""\
            apiVersion: networking.istio.io/v1
            kind: WorkloadEntry
            metadata: {{name: {name}, namespace: default}}
            spec:
              address: {address}
              labels: {{app: {app}, version: {version}}}
              serviceAccount: bookinfo-{app}
            """
        )
        for name, (address, app, version) in WORKLOADS.items()
    ]
    return "---\n".join(documents)


def context(write_config: WriteConfig, *files: tuple[str, str], version: str = "1") -> PushContext:
    """Registry and config from (file name, text) pairs written into one directory."""
    directory = None
    for name, text in files:
        directory = write_config(text, name)
    assert directory is not None
    loaded = load_config_directory(directory)
    return PushContext.build(loaded.registry, version, loaded.istio)


def bookinfo(write_config: WriteConfig, rules: str = "destination-rule-all.yaml") -> PushContext:
    return context(
        write_config,
        ("bookinfo.yaml", bookinfo_registry()),
        ("rules.yaml", (BOOKINFO_NETWORKING / rules).read_text()),
    )


def addresses(assignment: endpoint_pb2.ClusterLoadAssignment | None) -> list[str]:
    assert assignment is not None
    return [
        lb.endpoint.address.socket_address.address
        for locality in assignment.endpoints
        for lb in locality.lb_endpoints
    ]


def test_bookinfo_rules_give_a_cluster_per_subset(write_config: WriteConfig) -> None:
    clusters = {c.name: c for c in outbound_clusters(bookinfo(write_config), VIEW)}
    expected = {
        "productpage": ["v1"],
        "reviews": ["v1", "v2", "v3"],
        "ratings": ["v1", "v2", "v2-mysql", "v2-mysql-vm"],
        "details": ["v1", "v2"],
    }
    for app, subsets in expected.items():
        for subset in ["", *subsets]:
            name = f"outbound|9080|{subset}|{app}.default.svc.cluster.local"
            cluster = clusters[name]
            assert cluster.type == Cluster.EDS
            assert cluster.eds_cluster_config.service_name == name
            assert cluster.lb_policy == Cluster.LEAST_REQUEST
    assert len(clusters) == 2 + sum(1 + len(s) for s in expected.values())


def test_bookinfo_subset_endpoints(write_config: WriteConfig) -> None:
    ctx = bookinfo(write_config)
    assignments = {a.cluster_name: a for a in load_assignments(ctx, VIEW)}
    eds = {c.name for c in outbound_clusters(ctx, VIEW) if c.type == Cluster.EDS}
    assert set(assignments) == eds
    assert addresses(assignments[f"outbound|9080||{REVIEWS}"]) == [
        "10.1.3.1",
        "10.1.3.2",
        "10.1.3.3",
    ]
    for version, address in (("v1", "10.1.3.1"), ("v2", "10.1.3.2"), ("v3", "10.1.3.3")):
        assert addresses(assignments[f"outbound|9080|{version}|{REVIEWS}"]) == [address]
    assert addresses(assignments[f"outbound|9080|v1|{RATINGS}"]) == ["10.1.2.1"]
    assert addresses(assignments[f"outbound|9080|v2-mysql|{RATINGS}"]) == []
    # By name (incremental EDS) gives the same as the whole set.
    assert all(load_assignment(ctx, name, VIEW) == a for name, a in assignments.items())


def test_bookinfo_reviews_rule_balances_every_subset_randomly(write_config: WriteConfig) -> None:
    ctx = bookinfo(write_config, "destination-rule-reviews.yaml")
    reviews = [c for c in outbound_clusters(ctx, VIEW) if c.name.endswith(f"|{REVIEWS}")]
    assert sorted(c.name.split("|")[2] for c in reviews) == ["", "v1", "v2", "v3"]
    assert {c.lb_policy for c in reviews} == {Cluster.RANDOM}


def test_unknown_subsets_and_other_namespaces(write_config: WriteConfig) -> None:
    ctx = bookinfo(write_config)
    assert load_assignment(ctx, f"outbound|9080|v9|{REVIEWS}", VIEW) is None
    assert load_assignment(ctx, f"outbound|9081|v1|{REVIEWS}", VIEW) is None
    # The rules are in `default` and exported everywhere: another namespace sees them too...
    shop = ProxyView(NodeType.SIDECAR, "shop")
    assert addresses(load_assignment(ctx, f"outbound|9080|v2|{REVIEWS}", shop)) == ["10.1.3.2"]
    # ...unless they are not exported to it.
    private = (BOOKINFO_NETWORKING / "destination-rule-all.yaml").read_text()
    private = private.replace(
        "spec:\n  host: reviews\n", 'spec:\n  host: reviews\n  exportTo: ["."]\n'
    )
    ctx = context(write_config, ("bookinfo.yaml", bookinfo_registry()), ("rules.yaml", private))
    assert load_assignment(ctx, f"outbound|9080|v2|{REVIEWS}", shop) is None
    assert f"outbound|9080|v2|{REVIEWS}" not in {c.name for c in outbound_clusters(ctx, shop)}


def test_inline_endpoints_and_dns_subsets(write_config: WriteConfig) -> None:
    ctx = context(
        write_config,
        (
            "mesh.yaml",
            """
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {name: db, namespace: default}
            spec:
              hosts: [db.example.com]
              resolution: DNS
              ports: [{number: 5432, name: tcp}]
              endpoints:
              - {address: db-a.example.com, labels: {role: primary}}
              - {address: db-b.example.com, labels: {role: replica}}
            ---
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {name: cache, namespace: default}
            spec:
              hosts: [cache.example.com]
              resolution: STATIC
              ports: [{number: 6379, name: tcp}]
              endpoints:
              - {address: 10.2.0.1, labels: {zone: a}}
              - {address: 10.2.0.2, labels: {zone: b}}
            ---
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {name: db, namespace: default}
            spec:
              host: db.example.com
              subsets:
              - {name: primary, labels: {role: primary}}
              - {name: all}
              - {name: none, labels: {role: witness}}
            ---
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {name: cache, namespace: default}
            spec:
              host: cache.example.com
              subsets: [{name: b, labels: {zone: b}}]
            """,
        ),
    )
    clusters = {c.name: c for c in outbound_clusters(ctx, VIEW)}
    primary = clusters["outbound|5432|primary|db.example.com"]
    assert primary.type == Cluster.STRICT_DNS
    assert primary.load_assignment.cluster_name == primary.name
    assert addresses(primary.load_assignment) == ["db-a.example.com"]
    assert addresses(clusters["outbound|5432|all|db.example.com"].load_assignment) == [
        "db-a.example.com",
        "db-b.example.com",
    ]
    # A DNS subset nothing belongs to gets no cluster, as in istiod.
    assert "outbound|5432|none|db.example.com" not in clusters
    name = "outbound|6379|b|cache.example.com"
    assert addresses(load_assignment(ctx, name, VIEW)) == ["10.2.0.2"]


def test_endpoint_only_push_updates_subset_assignments(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    proxy: Proxy = make_proxy("sidecar~10.1.0.1~productpage-v1.default~default.svc.cluster.local")
    generator = SnapshotGenerator()
    before = generator.full(bookinfo(write_config), proxy)
    moved = bookinfo_registry().replace("address: 10.1.3.2", "address: 10.1.3.9")
    rules = (BOOKINFO_NETWORKING / "destination-rule-all.yaml").read_text()
    after_ctx = context(write_config, ("bookinfo.yaml", moved), ("rules.yaml", rules), version="2")
    after = generator.endpoints_only(before, after_ctx, proxy, frozenset({REVIEWS}))
    old, new = before.types[types.ENDPOINT].resources, after.types[types.ENDPOINT].resources
    v1, v2 = f"outbound|9080|v1|{REVIEWS}", f"outbound|9080|v2|{REVIEWS}"
    assert new[v2].version != old[v2].version
    assert new[v1] is old[v1]
    assert new[f"outbound|9080|v1|{RATINGS}"] is old[f"outbound|9080|v1|{RATINGS}"]
    assert after.types[types.CLUSTER] is before.types[types.CLUSTER]
    fresh = generator.full(after_ctx, proxy).types[types.ENDPOINT].resources[v2]
    assert new[v2].any_bytes == fresh.any_bytes


# --- real Envoy validates everything a rule can turn on ---------------------------------------

POLICIES = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST, warmup: {duration: 10s, aggression: 1.5}}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 30ms, tcpKeepalive: {time: 7200s, interval: 75s}}
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1
        maxRetries: 3
        idleTimeout: 30s
        h2UpgradePolicy: UPGRADE
        maxConcurrentStreams: 100
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 3m}
    tls: {mode: ISTIO_MUTUAL}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {consistentHash: {httpHeaderName: x-user}}
      tls:
        mode: MUTUAL
        clientCertificate: {cert}
        privateKey: {key}
        caCertificates: {cert}
        subjectAltNames: [reviews.example.com]
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {consistentHash: {maglev: {tableSize: 65537}, useSourceIp: true}}
      tls: {mode: SIMPLE, caCertificates: {cert}, sni: reviews.example.com}
  - name: v3
    labels: {version: v3}
    trafficPolicy:
      loadBalancer: {simple: PASSTHROUGH}
      connectionPool: {http: {useClientProtocol: true}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpCookie: {name: user, ttl: 0s}, ringHash: {minimumRingSize: 64}}
    outlierDetection:
      consecutiveGatewayErrors: 2
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 2
      minHealthPercent: 50
      maxEjectionPercent: 100
"""


def _write_certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "reviews.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _validation_bootstrap(ctx: PushContext) -> bootstrap_pb2.Bootstrap:
    """The view's clusters, each EDS one made STATIC with its generated assignment inline, and
    the `sds-grpc` cluster an Istio bootstrap has for ISTIO_MUTUAL's secrets."""
    assignments = {a.cluster_name: a for a in load_assignments(ctx, VIEW)}
    bootstrap = bootstrap_pb2.Bootstrap()
    bootstrap.node.id = "sidecar~10.1.0.1~productpage-v1.default~default.svc.cluster.local"
    bootstrap.node.cluster = "validate"
    for cluster in outbound_clusters(ctx, VIEW):
        if cluster.type == Cluster.EDS:
            cluster.type = Cluster.STATIC
            cluster.ClearField("eds_cluster_config")
            cluster.load_assignment.CopyFrom(assignments[cluster.name])
        bootstrap.static_resources.clusters.append(cluster)
    sds = bootstrap.static_resources.clusters.add(name="sds-grpc", type=Cluster.STATIC)
    sds.load_assignment.cluster_name = "sds-grpc"
    sds.load_assignment.endpoints.add().lb_endpoints.add().endpoint.address.pipe.path = (
        "/tmp/pilot-test-sds.sock"
    )
    return bootstrap


@pytest.mark.envoy
def test_envoy_accepts_clusters_with_every_policy(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    cert, key = _write_certificate(tmp_path)
    policies = POLICIES.replace("{cert}", str(cert)).replace("{key}", str(key))
    ctx = context(write_config, ("bookinfo.yaml", bookinfo_registry()), ("policies.yaml", policies))
    bootstrap = _validation_bootstrap(ctx)
    names = {c.name for c in bootstrap.static_resources.clusters}
    assert {f"outbound|9080|{v}|{REVIEWS}" for v in ("v1", "v2", "v3")} <= names
    config = tmp_path / "bootstrap.json"
    config.write_text(json_format.MessageToJson(bootstrap))
    result = subprocess.run(
        [envoy_path(), "--mode", "validate", "-c", config, "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout
