"""Galley over mutual TLS: configuration (Secrets among it) reaches only mesh members.

Galley serves with a certificate from the mesh CA and requires one from its clients; pilot
presents its own (the one it serves 15011 with) and verifies galley as the control plane.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from citadel.ca import CertificateAuthority
from galley.client import ConfigClient
from galley.server import Galley, GalleyOptions
from meshconfig.kinds import kind_by_id
from meshcore.identity import CONTROL_PLANE_HOST
from meshcore.tls import MeshTls
from pilot.server import Pilot, PilotOptions
from tests.integration.mesh import allocate_block, eventually, service_entry
from tests.support.shared import BOOKINFO_NETWORKING

SERVICE_ENTRY = kind_by_id("networking.istio.io/ServiceEntry")


def mesh_tls(ca: CertificateAuthority, host: str) -> MeshTls:
    serving = ca.server_credentials(CONTROL_PLANE_HOST, host)
    return MeshTls(serving.chain_pem, serving.key_pem, ca.root_pem)


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[tuple[Galley, CertificateAuthority]]:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    config = tmp_path / "config"
    config.mkdir()
    (config / "hello.yaml").write_text(service_entry("hello", 8080))
    (config / "vs.yaml").write_text(
        (BOOKINFO_NETWORKING / "virtual-service-all-v1.yaml").read_text()
    )
    host = f"{allocate_block()}.250"
    options = GalleyOptions(config_dir=config, host=host, grpc_port=0, tls=mesh_tls(ca, host))
    async with Galley(options) as galley:
        yield galley, ca


async def received(client: ConfigClient, seconds: float = 1.5) -> bool:
    task = asyncio.create_task(client.run())
    try:
        await asyncio.wait_for(client.synced.wait(), seconds)
        return True
    except TimeoutError:
        return False
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_client_without_a_mesh_certificate_gets_nothing(
    secured: tuple[Galley, CertificateAuthority], tmp_path: Path
) -> None:
    galley, _ = secured
    assert SERVICE_ENTRY is not None
    plaintext = ConfigClient(galley.address, [SERVICE_ENTRY], lambda *_: None, node_id="x")
    assert not await received(plaintext)
    stranger = mesh_tls(CertificateAuthority.load_or_create(tmp_path / "other-ca"), "127.0.0.1")
    foreign = ConfigClient(
        galley.address, [SERVICE_ENTRY], lambda *_: None, node_id="x", tls=stranger
    )
    assert not await received(foreign)


async def test_pilot_reaches_galley_with_its_certificate(
    secured: tuple[Galley, CertificateAuthority],
) -> None:
    galley, ca = secured
    host = galley.options.host
    tls = mesh_tls(ca, host)
    options = PilotOptions(
        galley=galley.address,
        host=host,
        grpc_port=0,
        monitoring_port=0,
        galley_mtls=True,
        tls_cert_chain=tls.cert_chain,
        tls_key=tls.key,
        tls_roots=tls.roots,
    )
    async with Pilot(options) as pilot:

        async def has_config() -> bool | None:
            context = pilot.discovery.context
            return True if context.service("hello.default.svc.cluster.local") else None

        await eventually(has_config, "pilot's registry from galley over mutual TLS")
