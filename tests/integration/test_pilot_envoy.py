"""Pilot configuring real Envoy sidecars over ADS, state of the world and delta.

Every test runs twice (the `xds_api` fixture): once with Envoy bootstrapped for GRPC, once for
DELTA_GRPC. Assertions are on what Envoy does: traffic, its /config_dump and its /stats.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections import Counter

import pytest

from tests.integration.mesh import Mesh, eventually, service_entry, workload_entry

pytestmark = pytest.mark.envoy

HELLO = "http://hello.default.svc.cluster.local:8080/"
HELLO_CLUSTER = "outbound|8080||hello.default.svc.cluster.local"
EXTRA_CLUSTER = "outbound|9090||extra.default.svc.cluster.local"


async def hello_mesh(mesh: Mesh) -> tuple[str, str]:
    """hello-v1 behind a sidecar, a client sidecar; returns their addresses."""
    hello_ip, client_ip = mesh.next_ip(), mesh.next_ip()
    mesh.write(
        "hello",
        service_entry("hello", 8080),
        workload_entry("hello-v1", hello_ip, "hello"),
        workload_entry("client", client_ip, "client"),
    )
    await mesh.start_pilot()
    await mesh.add_sidecar("hello-v1", hello_ip, app_port=8080, labels={"app": "hello"})
    await mesh.add_sidecar("client", client_ip)
    await mesh.synced({"hello-v1", "client"})
    return hello_ip, client_ip


async def answered_by(mesh: Mesh, expected: set[str], attempts: int = 200) -> Counter[str]:
    """Send requests through the client sidecar until every expected workload answered."""
    client = mesh.sidecars["client"]
    seen: Counter[str] = Counter()
    for _ in range(attempts):
        status, body = await mesh.get_via(client, HELLO)
        if status == 200:
            seen[json.loads(body.splitlines()[1])["workload"]] += 1
        if expected <= seen.keys():
            return seen
        await asyncio.sleep(0.02)
    raise AssertionError(f"never reached {sorted(expected)}; saw {dict(seen)}")


async def test_envoy_acks_every_type_and_proxies_traffic(mesh: Mesh) -> None:
    await hello_mesh(mesh)
    client = mesh.sidecars["client"]
    status, body = await mesh.get_via(client, HELLO)
    assert status == 200 and body.startswith("hello from hello-v1")

    dump = await mesh.admin_json(client, "/config_dump")
    clusters = next(c for c in dump["configs"] if c["@type"].endswith("ClustersConfigDump"))
    names = {c["cluster"]["name"] for c in clusters["dynamic_active_clusters"]}
    assert {HELLO_CLUSTER, "BlackHoleCluster", "PassthroughCluster"} <= names
    listeners = next(c for c in dump["configs"] if c["@type"].endswith("ListenersConfigDump"))
    listener_names = {entry["name"] for entry in listeners["dynamic_listeners"]}
    assert {"virtualOutbound", "virtualInbound", "0.0.0.0_8080", f"{client.ip}_15080"} <= (
        listener_names
    )
    # Envoy holds exactly the versions pilot reports as acknowledged.
    [entry] = [e for e in await mesh.syncz() if e["proxy"] == "client.default"]
    assert clusters["version_info"] == entry["cds"]["acked_version"]

    hello = mesh.sidecars["hello-v1"]
    inbound = await mesh.stats(hello, r"^cluster\.inbound\|8080\|\|\.upstream_rq_completed$")
    assert inbound["cluster.inbound|8080||.upstream_rq_completed"] >= 1


async def test_endpoints_follow_the_registry_without_restarting_envoy(mesh: Mesh) -> None:
    hello_ip, client_ip = await hello_mesh(mesh)
    client = mesh.sidecars["client"]
    pid = client.envoy.pid
    cds_before = await mesh.stats(client, r"^cluster_manager\.cds\.update_success$")

    v2_ip = mesh.next_ip()
    await mesh.add_sidecar("hello-v2", v2_ip, app_port=8080, labels={"app": "hello"})
    mesh.write(
        "hello",
        service_entry("hello", 8080),
        workload_entry("hello-v1", hello_ip, "hello"),
        workload_entry("hello-v2", v2_ip, "hello"),
        workload_entry("client", client_ip, "client"),
    )
    await answered_by(mesh, {"hello-v1", "hello-v2"})

    mesh.write(
        "hello",
        service_entry("hello", 8080),
        workload_entry("hello-v2", v2_ip, "hello"),
        workload_entry("client", client_ip, "client"),
    )

    async def only_v2() -> bool | None:
        seen = Counter()
        for _ in range(10):
            status, body = await mesh.get_via(client, HELLO)
            seen[json.loads(body.splitlines()[1])["workload"] if status == 200 else status] += 1
        return True if set(seen) == {"hello-v2"} else None

    await eventually(only_v2, "all traffic on hello-v2")
    assert client.envoy.pid == pid and client.envoy.restarts == 0
    # Only endpoints moved: the client saw EDS updates but not a single new CDS update.
    assert await mesh.stats(client, r"^cluster_manager\.cds\.update_success$") == cds_before


async def test_a_service_added_sends_envoy_only_its_endpoints(mesh: Mesh) -> None:
    """Envoy names the new cluster's endpoints along with all it holds; it is sent those
    endpoints alone (EDS need not carry the whole set), and keeps every other cluster's."""
    await hello_mesh(mesh)
    client = mesh.sidecars["client"]
    await answered_by(mesh, {"hello-v1"})
    hello_updates = rf"^cluster\.{re.escape(HELLO_CLUSTER)}\.update_success$"
    before = await mesh.stats(client, hello_updates)
    assert list(before.values()) and all(before.values())

    mesh.write(
        "extra", service_entry("extra", 9090), workload_entry("extra-1", mesh.next_ip(), "extra")
    )
    extra_members = rf"^cluster\.{re.escape(EXTRA_CLUSTER)}\.membership_total$"

    async def extra_has_its_endpoint() -> bool | None:
        return True if list((await mesh.stats(client, extra_members)).values()) == [1] else None

    await eventually(extra_has_its_endpoint, f"{EXTRA_CLUSTER} with one endpoint")
    assert await mesh.stats(client, hello_updates) == before
    await answered_by(mesh, {"hello-v1"})


async def test_rejected_config_is_reported_and_the_last_good_one_keeps_serving(
    mesh: Mesh,
) -> None:
    hello_ip, client_ip = await hello_mesh(mesh)
    client = mesh.sidecars["client"]
    # Something else already owns a port on the hello workload's address: a listener there
    # cannot bind, so Envoy rejects the LDS update that asks for it.
    squatter = socket.socket()
    squatter.bind((hello_ip, 9999))
    squatter.listen()
    try:
        mesh.write(
            "hello",
            service_entry("hello", 8080, 9999),
            workload_entry("hello-v1", hello_ip, "hello"),
            workload_entry("client", client_ip, "client"),
        )

        async def nacked() -> dict | None:
            entries = {e["proxy"]: e for e in await mesh.syncz()}
            lds = entries.get("hello-v1.default", {}).get("lds", {})
            return lds if lds.get("state") == "NACK" else None

        lds = await eventually(nacked, "hello-v1 to NACK LDS")
        assert "9999" in lds["nack_error"]
        metrics = await mesh.pilot_metrics()
        assert 'pilot_total_xds_rejects_total{type="lds"}' in metrics
        rejected = await mesh.stats(
            mesh.sidecars["hello-v1"], r"^listener_manager\.lds\.update_rejected$"
        )
        assert rejected["listener_manager.lds.update_rejected"] >= 1
        # The last good configuration still carries traffic.
        status, body = await mesh.get_via(client, HELLO)
        assert status == 200 and body.startswith("hello from hello-v1")
    finally:
        squatter.close()

    mesh.write(
        "hello",
        service_entry("hello", 8080),
        workload_entry("hello-v1", hello_ip, "hello"),
        workload_entry("client", client_ip, "client"),
    )
    entries = await mesh.synced({"hello-v1", "client"})
    assert entries["hello-v1"]["lds"]["nack_error"] == ""


async def test_traffic_survives_a_pilot_restart_and_envoy_resyncs(mesh: Mesh) -> None:
    await hello_mesh(mesh)
    client = mesh.sidecars["client"]
    failures: list[str] = []
    done = asyncio.Event()

    async def load() -> int:
        sent = 0
        for _ in range(2000):  # bounded: ~20 s at most
            if done.is_set():
                break
            try:
                status, _ = await mesh.get_via(client, HELLO)
                if status != 200:
                    failures.append(f"status {status}")
            except Exception as error:
                failures.append(repr(error))
            sent += 1
            await asyncio.sleep(0.01)
        return sent

    traffic = asyncio.create_task(load())
    await asyncio.sleep(0.3)
    await mesh.stop_pilot()
    await asyncio.sleep(1.5)  # Envoy serves on its own while pilot is gone
    await mesh.start_pilot()
    await mesh.synced({"hello-v1", "client"})
    await asyncio.sleep(0.3)
    done.set()
    sent = await traffic
    assert sent > 50
    assert failures == []
    connected = await mesh.stats(client, r"^control_plane\.connected_state$")
    assert connected["control_plane.connected_state"] == 1
