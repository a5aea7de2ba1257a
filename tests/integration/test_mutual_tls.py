"""Mutual TLS in the data plane, observed through real Envoys with certificates from citadel.

Every sidecar here gets its workload certificate from a real citadel through its agent's SDS
server. The backend echoes `x-forwarded-client-cert`, which its sidecar only sets for a
mutual TLS peer: seeing the client's SPIFFE ID there proves the hop was mTLS. Plaintext
clients are the test itself, connecting straight to the backend sidecar's inbound listener.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator

import aiohttp
import pytest

from agent.bootstrap import XdsApi
from tests.integration.mesh import Mesh, Sidecar, eventually, service_entry
from tests.support.shared import BOOKINFO_NETWORKING

pytestmark = pytest.mark.envoy

HELLO = "http://hello.default.svc.cluster.local:8080/"
CLIENT_ID = "spiffe://cluster.local/ns/default/sa/client"


@pytest.fixture
def xds_api() -> XdsApi:
    return XdsApi.GRPC  # the protocol is covered elsewhere; this file is about TLS


def sidecar_entry(name: str, address: str, app: str, tls_mode: str = "istio") -> str:
    """A WorkloadEntry labelled as injected Istio workloads are (`tlsMode: istio`)."""
    return textwrap.dedent(
        f"""\
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {{name: {name}, namespace: default}}
        spec:
          address: {address}
          labels: {{app: {app}, security.istio.io/tlsMode: {tls_mode}}}
          serviceAccount: {app}
        """
    )


def peer_authentication(mode: str, namespace: str = "default", extra: str = "") -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {{name: default, namespace: {namespace}}}
        spec:
          mtls: {{mode: {mode}}}
        """
    ) + textwrap.indent(extra, "  ")


@pytest.fixture
async def mtls_mesh(mesh: Mesh) -> AsyncIterator[Mesh]:
    """hello (certificates, app on 8080) and client (certificates), pilot and citadel."""
    hello_ip, client_ip, legacy_ip = mesh.next_ip(), mesh.next_ip(), mesh.next_ip()
    mesh.write(
        "registry",
        service_entry("hello", 8080),
        sidecar_entry("hello", hello_ip, "hello"),
        sidecar_entry("client", client_ip, "client"),
        sidecar_entry("legacy", legacy_ip, "legacy", tls_mode="disabled"),
    )
    await mesh.start_citadel()
    await mesh.start_pilot(mtls=True)  # sidecars with certificates use 15011
    await asyncio.gather(
        mesh.add_sidecar("hello", hello_ip, app_port=8080, certificates=True),
        mesh.add_sidecar("client", client_ip, certificates=True),
        mesh.add_sidecar("legacy", legacy_ip),  # no certificate: cannot do mTLS
    )
    await mesh.synced({"hello", "client", "legacy"})
    assert mesh.pilot is not None
    identities = {
        s.node_id.split("~")[2]: s.peer_identities for s in mesh.pilot.xds.streams.values()
    }
    assert identities == {
        "hello.default": ("spiffe://cluster.local/ns/default/sa/hello",),
        "client.default": (CLIENT_ID,),
        "legacy.default": None,  # plaintext 15010
    }
    yield mesh
    assert await mesh.nack_errors() == {}


async def answer(mesh: Mesh, sidecar: Sidecar) -> tuple[int, dict[str, str]]:
    """A request to hello through `sidecar`: the status and, for 200, the backend's echo."""
    status, body = await mesh.get_via(sidecar, HELLO)
    return status, json.loads(body.splitlines()[1]) if status == 200 else {}


async def plaintext(mesh: Mesh) -> int | None:
    """A plaintext request straight to hello's inbound listener; None if the connection is
    refused or reset (a STRICT port closes it)."""
    hello = mesh.sidecars["hello"]
    try:
        async with mesh.http().get(f"http://{hello.ip}:8080/") as response:
            return response.status
    except aiohttp.ClientError:
        return None


async def until(mesh: Mesh, what: str, check) -> None:  # type: ignore[no-untyped-def]
    async def probe() -> bool | None:
        return True if await check() else None

    await eventually(probe, what)


async def test_auto_mtls_carries_the_client_identity_and_permissive_accepts_plaintext(
    mtls_mesh: Mesh,
) -> None:
    client = mtls_mesh.sidecars["client"]

    async def client_identity_seen() -> bool:
        status, echo = await answer(mtls_mesh, client)
        return status == 200 and f"URI={CLIENT_ID}" in echo["x-forwarded-client-cert"]

    await until(mtls_mesh, "hello sees the client's SPIFFE ID", client_identity_seen)
    # The same port still takes plaintext (PERMISSIVE, the default), without an identity.
    assert await plaintext(mtls_mesh) == 200
    status, echo = await answer(mtls_mesh, mtls_mesh.sidecars["legacy"])
    assert (status, echo["x-forwarded-client-cert"]) == (200, "")
    handshakes = await mtls_mesh.stats(mtls_mesh.sidecars["hello"], r"ssl\.handshake$")
    assert sum(handshakes.values()) >= 1


async def test_strict_refuses_plaintext_and_keeps_mtls(mtls_mesh: Mesh) -> None:
    mtls_mesh.write("peer-authentication", peer_authentication("STRICT"))

    async def plaintext_refused() -> bool:
        return await plaintext(mtls_mesh) is None

    await until(mtls_mesh, "STRICT refusing plaintext", plaintext_refused)
    status, echo = await answer(mtls_mesh, mtls_mesh.sidecars["client"])
    assert status == 200 and f"URI={CLIENT_ID}" in echo["x-forwarded-client-cert"]
    # A sidecar without a certificate sends plaintext, which hello now refuses.
    status, _ = await answer(mtls_mesh, mtls_mesh.sidecars["legacy"])
    assert status == 503


async def test_port_level_disable_turns_auto_mtls_off(mtls_mesh: Mesh) -> None:
    mtls_mesh.write(
        "peer-authentication",
        peer_authentication("STRICT"),
        textwrap.dedent(
            """\
            apiVersion: security.istio.io/v1
            kind: PeerAuthentication
            metadata: {name: hello-8080, namespace: default}
            spec:
              selector: {matchLabels: {app: hello}}
              mtls: {mode: STRICT}
              portLevelMtls: {8080: {mode: DISABLE}}
            """
        ),
    )

    async def plaintext_only() -> bool:
        status, echo = await answer(mtls_mesh, mtls_mesh.sidecars["client"])
        return status == 200 and echo["x-forwarded-client-cert"] == ""

    # The client follows: its cluster no longer marks hello's endpoint as taking mTLS.
    await until(mtls_mesh, "client reaching hello in plaintext", plaintext_only)
    assert await plaintext(mtls_mesh) == 200


async def test_bookinfo_destination_rule_all_mtls(mtls_mesh: Mesh) -> None:
    """Istio's sample, as it is: ISTIO_MUTUAL to every bookinfo host. Applied to a mesh whose
    `hello` plays no part in it, it must leave auto mTLS working and be accepted by Envoy."""
    mtls_mesh.write(
        "bookinfo",
        service_entry("reviews", 9080),
        (BOOKINFO_NETWORKING / "destination-rule-all-mtls.yaml").read_text(),
    )
    client = mtls_mesh.sidecars["client"]

    async def reviews_cluster_mtls() -> bool:
        dump = await mtls_mesh.admin_json(client, "/config_dump?resource=dynamic_active_clusters")
        for entry in dump["configs"]:
            cluster = entry["cluster"]
            if cluster["name"] == "outbound|9080|v1|reviews.default.svc.cluster.local":
                socket = cluster.get("transport_socket", {})
                context = socket.get("typed_config", {})
                return context.get("sni") == "outbound_.9080_.v1_.reviews.default.svc.cluster.local"
        return False

    await until(mtls_mesh, "reviews' subset cluster using ISTIO_MUTUAL", reviews_cluster_mtls)
    status, echo = await answer(mtls_mesh, client)
    assert status == 200 and f"URI={CLIENT_ID}" in echo["x-forwarded-client-cert"]
    await mtls_mesh.synced({"hello", "client", "legacy"})
