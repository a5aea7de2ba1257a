"""The injected pod: Istio's sidecar, running our agent with flags it accepts."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import kubernetes_validate
import pytest

from agent.__main__ import main as mesh_agent
from agent.__main__ import parse_args, spec_from_args
from agent.bootstrap import InterceptionMode
from agent.injector import InjectionConfig, InjectionError, inject, skip_reason
from agent.injector.sidecar import workload_name

CONFIG = InjectionConfig(image="pymesh/pymesh:test")
# What the kubelet gives the downward API variables in the agent's arguments.
DOWNWARD = {
    "INSTANCE_IP": "10.1.2.3",
    "POD_NAME": "reviews-v1-abc",
    "POD_NAMESPACE": "bookinfo",
    "SERVICE_ACCOUNT": "bookinfo-reviews",
}


def pod(**metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "reviews-v1-abc", "labels": {"app": "reviews", "version": "v1"}}
        | metadata,
        "spec": {
            "serviceAccountName": "bookinfo-reviews",
            "containers": [
                {"name": "reviews", "image": "reviews:1", "ports": [{"containerPort": 9080}]}
            ],
        },
    }


def containers(injected: dict[str, Any], key: str = "containers") -> dict[str, dict[str, Any]]:
    return {container["name"]: container for container in injected["spec"].get(key, ())}


def agent_args(container: dict[str, Any]) -> list[str]:
    return [re.sub(r"\$\((\w+)\)", lambda m: DOWNWARD[m[1]], arg) for arg in container["args"]]


def test_the_proxy_runs_the_agent_with_the_pods_identity() -> None:
    proxy = containers(inject(pod(), CONFIG))["istio-proxy"]
    args = parse_args(agent_args(proxy))
    spec = spec_from_args(args)

    assert proxy["image"] == "pymesh/pymesh:test"
    assert proxy["command"] == ["mesh-agent"]
    assert (spec.ip, spec.pod, spec.namespace, spec.service_account) == tuple(DOWNWARD.values())
    assert dict(spec.labels) == {
        "app": "reviews",
        "version": "v1",
        "security.istio.io/tlsMode": "istio",
        "service.istio.io/canonical-name": "reviews",
        "service.istio.io/canonical-revision": "v1",
    }
    assert (spec.pilot, spec.pilot_mtls) == ("istiod.istio-system.svc:15011", True)
    assert spec.interception is InterceptionMode.REDIRECT
    assert (spec.cluster_id, spec.mesh_id) == ("Kubernetes", "cluster.local")
    assert args.citadel == "istio-citadel.istio-system.svc:8060"
    assert str(args.token_file) == "/var/run/secrets/tokens/istio-token"
    assert str(args.citadel_root) == "/var/run/secrets/istio/root-cert.pem"
    assert str(args.run_dir) == "/etc/istio/proxy"
    assert proxy["env"] == [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "INSTANCE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {
            "name": "SERVICE_ACCOUNT",
            "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}},
        },
    ]


def test_the_proxy_exposes_envoy_stats_and_is_ready_when_envoy_is() -> None:
    proxy = containers(inject(pod(), CONFIG))["istio-proxy"]

    assert proxy["ports"] == [
        {"containerPort": 15090, "protocol": "TCP", "name": "http-envoy-prom"}
    ]
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": 15021}


def test_the_proxy_runs_as_1337_without_privileges() -> None:
    security = containers(inject(pod(), CONFIG))["istio-proxy"]["securityContext"]

    assert (security["runAsUser"], security["runAsGroup"], security["runAsNonRoot"]) == (
        1337,
        1337,
        True,
    )
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True


def test_istio_init_installs_the_capture_as_root_with_net_admin() -> None:
    injected = inject(
        pod(annotations={"traffic.sidecar.istio.io/excludeOutboundPorts": "3306"}), CONFIG
    )
    init = containers(injected, "initContainers")["istio-init"]

    assert init["image"] == "pymesh/pymesh:test"
    assert init["command"] == ["mesh-agent"]
    assert init["args"] == [
        "iptables",
        "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT",
        "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020", "-o", "3306",
    ]  # fmt: skip
    assert init["securityContext"]["capabilities"] == {
        "add": ["NET_ADMIN", "NET_RAW"],
        "drop": ["ALL"],
    }
    assert init["securityContext"]["runAsUser"] == 0


def test_mesh_agent_iptables_accepts_the_init_containers_arguments(
    capsys: pytest.CaptureFixture[str],
) -> None:
    annotations = {
        "traffic.sidecar.istio.io/excludeInboundPorts": "8443",
        "traffic.sidecar.istio.io/excludeOutboundPorts": "3306",
    }
    init = containers(inject(pod(annotations=annotations), CONFIG), "initContainers")["istio-init"]

    assert mesh_agent([*init["args"], "--dry-run"]) == 0
    rules = capsys.readouterr().out
    assert "-j REDIRECT --to-ports 15006" in rules
    assert "--dport 8443 -j RETURN" in rules
    assert "--dport 3306 -j RETURN" in rules


def test_with_cni_there_is_no_init_container_and_the_annotations_carry_the_capture() -> None:
    injected = inject(pod(), InjectionConfig(cni=True))

    assert "initContainers" not in injected["spec"]
    annotations = injected["metadata"]["annotations"]
    assert annotations["sidecar.istio.io/interceptionMode"] == "REDIRECT"
    assert annotations["traffic.sidecar.istio.io/excludeInboundPorts"] == "15090,15021,15020"
    assert json.loads(annotations["sidecar.istio.io/status"])["initContainers"] is None


def test_interception_none_captures_nothing() -> None:
    injected = inject(pod(annotations={"sidecar.istio.io/interceptionMode": "NONE"}), CONFIG)
    proxy = containers(injected)["istio-proxy"]

    assert "initContainers" not in injected["spec"]
    assert spec_from_args(parse_args(agent_args(proxy))).interception is InterceptionMode.NONE


def test_the_volumes_hold_the_run_directory_the_token_and_the_mesh_root() -> None:
    injected = inject(pod(), CONFIG)
    volumes = {volume["name"]: volume for volume in injected["spec"]["volumes"]}
    mounts = {
        mount["name"]: mount["mountPath"]
        for mount in containers(injected)["istio-proxy"]["volumeMounts"]
    }

    assert mounts == {
        "istio-envoy": "/etc/istio/proxy",
        "istio-token": "/var/run/secrets/tokens",
        "istiod-ca-cert": "/var/run/secrets/istio",
    }
    assert volumes["istio-envoy"] == {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}}
    assert volumes["istio-token"]["projected"]["sources"] == [
        {
            "serviceAccountToken": {
                "audience": "istio-ca",
                "expirationSeconds": 43200,
                "path": "istio-token",
            }
        }
    ]
    assert volumes["istiod-ca-cert"]["configMap"] == {"name": "istio-ca-root-cert"}
    # The projected token is readable through the pod's fsGroup, which the proxy is in.
    assert injected["spec"]["securityContext"] == {"fsGroup": 1337}


def test_the_pods_own_containers_volumes_and_fs_group_stay_first() -> None:
    original = pod()
    original["spec"]["initContainers"] = [{"name": "migrate", "image": "db:1"}]
    original["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    original["spec"]["securityContext"] = {"fsGroup": 2000, "runAsUser": 1000}

    injected = inject(original, CONFIG)

    assert list(containers(injected)) == ["reviews", "istio-proxy"]
    assert list(containers(injected, "initContainers")) == ["migrate", "istio-init"]
    assert [v["name"] for v in injected["spec"]["volumes"]] == [
        "data",
        "istio-envoy",
        "istio-token",
        "istiod-ca-cert",
    ]
    assert injected["spec"]["securityContext"] == {"fsGroup": 2000, "runAsUser": 1000}


def test_the_status_annotation_lists_what_was_added() -> None:
    annotations = inject(pod(), CONFIG)["metadata"]["annotations"]

    assert json.loads(annotations["sidecar.istio.io/status"]) == {
        "initContainers": ["istio-init"],
        "containers": ["istio-proxy"],
        "volumes": ["istio-envoy", "istio-token", "istiod-ca-cert"],
        "imagePullSecrets": None,
        "revision": "default",
    }
    assert annotations["kubectl.kubernetes.io/default-container"] == "reviews"
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "15090"
    assert annotations["prometheus.io/path"] == "/stats/prometheus"


def test_the_pods_own_prometheus_and_default_container_annotations_are_kept() -> None:
    own = {"prometheus.io/scrape": "false", "kubectl.kubernetes.io/default-container": "x"}
    annotations = inject(pod(annotations=own), CONFIG)["metadata"]["annotations"]

    assert own.items() <= annotations.items()
    assert "prometheus.io/port" not in annotations


@pytest.mark.parametrize(
    ("labels", "name", "revision"),
    [
        ({"app": "reviews", "version": "v1"}, "reviews", "v1"),
        (
            {"app": "a", "version": "v1", "app.kubernetes.io/name": "b"}
            | {"app.kubernetes.io/version": "2"},
            "b",
            "2",
        ),
        (
            {"app": "a", "service.istio.io/canonical-name": "c"}
            | {"service.istio.io/canonical-revision": "r", "security.istio.io/tlsMode": "none"},
            "c",
            "r",
        ),
        ({}, "reviews-v1-abc", "latest"),
    ],
)
def test_canonical_labels_come_from_the_pods_labels(
    labels: dict[str, str], name: str, revision: str
) -> None:
    injected = inject(pod(labels=labels), CONFIG)["metadata"]["labels"]

    assert injected["service.istio.io/canonical-name"] == name
    assert injected["service.istio.io/canonical-revision"] == revision
    assert injected["security.istio.io/tlsMode"] == labels.get("security.istio.io/tlsMode", "istio")


def test_the_workload_name_is_the_canonical_name_of_last_resort() -> None:
    injected = inject(pod(labels={}), CONFIG, workload="reviews-v1")
    assert injected["metadata"]["labels"]["service.istio.io/canonical-name"] == "reviews-v1"


@pytest.mark.parametrize(
    ("metadata", "name"),
    [
        (
            {
                "generateName": "reviews-v1-7d8f9-",
                "labels": {"pod-template-hash": "7d8f9"},
                "ownerReferences": [
                    {"kind": "ReplicaSet", "name": "reviews-v1-7d8f9", "controller": True}
                ],
            },
            "reviews-v1",
        ),
        (
            {
                "name": "db-0",
                "ownerReferences": [{"kind": "StatefulSet", "name": "db", "controller": True}],
            },
            "db",
        ),
        ({"name": "solo", "ownerReferences": [{"kind": "Thing", "name": "x"}]}, "solo"),
        ({"generateName": "job-"}, "job"),
    ],
)
def test_workload_names_follow_the_controller(metadata: dict[str, Any], name: str) -> None:
    assert workload_name(metadata) == name


def test_the_input_is_left_alone_and_the_result_is_not_injected_again() -> None:
    original = pod()
    before = copy.deepcopy(original)

    injected = inject(original, CONFIG)

    assert original == before
    assert skip_reason(injected) == "the pod already has a sidecar"


@pytest.mark.parametrize("field", ["labels", "annotations"])
def test_labels_and_annotations_must_be_strings(field: str) -> None:
    with pytest.raises(InjectionError, match=f"metadata.{field} must map strings to strings"):
        inject(pod(**{field: {"port": 8080}}), CONFIG)


def test_an_invalid_traffic_annotation_fails_the_injection() -> None:
    broken = pod(annotations={"traffic.sidecar.istio.io/includeInboundPorts": "http"})
    with pytest.raises(InjectionError, match="includeInboundPorts"):
        inject(broken, CONFIG)


@pytest.mark.parametrize("config", [CONFIG, InjectionConfig(cni=True)], ids=["init", "cni"])
def test_the_injected_pod_is_a_valid_kubernetes_pod(config: InjectionConfig) -> None:
    kubernetes_validate.validate(
        inject(pod(), config), kubernetes_validate.latest_version(), strict=True
    )
