"""kubernetesenv: the source's and destination's workload, from the registry Mixer received.

Istio's attribute generator for the `kubernetes` template: given an instance's `source_uid`
(`kubernetes://<pod>.<namespace>`) or `source_ip`, and the destination's, it looks the pod up
(a WorkloadEntry too, by address: the workloads of a mesh without Kubernetes) among the Pods
and WorkloadEntries of Mixer's configuration (`Environment.workloads`) and outputs the
template's OutputTemplate fields: `source_pod_name`, `source_labels`, `source_namespace`,
`source_service_account_name`, `source_workload_name` (the pod's controller, a ReplicaSet's
Deployment, see `mixer.workloads`), `source_owner`, ... and the `destination_*` equivalents
(with `destination_container_name`, the container declaring `destination_port`, else the pod's
only container). A side whose
workload is unknown has no outputs. The index is read per request, so a Pod change applies to
the next one.

Params: Istio's (`kubeconfigPath`, `cacheRefreshDuration`, `clusterDomainName`, ...) are
accepted and ignored: the registry comes with the configuration. Templates: kubernetes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel

from mixer.adapters.base import (
    PARAMS_CONFIG,
    DurationParam,
    Environment,
    Handler,
    Instance,
    parse_params,
)
from mixer.workloads import Workload, Workloads


class KubernetesEnvParams(BaseModel):
    """Istio's kubernetesenv params; none changes what this adapter does."""

    model_config = PARAMS_CONFIG
    kubeconfig_path: str = ""
    cache_refresh_duration: DurationParam | None = None
    cluster_domain_name: str = ""
    pod_label_for_app: str = ""
    pod_label_for_version: str = ""
    lookup_ingress_source_and_origin_values: bool = False
    fully_qualified_istio_ingress_service_name: str = ""
    cluster_registries_namespace: str = ""


class KubernetesEnvHandler(Handler):
    def __init__(self, workloads: Workloads) -> None:
        self.workloads = workloads

    def generate(self, instance: Instance) -> Mapping[str, Any]:
        fields = instance.fields
        outputs: dict[str, Any] = {}
        for side in ("source", "destination"):
            workload = self.find(fields.get(f"{side}_uid"), fields.get(f"{side}_ip"))
            if workload is not None:
                outputs.update(_outputs(side, workload))
                if side == "destination":
                    container = workload.container(fields.get("destination_port") or 0)
                    if container:
                        outputs["destination_container_name"] = container
        return outputs

    def find(self, uid: Any, ip: Any) -> Workload | None:
        """The workload of `uid` (a pod's `kubernetes://<pod>.<namespace>`), else of `ip`."""
        if isinstance(uid, str) and uid:
            found = self.workloads.by_uid(uid)
            if found is not None:
                return found
        address = _address(ip)
        if address is None or address.is_unspecified:
            return None
        return self.workloads.by_ip(str(address))


def _address(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    if isinstance(value, bytes) and len(value) in (4, 16):
        return ipaddress.ip_address(value)
    if isinstance(value, str) and value:
        try:
            return ipaddress.ip_address(value)
        except ValueError:
            return None
    return None


def _outputs(side: str, workload: Workload) -> dict[str, Any]:
    outputs: dict[str, Any] = {
        f"{side}_pod_uid": workload.uid,
        f"{side}_pod_ip": ipaddress.ip_address(workload.ip),
        f"{side}_pod_name": workload.name,
        f"{side}_labels": workload.labels,
        f"{side}_namespace": workload.namespace,
        f"{side}_service_account_name": workload.service_account,
        f"{side}_workload_uid": workload.workload_uid,
        f"{side}_workload_name": workload.workload_name,
        f"{side}_workload_namespace": workload.namespace,
        f"{side}_owner": workload.owner,
    }
    host = _address(workload.host_ip)
    if host is not None:
        outputs[f"{side}_host_ip"] = host
    return outputs


class KubernetesEnv:
    name: ClassVar[str] = "kubernetesenv"
    templates: ClassVar[frozenset[str]] = frozenset({"kubernetes"})

    def build(self, params: Mapping[str, Any], env: Environment) -> Handler:
        parse_params(KubernetesEnvParams, params)
        return KubernetesEnvHandler(env.workloads)


ADAPTER = KubernetesEnv()
