"""The sidecar itself: what Istio's injection template adds to a pod, for our agent.

`inject` returns a copy of a Pod (or a pod template: anything with `metadata` and `spec`) with
- the `istio-proxy` container running `mesh-agent`: the pod's name, namespace, IP and service
  account from the downward API, its labels, pilot's mutual-TLS address and citadel's, its
  service-account token (audience istio-ca) and the mesh root to get its certificate with,
  Envoy's stats port 15090 and the readiness probe on 15021, as uid/gid 1337;
- the `istio-init` container running `mesh-agent iptables` with NET_ADMIN and NET_RAW, unless
  interception is NONE or Istio CNI installs the rules (then the pod's annotations tell it how);
- the volumes: the agent's run directory (bootstrap and the SDS socket Envoy reads its
  certificates from), the projected token, the `istio-ca-root-cert` ConfigMap; the pod's
  fsGroup, if it has none, becomes 1337 so that the proxy can read the token;
- the labels pilot and telemetry read (`security.istio.io/tlsMode`, the canonical service name
  and revision), the `sidecar.istio.io/status` annotation that marks the pod as injected, and,
  unless the pod has its own, Prometheus scrape annotations for Envoy's stats and kubectl's
  default container (the application's, not the proxy).
Istio's per-pod `proxy.istio.io/config` annotation is not read: the agent has no ProxyConfig
beyond its flags. A pure function; whether to inject at all is `policy.skip_reason`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from agent.bootstrap import STATS_PORT
from agent.health import HEALTH_PORT, READY_PATH
from agent.injector.capture import PROXY_UID, REDIRECT, Capture
from agent.injector.config import InjectionConfig, InjectionError
from agent.injector.policy import PROXY_CONTAINER, STATUS

INIT_CONTAINER = "istio-init"
AGENT_COMMAND = "mesh-agent"
RUN_VOLUME, RUN_DIR = "istio-envoy", "/etc/istio/proxy"
TOKEN_VOLUME, TOKEN_DIR, TOKEN_FILE = "istio-token", "/var/run/secrets/tokens", "istio-token"
ROOT_VOLUME, ROOT_DIR, ROOT_FILE = "istiod-ca-cert", "/var/run/secrets/istio", "root-cert.pem"
ROOT_CONFIGMAP = "istio-ca-root-cert"
TOKEN_AUDIENCE = "istio-ca"
TOKEN_SECONDS = 43200

TLS_MODE = "security.istio.io/tlsMode"
CANONICAL_NAME = "service.istio.io/canonical-name"
CANONICAL_REVISION = "service.istio.io/canonical-revision"
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
PROMETHEUS_SCRAPE = "prometheus.io/scrape"

_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"cpu": "2", "memory": "1Gi"},
}
_DOWNWARD_ENV = (
    ("POD_NAME", "metadata.name"),
    ("POD_NAMESPACE", "metadata.namespace"),
    ("INSTANCE_IP", "status.podIP"),
    ("SERVICE_ACCOUNT", "spec.serviceAccountName"),
)


def inject(pod: Mapping[str, Any], config: InjectionConfig, workload: str = "") -> dict[str, Any]:
    """`pod` with the sidecar; `workload` names it when no label does (default: from `pod`).

    Raises InjectionError if the pod's labels, annotations or capture settings are invalid.
    """
    injected = copy.deepcopy(dict(pod))
    metadata = injected["metadata"] = dict(injected.get("metadata") or {})
    spec = injected["spec"] = dict(injected.get("spec") or {})
    labels = metadata["labels"] = _strings(metadata.get("labels"), "metadata.labels")
    annotations = metadata["annotations"] = _strings(
        metadata.get("annotations"), "metadata.annotations"
    )
    capture = Capture.from_annotations(annotations)
    app_containers = list(spec.get("containers") or ())

    labels.setdefault(TLS_MODE, "istio")
    labels.setdefault(
        CANONICAL_NAME,
        labels.get("app.kubernetes.io/name")
        or labels.get("app")
        or workload
        or workload_name(metadata),
    )
    labels.setdefault(
        CANONICAL_REVISION,
        labels.get("app.kubernetes.io/version") or labels.get("version") or "latest",
    )

    init_containers = []
    if capture.mode == REDIRECT and not config.cni:
        init_containers.append(_init_container(config, capture))
    if config.cni:
        annotations.update(capture.cni_annotations())
    volumes = _volumes()
    if init_containers:
        spec["initContainers"] = [*(spec.get("initContainers") or ()), *init_containers]
    spec["containers"] = [*app_containers, _proxy_container(config, capture, labels)]
    spec["volumes"] = [*(spec.get("volumes") or ()), *volumes]
    security = spec["securityContext"] = dict(spec.get("securityContext") or {})
    # The projected token is readable by the pod's fsGroup; the proxy runs in it.
    security.setdefault("fsGroup", PROXY_UID)

    if app_containers:
        annotations.setdefault(DEFAULT_CONTAINER, str(app_containers[0].get("name", "")))
    if PROMETHEUS_SCRAPE not in annotations:
        annotations[PROMETHEUS_SCRAPE] = "true"
        annotations["prometheus.io/port"] = str(STATS_PORT)
        annotations["prometheus.io/path"] = "/stats/prometheus"
    annotations[STATUS] = json.dumps(
        {
            "initContainers": [c["name"] for c in init_containers] or None,
            "containers": [PROXY_CONTAINER],
            "volumes": [v["name"] for v in volumes],
            "imagePullSecrets": None,
            "revision": "default",
        },
        separators=(",", ":"),
    )
    return injected


def workload_name(metadata: Mapping[str, Any]) -> str:
    """The name of the pod's workload, as Istio names it: its controller's (a Deployment's for
    a ReplicaSet's pod), else the pod's own name or the prefix it is generated from."""
    for owner in metadata.get("ownerReferences") or ():
        if owner.get("controller"):
            name = str(owner.get("name", ""))
            template_hash = (metadata.get("labels") or {}).get("pod-template-hash")
            if owner.get("kind") == "ReplicaSet" and template_hash:
                name = name.removesuffix(f"-{template_hash}")
            return name
    return str(metadata.get("name") or metadata.get("generateName", "")).rstrip("-")


def _strings(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    ):
        raise InjectionError(f"{where} must map strings to strings")
    return dict(value)


def _agent_args(config: InjectionConfig, capture: Capture, labels: Mapping[str, str]) -> list[str]:
    return [
        "--ip", "$(INSTANCE_IP)",
        "--pod", "$(POD_NAME)",
        "--namespace", "$(POD_NAMESPACE)",
        "--service-account", "$(SERVICE_ACCOUNT)",
        "--labels", ",".join(f"{key}={value}" for key, value in sorted(labels.items())),
        "--pilot", config.pilot,
        "--pilot-mtls",
        "--citadel", config.citadel,
        "--citadel-root", f"{ROOT_DIR}/{ROOT_FILE}",
        "--token-file", f"{TOKEN_DIR}/{TOKEN_FILE}",
        "--interception", capture.mode,
        "--cluster-id", config.cluster_id,
        "--mesh-id", config.mesh_id,
        "--run-dir", RUN_DIR,
    ]  # fmt: skip


def _proxy_container(
    config: InjectionConfig, capture: Capture, labels: Mapping[str, str]
) -> dict[str, Any]:
    return {
        "name": PROXY_CONTAINER,
        "image": config.image,
        "command": [AGENT_COMMAND],
        "args": _agent_args(config, capture, labels),
        "env": [
            {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}
            for name, path in _DOWNWARD_ENV
        ],
        "ports": [{"containerPort": STATS_PORT, "protocol": "TCP", "name": "http-envoy-prom"}],
        "readinessProbe": {
            "httpGet": {"path": READY_PATH, "port": HEALTH_PORT},
            "initialDelaySeconds": 1,
            "periodSeconds": 2,
            "failureThreshold": 30,
        },
        "resources": copy.deepcopy(_RESOURCES),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsGroup": PROXY_UID,
            "runAsNonRoot": True,
            "runAsUser": PROXY_UID,
        },
        "volumeMounts": [
            {"name": RUN_VOLUME, "mountPath": RUN_DIR},
            {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR},
            {"name": ROOT_VOLUME, "mountPath": ROOT_DIR},
        ],
    }


def _init_container(config: InjectionConfig, capture: Capture) -> dict[str, Any]:
    return {
        "name": INIT_CONTAINER,
        "image": config.image,
        "command": [AGENT_COMMAND],
        "args": ["iptables", *capture.iptables_args()],
        "resources": copy.deepcopy(_RESOURCES),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
            "privileged": False,
            "readOnlyRootFilesystem": False,
            "runAsGroup": 0,
            "runAsNonRoot": False,
            "runAsUser": 0,
        },
    }


def _volumes() -> list[dict[str, Any]]:
    token = {"audience": TOKEN_AUDIENCE, "expirationSeconds": TOKEN_SECONDS, "path": TOKEN_FILE}
    return [
        {"name": RUN_VOLUME, "emptyDir": {"medium": "Memory"}},
        {"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": token}]}},
        {"name": ROOT_VOLUME, "configMap": {"name": ROOT_CONFIGMAP}},
    ]
