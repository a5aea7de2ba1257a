"""Kubernetes kinds: bookinfo manifests and objects as the API server returns them validate."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from meshconfig import ConfigValidationError, load_documents, validate_document
from meshconfig.kube import (
    EndpointsBody,
    EndpointSliceBody,
    PodSpec,
    PodStatus,
    ServiceAccountBody,
    ServiceSpec,
    ServiceStatus,
)
from tests.support.shared import ISTIO, ISTIO_1_4

SAMPLE_ROOTS = [(ISTIO / "samples"), (ISTIO_1_4 / "samples")]
KUBE_KINDS = {"Namespace", "Service", "Endpoints", "EndpointSlice", "Pod", "ServiceAccount"}


def test_every_sample_manifest_of_these_kinds_validates() -> None:
    seen = 0
    for root in SAMPLE_ROOTS:
        for path in sorted(root.rglob("*.yaml")):
            for document in load_documents(path.read_text(), str(path)):
                if document.get("kind") in KUBE_KINDS:
                    validate_document(document, str(path))
                    seen += 1
    assert seen > 30


MANAGED_FIELDS = [
    {
        "manager": "kubectl-client-side-apply",
        "operation": "Update",
        "apiVersion": "v1",
        "time": "2024-05-02T10:11:12Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}},
    }
]


def metadata(name: str, namespace: str | None = "bookinfo", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "uid": "0b6a8a6e-5b1f-4a43-9c55-3c1d3f0c2a11",
        "resourceVersion": "48213",
        "creationTimestamp": "2024-05-02T10:11:12Z",
        "labels": {"app": "reviews"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        "managedFields": MANAGED_FIELDS,
        **extra,
    }
    if namespace:
        meta["namespace"] = namespace
    return meta


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": metadata("reviews"),
    "spec": {
        "ports": [
            {"name": "http", "protocol": "TCP", "port": 9080, "targetPort": 9080},
            {"name": "grpc-web", "port": 9090, "targetPort": "grpc", "appProtocol": "grpc-web"},
        ],
        "selector": {"app": "reviews"},
        "clusterIP": "10.96.113.7",
        "clusterIPs": ["10.96.113.7", "fd00:10:96::6c1d"],
        "type": "LoadBalancer",
        "sessionAffinity": "None",
        "ipFamilies": ["IPv4", "IPv6"],
        "ipFamilyPolicy": "PreferDualStack",
        "internalTrafficPolicy": "Cluster",
        "allocateLoadBalancerNodePorts": True,
    },
    "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10", "ipMode": "VIP"}]}},
}

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": metadata(
        "reviews-v1-7d9f8c5b6-x2x9z",
        generateName="reviews-v1-7d9f8c5b6-",
        ownerReferences=[
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "reviews-v1-7d9f8c5b6",
                "uid": "a1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    ),
    "spec": {
        "serviceAccountName": "bookinfo-reviews",
        "serviceAccount": "bookinfo-reviews",
        "nodeName": "kind-worker",
        "containers": [
            {
                "name": "reviews",
                "image": "docker.io/istio/examples-bookinfo-reviews-v1:1.20.2",
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 9080, "protocol": "TCP"}],
                "env": [{"name": "LOG_DIR", "value": "/tmp/logs"}],
                "resources": {},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                "terminationMessagePath": "/dev/termination-log",
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}],
    },
    "status": {
        "phase": "Running",
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-02T10:11:30Z"},
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None},
        ],
        "hostIP": "172.18.0.3",
        "hostIPs": [{"ip": "172.18.0.3"}],
        "podIP": "10.244.1.17",
        "podIPs": [{"ip": "10.244.1.17"}, {"ip": "fd00:10:244:1::11"}],
        "startTime": "2024-05-02T10:11:12Z",
        "containerStatuses": [{"name": "reviews", "ready": True, "restartCount": 0}],
        "qosClass": "BestEffort",
    },
}

ENDPOINT_SLICE = {
    "apiVersion": "discovery.k8s.io/v1",
    "kind": "EndpointSlice",
    "metadata": metadata(
        "reviews-8xk2p",
        generateName="reviews-",
        labels={
            "kubernetes.io/service-name": "reviews",
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
        },
    ),
    "addressType": "IPv4",
    "endpoints": [
        {
            "addresses": ["10.244.1.17"],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "nodeName": "kind-worker",
            "zone": "us-east-1a",
            "targetRef": {
                "kind": "Pod",
                "namespace": "bookinfo",
                "name": "reviews-v1-7d9f8c5b6-x2x9z",
                "uid": "5f0c",
            },
        }
    ],
    "ports": [{"name": "http", "protocol": "TCP", "port": 9080}],
}

ENDPOINTS = {
    "apiVersion": "v1",
    "kind": "Endpoints",
    "metadata": metadata("reviews"),
    "subsets": [
        {
            "addresses": [
                {
                    "ip": "10.244.1.17",
                    "nodeName": "kind-worker",
                    "targetRef": {"kind": "Pod", "name": "reviews-v1-7d9f8c5b6-x2x9z"},
                }
            ],
            "notReadyAddresses": [{"ip": "10.244.2.4"}],
            "ports": [{"name": "http", "port": 9080, "protocol": "TCP"}],
        }
    ],
}

NAMESPACE = {
    "apiVersion": "v1",
    "kind": "Namespace",
    "metadata": metadata("bookinfo", namespace=None, labels={"istio-injection": "enabled"}),
    "spec": {"finalizers": ["kubernetes"]},
    "status": {"phase": "Active"},
}

SERVICE_ACCOUNT = {
    "apiVersion": "v1",
    "kind": "ServiceAccount",
    "metadata": metadata("bookinfo-reviews"),
    "secrets": [{"name": "bookinfo-reviews-token-abcde"}],
    "automountServiceAccountToken": False,
}


def from_the_wire(document: dict[str, Any]) -> dict[str, Any]:
    """The object as a JSON response body decodes: only JSON types, string map keys."""
    decoded: dict[str, Any] = json.loads(json.dumps(document))
    return decoded


def test_service_as_returned_by_the_api_server() -> None:
    resource = validate_document(from_the_wire(SERVICE), "kubernetes")
    spec = resource.spec
    assert isinstance(spec, ServiceSpec)
    assert resource.key == ("core/Service", "bookinfo", "reviews")
    assert spec.selector == {"app": "reviews"}
    assert [(p.name, p.port, p.target_port, p.protocol) for p in spec.ports or []] == [
        ("http", 9080, 9080, "TCP"),
        ("grpc-web", 9090, "grpc", "TCP"),
    ]
    assert spec.cluster_ip == "10.96.113.7" and spec.type == "LoadBalancer"
    assert spec.model_extra is not None and spec.model_extra["sessionAffinity"] == "None"
    status = ServiceStatus.model_validate(SERVICE["status"])
    assert status.load_balancer is not None and status.load_balancer.ingress is not None
    assert status.load_balancer.ingress[0].ip == "203.0.113.10"


def test_pod_as_returned_by_the_api_server() -> None:
    resource = validate_document(from_the_wire(POD), "kubernetes")
    spec = resource.spec
    assert isinstance(spec, PodSpec)
    assert spec.service_account_name == "bookinfo-reviews"
    assert spec.containers[0].ports is not None
    assert spec.containers[0].ports[0].container_port == 9080
    status = PodStatus.model_validate(POD["status"])
    assert status.pod_ip == "10.244.1.17" and status.phase == "Running"
    assert [ip.ip for ip in status.pod_ips or []] == ["10.244.1.17", "fd00:10:244:1::11"]
    assert status.conditions is not None and status.conditions[0].status == "True"


def test_endpoint_slice_and_endpoints_as_returned_by_the_api_server() -> None:
    resource = validate_document(from_the_wire(ENDPOINT_SLICE), "kubernetes")
    body = resource.spec
    assert isinstance(body, EndpointSliceBody) and body.endpoints is not None
    assert body.address_type == "IPv4"
    assert body.endpoints[0].conditions is not None and body.endpoints[0].conditions.ready
    assert body.endpoints[0].target_ref is not None
    assert body.endpoints[0].target_ref.name == "reviews-v1-7d9f8c5b6-x2x9z"
    assert resource.metadata.labels["kubernetes.io/service-name"] == "reviews"
    # The whole-object kinds put their fields back beside metadata.
    assert resource.to_document()["addressType"] == "IPv4"
    endpoints = validate_document(from_the_wire(ENDPOINTS)).spec
    assert isinstance(endpoints, EndpointsBody) and endpoints.subsets is not None
    assert endpoints.subsets[0].addresses is not None
    assert endpoints.subsets[0].addresses[0].ip == "10.244.1.17"


def test_namespace_is_cluster_scoped_and_service_account_has_no_spec() -> None:
    namespace = validate_document(from_the_wire(NAMESPACE))
    assert namespace.key == ("core/Namespace", "", "bookinfo")
    assert namespace.metadata.labels["istio-injection"] == "enabled"
    account = validate_document(from_the_wire(SERVICE_ACCOUNT)).spec
    assert isinstance(account, ServiceAccountBody)
    assert account.automount_service_account_token is False


def broken(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    *parents, last = path.split(".")
    node: Any = changed
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    return changed


@pytest.mark.parametrize(
    ("document", "path", "value", "where"),
    [
        (SERVICE, "spec.ports.0.port", "http", "spec.ports[0].port"),
        (SERVICE, "spec.ports.0.targetPort", [9080], "spec.ports[0].targetPort"),
        (SERVICE, "spec.ports.0.protocol", "HTTP", "spec.ports[0].protocol"),
        (SERVICE, "spec.selector", ["app"], "spec.selector"),
        (SERVICE, "spec.type", "Internal", "spec.type"),
        (POD, "spec.containers", None, "spec.containers"),
        (
            POD,
            "spec.containers.0.ports.0.containerPort",
            "nine",
            "spec.containers[0].ports[0].containerPort",
        ),
        (ENDPOINT_SLICE, "addressType", "IPv5", "addressType"),
        (ENDPOINT_SLICE, "endpoints.0.addresses", "10.0.0.1", "endpoints[0].addresses"),
        (ENDPOINTS, "subsets.0.addresses.0.ip", None, "subsets[0].addresses[0].ip"),
    ],
)
def test_wrong_types_of_the_fields_the_mesh_reads_are_rejected(
    document: dict[str, Any], path: str, value: Any, where: str
) -> None:
    with pytest.raises(ConfigValidationError) as caught:
        validate_document(broken(document, path, value), "kubernetes")
    assert {e.path for e in caught.value.errors} == {where}


def test_string_numbers_are_coerced_like_a_lenient_reader() -> None:
    service = validate_document(broken(SERVICE, "spec.ports.0.port", "9080")).spec
    assert isinstance(service, ServiceSpec) and service.ports is not None
    assert service.ports[0].port == 9080


def test_pod_and_service_resources_carry_their_status() -> None:
    pod = validate_document(from_the_wire(POD), "kubernetes")
    assert isinstance(pod.status, PodStatus)
    assert pod.status.pod_ip == "10.244.1.17" and pod.status.phase == "Running"
    assert [ip.ip for ip in pod.status.pod_ips or []] == ["10.244.1.17", "fd00:10:244:1::11"]
    service = validate_document(from_the_wire(SERVICE), "kubernetes")
    assert isinstance(service.status, ServiceStatus)
    assert service.status.load_balancer is not None
    # The status goes back into the document, unknown fields and all, and reads back the same.
    document = pod.to_document()
    assert document["status"]["podIP"] == "10.244.1.17"
    assert document["status"]["qosClass"] == "BestEffort"
    assert validate_document(document, "kubernetes") == pod


def test_no_status_and_status_of_kinds_without_a_model_are_none() -> None:
    without = {key: value for key, value in POD.items() if key != "status"}
    pod = validate_document(from_the_wire(without))
    assert pod.status is None and "status" not in pod.to_document()
    namespace = validate_document(from_the_wire(NAMESPACE))  # has status.phase, no model
    assert namespace.status is None and "status" not in namespace.to_document()


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        ("status.podIPs", "10.0.0.1", "status.podIPs"),
        ("status.podIPs.0.ip", None, "status.podIPs[0].ip"),
        ("status.conditions.0.status", "Maybe", "status.conditions[0].status"),
    ],
)
def test_a_broken_status_is_rejected_at_its_field(path: str, value: Any, where: str) -> None:
    with pytest.raises(ConfigValidationError) as caught:
        validate_document(broken(POD, path, value), "kubernetes")
    assert {e.path for e in caught.value.errors} == {where}
