"""Sidecar resources through real Envoy sidecars: egress hosts scope what a client's Envoy
holds and reaches, and outboundTrafficPolicy REGISTRY_ONLY blocks unknown hosts.

Service `a` (namespace default) and `b` (namespace other) each run one workload behind a
sidecar; `client` sends requests through its sidecar as an HTTP proxy. The client's Sidecar
selects it by label and imports `./*`, so it sees `a` and not `b`. Every test runs for
state-of-the-world and delta xDS.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.mesh import Mesh, eventually, service_entry, workload_entry

pytestmark = pytest.mark.envoy

A = "http://a.default.svc.cluster.local:8080/"
B = "http://b.other.svc.cluster.local:8080/"
UNKNOWN = "http://unknown.example.com:8080/"
A_CLUSTER = "outbound|8080||a.default.svc.cluster.local"
B_CLUSTER = "outbound|8080||b.other.svc.cluster.local"


def _client_sidecar(policy: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\n"
        "metadata: {name: client, namespace: default}\n"
        "spec:\n"
        "  workloadSelector: {labels: {app: client}}\n"
        '  egress: [{hosts: ["./*"]}]\n'
        f"  outboundTrafficPolicy: {{mode: {policy}}}\n"
    )


async def _mesh_with(mesh: Mesh, policy: str) -> None:
    a_ip, b_ip, client_ip = mesh.next_ip(), mesh.next_ip(), mesh.next_ip()
    mesh.write(
        "mesh",
        service_entry("a", 8080),
        service_entry("b", 8080, namespace="other"),
        workload_entry("a-v1", a_ip, "a"),
        workload_entry("b-v1", b_ip, "b", namespace="other"),
        workload_entry("client", client_ip, "client"),
    )
    mesh.write("sidecar", _client_sidecar(policy))
    await mesh.start_pilot()
    await mesh.add_sidecar("a-v1", a_ip, app_port=8080, labels={"app": "a"})
    await mesh.add_sidecar("b-v1", b_ip, app_port=8080, labels={"app": "b"})
    await mesh.add_sidecar("client", client_ip)
    await mesh.synced({"a-v1", "b-v1", "client"})


async def _status(mesh: Mesh, url: str) -> int:
    status, _ = await mesh.get_via(mesh.sidecars["client"], url)
    return status


async def _dump(mesh: Mesh, name: str, resource: str) -> list[dict[str, Any]]:
    dump = await mesh.admin_json(mesh.sidecars[name], f"/config_dump?resource={resource}")
    configs: list[dict[str, Any]] = dump["configs"]
    return configs


async def _clusters(mesh: Mesh, name: str) -> set[str]:
    return {c["cluster"]["name"] for c in await _dump(mesh, name, "dynamic_active_clusters")}


async def _catch_alls(mesh: Mesh) -> tuple[str, str]:
    """(the last virtual host of the client's route config "8080", the cluster its
    virtualOutbound sends unknown destinations to)."""
    routes = await _dump(mesh, "client", "dynamic_route_configs")
    (config,) = [r["route_config"] for r in routes if r["route_config"]["name"] == "8080"]
    listeners = await _dump(mesh, "client", "dynamic_listeners")
    (outbound,) = [
        entry["active_state"]["listener"]
        for entry in listeners
        if entry["name"] == "virtualOutbound"
    ]
    catch_all = outbound["default_filter_chain"]["filters"][0]["typed_config"]["cluster"]
    return config["virtual_hosts"][-1]["name"], catch_all


async def test_egress_hosts_scope_what_the_client_holds_and_reaches(mesh: Mesh) -> None:
    await _mesh_with(mesh, "ALLOW_ANY")
    assert await _status(mesh, A) == 200
    assert await _status(mesh, B) == 404  # no route for b: the client does not know it
    clusters = await _clusters(mesh, "client")
    assert A_CLUSTER in clusters and B_CLUSTER not in clusters
    # The Sidecar selects the client only: a's sidecar still holds b.
    assert B_CLUSTER in await _clusters(mesh, "a-v1")
    # b serves anyone who knows it.
    status, body = await mesh.get_via(mesh.sidecars["a-v1"], B)
    assert status == 200 and body.startswith("hello from b-v1")


async def test_registry_only_blocks_what_allow_any_passes_through(mesh: Mesh) -> None:
    await _mesh_with(mesh, "ALLOW_ANY")
    assert await _catch_alls(mesh) == ("allow_any", "PassthroughCluster")
    # The explicit HTTP proxy has no original destination to pass to: nothing routes it.
    assert await _status(mesh, UNKNOWN) == 404

    mesh.write("sidecar", _client_sidecar("REGISTRY_ONLY"))

    async def blocked() -> int | None:
        status = await _status(mesh, UNKNOWN)
        return status if status != 404 else None

    assert await eventually(blocked, "REGISTRY_ONLY to reach the client") == 502
    assert await _status(mesh, B) == 502
    assert await _status(mesh, A) == 200
    assert await _catch_alls(mesh) == ("block_all", "BlackHoleCluster")
