"""The agent's SDS server feeding a real Envoy: the certificate it serves, and its rotation.

Envoy takes `default` and `ROOTCA` from `sds-grpc` (the Unix socket in the bootstrap) for a TLS
listener, so a TLS client trusting the test CA sees exactly the workload certificate the agent
set. A new certificate must reach new connections without restarting Envoy (same pid). Pilot
points at a closed port: nothing else configures this Envoy.
"""

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent.bootstrap import ProxySpec, build_bootstrap
from agent.envoy_process import EnvoyOptions, EnvoyProcess
from agent.sds import SdsServer, WorkloadCertificate
from tests.integration.mesh import allocate_block, eventually
from tests.support.certs import ServerFiles, write_server_certificate
from tests.support.sds import sds_tls_listener

pytestmark = pytest.mark.envoy

HOST = "reviews.bookinfo.svc.cluster.local"
TLS_PORT = 8443
OPTIONS = EnvoyOptions(drain_seconds=1.0, stop_timeout=3.0, backoff_initial=0.1)


@pytest.fixture(autouse=True)
async def no_task_left() -> AsyncIterator[None]:
    yield
    assert asyncio.all_tasks() == {asyncio.current_task()}


def workload_certificate(files: ServerFiles) -> WorkloadCertificate:
    return WorkloadCertificate(
        chain_pem=files.certificate.read_bytes(),
        key_pem=files.private_key.read_bytes(),
        roots_pem=files.ca_certificate.read_bytes(),
    )


def der_of(files: ServerFiles) -> bytes:
    certificate = x509.load_pem_x509_certificate(files.certificate.read_bytes())
    return certificate.public_bytes(serialization.Encoding.DER)


async def served_certificate(ip: str, files: ServerFiles) -> bytes | None:
    """The DER certificate Envoy presents to a client trusting `files`' CA, once the echo
    answers; None while the listener is not up or presents a certificate of another CA."""
    context = ssl.create_default_context(cafile=str(files.ca_certificate))
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(ip, TLS_PORT, ssl=context, server_hostname=HOST), timeout=3
    )
    try:
        writer.write(b"ping")
        echoed = await asyncio.wait_for(reader.readexactly(4), timeout=3)
        peer: bytes | None = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return peer if echoed == b"ping" else None
    finally:
        writer.close()
        await writer.wait_closed()


async def active_secrets(admin_url: str) -> dict[str, Any] | None:
    """Envoy's dynamic active secrets by name, once both are there."""
    url = f"{admin_url}/config_dump?resource=dynamic_active_secrets"
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
        dump = await response.json()
    by_name = {entry["name"]: entry for entry in dump.get("configs", [])}
    return by_name if {"default", "ROOTCA"} <= by_name.keys() else None


async def test_envoy_serves_and_rotates_the_sds_certificate(tmp_path: Path) -> None:
    ip = f"{allocate_block()}.1"
    first = write_server_certificate(tmp_path / "first", HOST)
    second = write_server_certificate(tmp_path / "second", HOST)
    socket = tmp_path / "sds.sock"
    spec = ProxySpec(
        ip=ip,
        pod="reviews-v1",
        namespace="bookinfo",
        pilot=f"{ip}:1",
        initial_fetch_timeout=0.2,
        sds_socket=str(socket),
    )
    bootstrap = build_bootstrap(spec)
    bootstrap["static_resources"]["listeners"].append(sds_tls_listener(ip, TLS_PORT))
    sds = SdsServer(socket)
    sds.update(workload_certificate(first))
    envoy = EnvoyProcess(bootstrap, spec.admin_url, tmp_path / "run", OPTIONS)
    async with sds, envoy:
        served = await eventually(lambda: served_certificate(ip, first), "the first certificate")
        assert served == der_of(first)
        pid = envoy.pid
        secrets = await eventually(lambda: active_secrets(spec.admin_url), "both SDS secrets")
        assert secrets["default"]["secret"]["tls_certificate"]["private_key"]
        assert "trusted_ca" in secrets["ROOTCA"]["secret"]["validation_context"]

        sds.update(workload_certificate(second))
        served = await eventually(lambda: served_certificate(ip, second), "the new certificate")
        assert served == der_of(second)
        assert envoy.pid == pid and envoy.restarts == 0
    assert not socket.exists()
