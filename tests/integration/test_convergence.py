"""Many real Envoys at once: one change reaches every one of them."""

from __future__ import annotations

import asyncio

import pytest

from agent.bootstrap import XdsApi
from tests.integration.mesh import Mesh, eventually, service_entry, workload_entry

pytestmark = pytest.mark.envoy

PROXIES = 20


@pytest.fixture
def xds_api() -> XdsApi:
    return XdsApi.GRPC  # this test mixes both APIs itself


async def test_twenty_envoys_converge_after_one_change(mesh: Mesh) -> None:
    ips = [mesh.next_ip() for _ in range(PROXIES)]
    names = [f"client-{i}" for i in range(PROXIES)]
    workloads = [workload_entry(n, ip, "client") for n, ip in zip(names, ips, strict=True)]
    mesh.write("clients", *workloads)
    mesh.write("hello", service_entry("hello", 8080))
    await mesh.start_pilot()
    await asyncio.gather(
        *(
            mesh.add_sidecar(name, ip, xds_api=XdsApi.DELTA_GRPC if i % 2 else XdsApi.GRPC)
            for i, (name, ip) in enumerate(zip(names, ips, strict=True))
        )
    )
    before = await mesh.synced(set(names))
    old_versions = {before[n]["cds"]["acked_version"] for n in names}

    mesh.write("extra", service_entry("extra", 9090))
    wanted = "outbound|9090||extra.default.svc.cluster.local"

    async def all_have_it() -> bool | None:
        for sidecar in mesh.sidecars.values():
            dump = await mesh.admin_json(sidecar, "/config_dump?resource=dynamic_active_clusters")
            active = {c["cluster"]["name"] for c in dump["configs"]}
            if wanted not in active:
                return None
        return True

    await eventually(all_have_it, f"{wanted} in all {PROXIES} Envoys", attempts=300)
    after = await mesh.synced(set(names))
    new_versions = {after[n]["cds"]["acked_version"] for n in names}
    assert new_versions.isdisjoint(old_versions)
    # The clients back no service, so they share one view and one generated cluster set.
    assert len(new_versions) == 1
    metrics = await mesh.pilot_metrics()
    assert "pilot_proxy_convergence_time_count" in metrics
    assert f"pilot_xds {float(PROXIES)}" in metrics
