"""The Kubernetes objects pilot's service registry reads, as the API server returns them.

Namespace, Service, Endpoints, EndpointSlice, Pod and ServiceAccount come from the API server,
which has already validated them, so these models are lenient: unknown fields are kept and
types are coerced rather than rejected. They model only the fields the mesh reads, with the types
it relies on (ports are integers, a targetPort is a number or a port name, a selector is a map of
strings).

`spec` is the whole body for the kinds that have no `spec` (Endpoints, EndpointSlice,
ServiceAccount). Pod and Service status (pod IPs, phase, load balancer addresses) is what the
service registry needs beside the spec, so those kinds also have a status model, `PodStatus` and
`ServiceStatus`, and their resources carry the validated status.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class KubeModel(BaseModel):
    """Base for Kubernetes objects: camelCase names, unknown fields kept, lax types, frozen."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True
    )


Protocol = Literal["TCP", "UDP", "SCTP"]


class ObjectReference(KubeModel):
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None


# Namespace


class NamespaceSpec(KubeModel):
    finalizers: list[str] | None = None


# Service


class ServicePort(KubeModel):
    name: str | None = None
    port: int
    target_port: int | str | None = None
    protocol: Protocol = "TCP"
    app_protocol: str | None = None
    node_port: int | None = None


class ServiceSpec(KubeModel):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"
    selector: dict[str, str] | None = None
    ports: list[ServicePort] | None = None
    cluster_ip: str | None = Field(None, alias="clusterIP")
    cluster_ips: list[str] | None = Field(None, alias="clusterIPs")
    external_ips: list[str] | None = Field(None, alias="externalIPs")
    external_name: str | None = None
    ip_families: list[Literal["IPv4", "IPv6"]] | None = None
    publish_not_ready_addresses: bool | None = None


class LoadBalancerIngress(KubeModel):
    ip: str | None = None
    hostname: str | None = None


class LoadBalancerStatus(KubeModel):
    ingress: list[LoadBalancerIngress] | None = None


class ServiceStatus(KubeModel):
    load_balancer: LoadBalancerStatus | None = None


# Endpoints (core/v1)


class EndpointAddress(KubeModel):
    ip: str
    hostname: str | None = None
    node_name: str | None = None
    target_ref: ObjectReference | None = None


class EndpointPort(KubeModel):
    name: str | None = None
    port: int
    protocol: Protocol = "TCP"
    app_protocol: str | None = None


class EndpointSubset(KubeModel):
    addresses: list[EndpointAddress] | None = None
    not_ready_addresses: list[EndpointAddress] | None = None
    ports: list[EndpointPort] | None = None


class EndpointsBody(KubeModel):
    subsets: list[EndpointSubset] | None = None


# EndpointSlice (discovery.k8s.io/v1)


class EndpointConditions(KubeModel):
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


class SliceEndpoint(KubeModel):
    addresses: list[str]
    conditions: EndpointConditions | None = None
    hostname: str | None = None
    node_name: str | None = None
    zone: str | None = None
    target_ref: ObjectReference | None = None


class SlicePort(KubeModel):
    name: str | None = None
    port: int | None = None
    protocol: Protocol = "TCP"
    app_protocol: str | None = None


class EndpointSliceBody(KubeModel):
    address_type: Literal["IPv4", "IPv6", "FQDN"]
    endpoints: list[SliceEndpoint] | None = None
    ports: list[SlicePort] | None = None


# Pod


class ContainerPort(KubeModel):
    name: str | None = None
    container_port: int
    protocol: Protocol = "TCP"


class Container(KubeModel):
    name: str
    image: str | None = None
    ports: list[ContainerPort] | None = None


class PodSpec(KubeModel):
    service_account_name: str | None = None
    node_name: str | None = None
    host_network: bool | None = None
    containers: list[Container]
    init_containers: list[Container] | None = None


class PodIP(KubeModel):
    ip: str


class PodCondition(KubeModel):
    type: str
    status: Literal["True", "False", "Unknown"]


class PodStatus(KubeModel):
    phase: str | None = None
    pod_ip: str | None = Field(None, alias="podIP")
    pod_ips: list[PodIP] | None = Field(None, alias="podIPs")
    host_ip: str | None = Field(None, alias="hostIP")
    conditions: list[PodCondition] | None = None


# ServiceAccount


class ServiceAccountBody(KubeModel):
    secrets: list[ObjectReference] | None = None
    automount_service_account_token: bool | None = None
