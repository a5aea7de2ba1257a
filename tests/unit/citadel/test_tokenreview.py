"""What a TokenReview answer proves: istiod's checks on the API server's verdict, no server."""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client

from citadel.authn import AuthenticationError
from citadel.tokenreview import ISTIO_CA_AUDIENCE, reviewed_identity
from meshcore.identity import SpiffeId

GROUPS = ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]


def _status(
    username: str = "system:serviceaccount:default:reviews",
    groups: list[str] | None = None,
    audiences: list[str] | None = None,
    authenticated: bool = True,
    error: str | None = None,
) -> client.V1TokenReviewStatus:
    return client.V1TokenReviewStatus(
        authenticated=authenticated,
        error=error,
        audiences=[ISTIO_CA_AUDIENCE] if audiences is None else audiences,
        user=client.V1UserInfo(username=username, groups=GROUPS if groups is None else groups),
    )


def test_a_service_account_gets_its_spiffe_id_in_the_trust_domain() -> None:
    identity = reviewed_identity(_status(), [ISTIO_CA_AUDIENCE], "example.org")
    assert identity == SpiffeId("default", "reviews", "example.org")
    assert identity.uri == "spiffe://example.org/ns/default/sa/reviews"


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (None, "without a status"),
        (_status(authenticated=False), "did not authenticate"),
        (_status(authenticated=False, error="token has expired"), "token has expired"),
        (_status(audiences=[]), "not for audience istio-ca"),
        (_status(audiences=["https://kubernetes.default.svc"]), "not for audience"),
        (_status(groups=["system:authenticated"]), "is not a service account"),
        (_status(username="alice", groups=[*GROUPS]), "'alice' is not a service account's"),
        (_status(username="system:serviceaccount:Default:reviews"), "invalid SPIFFE ID"),
    ],
    ids=[
        "no-status",
        "unauthenticated",
        "error",
        "audience-unaware",
        "other-audience",
        "not-a-service-account",
        "user-name",
        "bad-namespace",
    ],
)
def test_what_is_refused(status: client.V1TokenReviewStatus | None, reason: str) -> None:
    with pytest.raises(AuthenticationError, match=reason):
        reviewed_identity(status, [ISTIO_CA_AUDIENCE], "cluster.local")
