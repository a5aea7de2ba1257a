"""Workload identities as Istio spells them: `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`.

Citadel signs, binds and compares identities; the agent asks for its own. One parsed, validated
value type (shared, so neither side imports the other's internals) keeps them from disagreeing
about what an identity string means, and the names below (with `create_certificate_call`) are
the certificate API's wire contract as both sides use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import grpc

from protos.citadel.v1 import ca_pb2

TRUST_DOMAIN = "cluster.local"

# Kubernetes names (DNS labels and subdomains) for namespaces and service accounts; a trust
# domain is a lower-case DNS name.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_URI = re.compile(r"^spiffe://([^/]+)/ns/([^/]+)/sa/([^/]+)$")


class IdentityError(ValueError):
    """A string that is not an Istio SPIFFE ID."""


@dataclass(frozen=True, order=True)
class SpiffeId:
    namespace: str
    service_account: str
    trust_domain: str = TRUST_DOMAIN

    def __post_init__(self) -> None:
        for value in (self.namespace, self.service_account, self.trust_domain):
            if not _NAME.match(value):
                raise IdentityError(f"invalid SPIFFE ID component {value!r}")

    @classmethod
    def parse(cls, uri: str) -> SpiffeId:
        match = _URI.match(uri)
        if match is None:
            raise IdentityError(f"not a spiffe://<td>/ns/<ns>/sa/<sa> identity: {uri!r}")
        trust_domain, namespace, service_account = match.groups()
        return cls(namespace, service_account, trust_domain)

    @property
    def uri(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def __str__(self) -> str:
        return self.uri


# The name citadel's serving certificate carries and clients verify (Istio's istiod name).
CONTROL_PLANE_HOST = "istiod.istio-system.svc"
# The gRPC method of the certificate API (protos/citadel/v1/ca.proto).
CREATE_CERTIFICATE = "/istio.v1.auth.IstioCertificateService/CreateCertificate"


def create_certificate_call(
    channel: grpc.aio.Channel,
) -> grpc.aio.UnaryUnaryMultiCallable[Any, Any]:
    """CreateCertificate on `channel`: IstioCertificateRequest in, IstioCertificateResponse out."""
    return channel.unary_unary(
        CREATE_CERTIFICATE,
        request_serializer=ca_pb2.IstioCertificateRequest.SerializeToString,
        response_deserializer=ca_pb2.IstioCertificateResponse.FromString,
    )
