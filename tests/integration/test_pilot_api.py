"""Pilot's gRPC and HTTP surfaces without Envoy: refusals, config rejection, debug endpoints."""

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

from meshcore.xds import types
from pilot.server import Pilot, PilotOptions
from tests.integration.mesh import allocate_block, service_entry, workload_entry
from tests.support.xds_client import Client, until


@pytest.fixture
async def pilot(tmp_path: Path) -> AsyncIterator[Pilot]:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "hello.yaml").write_text(
        service_entry("hello", 8080) + "---\n" + workload_entry("hello-v1", "127.0.0.5", "hello")
    )
    options = PilotOptions(
        config_dir=tmp_path / "config", host=f"{allocate_block()}.1", debounce=0.02
    )
    async with Pilot(options) as running:
        yield running


def first_request(node_id: str, namespace: str | None = None) -> discovery_pb2.DiscoveryRequest:
    metadata = struct_pb2.Struct()
    if namespace is not None:
        metadata.update({"NAMESPACE": namespace})
    return discovery_pb2.DiscoveryRequest(
        node=base_pb2.Node(id=node_id, metadata=metadata), type_url=types.CLUSTER
    )


async def get(pilot: Pilot, path: str) -> tuple[int, object]:
    url = f"http://{pilot.options.host}:{pilot.monitoring.port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        body = await response.text()
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, body


@pytest.mark.parametrize(
    ("node_id", "namespace", "expected"),
    [
        ("not-a-node-id", None, "not-a-node-id"),
        ("sidecar~127.0.0.9~web.default", None, "not-a-node-id"),
        ("gateway~127.0.0.9~web.default~default.svc.cluster.local", None, "gateway"),
        ("sidecar~not-an-ip~web.default~default.svc.cluster.local", None, "not-an-ip"),
        ("sidecar~127.0.0.9~web.default~default.svc.cluster.local", "other", "other"),
    ],
)
async def test_malformed_nodes_are_refused_with_the_reason(
    pilot: Pilot, node_id: str, namespace: str | None, expected: str, caplog
) -> None:
    caplog.set_level(logging.WARNING)
    client = Client(pilot.address)
    client.send(first_request(node_id, namespace))
    error = await client.failure()
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    if expected != "not-a-node-id":
        assert expected in error.details()
    assert error.details()  # never a bare status
    assert "rejected" in caplog.text
    await client.close()
    # The server carries on: a good node is still served.
    good = Client(pilot.address)
    good.send(first_request("sidecar~127.0.0.5~hello-v1.default~default.svc.cluster.local"))
    response = await good.receive()
    assert response.type_url == types.CLUSTER and response.resources
    await good.close()


async def test_invalid_config_is_rejected_and_the_last_good_one_stays(pilot: Pilot, caplog) -> None:
    node = "sidecar~127.0.0.5~hello-v1.default~default.svc.cluster.local"
    client = Client(pilot.address)
    client.send(first_request(node))
    first = await client.receive()
    client.send(
        discovery_pb2.DiscoveryRequest(
            type_url=types.CLUSTER, response_nonce=first.nonce, version_info=first.version_info
        )
    )
    bad = pilot.options.config_dir / "broken.yaml"
    bad.write_text(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        "metadata: {name: broken}\n"
        "spec: {hosts: [x.example.com], ports: [{number: 99999, name: http}]}\n"
    )
    await until(lambda: bool(pilot.config_error))
    assert "broken.yaml" in pilot.config_error
    assert "spec.ports[0].number" in pilot.config_error
    assert "keeping the last good config" in caplog.text
    status, dump = await get(pilot, "/debug/config_dump?proxyID=hello-v1.default")
    assert status == 200
    clusters = dump["configs"][0]  # type: ignore[index]
    assert clusters["versionInfo"] == first.version_info
    await client.close()


async def test_config_dump_and_syncz_describe_a_connected_proxy(pilot: Pilot) -> None:
    client = Client(pilot.address)
    client.send(first_request("sidecar~127.0.0.5~hello-v1.default~default.svc.cluster.local"))
    response = await client.receive()
    status, dump = await get(pilot, "/debug/config_dump?proxyID=hello-v1.default")
    assert status == 200
    cluster_names = {
        c["cluster"]["name"]
        for c in dump["configs"][0]["dynamicActiveClusters"]  # type: ignore[index]
    }
    assert "outbound|8080||hello.default.svc.cluster.local" in cluster_names
    assert "inbound|8080||" in cluster_names
    status, syncz = await get(pilot, "/debug/syncz")
    [entry] = syncz  # type: ignore[misc]
    assert entry["proxy"] == "hello-v1.default"
    assert entry["cds"]["state"] == "STALE"  # sent, not yet acknowledged
    assert entry["cds"]["sent_nonce"] == response.nonce
    missing, _ = await get(pilot, "/debug/config_dump?proxyID=nobody.default")
    assert missing == 404
    assert (await get(pilot, "/ready"))[0] == 200
    await client.close()
