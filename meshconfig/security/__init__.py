"""Spec models of the security.istio.io kinds: peer and request authentication, authorization."""

from meshconfig.kinds import Kind
from meshconfig.security.authentication import PeerAuthenticationSpec, RequestAuthenticationSpec
from meshconfig.security.authorization import AuthorizationPolicySpec

GROUP = "security.istio.io"
VERSIONS = ("v1", "v1beta1")

KINDS: tuple[Kind, ...] = (
    Kind(GROUP, "AuthorizationPolicy", "authorizationpolicies", VERSIONS, AuthorizationPolicySpec),
    Kind(GROUP, "PeerAuthentication", "peerauthentications", VERSIONS, PeerAuthenticationSpec),
    Kind(
        GROUP,
        "RequestAuthentication",
        "requestauthentications",
        VERSIONS,
        RequestAuthenticationSpec,
    ),
)

__all__ = [
    "KINDS",
    "AuthorizationPolicySpec",
    "PeerAuthenticationSpec",
    "RequestAuthenticationSpec",
]
