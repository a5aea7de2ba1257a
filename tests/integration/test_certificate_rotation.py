"""Certificates that live 60 seconds, rotated under continuous mutual TLS traffic for 3 minutes.

Both sidecars (and their connections to pilot's 15011) use certificates from citadel with a
60 s lifetime; agents renew at about half of it and push the new certificate over SDS without
restarting Envoy. Requests flow the whole time, each on a new connection so that every one
makes a fresh handshake with whatever certificates are current; none may fail.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time

import aiohttp
import pytest
from cryptography import x509

from agent.bootstrap import XdsApi
from tests.integration.mesh import Mesh, service_entry
from tests.integration.test_mutual_tls import CLIENT_ID, HELLO, sidecar_entry

pytestmark = pytest.mark.envoy

TTL = datetime.timedelta(seconds=60)
DURATION = 180.0
INTERVAL = 0.1
MAX_REQUESTS = int(DURATION / INTERVAL) + 1


@pytest.fixture
def xds_api() -> XdsApi:
    return XdsApi.GRPC


async def test_sixty_second_certificates_rotate_without_a_failed_request(mesh: Mesh) -> None:
    hello_ip, client_ip = mesh.next_ip(), mesh.next_ip()
    mesh.write(
        "registry",
        service_entry("hello", 8080),
        sidecar_entry("hello", hello_ip, "hello"),
        sidecar_entry("client", client_ip, "client"),
    )
    await mesh.start_citadel()
    await mesh.start_pilot(mtls=True)
    hello, client = await asyncio.gather(
        mesh.add_sidecar("hello", hello_ip, app_port=8080, certificates=True, certificate_ttl=TTL),
        mesh.add_sidecar("client", client_ip, certificates=True, certificate_ttl=TTL),
    )
    await mesh.synced({"hello", "client"})

    failures: list[str] = []
    served = 0
    deadline = time.monotonic() + DURATION
    connector = aiohttp.TCPConnector(force_close=True)  # a new connection, a new handshake
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=5)
    ) as session:
        for _ in range(MAX_REQUESTS):
            if time.monotonic() >= deadline:
                break
            try:
                async with session.get(HELLO, proxy=client.http_proxy) as response:
                    body = await response.text()
                if response.status != 200:
                    failures.append(f"{response.status}: {body[:200]}")
                elif CLIENT_ID not in json.loads(body.splitlines()[1])["x-forwarded-client-cert"]:
                    failures.append(f"not mutual TLS: {body[:200]}")
                else:
                    served += 1
            except (aiohttp.ClientError, TimeoutError) as error:
                failures.append(repr(error))
            await asyncio.sleep(INTERVAL)

    assert failures == []
    assert served > DURATION / INTERVAL / 2
    for sidecar in (hello, client):
        certificates = sidecar.proxy.certificates
        assert certificates is not None
        assert certificates.renewals >= 3, f"{sidecar.name} renewed {certificates.renewals}x"
    # Envoy serves the newest certificate: the one its agent holds now.
    for sidecar in (hello, client):
        current = sidecar.proxy.certificates.current if sidecar.proxy.certificates else None
        assert current is not None
        dump = await mesh.admin_json(sidecar, "/certs")
        serials = {
            cert["serial_number"].lower().lstrip("0")
            for entry in dump["certificates"]
            for cert in entry.get("cert_chain", [])
        }
        leaf = x509.load_pem_x509_certificates(current.chain_pem)[0]
        assert f"{leaf.serial_number:x}" in serials
    assert await mesh.nack_errors() == {}
