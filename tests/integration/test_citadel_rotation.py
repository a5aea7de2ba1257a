"""Rotating citadel's root with `python -m citadel rotate-root` / `finish-rotation`, checked
the way workloads see it: mutual TLS between workloads with OpenSSL (Python's ssl), and
renewals over citadel's own TLS ports with grpc, across restarts of citadel."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from citadel.ca_secret import SecretStore
from citadel.cacerts import CaStoreError
from citadel.rotation import rotate_stored_root
from citadel.server import Citadel, CitadelOptions
from meshcore.identity import SpiffeId
from meshcore.kube import api_client
from tests.integration.test_citadel_csr import create_certificate
from tests.integration.test_citadel_kubernetes import bearer, options, review, verifies
from tests.support.csr import make_csr, new_key, private_pem
from tests.support.kube_fake import KubeFake

REVIEWS = SpiffeId("default", "reviews")
RATINGS = SpiffeId("default", "ratings")


@pytest.fixture
async def kube() -> AsyncIterator[KubeFake]:
    async with KubeFake(token_reviewer=review) as fake:
        yield fake


@dataclasses.dataclass(frozen=True)
class Workload:
    """What an agent holds: its chain (leaf and intermediates), its key, the roots it trusts."""

    chain: bytes
    key: bytes
    trust: bytes

    def files(self, directory: Path, name: str) -> tuple[Path, Path]:
        chain, key = directory / f"{name}.pem", directory / f"{name}.key"
        chain.write_bytes(self.chain)
        key.write_bytes(self.key)
        return chain, key


async def enrol(citadel: Citadel, identity: SpiffeId, token: str, trust: bytes) -> Workload:
    """A workload's first certificate, paid with `token`; it checks citadel against `trust`."""
    key = new_key()
    chain = await create_certificate(
        citadel.address,
        grpc.ssl_channel_credentials(trust),
        make_csr(key, identity.uri),
        bearer(token),
    )
    return Workload("".join(chain[:-1]).encode(), private_pem(key), chain[-1].encode())


async def renew(citadel: Citadel, workload: Workload) -> Workload:
    """A renewal over citadel's mTLS port, authenticated by `workload`'s certificate."""
    key = new_key()
    credentials = grpc.ssl_channel_credentials(workload.trust, workload.key, workload.chain)
    chain = await create_certificate(citadel.mtls_address, credentials, make_csr(key))
    return Workload("".join(chain[:-1]).encode(), private_pem(key), chain[-1].encode())


async def mutual_tls(directory: Path, server: Workload, client: Workload) -> bool:
    """Whether `client` and `server` complete mutual TLS, each verifying the other's chain
    against its own trusted roots, and exchange a message."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(*server.files(directory, "server"))
    server_context.load_verify_locations(cadata=server.trust.decode())
    server_context.verify_mode = ssl.CERT_REQUIRED
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.load_cert_chain(*client.files(directory, "client"))
    client_context.load_verify_locations(cadata=client.trust.decode())
    # SVIDs name a SPIFFE ID, no host: the chain is what is verified.
    client_context.check_hostname = False

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(await reader.readexactly(4))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_context)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context)
            try:
                writer.write(b"ping")
                return await reader.readexactly(4) == b"ping"
            finally:
                writer.close()
    except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
        return False
    finally:
        listener.close()
        await listener.wait_closed()


async def rotation_cli(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "citadel",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    return out.decode()


def roots(bundle: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(bundle)


@pytest.fixture
def ca_options(tmp_path: Path) -> CitadelOptions:
    return CitadelOptions(ca_dir=tmp_path / "ca", port=0, mtls_port=0, monitoring_port=0)


async def test_rotating_a_directory_ca(ca_options: CitadelOptions, tmp_path: Path) -> None:
    async with Citadel(ca_options) as citadel:
        old_root = citadel.ca.root_pem
        old = await enrol(citadel, REVIEWS, citadel.tokens.mint(REVIEWS), old_root)

    out = await rotation_cli("rotate-root", f"--ca-dir={ca_options.ca_dir}")
    assert "restart citadel" in out

    async with Citadel(ca_options) as citadel:
        bundle = citadel.ca.root_pem
        assert citadel.ca.rotating and roots(bundle)[1:] == roots(old_root)
        # A new workload reaches citadel trusting only the old root (its serving certificate
        # chains to it through the bridge) and learns the bundle from the answer.
        new = await enrol(citadel, RATINGS, citadel.tokens.mint(RATINGS), old_root)
        assert new.trust == bundle
        new_leaf = x509.load_pem_x509_certificate(new.chain)
        assert new_leaf.issuer == roots(bundle)[0].subject

        # Old and new leaves verify each other against the bundle, in both directions...
        old_knowing_bundle = dataclasses.replace(old, trust=bundle)
        assert await mutual_tls(tmp_path, old_knowing_bundle, new)
        assert await mutual_tls(tmp_path, new, old_knowing_bundle)
        # ...and so does a workload that has not learnt the bundle yet.
        assert await mutual_tls(tmp_path, old, new)
        assert await mutual_tls(tmp_path, new, old)

        # The old certificate still renews, checking citadel against the old root only, and
        # the renewal comes from the new root with the bundle.
        renewed = await renew(citadel, old)
        assert renewed.trust == bundle
        assert x509.load_pem_x509_certificate(renewed.chain).issuer == new_leaf.issuer

    await rotation_cli("finish-rotation", f"--ca-dir={ca_options.ca_dir}")

    async with Citadel(ca_options) as citadel:
        assert not citadel.ca.rotating
        assert roots(citadel.ca.root_pem) == roots(bundle)[:1]
        newest = await enrol(citadel, REVIEWS, citadel.tokens.mint(REVIEWS), bundle)
        assert newest.trust == citadel.ca.root_pem
        # Certificates of the new root verify against the new bundle...
        assert await mutual_tls(tmp_path, newest, dataclasses.replace(new, trust=newest.trust))
        assert await mutual_tls(tmp_path, dataclasses.replace(renewed, trust=newest.trust), newest)
        # ...those of the old root no longer do, in either direction.
        assert not await mutual_tls(tmp_path, newest, old_knowing_bundle)
        assert not await mutual_tls(tmp_path, old_knowing_bundle, newest)
        # And the old certificate no longer renews: the handshake fails.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await renew(citadel, old_knowing_bundle)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert (await renew(citadel, dataclasses.replace(new, trust=newest.trust))).chain


async def test_rotating_the_ca_secret(kube: KubeFake) -> None:
    async with Citadel(options(kube)) as citadel:
        old_root = citadel.ca.root_pem
        key = new_key()
        old_chain = await create_certificate(
            citadel.address,
            grpc.ssl_channel_credentials(old_root),
            make_csr(key, REVIEWS.uri),
            bearer("reviews-jwt"),
        )

    await rotation_cli("rotate-root", f"--kubernetes={kube.url}")
    secret = kube.get("v1", "Secret", "istio-ca-secret", "istio-system")
    assert secret is not None
    stored_bundle = base64.b64decode(secret["data"]["root-cert.pem"])
    assert roots(stored_bundle)[1:] == roots(old_root)

    async with Citadel(options(kube)) as citadel:
        assert citadel.ca.rotating and citadel.ca.root_pem == stored_bundle
        new_chain = await create_certificate(
            citadel.address,
            grpc.ssl_channel_credentials(old_root),
            make_csr(new_key(), RATINGS.uri),
            bearer("ratings-jwt"),
        )
    assert new_chain[-1].encode() == stored_bundle
    for chain in (old_chain, new_chain):
        assert verifies(chain, stored_bundle)
    assert verifies(new_chain, old_root)

    await rotation_cli("finish-rotation", f"--kubernetes={kube.url}")
    async with Citadel(options(kube)) as citadel:
        assert roots(citadel.ca.root_pem) == roots(stored_bundle)[:1]
        assert verifies(new_chain, citadel.ca.root_pem)
        assert not verifies(old_chain, citadel.ca.root_pem)


async def test_a_secret_changed_meanwhile_is_not_overwritten(kube: KubeFake) -> None:
    async with Citadel(options(kube)):
        pass
    api = await api_client(kube.url)
    try:
        store = SecretStore(api)
        material = await store.load()
        assert material is not None
        secret = kube.get("v1", "Secret", "istio-ca-secret", "istio-system")
        assert secret is not None
        secret["metadata"].setdefault("labels", {})["touched"] = "yes"
        kube.update(secret)
        with pytest.raises(CaStoreError, match="changed since it was read"):
            await store.replace(material)
        # Loading again picks up the change; then the rotation goes through.
        await rotate_stored_root(store, key_type="ec", trust_domain="cluster.local")
    finally:
        await api.close()
