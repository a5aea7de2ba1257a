"""AuthorizationPolicy enforced by real Envoy sidecars: RBAC decisions observed on traffic and
proven by the RBAC filters' own counters.

`hello` serves HTTP on 8080 (the demo app) and a TCP echo on 9000 (written here); `client-a`
and `client-b` call it through their sidecars. Every sidecar has a workload certificate from
citadel and hello's WorkloadEntry is labelled for auto mutual TLS, so hello's sidecar sees each
caller's SPIFFE ID, which principal rules match. The test itself also connects straight to
hello's inbound listeners in plaintext (PERMISSIVE takes it), from an address of its choosing:
a sidecar's own connections come from 127.0.0.1, the kernel's source for any loopback address,
so addresses are only told apart by binding them. Policies are written into pilot's config
directory; each test waits for the change to show in traffic, then checks that no proxy NACKed.
"""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from collections.abc import AsyncIterator

import aiohttp
import pytest
from yarl import URL

from agent.bootstrap import XdsApi
from tests.integration.mesh import Mesh, Sidecar, eventually

pytestmark = pytest.mark.envoy

HELLO = "http://hello.default.svc.cluster.local:8080"
HTTP_PORT, TCP_PORT = 8080, 9000
HTTP_STATS = rf"^http\.inbound_0\.0\.0\.0_{HTTP_PORT}\.rbac\."
TCP_STATS = r"^tcp\.rbac\."
SIDECARS = {"hello", "client-a", "client-b"}
# Longer than a TLS record header: the TLS inspector reads 5 bytes before calling it plaintext.
PING = b"ping, echo\n"


@pytest.fixture
def xds_api() -> XdsApi:
    return XdsApi.GRPC  # the xDS protocol is covered elsewhere; this file is about RBAC


def registry(hello_ip: str, clients: dict[str, str]) -> str:
    entries = [
        f"""\
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {{name: {name}, namespace: default}}
        spec:
          address: {ip}
          labels: {{app: {name}, security.istio.io/tlsMode: istio}}
          serviceAccount: {name}
        """
        for name, ip in {"hello": hello_ip, **clients}.items()
    ]
    service = f"""\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: hello, namespace: default}}
        spec:
          hosts: [hello.default.svc.cluster.local]
          location: MESH_INTERNAL
          resolution: STATIC
          ports:
          - {{number: {HTTP_PORT}, name: http, protocol: HTTP}}
          - {{number: {TCP_PORT}, name: tcp-echo, protocol: TCP}}
          workloadSelector: {{labels: {{app: hello}}}}
        """
    return "---\n".join(textwrap.dedent(document) for document in [service, *entries])


def authorization_policy(spec: str, name: str = "hello") -> str:
    return (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        f"metadata: {{name: {name}, namespace: default}}\n"
        "spec:\n  selector: {matchLabels: {app: hello}}\n"
        + textwrap.indent(textwrap.dedent(spec), "  ")
    )


class EchoServer:
    """A TCP backend that sends back what it receives; owns its server and connection tasks."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._echo, host, port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            self._handlers.discard(task)


@pytest.fixture
async def authz_mesh(mesh: Mesh) -> AsyncIterator[Mesh]:
    hello_ip = mesh.next_ip()
    clients = {"client-a": mesh.next_ip(), "client-b": mesh.next_ip()}
    mesh.write("registry", registry(hello_ip, clients))
    await mesh.start_citadel()
    await mesh.start_pilot()
    await asyncio.gather(
        mesh.add_sidecar("hello", hello_ip, app_port=HTTP_PORT, certificates=True),
        *(mesh.add_sidecar(name, ip, certificates=True) for name, ip in clients.items()),
    )
    echo = EchoServer()
    app_ip = f"{mesh.block}.{int(hello_ip.rsplit('.', 1)[1]) + 100}"  # as the harness places apps
    await echo.start(app_ip, TCP_PORT)
    await mesh.synced(SIDECARS)
    yield mesh
    await echo.stop()


async def status(
    mesh: Mesh,
    caller: str,
    *,
    method: str = "GET",
    path: str = "/",
    headers: dict[str, str] | None = None,
) -> int:
    """The status of one request to hello through the caller's sidecar; a 403 must be RBAC's."""
    sidecar = mesh.sidecars[caller]
    url = URL(HELLO + path, encoded=True)  # sent as written: `..` and `//` reach Envoy
    async with mesh.http().request(
        method, url, proxy=sidecar.http_proxy, headers=headers
    ) as response:
        body = await response.text()
    if response.status == 403:
        assert body == "RBAC: access denied"
    return response.status


async def direct_status(mesh: Mesh, source_ip: str) -> int:
    """The status of a plaintext request straight to hello's inbound listener from `source_ip`."""
    hello = mesh.sidecars["hello"]
    connector = aiohttp.TCPConnector(local_addr=(source_ip, 0))
    async with (
        aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=3)
        ) as session,
        session.get(f"http://{hello.ip}:{HTTP_PORT}/") as response,
    ):
        return response.status


async def echoed(mesh: Mesh) -> bytes:
    """What hello's TCP port sends back for PING: the echo, or b"" once RBAC closes it."""
    reader, writer = await asyncio.open_connection(mesh.sidecars["hello"].ip, TCP_PORT)
    try:
        writer.write(PING)
        await writer.drain()
        return await asyncio.wait_for(reader.read(100), 3)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def until_status(mesh: Mesh, caller: str, expected: int, **request: str) -> None:
    async def probe() -> bool | None:
        return True if await status(mesh, caller, **request) == expected else None

    await eventually(probe, f"{caller} {request or ''} getting {expected}")


async def counters(mesh: Mesh, sidecar: Sidecar, pattern: str) -> dict[str, int]:
    """RBAC counters by their last name part: allowed, denied, logged, ..."""
    found = await mesh.stats(sidecar, pattern)
    return {name.rsplit(".", 1)[1]: value for name, value in found.items()}


async def http_rbac_actions(mesh: Mesh, sidecar: Sidecar) -> list[str]:
    """The actions of the RBAC filters on the sidecar's inbound HTTP listener, as Envoy has it."""
    dump = await mesh.admin_json(sidecar, "/config_dump?resource=dynamic_listeners")
    name = f"{sidecar.ip}_{HTTP_PORT}"
    (listener,) = [
        entry["active_state"]["listener"]
        for entry in dump["configs"]
        if entry.get("active_state", {}).get("listener", {}).get("name") == name
    ]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return [
        f["typed_config"].get("rules", {}).get("action", "ALLOW")
        for f in manager["http_filters"]
        if f["name"] == "envoy.filters.http.rbac"
    ]


async def no_nacks(mesh: Mesh) -> None:
    await mesh.synced(SIDECARS)
    assert await mesh.nack_errors() == {}


async def test_deny_by_path(authz_mesh: Mesh) -> None:
    mesh = authz_mesh
    mesh.write(
        "policy",
        authorization_policy("action: DENY\nrules: [{to: [{operation: {paths: ['/admin*']}}]}]"),
    )
    await until_status(mesh, "client-a", 403, path="/admin/users")
    assert await status(mesh, "client-a", path="/") == 200
    assert await status(mesh, "client-b", path="/public") == 200
    assert await status(mesh, "client-b", path="/admin") == 403
    # Paths are normalized before they are authorized, as in Istio.
    assert await status(mesh, "client-b", path="/x/../admin") == 403
    assert await status(mesh, "client-b", path="//admin") == 403
    stats = await counters(mesh, mesh.sidecars["hello"], HTTP_STATS)
    assert stats["denied"] >= 2 and stats["allowed"] >= 2
    await no_nacks(mesh)


async def test_allow_only_get(authz_mesh: Mesh) -> None:
    mesh = authz_mesh
    assert await status(mesh, "client-a", method="POST") == 200  # no policy: all allowed
    mesh.write("policy", authorization_policy("rules: [{to: [{operation: {methods: [GET]}}]}]"))
    await until_status(mesh, "client-a", 403, method="POST")
    assert await status(mesh, "client-a", method="GET") == 200
    assert await status(mesh, "client-b", method="DELETE") == 403
    await no_nacks(mesh)


async def test_allow_by_request_header(authz_mesh: Mesh) -> None:
    mesh = authz_mesh
    mesh.write(
        "policy",
        authorization_policy(
            "rules: [{when: [{key: 'request.headers[x-user]', values: [alice, 'ops-*']}]}]"
        ),
    )
    await until_status(mesh, "client-a", 403)
    assert await status(mesh, "client-a", headers={"x-user": "alice"}) == 200
    assert await status(mesh, "client-a", headers={"x-user": "ops-bob"}) == 200
    assert await status(mesh, "client-a", headers={"x-user": "mallory"}) == 403
    await no_nacks(mesh)


async def test_deny_by_source_ip_block(authz_mesh: Mesh) -> None:
    mesh = authz_mesh
    blocked, other = f"{mesh.block}.250", f"{mesh.block}.251"
    assert await direct_status(mesh, blocked) == 200
    mesh.write(
        "policy",
        authorization_policy(
            f"action: DENY\nrules: [{{from: [{{source: {{ipBlocks: [{blocked}/32]}}}}]}}]"
        ),
    )

    async def blocked_denied() -> bool | None:
        return True if await direct_status(mesh, blocked) == 403 else None

    await eventually(blocked_denied, f"requests from {blocked} denied")
    assert await direct_status(mesh, other) == 200
    assert await status(mesh, "client-a") == 200  # its sidecar connects from 127.0.0.1
    await no_nacks(mesh)


async def test_tcp_deny_closes_the_connection(authz_mesh: Mesh) -> None:
    mesh = authz_mesh
    assert await echoed(mesh) == PING
    mesh.write(
        "policy",
        authorization_policy(
            f"action: DENY\nrules: [{{to: [{{operation: {{ports: ['{TCP_PORT}']}}}}]}}]"
        ),
    )

    async def closed() -> bool | None:
        return True if await echoed(mesh) == b"" else None

    await eventually(closed, "hello's TCP port closing connections")
    assert (await counters(mesh, mesh.sidecars["hello"], TCP_STATS))["denied"] >= 1
    assert await status(mesh, "client-a") == 200  # the rule names the TCP port only
    await no_nacks(mesh)


async def test_tcp_allow_of_http_fields_refuses_every_connection(authz_mesh: Mesh) -> None:
    """An ALLOW rule a TCP port cannot evaluate allows nothing there (Istio's semantics)."""
    mesh = authz_mesh
    mesh.write("policy", authorization_policy("rules: [{to: [{operation: {methods: [GET]}}]}]"))

    async def closed() -> bool | None:
        return True if await echoed(mesh) == b"" else None

    await eventually(closed, "hello's TCP port closing connections")
    assert await status(mesh, "client-a") == 200
    await no_nacks(mesh)


async def test_audit_changes_no_decision(authz_mesh: Mesh) -> None:
    mesh = authz_mesh
    hello = mesh.sidecars["hello"]
    mesh.write(
        "policy",
        authorization_policy("action: AUDIT\nrules: [{to: [{operation: {paths: [/audited]}}]}]"),
    )

    async def logging_filter() -> bool | None:
        return True if await http_rbac_actions(mesh, hello) == ["LOG"] else None

    await eventually(logging_filter, "hello's RBAC filter with the LOG action")
    assert await status(mesh, "client-a", path="/audited") == 200
    assert await status(mesh, "client-a", path="/other") == 200
    stats = await counters(mesh, hello, HTTP_STATS)  # LOG always allows (and marks for logs)
    assert stats["allowed"] >= 2 and stats["denied"] == 0
    await no_nacks(mesh)


async def test_deny_by_principal(authz_mesh: Mesh) -> None:
    mesh = authz_mesh
    mesh.write(
        "policy",
        authorization_policy(
            "action: DENY\n"
            "rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/client-a]}}]}]"
        ),
    )
    await until_status(mesh, "client-a", 403)
    assert await status(mesh, "client-b") == 200
    assert await direct_status(mesh, f"{mesh.block}.250") == 200  # plaintext: no principal
    await no_nacks(mesh)


async def test_allow_admits_only_the_named_caller(authz_mesh: Mesh) -> None:
    mesh = authz_mesh
    mesh.write(
        "policy",
        authorization_policy(
            "rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/client-b]}}]}]"
        ),
    )
    await until_status(mesh, "client-a", 403)
    assert await status(mesh, "client-b") == 200
    assert await direct_status(mesh, f"{mesh.block}.250") == 403  # plaintext: no principal
    await no_nacks(mesh)
