"""Models of the Kubernetes kinds pilot reads (core/v1 and discovery.k8s.io/v1): the service
registry's, and Secrets for gateway credentials."""

from meshconfig.kinds import Kind
from meshconfig.kube.objects import (
    EndpointsBody,
    EndpointSliceBody,
    NamespaceSpec,
    PodSpec,
    PodStatus,
    SecretBody,
    ServiceAccountBody,
    ServiceSpec,
    ServiceStatus,
)

KINDS: tuple[Kind, ...] = (
    Kind("", "Namespace", "namespaces", ("v1",), NamespaceSpec, namespaced=False),
    Kind("", "Service", "services", ("v1",), ServiceSpec, status_model=ServiceStatus),
    Kind("", "Endpoints", "endpoints", ("v1",), EndpointsBody, spec_is_whole_object=True),
    Kind(
        "discovery.k8s.io",
        "EndpointSlice",
        "endpointslices",
        ("v1",),
        EndpointSliceBody,
        spec_is_whole_object=True,
    ),
    Kind("", "Pod", "pods", ("v1",), PodSpec, status_model=PodStatus),
    Kind(
        "",
        "ServiceAccount",
        "serviceaccounts",
        ("v1",),
        ServiceAccountBody,
        spec_is_whole_object=True,
    ),
    Kind("", "Secret", "secrets", ("v1",), SecretBody, spec_is_whole_object=True),
)

__all__ = [
    "KINDS",
    "EndpointSliceBody",
    "EndpointsBody",
    "NamespaceSpec",
    "PodSpec",
    "PodStatus",
    "SecretBody",
    "ServiceAccountBody",
    "ServiceSpec",
    "ServiceStatus",
]
