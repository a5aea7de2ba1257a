"""VirtualService routing through real Envoy sidecars: traffic splits, header matches, fault
aborts, redirects and timeouts, asserted on traffic and on Envoy's /config_dump.

Services `a` and `b` (HTTP 8080) each run one workload behind a sidecar; `client` sends
requests through its sidecar as an HTTP proxy. Routes name no subsets (subset clusters are
DestinationRule territory). Every test runs for state-of-the-world and delta xDS.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from textwrap import dedent, indent
from typing import Any

import pytest
from aiohttp import web

from tests.integration.mesh import Mesh, service_entry, workload_entry

pytestmark = pytest.mark.envoy

A = "http://a.default.svc.cluster.local:8080"
SLOW_SECONDS = 2.0


def _virtual_service(spec: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: a, namespace: default}\nspec:\n" + indent(dedent(spec), "  ")
    )


async def _mesh_with(mesh: Mesh, spec: str, *, slow_b: bool = False) -> None:
    """a, b and client with their sidecars, and the VirtualService for host a, all synced."""
    a_ip, b_ip, client_ip = mesh.next_ip(), mesh.next_ip(), mesh.next_ip()
    mesh.write(
        "mesh",
        service_entry("a", 8080),
        service_entry("b", 8080),
        workload_entry("a-v1", a_ip, "a"),
        workload_entry("b-v1", b_ip, "b"),
        workload_entry("client", client_ip, "client"),
        _virtual_service(spec),
    )
    await mesh.start_pilot()
    await mesh.add_sidecar("a-v1", a_ip, app_port=8080, labels={"app": "a"})
    await mesh.add_sidecar("b-v1", b_ip, app_port=None if slow_b else 8080, labels={"app": "b"})
    await mesh.add_sidecar("client", client_ip)
    await mesh.synced({"a-v1", "b-v1", "client"})


async def _ask(
    mesh: Mesh, path: str = "/", headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """(status, answering workload or the body) for one request through the client sidecar."""
    client = mesh.sidecars["client"]
    async with mesh.http().get(
        A + path, proxy=client.http_proxy, headers=headers, allow_redirects=False
    ) as response:
        body = await response.text()
        if response.status == 200 and body.startswith("hello from"):
            return 200, json.loads(body.splitlines()[1])["workload"]
        return response.status, body


async def _route_config(mesh: Mesh, name: str) -> dict[str, Any]:
    """The route config `name` as the client's Envoy holds it."""
    dump = await mesh.admin_json(
        mesh.sidecars["client"], "/config_dump?resource=dynamic_route_configs"
    )
    for entry in dump["configs"]:
        if entry["route_config"]["name"] == name:
            config: dict[str, Any] = entry["route_config"]
            return config
    raise AssertionError(f"no route config {name!r} in {dump}")


async def _routes_of_a(mesh: Mesh) -> list[dict[str, Any]]:
    config = await _route_config(mesh, "http_proxy")
    (host,) = [
        vh for vh in config["virtual_hosts"] if vh["name"] == "a.default.svc.cluster.local:8080"
    ]
    routes: list[dict[str, Any]] = host["routes"]
    return routes


async def test_weighted_split_between_two_services(mesh: Mesh) -> None:
    await _mesh_with(
        mesh,
        """\
        hosts: [a]
        http:
        - route:
          - {destination: {host: a}, weight: 80}
          - {destination: {host: b}, weight: 20}
        """,
    )
    seen: Counter[str] = Counter()
    for _ in range(100):
        status, workload = await _ask(mesh)
        assert status == 200, workload
        seen[workload] += 1
    assert seen.keys() == {"a-v1", "b-v1"}
    assert seen["a-v1"] > seen["b-v1"]
    (route,) = await _routes_of_a(mesh)
    weights = {c["name"]: c["weight"] for c in route["route"]["weighted_clusters"]["clusters"]}
    assert weights == {
        "outbound|8080||a.default.svc.cluster.local": 80,
        "outbound|8080||b.default.svc.cluster.local": 20,
    }


async def test_header_match_routes_to_another_service(mesh: Mesh) -> None:
    await _mesh_with(
        mesh,
        """\
        hosts: [a]
        http:
        - name: to-b
          match: [{headers: {x-route-to: {exact: b}}}]
          route: [{destination: {host: b}}]
        - route: [{destination: {host: a}}]
        """,
    )
    assert await _ask(mesh, headers={"x-route-to": "b"}) == (200, "b-v1")
    assert await _ask(mesh, headers={"x-route-to": "c"}) == (200, "a-v1")
    assert await _ask(mesh) == (200, "a-v1")
    first, second = await _routes_of_a(mesh)
    assert first["name"] == "to-b"
    assert first["match"]["headers"] == [{"name": "x-route-to", "string_match": {"exact": "b"}}]
    assert second["route"]["cluster"] == "outbound|8080||a.default.svc.cluster.local"


async def test_fault_abort_answers_with_the_configured_status(mesh: Mesh) -> None:
    await _mesh_with(
        mesh,
        """\
        hosts: [a]
        http:
        - match: [{uri: {prefix: /broken}}]
          fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
          route: [{destination: {host: a}}]
        - route: [{destination: {host: a}}]
        """,
    )
    status, body = await _ask(mesh, "/broken/x")
    assert (status, body) == (418, "fault filter abort")
    assert await _ask(mesh, "/fine") == (200, "a-v1")
    aborted = await mesh.stats(mesh.sidecars["client"], r"fault\.aborts_injected$")
    assert sum(aborted.values()) == 1


async def test_redirect(mesh: Mesh) -> None:
    await _mesh_with(
        mesh,
        """\
        hosts: [a]
        http:
        - match: [{uri: {exact: /old}}]
          redirect:
            {uri: /new, authority: b.default.svc.cluster.local, port: 8080, redirectCode: 302}
        - route: [{destination: {host: a}}]
        """,
    )
    client = mesh.sidecars["client"]
    async with mesh.http().get(
        A + "/old", proxy=client.http_proxy, allow_redirects=False
    ) as response:
        assert response.status == 302
        assert response.headers["location"] == "http://b.default.svc.cluster.local:8080/new"
    assert await _ask(mesh, "/other") == (200, "a-v1")


@pytest.fixture
async def slow_backend(mesh: Mesh) -> AsyncIterator[None]:
    """An application for workload b (the second address of the block) that answers late."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(SLOW_SECONDS)
        return web.Response(text="late\n")

    app = web.Application()
    app.router.add_get("/{tail:.*}", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # Mesh.add_sidecar puts the application of workload .N on .N+100; b is .3.
    await web.TCPSite(runner, f"{mesh.block}.103", 8080).start()
    try:
        yield
    finally:
        await runner.cleanup()


@pytest.mark.usefixtures("slow_backend")
async def test_timeout_against_a_slow_backend(mesh: Mesh) -> None:
    await _mesh_with(
        mesh,
        """\
        hosts: [a]
        http:
        - match: [{uri: {prefix: /slow}}]
          timeout: 0.3s
          route: [{destination: {host: b}}]
        """,
        slow_b=True,
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, body = await _ask(mesh, "/slow")
    assert (status, body) == (504, "upstream request timeout")
    assert loop.time() - started < SLOW_SECONDS
    (route,) = await _routes_of_a(mesh)
    assert route["route"]["timeout"] == "0.300s"
    # Rules only for /slow: anything else finds no route, as in Istio.
    status, _ = await _ask(mesh, "/fast")
    assert status == 404
