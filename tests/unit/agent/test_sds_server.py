"""The SDS server over its Unix socket: both secrets on a delta stream, and pushed rotation.

The integration test drives it with Envoy's state-of-the-world SDS; this one covers the
incremental protocol and what the server does with its socket file.
"""

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

from agent.sds import SdsServer, WorkloadCertificate
from meshcore.xds import types

FIRST = WorkloadCertificate(b"chain-1", b"key-1", b"roots-1")
SECOND = WorkloadCertificate(b"chain-2", b"key-2", b"roots-2")


def secrets_in(response: discovery_pb2.DeltaDiscoveryResponse) -> dict[str, secret_pb2.Secret]:
    found = {}
    for resource in response.resources:
        secret = secret_pb2.Secret()
        assert resource.resource.Unpack(secret)
        found[resource.name] = secret
    return found


async def test_delta_stream_gets_both_secrets_and_the_rotation(tmp_path: Path) -> None:
    path = tmp_path / "sds.sock"
    sds = SdsServer(path)
    sds.update(FIRST)
    requests: asyncio.Queue[discovery_pb2.DeltaDiscoveryRequest] = asyncio.Queue()

    async def outgoing() -> AsyncIterator[discovery_pb2.DeltaDiscoveryRequest]:
        for _ in range(2):
            yield await requests.get()

    async with sds, grpc.aio.insecure_channel(f"unix:{path}") as channel:
        call = sds_pb2_grpc.SecretDiscoveryServiceStub(channel).DeltaSecrets(outgoing())
        requests.put_nowait(
            discovery_pb2.DeltaDiscoveryRequest(
                node=base_pb2.Node(id="sidecar~127.0.0.1~p.n~n.svc.cluster.local"),
                type_url=types.SECRET,
                resource_names_subscribe=["default", "ROOTCA"],
            )
        )
        first = await asyncio.wait_for(call.read(), 5)
        secrets = secrets_in(first)
        assert secrets["default"].tls_certificate.certificate_chain.inline_bytes == b"chain-1"
        assert secrets["default"].tls_certificate.private_key.inline_bytes == b"key-1"
        assert secrets["ROOTCA"].validation_context.trusted_ca.inline_bytes == b"roots-1"
        requests.put_nowait(
            discovery_pb2.DeltaDiscoveryRequest(type_url=types.SECRET, response_nonce=first.nonce)
        )

        sds.update(SECOND)
        pushed = secrets_in(await asyncio.wait_for(call.read(), 5))
        assert pushed["default"].tls_certificate.certificate_chain.inline_bytes == b"chain-2"
        assert pushed["ROOTCA"].validation_context.trusted_ca.inline_bytes == b"roots-2"
        call.cancel()
    assert not path.exists()


async def test_a_socket_left_by_an_earlier_agent_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "sds.sock"
    with socket.socket(socket.AF_UNIX) as leftover:
        leftover.bind(str(path))
    sds = SdsServer(path)
    sds.update(FIRST)
    async with sds, grpc.aio.insecure_channel(f"unix:{path}") as channel:
        await asyncio.wait_for(channel.channel_ready(), 5)
