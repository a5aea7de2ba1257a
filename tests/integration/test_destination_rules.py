"""DestinationRules on real Envoy: subset clusters, circuit breaking, outlier ejection.

Backends here are plain HTTP servers on their own loopback addresses (no sidecar in front):
the client's sidecar balances across them, so what is asserted is the client Envoy's doing,
read from its traffic, its /config_dump, /clusters and /stats. Each test runs over state of
the world and delta xDS (the `xds_api` fixture).
"""

from __future__ import annotations

import asyncio
import re
import textwrap
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from tests.integration.mesh import Mesh, Sidecar, eventually, service_entry

pytestmark = pytest.mark.envoy

PORT = 8080


def labelled_entry(name: str, address: str, labels: dict[str, str]) -> str:
    label_text = ", ".join(f"{key}: {value}" for key, value in labels.items())
    return textwrap.dedent(
        f"""\
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {{name: {name}, namespace: default}}
        spec: {{address: {address}, labels: {{{label_text}}}}}
        """
    )


def destination_rule(host: str, spec: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        f"metadata: {{name: {host}, namespace: default}}\n"
        f"spec:\n  host: {host}\n{textwrap.indent(textwrap.dedent(spec).strip(), '  ')}\n"
    )


def cluster(host: str, subset: str = "") -> str:
    return f"outbound|{PORT}|{subset}|{host}.default.svc.cluster.local"


def url(host: str) -> str:
    return f"http://{host}.default.svc.cluster.local:{PORT}/"


@asynccontextmanager
async def backend(
    address: str, status: int = 200, delay: float = 0.0
) -> AsyncIterator[web.AppRunner]:
    """An HTTP server on address:PORT answering every request with `status` (naming the
    address) after `delay` seconds."""

    async def answer(request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        return web.Response(status=status, text=address)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, address, PORT).start()
        yield runner
    finally:
        await runner.cleanup()


async def start_client(mesh: Mesh) -> Sidecar:
    await mesh.start_pilot()
    client = await mesh.add_sidecar("client", mesh.next_ip())
    await mesh.synced({"client"})
    return client


async def cluster_stat(mesh: Mesh, sidecar: Sidecar, name: str, stat: str) -> int:
    found = await mesh.stats(sidecar, f"^{re.escape(f'cluster.{name}.{stat}')}$")
    return found.get(f"cluster.{name}.{stat}", 0)


async def test_subset_clusters_hold_their_endpoints(mesh: Mesh) -> None:
    v1, v2a, v2b = mesh.next_ip(), mesh.next_ip(), mesh.next_ip()
    mesh.write(
        "hello",
        service_entry("hello", PORT),
        labelled_entry("hello-v1", v1, {"app": "hello", "version": "v1"}),
        labelled_entry("hello-v2a", v2a, {"app": "hello", "version": "v2"}),
        labelled_entry("hello-v2b", v2b, {"app": "hello", "version": "v2"}),
        destination_rule(
            "hello",
            """
            subsets:
            - {name: v1, labels: {version: v1}}
            - {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {simple: RANDOM}}}
            """,
        ),
    )
    client = await start_client(mesh)
    expected = {
        cluster("hello"): sorted([v1, v2a, v2b]),
        cluster("hello", "v1"): [v1],
        cluster("hello", "v2"): sorted([v2a, v2b]),
    }

    async def subsets_in_place() -> dict[str, list[str]] | None:
        hosts = await mesh.cluster_hosts(client)
        return hosts if all(hosts.get(n) == a for n, a in expected.items()) else None

    await eventually(subsets_in_place, "subset clusters with their endpoints in /clusters")
    dump = await mesh.admin_json(client, "/config_dump")
    clusters = next(c for c in dump["configs"] if c["@type"].endswith("ClustersConfigDump"))
    active = {c["cluster"]["name"]: c["cluster"] for c in clusters["dynamic_active_clusters"]}
    assert set(expected) <= set(active)
    assert active[cluster("hello", "v2")]["lb_policy"] == "RANDOM"
    assert active[cluster("hello", "v1")]["eds_cluster_config"]["service_name"] == cluster(
        "hello", "v1"
    )

    # A workload moving into a subset only moves endpoints (EDS), the subset follows.
    mesh.write(
        "hello",
        service_entry("hello", PORT),
        labelled_entry("hello-v1", v1, {"app": "hello", "version": "v1"}),
        labelled_entry("hello-v2a", v2a, {"app": "hello", "version": "v1"}),
        labelled_entry("hello-v2b", v2b, {"app": "hello", "version": "v2"}),
        destination_rule(
            "hello",
            """
            subsets:
            - {name: v1, labels: {version: v1}}
            - {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {simple: RANDOM}}}
            """,
        ),
    )
    expected[cluster("hello", "v1")] = sorted([v1, v2a])
    expected[cluster("hello", "v2")] = [v2b]
    await eventually(subsets_in_place, "the subsets to follow the relabelled workload")


async def test_connection_pool_limit_trips(mesh: Mesh) -> None:
    address = mesh.next_ip()
    mesh.write(
        "slow",
        service_entry("slow", PORT),
        labelled_entry("slow-v1", address, {"app": "slow"}),
        destination_rule(
            "slow",
            """
            trafficPolicy:
              connectionPool:
                tcp: {maxConnections: 1}
                http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
            """,
        ),
    )
    async with backend(address, delay=0.5):
        client = await start_client(mesh)
        name = cluster("slow")

        async def reachable() -> bool | None:
            status, _ = await mesh.get_via(client, url("slow"))
            return True if status == 200 else None

        await eventually(reachable, "the slow backend through the client sidecar", attempts=40)
        before = await cluster_stat(mesh, client, name, "upstream_rq_pending_overflow")
        results = await asyncio.gather(*(mesh.get_via(client, url("slow")) for _ in range(8)))
    statuses = Counter(status for status, _ in results)
    assert statuses[200] >= 1 and statuses[503] >= 1, statuses
    overflow = await cluster_stat(mesh, client, name, "upstream_rq_pending_overflow")
    assert overflow - before >= statuses[503]


async def test_outlier_detection_ejects_the_failing_host(mesh: Mesh) -> None:
    healthy, failing = mesh.next_ip(), mesh.next_ip()
    mesh.write(
        "flaky",
        service_entry("flaky", PORT),
        labelled_entry("flaky-good", healthy, {"app": "flaky"}),
        labelled_entry("flaky-bad", failing, {"app": "flaky"}),
        destination_rule(
            "flaky",
            """
            trafficPolicy:
              outlierDetection:
                consecutive5xxErrors: 1
                interval: 1s
                baseEjectionTime: 1m
                maxEjectionPercent: 100
            """,
        ),
    )
    async with backend(healthy), backend(failing, status=500):
        client = await start_client(mesh)
        name = cluster("flaky")

        async def both_known() -> bool | None:
            return True if len((await mesh.cluster_hosts(client)).get(name, [])) == 2 else None

        await eventually(both_known, "both flaky hosts in the client's cluster")
        seen: Counter[int] = Counter()
        for _ in range(50):  # bounded: until the failing host has answered once
            status, _ = await mesh.get_via(client, url("flaky"))
            seen[status] += 1
            if seen[500]:
                break
        assert seen[500] == 1, seen

        async def ejected() -> bool | None:
            count = await cluster_stat(mesh, client, name, "outlier_detection.ejections_active")
            return True if count == 1 else None

        # Envoy ejects on its main thread, just after the answer went out.
        await eventually(ejected, "the failing host ejected")
        after = [await mesh.get_via(client, url("flaky")) for _ in range(20)]
    assert {status for status, _ in after} == {200}
    assert {body for _, body in after} == {healthy}
    assert await cluster_stat(mesh, client, name, "outlier_detection.ejections_active") == 1
