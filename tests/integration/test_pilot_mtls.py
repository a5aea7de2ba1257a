"""Pilot's mutual-TLS xDS port: client certificates must match the identity the node claims."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2

from agent.bootstrap import XDS_CLUSTER, ProxySpec, build_bootstrap
from agent.envoy_process import EnvoyProcess
from citadel.ca import CertificateAuthority
from meshcore.identity import CONTROL_PLANE_HOST, SpiffeId
from meshcore.xds import types
from pilot.server import Pilot, PilotOptions
from tests.integration.mesh import (
    ENVOY_OPTIONS,
    allocate_block,
    eventually,
    service_entry,
    workload_entry,
)
from tests.support.csr import make_csr, new_key, private_pem
from tests.support.xds_client import Client

HELLO = SpiffeId("default", "hello")


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path / "ca")


@pytest.fixture
async def pilot(tmp_path: Path, ca: CertificateAuthority) -> AsyncIterator[Pilot]:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "hello.yaml").write_text(
        service_entry("hello", 8080) + "---\n" + workload_entry("hello-v1", "127.0.0.5", "hello")
    )
    host = f"{allocate_block()}.1"
    serving = ca.server_credentials(CONTROL_PLANE_HOST, host)
    options = PilotOptions(
        config_dir=tmp_path / "config",
        host=host,
        grpc_port=0,
        monitoring_port=0,
        debounce=0.02,
        mtls_port=0,
        tls_cert_chain=serving.chain_pem,
        tls_key=serving.key_pem,
        tls_roots=ca.root_pem,
    )
    async with Pilot(options) as running:
        yield running


def workload_credentials(ca: CertificateAuthority, identity: SpiffeId) -> grpc.ChannelCredentials:
    key = new_key()
    chain = ca.sign(make_csr(key, identity.uri), identity)
    return grpc.ssl_channel_credentials(ca.root_pem, private_pem(key), b"".join(chain))


def hello_request(
    namespace: str = "default", account: str = "hello"
) -> discovery_pb2.DiscoveryRequest:
    metadata = struct_pb2.Struct()
    metadata.update({"SERVICE_ACCOUNT": account})
    node_id = f"sidecar~127.0.0.5~hello-v1.{namespace}~{namespace}.svc.cluster.local"
    return discovery_pb2.DiscoveryRequest(
        node=base_pb2.Node(id=node_id, metadata=metadata), type_url=types.CLUSTER
    )


def mtls_address(pilot: Pilot) -> str:
    assert pilot.mtls_address is not None
    return pilot.mtls_address


async def test_matching_certificate_gets_clusters(pilot: Pilot, ca: CertificateAuthority) -> None:
    client = Client(mtls_address(pilot), workload_credentials(ca, HELLO))
    client.send(hello_request())
    response = await client.receive()
    assert response.type_url == types.CLUSTER and response.resources
    await client.close()


@pytest.mark.parametrize(
    ("namespace", "account"), [("other", "hello"), ("default", "other")], ids=["ns", "sa"]
)
async def test_certificate_of_another_identity_is_denied(
    pilot: Pilot, ca: CertificateAuthority, namespace: str, account: str, caplog
) -> None:
    caplog.set_level(logging.WARNING)
    client = Client(mtls_address(pilot), workload_credentials(ca, HELLO))
    client.send(hello_request(namespace, account))
    error = await client.failure()
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert HELLO.uri in error.details()
    assert f"namespace {namespace!r}, service account {account!r}" in error.details()
    assert "PERMISSION_DENIED" in caplog.text
    await client.close()


async def test_client_without_certificate_fails_the_handshake(
    pilot: Pilot, ca: CertificateAuthority
) -> None:
    client = Client(mtls_address(pilot), grpc.ssl_channel_credentials(ca.root_pem))
    client.send(hello_request())
    error = await client.failure()
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    await client.close()


async def test_plaintext_port_still_serves(pilot: Pilot) -> None:
    client = Client(pilot.address)
    client.send(hello_request("other", "other"))
    response = await client.receive()
    assert response.type_url == types.CLUSTER and response.resources
    await client.close()


async def test_envoy_gets_its_config_over_mtls(
    pilot: Pilot, ca: CertificateAuthority, tmp_path: Path
) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    key = new_key()
    (certs / "key.pem").write_bytes(private_pem(key))
    (certs / "cert-chain.pem").write_bytes(b"".join(ca.sign(make_csr(key, HELLO.uri), HELLO)))
    (certs / "root-cert.pem").write_bytes(ca.root_pem)
    ip = f"{pilot.options.host.rsplit('.', 1)[0]}.5"
    spec = ProxySpec(
        ip=ip,
        pod="hello-v1",
        namespace="default",
        pilot=mtls_address(pilot),
        service_account="hello",
    )
    bootstrap = build_bootstrap(spec)
    tls = {
        "common_tls_context": {
            "tls_certificates": [
                {
                    "certificate_chain": {"filename": str(certs / "cert-chain.pem")},
                    "private_key": {"filename": str(certs / "key.pem")},
                }
            ],
            "validation_context": {"trusted_ca": {"filename": str(certs / "root-cert.pem")}},
        },
        "sni": CONTROL_PLANE_HOST,
    }
    for cluster in bootstrap["static_resources"]["clusters"]:
        if cluster["name"] == XDS_CLUSTER:
            cluster["transport_socket"] = {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                    "UpstreamTlsContext",
                    **tls,
                },
            }

    async def cds_updates(session: aiohttp.ClientSession) -> int | None:
        params = {"filter": "cluster_manager.cds.update_success", "format": "json"}
        async with session.get(f"{spec.admin_url}/stats", params=params) as response:
            stats = (await response.json(content_type=None)).get("stats", [])
        return next((s["value"] for s in stats if s.get("value")), None)

    async with (
        EnvoyProcess(bootstrap, spec.admin_url, tmp_path / "envoy", ENVOY_OPTIONS),
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session,
    ):
        await eventually(lambda: cds_updates(session), "Envoy's first CDS update over mTLS")
        streams = [s for s in pilot.xds.streams.values() if s.node_id == spec.node_id]
        assert [s.peer_identities for s in streams] == [(HELLO.uri,)]


def test_mtls_port_needs_tls_material(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="certificate chain"):
        Pilot(PilotOptions(config_dir=tmp_path, mtls_port=0))
