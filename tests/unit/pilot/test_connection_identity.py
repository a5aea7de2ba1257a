"""discovery.authorize: which client-certificate identities may serve which proxy."""

from __future__ import annotations

import grpc
import pytest

from meshcore.xds.status import StreamError
from pilot.discovery import authorize
from pilot.model import NodeType, Proxy

HELLO = "spiffe://cluster.local/ns/default/sa/hello"


def proxy(namespace: str = "default", account: str = "hello") -> Proxy:
    return Proxy(
        id=f"sidecar~127.0.0.5~hello-v1.{namespace}~{namespace}.svc.cluster.local",
        type=NodeType.SIDECAR,
        ip="127.0.0.5",
        pod_name="hello-v1",
        namespace=namespace,
        dns_domain=f"{namespace}.svc.cluster.local",
        service_account=account,
    )


@pytest.mark.parametrize(
    "identities",
    [
        (HELLO,),
        ("istiod.istio-system.svc", "spiffe://other.domain/ns/x/sa/y", HELLO),
    ],
    ids=["exact", "any-of-several"],
)
def test_a_matching_identity_is_accepted(identities: tuple[str, ...]) -> None:
    authorize(proxy(), identities)


def test_a_proxy_without_service_account_is_checked_on_namespace_only() -> None:
    authorize(proxy(account=""), (HELLO,))
    with pytest.raises(StreamError):
        authorize(proxy("other", ""), (HELLO,))


@pytest.mark.parametrize(
    ("claimed", "identities"),
    [
        (proxy("other"), (HELLO,)),
        (proxy(account="other"), (HELLO,)),
        (proxy(), ("istiod.istio-system.svc",)),
        (proxy(), ()),
    ],
    ids=["namespace", "service-account", "no-spiffe-id", "no-names"],
)
def test_a_mismatch_is_denied_naming_both_sides(
    claimed: Proxy, identities: tuple[str, ...]
) -> None:
    with pytest.raises(StreamError) as caught:
        authorize(claimed, identities)
    assert caught.value.code is grpc.StatusCode.PERMISSION_DENIED
    assert str(list(identities)) in caught.value.message
    assert claimed.id in caught.value.message
