"""The Kubernetes registry from objects shaped as the API server returns them.

Services, EndpointSlices, Endpoints and Pods go through `meshconfig.validate_document` and
`pilot.registry.resources.from_resources`, as they do when galley delivers them; the checks are
on the registry (services, endpoints, workloads) and on the push context built from it (the
endpoints EDS carries, DestinationRule subsets, a proxy's own instances).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from meshconfig import Resource, load_documents, validate_document
from pilot.generators.endpoints import load_assignment
from pilot.istio_config import IstioConfig
from pilot.model import (
    Location,
    NodeType,
    Protocol,
    Proxy,
    ProxyView,
    Resolution,
    ServicePort,
)
from pilot.push_context import PushContext
from pilot.registry import RegistrySnapshot
from pilot.registry.resources import from_resources
from pilot.server import classify_change
from tests.support.shared import ISTIO

Object = dict[str, Any]
NS = "bookinfo"
REVIEWS = f"reviews.{NS}.svc.cluster.local"


def meta(name: str, **extra: Any) -> Object:
    """Metadata with what the API server adds to every object."""
    return {
        "name": name,
        "namespace": NS,
        "uid": f"uid-{name}",
        "resourceVersion": "48213",
        "creationTimestamp": "2024-05-02T10:11:12Z",
        **extra,
    }


def service(name: str = "reviews", cluster_ip: str = "10.96.113.7", **spec: Any) -> Object:
    body: Object = {
        "ports": [
            {"name": "http", "protocol": "TCP", "port": 9080, "targetPort": 9080},
            {"name": "grpc-api", "protocol": "TCP", "port": 9090, "targetPort": "grpc"},
        ],
        "selector": {"app": name},
        "clusterIP": cluster_ip,
        "clusterIPs": [cluster_ip],
        "type": "ClusterIP",
        "sessionAffinity": "None",
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "internalTrafficPolicy": "Cluster",
        **spec,
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, labels={"app": name}),
        "spec": body,
        "status": {"loadBalancer": {}},
    }


def pod(
    name: str,
    ip: str,
    version: str,
    *,
    ready: bool = True,
    grpc_port: int = 7070,
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(
            name,
            labels=labels or {"app": "reviews", "version": version},
            ownerReferences=[{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs"}],
        ),
        "spec": {
            "serviceAccountName": "bookinfo-reviews",
            "serviceAccount": "bookinfo-reviews",
            "nodeName": "kind-worker",
            "containers": [
                {
                    "name": "reviews",
                    "image": f"docker.io/istio/examples-bookinfo-reviews-{version}:1.20.2",
                    "ports": [
                        {"containerPort": 9080, "protocol": "TCP"},
                        {"name": "grpc", "containerPort": grpc_port, "protocol": "TCP"},
                    ],
                }
            ],
            "restartPolicy": "Always",
            **spec,
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True" if ready else "False"},
                {"type": "PodScheduled", "status": "True"},
            ],
            "hostIP": "172.18.0.3",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "qosClass": "BestEffort",
        },
    }


def endpoint(ip: str, pod_name: str | None, *, ready: bool = True) -> Object:
    entry: Object = {
        "addresses": [ip],
        "conditions": {"ready": ready, "serving": ready, "terminating": False},
        "nodeName": "kind-worker",
        "zone": "us-east-1a",
    }
    if pod_name is not None:
        entry["targetRef"] = {"kind": "Pod", "namespace": NS, "name": pod_name, "uid": "u"}
    return entry


def endpoint_slice(
    name: str, endpoints: list[Object], service_name: str = "reviews", grpc_port: int = 7070
) -> Object:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta(
            name,
            labels={
                "kubernetes.io/service-name": service_name,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        ),
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [
            {"name": "http", "protocol": "TCP", "port": 9080},
            {"name": "grpc-api", "protocol": "TCP", "port": grpc_port},
        ],
    }


V1 = pod("reviews-v1-7d9f8c5b6-x2x9z", "10.244.1.17", "v1")
V2 = pod("reviews-v2-5c8b8d4f9-k7m2q", "10.244.2.9", "v2")
V3 = pod("reviews-v3-6f9d7c8b5-p4n8r", "10.244.3.5", "v3", ready=False, grpc_port=7171)
SLICE = endpoint_slice(
    "reviews-8xk2p",
    [
        endpoint("10.244.1.17", "reviews-v1-7d9f8c5b6-x2x9z"),
        endpoint("10.244.2.9", "reviews-v2-5c8b8d4f9-k7m2q"),
        endpoint("10.244.3.5", "reviews-v3-6f9d7c8b5-p4n8r", ready=False),
    ],
)


def registry(*documents: Object) -> RegistrySnapshot:
    return from_resources(resources(documents))


def resources(documents: Iterable[Object]) -> list[Resource]:
    return [validate_document(d, "kubernetes") for d in documents]


def context(snapshot: RegistrySnapshot) -> PushContext:
    return PushContext.build(snapshot, "1")


def proxy(ip: str, namespace: str = NS) -> Proxy:
    return Proxy(
        id=f"sidecar~{ip}~p.{namespace}~{namespace}.svc.cluster.local",
        type=NodeType.SIDECAR,
        ip=ip,
        pod_name="p",
        namespace=namespace,
        dns_domain=f"{namespace}.svc.cluster.local",
    )


def test_service_ports_vips_and_ready_endpoints_joined_with_pods() -> None:
    snapshot = registry(service(), V1, V2, V3, SLICE)
    (reviews,) = snapshot.services
    assert (reviews.hostname, reviews.namespace) == (REVIEWS, NS)
    assert reviews.ports == (
        ServicePort("http", 9080, Protocol.HTTP, 9080),
        ServicePort("grpc-api", 9090, Protocol.GRPC, None),
    )
    assert reviews.addresses == ("10.96.113.7",)
    assert (reviews.resolution, reviews.location) == (Resolution.STATIC, Location.MESH_INTERNAL)

    ctx = context(snapshot)
    http = ctx.endpoints(REVIEWS, 9080)
    assert [(e.address, e.port, e.labels.get("version")) for e in http] == [
        ("10.244.1.17", 9080, "v1"),
        ("10.244.2.9", 9080, "v2"),
    ]
    assert {e.service_account for e in http} == {"bookinfo-reviews"}
    # The named targetPort "grpc" as the slice resolved it.
    assert [(e.address, e.port) for e in ctx.endpoints(REVIEWS, 9090)] == [
        ("10.244.1.17", 7070),
        ("10.244.2.9", 7070),
    ]


def test_subsets_select_pod_labels() -> None:
    rule = validate_document(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": NS},
            "spec": {"host": "reviews", "subsets": [{"name": "v2", "labels": {"version": "v2"}}]},
        }
    )
    snapshot = registry(service(), V1, V2, V3, SLICE)
    ctx = PushContext.build(snapshot, "1", IstioConfig.from_resources([rule]))
    name = f"outbound|9080|v2|{REVIEWS}"
    assignment = load_assignment(ctx, name, ProxyView(NodeType.SIDECAR, NS))
    assert assignment is not None
    addresses = [
        e.endpoint.address.socket_address.address
        for locality in assignment.endpoints
        for e in locality.lb_endpoints
    ]
    assert addresses == ["10.244.2.9"]


def test_a_pod_that_is_not_ready_gets_its_inbound_side_but_no_traffic() -> None:
    """Like Istio: the proxy's own services come from its pod and the Services' selectors, with
    a named targetPort resolved against the pod's container ports."""
    ctx = context(registry(service(), V1, V2, V3, SLICE))
    assert "10.244.3.5" not in {e.address for e in ctx.endpoints(REVIEWS, 9080)}
    instances = ctx.instances_for(proxy("10.244.3.5"))
    assert [(i.port.number, i.endpoint.port) for i in instances] == [(9080, 9080), (9090, 7171)]
    # A selected pod no slice lists yet is the same.
    fresh = pod("reviews-v4-1a2b3c4d5-z9y8x", "10.244.4.4", "v4")
    ctx = context(registry(service(), V1, V2, fresh, SLICE))
    assert [i.port.number for i in ctx.instances_for(proxy("10.244.4.4"))] == [9080, 9090]
    assert len(ctx.endpoints(REVIEWS, 9080)) == 2


def test_protocols_follow_app_protocol_then_port_name() -> None:
    ports = [
        {"name": "web", "port": 80, "appProtocol": "http"},
        {"name": "h2c", "port": 81, "appProtocol": "kubernetes.io/h2c"},
        {"name": "http2-api", "port": 82},
        {"name": "grpc-web-ui", "port": 83},
        {"name": "tls-db", "port": 84},
        {"name": "https", "port": 85},
        {"name": "mongo", "port": 86},
        {"name": "redis-cache", "port": 87},
        {"name": "mysql", "port": 88},
        {"name": "metrics", "port": 89},
        {"name": "dns", "port": 53, "protocol": "UDP"},
    ]
    (svc,) = registry(service(ports=ports)).services
    assert [(p.number, p.protocol) for p in svc.ports] == [
        (80, Protocol.HTTP),
        (81, Protocol.HTTP2),
        (82, Protocol.HTTP2),
        (83, Protocol.GRPC_WEB),
        (84, Protocol.TLS),
        (85, Protocol.HTTPS),
        (86, Protocol.MONGO),
        (87, Protocol.REDIS),
        (88, Protocol.MYSQL),
        (89, Protocol.TCP),  # unknown prefix: opaque TCP (Istio would sniff)
    ]


def test_headless_service_passes_through_with_a_listener_address_per_ready_pod() -> None:
    headless = service(cluster_ip="None")
    (svc,) = registry(headless, V1, V2, V3, SLICE).services
    assert svc.resolution is Resolution.NONE
    assert svc.addresses == ("10.244.1.17", "10.244.2.9")


def test_external_name_service_resolves_its_name() -> None:
    external = service("payments", cluster_ip="", type="ExternalName", selector=None)
    external["spec"]["externalName"] = "pay.example.com"
    del external["spec"]["clusterIP"], external["spec"]["clusterIPs"]
    (svc,) = registry(external).services
    assert (svc.resolution, svc.location) == (Resolution.DNS, Location.MESH_EXTERNAL)
    ctx = context(registry(external))
    assert [(e.address, e.port) for e in ctx.endpoints(svc.hostname, 9080)] == [
        ("pay.example.com", 9080)
    ]


def test_endpoints_object_is_the_fallback_without_slices() -> None:
    legacy = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": meta("reviews"),
        "subsets": [
            {
                "addresses": [
                    {
                        "ip": "10.244.1.17",
                        "nodeName": "kind-worker",
                        "targetRef": {"kind": "Pod", "name": "reviews-v1-7d9f8c5b6-x2x9z"},
                    }
                ],
                "notReadyAddresses": [{"ip": "10.244.3.5"}],
                "ports": [
                    {"name": "http", "port": 9080, "protocol": "TCP"},
                    {"name": "grpc-api", "port": 7070, "protocol": "TCP"},
                ],
            }
        ],
    }
    ctx = context(registry(service(), V1, V3, legacy))
    assert [(e.address, e.labels["version"]) for e in ctx.endpoints(REVIEWS, 9080)] == [
        ("10.244.1.17", "v1")
    ]
    # With a slice present, the slice is the truth.
    only_v2 = endpoint_slice("reviews-abcde", [endpoint("10.244.2.9", None)])
    ctx = context(registry(service(), V1, V2, legacy, only_v2))
    assert [e.address for e in ctx.endpoints(REVIEWS, 9080)] == ["10.244.2.9"]


def test_endpoints_join_pods_by_target_ref_or_ip() -> None:
    unknown_pod = endpoint("10.244.9.9", "reviews-v9-000000000-aaaaa")
    by_ip = endpoint("10.244.2.9", None)
    no_pod = endpoint("192.168.7.7", None)
    slices = [
        endpoint_slice("reviews-a", [unknown_pod, by_ip]),
        endpoint_slice("reviews-b", [no_pod, endpoint("10.244.2.9", None)]),  # a duplicate
    ]
    located = pod("reviews-v2-5c8b8d4f9-k7m2q", "10.244.2.9", "v2")
    located["metadata"]["labels"]["istio-locality"] = "us-east.us-east-1a"
    ctx = context(registry(service(), located, *slices))
    found = {e.address: e for e in ctx.endpoints(REVIEWS, 9080)}
    assert set(found) == {"10.244.2.9", "192.168.7.7"}  # the unknown pod's waits for it
    assert found["10.244.2.9"].labels["version"] == "v2"
    assert found["10.244.2.9"].locality == "us-east/us-east-1a"
    assert (found["192.168.7.7"].labels, found["192.168.7.7"].service_account) == ({}, "")


def test_pods_are_workloads_that_service_entries_select() -> None:
    entry = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "reviews-alias", "namespace": NS},
        "spec": {
            "hosts": ["reviews.internal"],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "ports": [{"number": 80, "name": "grpc", "protocol": "GRPC"}],
            "workloadSelector": {"labels": {"app": "reviews"}},
        },
    }
    finished = pod("reviews-v0-000000000-done0", "10.244.0.2", "v0")
    finished["status"]["phase"] = "Succeeded"
    pending = pod("reviews-v5-000000000-pend0", "", "v5")
    host_net = pod("node-agent-00000-abcde", "172.18.0.3", "v1", hostNetwork=True)
    snapshot = registry(entry, V1, V3, finished, pending, host_net)
    assert [(w.name, w.ready, dict(w.ports)) for w in snapshot.workloads] == [
        ("reviews-v1-7d9f8c5b6-x2x9z", True, {"grpc": 7070}),
        ("reviews-v3-6f9d7c8b5-p4n8r", False, {"grpc": 7171}),
    ]
    # The ServiceEntry's port named "grpc" reaches each pod's container port of that name.
    ctx = context(snapshot)
    assert [(e.address, e.port) for e in ctx.endpoints("reviews.internal", 80)] == [
        ("10.244.1.17", 7070)
    ]


def test_kubernetes_service_wins_a_host_declared_by_a_service_entry_too() -> None:
    entry = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "squatter", "namespace": "other"},
        "spec": {
            "hosts": [REVIEWS, "kept.example.com"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "resolution": "DNS",
        },
    }
    services = {s.hostname: s for s in registry(entry, service(), V1, SLICE).services}
    assert set(services) == {REVIEWS, "kept.example.com"}
    assert services[REVIEWS].namespace == NS
    assert services[REVIEWS].resolution is Resolution.STATIC


def test_scaling_is_an_endpoints_only_push() -> None:
    before = registry(service(), V1, SLICE)
    scaled = copy.deepcopy(SLICE)
    scaled["endpoints"].append(endpoint("10.244.4.4", "reviews-v4-1a2b3c4d5-z9y8x"))
    v4 = pod("reviews-v4-1a2b3c4d5-z9y8x", "10.244.4.4", "v4")
    after = registry(service(), V1, v4, scaled)
    request = classify_change(before, after)
    assert not request.full
    assert request.endpoints == {REVIEWS}
    assert "10.244.4.4" in request.workload_addresses
    # A new identity behind the service changes its clusters: full.
    other_account = copy.deepcopy(v4)
    other_account["spec"]["serviceAccountName"] = "intruder"
    assert classify_change(before, registry(service(), V1, other_account, scaled)).full
    # A headless service's endpoints are its listeners' addresses: full.
    headless = service(cluster_ip="None")
    assert classify_change(registry(headless, V1, SLICE), registry(headless, V1, v4, scaled)).full


def test_bookinfo_manifests() -> None:
    """Istio's bookinfo.yaml as `kubectl apply` would send it (before the API adds anything)."""
    path = ISTIO / "samples/bookinfo/platform/kube/bookinfo.yaml"
    documents = [
        validate_document(d, str(path))
        for d in load_documents(path.read_text(), str(path))
        if d.get("kind") in {"Service", "ServiceAccount"}
    ]
    services = from_resources(documents).services
    assert [(s.hostname, [(p.name, p.number, p.protocol) for p in s.ports]) for s in services] == [
        (f"{name}.default.svc.cluster.local", [("http", 9080, Protocol.HTTP)])
        for name in ("details", "productpage", "ratings", "reviews")
    ]
    assert all(s.endpoints == () and s.resolution is Resolution.STATIC for s in services)


def test_same_objects_in_any_order_give_the_same_registry() -> None:
    documents = [service(), V1, V2, V3, SLICE]
    assert registry(*documents) == registry(*reversed(documents))
