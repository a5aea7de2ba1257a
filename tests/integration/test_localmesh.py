"""`make up`'s job: the example mesh comes up and the printed command's request succeeds."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from agent.envoy_process import EnvoyOptions
from localmesh.mesh import LocalMesh, MeshAddresses, default_app_address, plan_pods
from tests.integration.mesh import allocate_block

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello"


def test_plan_gives_every_workload_a_pod_and_backends_their_ports() -> None:
    pods = {pod.name: pod for pod in plan_pods(EXAMPLE)}
    assert set(pods) == {"hello-v1", "client"}
    assert pods["hello-v1"].app_ports == (8080,)
    assert pods["hello-v1"].app_address == "127.11.0.2"
    assert pods["client"].app_ports == ()
    assert default_app_address("127.255.1.2") == "127.0.1.2"


@pytest.mark.envoy
async def test_the_example_mesh_answers_the_printed_command(tmp_path: Path) -> None:
    options = EnvoyOptions(drain_seconds=0.2, concurrency=1, log_level="warning")
    block = allocate_block()
    addresses = MeshAddresses(
        pilot=f"{block}.1",
        citadel=f"{block}.2",
        galley=f"{block}.3",
        gateway=f"{block}.4",
        mixer=f"{block}.5",
    )
    mesh = LocalMesh(EXAMPLE, tmp_path, addresses=addresses, envoy_options=options)
    async with mesh:
        assert await mesh.wait_ready() == []
        # The control plane's certificates outlive a day of running (they are not renewed).
        serving = x509.load_pem_x509_certificates(mesh.pilot.options.tls_cert_chain)[0]
        lifetime = serving.not_valid_after_utc - serving.not_valid_before_utc
        assert lifetime > datetime.timedelta(days=30)
        [command] = mesh.try_commands()
        match = re.fullmatch(r"curl -x (\S+) (\S+)", command)
        assert match is not None, command
        proxy, url = match.groups()
        async with aiohttp.ClientSession() as session, session.get(url, proxy=proxy) as response:
            assert response.status == 200
            body = await response.text()
        assert body.startswith("hello from hello-v1")
        # Sidecar to sidecar was mutual TLS: hello's sidecar saw the client's identity.
        assert "URI=spiffe://cluster.local/ns/default/sa/client" in body
