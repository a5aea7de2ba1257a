"""Citadel in Kubernetes mode against the fake API server, through the real kubernetes-asyncio
client: service-account tokens checked by TokenReview, and the CA kept in Secrets."""

from __future__ import annotations

import asyncio
import base64
import datetime
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from spiffe import X509Svid

from citadel.authn import AuthenticationError
from citadel.ca_secret import SecretStore
from citadel.cacerts import CaStoreError
from citadel.rotation import rotate_stored_root
from citadel.server import Citadel, CitadelOptions
from citadel.tokenreview import TokenReviewAuthenticator
from meshcore.identity import SpiffeId
from meshcore.kube import api_client
from tests.integration.test_citadel_csr import create_certificate
from tests.support.csr import make_csr, new_key, private_pem
from tests.support.kube_fake import KubeFake

REVIEWS = SpiffeId("default", "reviews")
RATINGS = SpiffeId("default", "ratings")
# The tokens the fake API server knows, and whose they are.
TOKENS = {"reviews-jwt": REVIEWS, "ratings-jwt": RATINGS}


def review(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """A TokenReview answered as the API server answers it for bound service-account tokens."""
    identity = TOKENS.get(spec.get("token", ""))
    if identity is None:
        return {"authenticated": False, "error": "invalid bearer token, token lookup failed"}
    audiences = [a for a in spec.get("audiences") or () if a == "istio-ca"]
    if not audiences:
        return {"authenticated": False, "error": "token audiences are invalid"}
    namespace, account = identity.namespace, identity.service_account
    return {
        "authenticated": True,
        "audiences": audiences,
        "user": {
            "username": f"system:serviceaccount:{namespace}:{account}",
            "uid": "6f9b5c1e-0000-4000-8000-000000000001",
            "groups": [
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ],
        },
    }


@pytest.fixture
async def kube() -> AsyncIterator[KubeFake]:
    async with KubeFake(token_reviewer=review) as fake:
        yield fake


def options(kube: KubeFake, **overrides: Any) -> CitadelOptions:
    return CitadelOptions(kubernetes=kube.url, port=0, mtls_port=0, monitoring_port=0, **overrides)


@pytest.fixture
async def citadel(kube: KubeFake) -> AsyncIterator[Citadel]:
    async with Citadel(options(kube)) as running:
        yield running


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def reviews_made(kube: KubeFake) -> int:
    return sum(r.path.endswith("/tokenreviews") for r in kube.requests)


async def request(
    citadel: Citadel, identity: SpiffeId, token: str
) -> tuple[ec.EllipticCurvePrivateKey, list[str]]:
    key = new_key()
    chain = await create_certificate(
        citadel.address,
        grpc.ssl_channel_credentials(citadel.ca.root_pem),
        make_csr(key, identity.uri),
        bearer(token),
    )
    return key, chain


def secret_data(kube: KubeFake, name: str) -> dict[str, bytes] | None:
    secret = kube.get("v1", "Secret", name, "istio-system")
    if secret is None:
        return None
    return {key: base64.b64decode(value) for key, value in secret["data"].items()}


def verifies(chain: list[str], roots: bytes) -> bool:
    leaf, *intermediates = [x509.load_pem_x509_certificate(c.encode()) for c in chain[:-1]]
    store = Store(x509.load_pem_x509_certificates(roots))
    verifier = PolicyBuilder().store(store).build_client_verifier()
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError:
        return False
    return True


async def test_a_service_account_token_gets_its_svid(citadel: Citadel, kube: KubeFake) -> None:
    key, chain = await request(citadel, REVIEWS, "reviews-jwt")
    svid = X509Svid.parse("".join(chain).encode(), private_pem(key))
    assert str(svid.spiffe_id) == "spiffe://cluster.local/ns/default/sa/reviews"
    assert chain[-1].encode() == citadel.ca.root_pem
    assert verifies(chain, citadel.ca.root_pem)

    # The self-signed CA was created in istio-ca-secret, in Istio's layout.
    secret = kube.get("v1", "Secret", "istio-ca-secret", "istio-system")
    assert secret is not None and secret["type"] == "istio.io/ca-root"
    data = secret_data(kube, "istio-ca-secret")
    assert data is not None
    assert data["root-cert.pem"] == data["ca-cert.pem"] == citadel.ca.root_pem
    assert b"PRIVATE KEY" in data["ca-key.pem"] and data["cert-chain.pem"] == b""
    with pytest.raises(RuntimeError, match="service-account tokens only"):
        citadel.tokens.mint(REVIEWS)


async def test_the_trust_domain_comes_from_the_options(kube: KubeFake) -> None:
    in_domain = SpiffeId("default", "reviews", "example.org")
    async with Citadel(options(kube, trust_domain="example.org")) as citadel:
        key, chain = await request(citadel, in_domain, "reviews-jwt")
    svid = X509Svid.parse("".join(chain).encode(), private_pem(key))
    assert str(svid.spiffe_id) == "spiffe://example.org/ns/default/sa/reviews"


@pytest.mark.parametrize("token", ["forged-jwt", ""])
async def test_a_token_the_api_server_refuses_is_unauthenticated(
    citadel: Citadel, token: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await request(citadel, REVIEWS, token)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "invalid bearer token" in (caught.value.details() or "")
    failures = citadel.metrics.registry.get_sample_value(
        "citadel_server_authentication_failure_count_total"
    )
    assert failures == 1


async def test_a_token_for_another_audience_is_unauthenticated(kube: KubeFake) -> None:
    async with Citadel(options(kube, token_audiences=("vault",))) as citadel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await request(citadel, REVIEWS, "reviews-jwt")
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "audiences are invalid" in (caught.value.details() or "")


async def test_a_csr_for_another_identity_is_denied(citadel: Citadel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await request(citadel, RATINGS, "reviews-jwt")
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert RATINGS.uri in (caught.value.details() or "")


async def test_an_api_failure_is_unavailable_and_retrying_works(
    citadel: Citadel, kube: KubeFake
) -> None:
    kube.fail_requests(1, 503, "ServiceUnavailable")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await request(citadel, REVIEWS, "reviews-jwt")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "503" in (caught.value.details() or "")
    await request(citadel, REVIEWS, "reviews-jwt")


async def test_reviews_are_cached_and_renewals_need_none(citadel: Citadel, kube: KubeFake) -> None:
    key, first = await request(citadel, REVIEWS, "reviews-jwt")
    await request(citadel, REVIEWS, "reviews-jwt")
    assert reviews_made(kube) == 1
    await request(citadel, RATINGS, "ratings-jwt")
    assert reviews_made(kube) == 2

    mutual = grpc.ssl_channel_credentials(
        citadel.ca.root_pem, private_pem(key), "".join(first).encode()
    )
    renewed = await create_certificate(citadel.mtls_address, mutual, make_csr(new_key()))
    assert verifies(renewed, citadel.ca.root_pem)
    assert reviews_made(kube) == 2


async def test_the_ca_secret_is_reused_after_a_restart(kube: KubeFake) -> None:
    async with Citadel(options(kube)) as first:
        root = first.ca.root_pem
        key, chain = await request(first, REVIEWS, "reviews-jwt")
    async with Citadel(options(kube)) as second:
        assert second.ca.root_pem == root
        assert verifies(chain, second.ca.root_pem)
        # The certificate of before the restart still renews.
        mutual = grpc.ssl_channel_credentials(root, private_pem(key), "".join(chain).encode())
        renewed = await create_certificate(second.mtls_address, mutual, make_csr(new_key()))
    assert verifies(renewed, root)


async def test_replicas_starting_together_share_one_ca(kube: KubeFake) -> None:
    first, second = Citadel(options(kube)), Citadel(options(kube))
    try:
        await asyncio.gather(first.start(), second.start())
        assert first.ca.root_pem == second.ca.root_pem
        _, chain = await request(second, REVIEWS, "reviews-jwt")
        assert verifies(chain, first.ca.root_pem)
    finally:
        await asyncio.gather(first.stop(), second.stop())


def _ca_certificate(
    key: ec.EllipticCurvePrivateKey,
    name: str,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    """A CA certificate as an operator's own tooling makes it (Istio's Makefile, say)."""
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Istio"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def plug_in(kube: KubeFake, files: Mapping[str, bytes]) -> None:
    data = {name: base64.b64encode(content).decode() for name, content in files.items()}
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "cacerts", "namespace": "istio-system"},
            "type": "Opaque",
            "data": data,
        }
    )


async def test_the_cacerts_secret_is_a_plugged_in_intermediate(kube: KubeFake) -> None:
    root_key, intermediate_key = new_key(), new_key()
    root = _ca_certificate(root_key, "Root CA", None, root_key)
    intermediate = _ca_certificate(intermediate_key, "Intermediate CA", root, root_key)
    plug_in(
        kube,
        {
            "ca-cert.pem": _pem(intermediate),
            "ca-key.pem": private_pem(intermediate_key),
            "root-cert.pem": _pem(root),
            "cert-chain.pem": _pem(intermediate, root),
        },
    )
    async with Citadel(options(kube)) as citadel:
        key, chain = await request(citadel, REVIEWS, "reviews-jwt")
    assert citadel.ca.root_pem == _pem(root)
    assert chain[1:] == [_pem(intermediate).decode(), _pem(root).decode()]
    leaf = x509.load_pem_x509_certificate(chain[0].encode())
    assert leaf.issuer == intermediate.subject
    svid = X509Svid.parse("".join(chain).encode(), private_pem(key))
    assert str(svid.spiffe_id) == REVIEWS.uri
    # leaf -> intermediate -> root, with only the operator's root trusted.
    verifier = PolicyBuilder().store(Store([root])).build_client_verifier()
    assert verifier.verify(leaf, [intermediate]).chain == [leaf, intermediate, root]
    # citadel did not create a CA of its own.
    assert kube.get("v1", "Secret", "istio-ca-secret", "istio-system") is None


async def test_the_operator_owns_a_plugged_in_root(kube: KubeFake) -> None:
    root_key = new_key()
    root = _ca_certificate(root_key, "Root CA", None, root_key)
    plug_in(
        kube,
        {
            "ca-cert.pem": _pem(root),
            "ca-key.pem": private_pem(root_key),
            "root-cert.pem": _pem(root),
        },
    )
    api = await api_client(kube.url)
    try:
        with pytest.raises(CaStoreError, match=r"istio-system/cacerts, which the operator owns"):
            await rotate_stored_root(SecretStore(api), key_type="ec", trust_domain="cluster.local")
    finally:
        await api.close()
    assert secret_data(kube, "cacerts") == {
        "ca-cert.pem": _pem(root),
        "ca-key.pem": private_pem(root_key),
        "root-cert.pem": _pem(root),
    }


async def test_an_incomplete_ca_secret_names_what_is_missing(kube: KubeFake) -> None:
    plug_in(kube, {"ca-cert.pem": b"", "ca-key.pem": private_pem(new_key())})
    with pytest.raises(
        CaStoreError, match=r"istio-system/cacerts has no ca-cert\.pem or root-cert\.pem"
    ):
        await Citadel(options(kube)).start()


async def test_a_mounted_ca_directory_needs_no_token_key(kube: KubeFake, tmp_path: Path) -> None:
    async with Citadel(options(kube, ca_dir=tmp_path / "ca")) as citadel:
        _, chain = await request(citadel, REVIEWS, "reviews-jwt")
    assert sorted(p.name for p in (tmp_path / "ca").iterdir()) == [
        "ca-cert.pem",
        "ca-key.pem",
        "root-cert.pem",
    ]
    assert chain[-1].encode() == (tmp_path / "ca" / "root-cert.pem").read_bytes()
    assert kube.get("v1", "Secret", "istio-ca-secret", "istio-system") is None


async def test_cached_reviews_expire_and_the_cache_is_bounded(kube: KubeFake) -> None:
    now = [0.0]
    api = await api_client(kube.url)
    try:
        reviewer = TokenReviewAuthenticator(
            api, "cluster.local", cache_ttl=30.0, cache_size=1, clock=lambda: now[0]
        )
        assert await reviewer.authenticate("reviews-jwt") == REVIEWS
        now[0] = 29.0
        assert await reviewer.authenticate("reviews-jwt") == REVIEWS
        assert reviews_made(kube) == 1
        now[0] = 30.0
        assert await reviewer.authenticate("reviews-jwt") == REVIEWS
        assert reviews_made(kube) == 2
        # One entry only: ratings' review pushes reviews' out.
        assert await reviewer.authenticate("ratings-jwt") == RATINGS
        assert await reviewer.authenticate("reviews-jwt") == REVIEWS
        assert reviews_made(kube) == 4
        # Refusals are not kept: each one is asked again.
        for _ in range(2):
            with pytest.raises(AuthenticationError):
                await reviewer.authenticate("forged-jwt")
        assert reviews_made(kube) == 6
    finally:
        await api.close()
