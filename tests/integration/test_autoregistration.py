"""WorkloadGroup auto-registration through real Envoys.

A backend sidecar announces `AUTO_REGISTER_GROUP: hello` and nothing else: no WorkloadEntry is
written for it. Pilot registers it from the group, the ServiceEntry selecting `app: hello` picks
it up, and the client's Envoy gets its endpoint over EDS; once the backend is gone and its grace
period has passed, the endpoint leaves the client's EDS. A proxy naming a group that does not
exist is served as usual, with a warning.
"""

from __future__ import annotations

import json
import logging
import textwrap
from typing import Any

import pytest

from agent.bootstrap import ProxySpec
from localmesh.demo_app import DemoApp
from tests.integration.mesh import Mesh, Sidecar, eventually, service_entry

pytestmark = pytest.mark.envoy

HELLO = "http://hello.default.svc.cluster.local:8080/"
HELLO_CLUSTER = "outbound|8080||hello.default.svc.cluster.local"
GRACE_PERIOD = 2.0

WORKLOAD_GROUP = textwrap.dedent(
    """\
    apiVersion: networking.istio.io/v1
    kind: WorkloadGroup
    metadata: {name: hello, namespace: default}
    spec:
      template:
        labels: {app: hello}
        serviceAccount: hello
    """
)


async def add_member(
    mesh: Mesh, name: str, ip: str, group: str, app_port: int | None = None
) -> Sidecar:
    """A sidecar whose bootstrap asks pilot to register it in `group` (no other labels)."""
    app_address = f"{mesh.block}.{int(ip.rsplit('.', 1)[1]) + 100}"
    spec = ProxySpec(
        ip=ip,
        pod=name,
        namespace="default",
        pilot=f"{mesh.pilot_ip}:15010",
        xds_api=mesh.xds_api,
        http_proxy_port=15080,
        app_address=app_address,
        auto_register_group=group,
    )
    app = None
    if app_port is not None:
        app = DemoApp(name, app_address, app_port)
        await app.start()
    return await mesh.start_proxy(name, spec, app=app)


async def registryz(mesh: Mesh) -> dict[str, Any]:
    assert mesh.pilot is not None
    url = f"http://{mesh.pilot_ip}:{mesh.pilot.monitoring.port}/debug/registryz"
    async with mesh.http().get(url) as response:
        result: dict[str, Any] = await response.json()
        return result


async def hello_hosts(mesh: Mesh, sidecar: Sidecar) -> list[str] | None:
    """The addresses in the client Envoy's hello cluster (/clusters); None before it exists."""
    return (await mesh.cluster_hosts(sidecar)).get(HELLO_CLUSTER)


async def test_group_member_is_registered_served_and_removed_after_the_grace_period(
    mesh: Mesh, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "pilot.registry.autoregister")
    mesh.write("hello", service_entry("hello", 8080), WORKLOAD_GROUP)
    await mesh.start_pilot(workload_entry_grace_period=GRACE_PERIOD)

    # A proxy naming a group that does not exist is served as usual, with a warning.
    client = await add_member(mesh, "client", mesh.next_ip(), group="missing")
    await mesh.synced({"client"})
    assert await hello_hosts(mesh, client) == []

    async def warned() -> bool | None:
        return (
            any("WorkloadGroup default/missing" in r.getMessage() for r in caplog.records) or None
        )

    await eventually(warned, "a warning naming the missing group")

    backend_ip = mesh.next_ip()
    await add_member(mesh, "hello-vm", backend_ip, group="hello", app_port=8080)

    async def answered() -> str | None:
        status, body = await mesh.get_via(client, HELLO)
        return body if status == 200 else None

    body = await eventually(answered, "the client reaching the auto-registered backend")
    assert json.loads(body.splitlines()[1])["workload"] == "hello-vm"
    assert await hello_hosts(mesh, client) == [backend_ip]

    page = await registryz(mesh)
    [member] = [w for w in page["workloads"] if w["origin"] == "auto-registered"]
    assert member["name"] == f"hello-{backend_ip}"
    assert (member["address"], member["service_account"]) == (backend_ip, "hello")
    assert member["labels"] == {"app": "hello"}
    assert member["registration"]["disconnected_at"] is None
    missing = [r for r in page["registrations"] if r["group"] == "missing"]
    assert "does not exist" in missing[0]["problem"]

    await mesh.remove_sidecar("hello-vm")

    async def disconnected() -> dict[str, Any] | None:
        entries = {w["name"]: w for w in (await registryz(mesh))["workloads"]}
        entry = entries.get(f"hello-{backend_ip}")
        assert entry is not None, "the entry went before its grace period"
        return entry if entry["registration"]["disconnected_at"] is not None else None

    await eventually(disconnected, "the backend's entry to be marked disconnected")

    async def endpoint_gone() -> bool | None:
        return await hello_hosts(mesh, client) == [] or None

    await eventually(endpoint_gone, "the endpoint to leave the client's EDS after the grace period")
    page = await registryz(mesh)
    assert not [w for w in page["workloads"] if w["origin"] == "auto-registered"]
