"""The Kubernetes objects pilot reads, as the API server returns them: those of its service
registry, and the Secrets gateways terminate TLS with.

Namespace, Service, Endpoints, EndpointSlice, Pod, ServiceAccount and Secret come from the API
server, which has already validated them, so these models are lenient: unknown fields are kept
and types are coerced rather than rejected. They model only the fields the mesh reads, with the
types it relies on (ports are integers, a targetPort is a number or a port name, a selector is a
map of strings, Secret data is base64).

`spec` is the whole body for the kinds that have no `spec` (Endpoints, EndpointSlice,
ServiceAccount, Secret). Pod and Service status (pod IPs, phase, load balancer addresses) is what
the service registry needs beside the spec, so those kinds also have a status model, `PodStatus`
and `ServiceStatus`, and their resources carry the validated status.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
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


# Secret


def _decode(value: str) -> bytes:
    """Go's `[]byte` JSON decoding: standard base64, line breaks ignored."""
    return base64.b64decode(value.replace("\n", "").replace("\r", ""), validate=True)


def _base64(value: str) -> str:
    try:
        _decode(value)
    except binascii.Error:
        raise ValueError("is not base64") from None
    return value


Base64Text = Annotated[str, AfterValidator(_base64)]


class SecretBody(KubeModel):
    """A Secret's `type`, `data` (base64, as the API server returns it) and `stringData`.

    `stringData` is write-only in the API (the server merges it into `data`), but files written
    for `kubectl apply` carry it, so `values` merges it the same way: its keys win. A `data`
    value that is not base64 is refused, as the API server refuses it.
    """

    type: str = "Opaque"
    data: dict[str, Base64Text] | None = Field(None, repr=False)
    string_data: dict[str, str] | None = Field(None, repr=False)
    immutable: bool | None = None

    def values(self) -> dict[str, bytes]:
        """Every key with its bytes: `data` decoded, then `stringData` on top."""
        found = {key: _decode(value) for key, value in (self.data or {}).items()}
        found.update((key, value.encode()) for key, value in (self.string_data or {}).items())
        return found
