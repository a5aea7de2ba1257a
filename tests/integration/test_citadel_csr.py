"""Citadel over the wire: a real grpc.aio TLS client asks for, is refused, and renews SVIDs."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from cryptography import x509
from spiffe import X509Svid

from citadel.server import Citadel, CitadelOptions
from meshcore.identity import (
    CONTROL_PLANE_HOST,
    SpiffeId,
    create_certificate_call,
)
from protos.citadel.v1 import ca_pb2
from tests.support.csr import make_csr, new_key, private_pem

REVIEWS = SpiffeId("default", "reviews")
RATINGS = SpiffeId("default", "ratings")


@pytest.fixture
async def citadel(tmp_path: Path) -> AsyncIterator[Citadel]:
    options = CitadelOptions(ca_dir=tmp_path / "ca", port=0, mtls_port=0, monitoring_port=0)
    async with Citadel(options) as running:
        yield running


async def create_certificate(
    address: str,
    credentials: grpc.ChannelCredentials,
    csr: bytes,
    metadata: tuple[tuple[str, str], ...] = (),
) -> list[str]:
    """CreateCertificate as an agent calls it (the other citadel tests share it): verifying the
    server against the mesh root, as istiod's name. The answer: leaf first, trust bundle last."""
    options = [("grpc.ssl_target_name_override", CONTROL_PLANE_HOST)]
    async with grpc.aio.secure_channel(address, credentials, options=options) as channel:
        call = create_certificate_call(channel)
        request = ca_pb2.IstioCertificateRequest(csr=csr.decode(), validity_duration=3600)
        response = await call(request, metadata=metadata, timeout=10)
    return list(response.cert_chain)


def _bearer(citadel: Citadel, identity: SpiffeId) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {citadel.tokens.mint(identity)}"),)


async def test_token_gets_a_certificate_for_its_identity(citadel: Citadel) -> None:
    key = new_key()
    chain = await create_certificate(
        citadel.address,
        grpc.ssl_channel_credentials(citadel.ca.root_pem),
        make_csr(key, REVIEWS.uri),
        _bearer(citadel, REVIEWS),
    )
    svid = X509Svid.parse("".join(chain).encode(), private_pem(key))
    assert str(svid.spiffe_id) == REVIEWS.uri
    assert chain[-1].encode() == citadel.ca.root_pem
    leaf = x509.load_pem_x509_certificate(chain[0].encode())
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() == 3660

    url = f"http://127.0.0.1:{citadel.monitoring.port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        metrics = await response.text()
    assert "citadel_server_success_cert_issuance_count_total 1.0" in metrics


async def test_csr_for_another_identity_is_denied(citadel: Citadel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create_certificate(
            citadel.address,
            grpc.ssl_channel_credentials(citadel.ca.root_pem),
            make_csr(new_key(), RATINGS.uri),
            _bearer(citadel, REVIEWS),
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_bad_csr_is_an_invalid_argument(citadel: Citadel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create_certificate(
            citadel.address,
            grpc.ssl_channel_credentials(citadel.ca.root_pem),
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            _bearer(citadel, REVIEWS),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("authorization", [None, "Bearer v1.forged.token", "Basic abc"])
async def test_missing_or_bad_credential_is_unauthenticated(
    citadel: Citadel, authorization: str | None
) -> None:
    metadata = () if authorization is None else (("authorization", authorization),)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create_certificate(
            citadel.address,
            grpc.ssl_channel_credentials(citadel.ca.root_pem),
            make_csr(new_key(), REVIEWS.uri),
            metadata,
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_renewal_with_the_issued_certificate(citadel: Citadel) -> None:
    key = new_key()
    first = await create_certificate(
        citadel.address,
        grpc.ssl_channel_credentials(citadel.ca.root_pem),
        make_csr(key, REVIEWS.uri),
        _bearer(citadel, REVIEWS),
    )
    mutual = grpc.ssl_channel_credentials(
        citadel.ca.root_pem, private_pem(key), "".join(first).encode()
    )

    renewed_key = new_key()
    renewed = await create_certificate(
        citadel.mtls_address, mutual, make_csr(renewed_key, REVIEWS.uri)
    )
    svid = X509Svid.parse("".join(renewed).encode(), private_pem(renewed_key))
    assert str(svid.spiffe_id) == REVIEWS.uri
    assert renewed[0] != first[0]

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create_certificate(citadel.mtls_address, mutual, make_csr(new_key(), RATINGS.uri))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_mtls_port_refuses_clients_without_a_mesh_certificate(citadel: Citadel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create_certificate(
            citadel.mtls_address,
            grpc.ssl_channel_credentials(citadel.ca.root_pem),
            make_csr(new_key(), REVIEWS.uri),
            _bearer(citadel, REVIEWS),
        )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def served_certificate(address: str, root_pem: bytes) -> x509.Certificate:
    """The certificate citadel presents to a new TLS connection, verified against the root."""
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cadata=root_pem.decode())
    context.check_hostname = False
    _, writer = await asyncio.open_connection(
        host, int(port), ssl=context, server_hostname=CONTROL_PLANE_HOST
    )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return x509.load_der_x509_certificate(der)


async def test_citadel_renews_its_own_serving_certificate(tmp_path: Path) -> None:
    """With a 2 s lifetime, citadel's own certificate would have expired after 3 s; it serves
    a renewed one and still issues certificates."""
    options = CitadelOptions(
        ca_dir=tmp_path / "ca",
        port=0,
        mtls_port=0,
        monitoring_port=0,
        default_ttl=datetime.timedelta(seconds=2),
    )
    async with Citadel(options) as citadel:
        first = await served_certificate(citadel.address, citadel.ca.root_pem)
        await asyncio.sleep(3)
        second = await served_certificate(citadel.address, citadel.ca.root_pem)
        assert second.serial_number != first.serial_number
        assert second.not_valid_after_utc > datetime.datetime.now(datetime.UTC)
        chain = await create_certificate(
            citadel.address,
            grpc.ssl_channel_credentials(citadel.ca.root_pem),
            make_csr(new_key(), REVIEWS.uri),
            _bearer(citadel, REVIEWS),
        )
        assert len(chain) == 2
