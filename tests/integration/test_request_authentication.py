"""RequestAuthentication through real Envoy sidecars: jwt_authn rejects invalid tokens only.

Service `a` (HTTP 8080) runs one workload behind a sidecar, with an application that echoes the
request headers it receives; `client` sends requests through its sidecar as an HTTP proxy.
Tokens are ES256, signed in the test by throwaway issuers (`tests.support.jwt`) whose key sets
the policies carry inline. Asserted on traffic (401, 403 or the backend's answer), on the
headers the backend saw, on the sidecar's jwt_authn stats and /config_dump, and on pilot's
syncz (every type ACKed, nothing NACKed). Every test runs for state-of-the-world and delta xDS.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.integration.mesh import Mesh, eventually, service_entry, workload_entry
from tests.support.jwt import Issuer

pytestmark = pytest.mark.envoy

A = "http://a.default.svc.cluster.local:8080"
ISSUER = "https://issuer.example.com"
OTHER_ISSUER = "https://other.example.com"
AUDIENCE = "a.default"
JWT_STATS = "http.inbound_0.0.0.0_8080.jwt_authn."


def _request_authentication(name: str, rules: list[dict[str, Any]], *, app: str | None) -> str:
    """A RequestAuthentication for workloads labelled app=<app>, or the whole namespace."""
    spec: dict[str, Any] = {"jwtRules": rules}
    if app is not None:
        spec["selector"] = {"matchLabels": {"app": app}}
    document = {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }
    return json.dumps(document) + "\n"  # JSON is YAML; Mesh.write puts `---` between documents


@pytest.fixture
async def echo_backend(mesh: Mesh) -> AsyncIterator[None]:
    """An application for workload a (the first address of the block) answering with the
    request headers it received as JSON."""

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({name.lower(): value for name, value in request.headers.items()})

    app = web.Application()
    app.router.add_get("/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # Mesh.add_sidecar puts the application of workload .N on .N+100; a is .2.
    await web.TCPSite(runner, f"{mesh.block}.102", 8080).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def _mesh_with(mesh: Mesh, *policies: str) -> None:
    """a and client with their sidecars, and `policies`, all synced and none NACKed."""
    a_ip, client_ip = mesh.next_ip(), mesh.next_ip()
    mesh.write(
        "mesh",
        service_entry("a", 8080),
        workload_entry("a-v1", a_ip, "a"),
        workload_entry("client", client_ip, "client"),
    )
    if policies:
        mesh.write("policies", *policies)
    await mesh.start_pilot()
    await mesh.add_sidecar("a-v1", a_ip, labels={"app": "a"})
    await mesh.add_sidecar("client", client_ip)
    await _synced(mesh)


async def _synced(mesh: Mesh) -> None:
    entries = await mesh.synced({"a-v1", "client"})
    for entry in entries.values():
        for kind in ("cds", "eds", "lds", "rds"):
            assert not entry[kind]["nack_error"], entry


async def _ask(mesh: Mesh, token: str | None = None, path: str = "/") -> tuple[int, Any]:
    """(status, headers the backend saw) for one request to a, or (status, body) if refused."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    client = mesh.sidecars["client"]
    async with mesh.http().get(A + path, proxy=client.http_proxy, headers=headers) as response:
        if response.status == 200:
            return 200, await response.json()
        return response.status, await response.text()


async def _jwt_stats(mesh: Mesh) -> dict[str, int]:
    stats = await mesh.stats(mesh.sidecars["a-v1"], JWT_STATS.replace(".", r"\."))
    return {name.removeprefix(JWT_STATS): value for name, value in stats.items()}


async def _http_filters(mesh: Mesh) -> list[dict[str, Any]]:
    """The HTTP filters of a-v1's inbound listener for port 8080, as its Envoy holds them."""
    dump = await mesh.admin_json(mesh.sidecars["a-v1"], "/config_dump?resource=dynamic_listeners")
    for entry in dump["configs"]:
        listener = entry["active_state"]["listener"]
        if listener["name"].endswith("_8080") and listener.get("traffic_direction") == "INBOUND":
            (manager,) = listener["filter_chains"][-1]["filters"]
            filters: list[dict[str, Any]] = manager["typed_config"]["http_filters"]
            return filters
    raise AssertionError(f"no inbound listener for 8080 in {dump}")


def _payload(header: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
    )
    return decoded


@pytest.mark.usefixtures("echo_backend")
async def test_inline_jwks_rejects_invalid_tokens_and_lets_none_pass(mesh: Mesh) -> None:
    issuer = Issuer.generate(ISSUER)
    await _mesh_with(mesh)
    # No policy yet: any token reaches the application.
    assert (await _ask(mesh, "not-a-jwt"))[0] == 200

    rule = {
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "jwks": issuer.jwks(),
        "outputClaimToHeaders": [{"header": "x-jwt-sub", "claim": "sub"}],
        "outputPayloadToHeader": "x-jwt-payload",
    }
    mesh.write("policies", _request_authentication("a-jwt", [rule], app="a"))

    async def enforced() -> bool | None:
        return True if (await _ask(mesh, "not-a-jwt"))[0] == 401 else None

    await eventually(enforced, "the RequestAuthentication enforced on a")
    await _synced(mesh)
    jwt_authn, *others = await _http_filters(mesh)
    assert jwt_authn["name"] == "envoy.filters.http.jwt_authn"
    assert jwt_authn["typed_config"]["providers"]["origins-0"]["payload_in_metadata"] == "payload"
    assert others[-1]["name"] == "envoy.filters.http.router"

    status, seen = await _ask(mesh, issuer.token("alice", audience=AUDIENCE, group="dev"))
    assert status == 200, seen
    assert seen["x-jwt-sub"] == "alice"
    payload = _payload(seen["x-jwt-payload"])
    assert (payload["iss"], payload["sub"], payload["group"]) == (ISSUER, "alice", "dev")
    assert "authorization" not in seen  # forwardOriginalToken unset: Envoy strips the token

    status, seen = await _ask(mesh)
    assert status == 200, seen  # no token: authentication has nothing to reject
    assert "x-jwt-sub" not in seen

    invalid = {
        "signed by an untrusted key": Issuer.generate(ISSUER).token(audience=AUDIENCE),
        "expired": issuer.token(audience=AUDIENCE, lifetime=-3600),
        "from another issuer": issuer.token(audience=AUDIENCE, issuer=OTHER_ISSUER),
        "not a JWT": "not-a-jwt",
    }
    for case, token in invalid.items():
        status, body = await _ask(mesh, token)
        assert status == 401, f"{case}: {status} {body}"
    # A token that verifies but names another audience is forbidden rather than unauthenticated
    # (Envoy's status for it, as in Istio).
    status, body = await _ask(mesh, issuer.token(audience="b.default"))
    assert (status, body) == (403, "Audiences in Jwt are not allowed")
    # The access_token query parameter is the other default location.
    assert (await _ask(mesh, path=f"/?access_token={invalid['expired']}"))[0] == 401
    valid = issuer.token(audience=AUDIENCE)
    assert (await _ask(mesh, path=f"/?access_token={valid}"))[0] == 200

    stats = await _jwt_stats(mesh)
    assert stats["allowed"] == 3  # the two valid tokens and the request without one
    # the invalid ones, the audience, the expired parameter, and the probe that saw the 401
    assert stats["denied"] == len(invalid) + 3
    await _synced(mesh)


@pytest.mark.usefixtures("echo_backend")
async def test_two_policies_trust_both_issuers(mesh: Mesh) -> None:
    """A namespace-wide policy and a workload policy merge into one filter with two providers:
    a token of either issuer passes, one of neither or badly signed gets 401."""
    first, second = Issuer.generate(ISSUER), Issuer.generate(OTHER_ISSUER, kid="other-key")
    namespace_rule = {
        "issuer": ISSUER,
        "jwks": first.jwks(),
        "outputClaimToHeaders": [{"header": "x-first-sub", "claim": "sub"}],
    }
    workload_rule = {
        "issuer": OTHER_ISSUER,
        "jwks": second.jwks(),
        "outputClaimToHeaders": [{"header": "x-second-sub", "claim": "sub"}],
    }
    await _mesh_with(
        mesh,
        _request_authentication("namespace-jwt", [namespace_rule], app=None),
        _request_authentication("a-jwt", [workload_rule], app="a"),
    )
    status, seen = await _ask(mesh, first.token("alice"))
    assert (status, seen.get("x-first-sub"), seen.get("x-second-sub")) == (200, "alice", None)
    status, seen = await _ask(mesh, second.token("bob"))
    assert (status, seen.get("x-first-sub"), seen.get("x-second-sub")) == (200, None, "bob")
    assert (await _ask(mesh))[0] == 200

    unknown = Issuer.generate("https://unknown.example.com")
    for token in (unknown.token(), Issuer.generate(OTHER_ISSUER, kid="other-key").token()):
        assert (await _ask(mesh, token))[0] == 401
    stats = await _jwt_stats(mesh)
    assert (stats["allowed"], stats["denied"]) == (3, 2)


@pytest.mark.usefixtures("echo_backend")
async def test_unfetched_jwks_uri_fails_closed(mesh: Mesh) -> None:
    """Keys pilot has not fetched (nothing answers at the URL) verify no token: tokens get 401,
    requests without one still pass, and Envoy accepts the config."""
    issuer = Issuer.generate(ISSUER)
    rule = {"issuer": ISSUER, "jwksUri": f"http://{mesh.block}.250:8080/jwks.json"}
    await _mesh_with(mesh, _request_authentication("a-jwt", [rule], app="a"))
    assert (await _ask(mesh, issuer.token()))[0] == 401
    assert (await _ask(mesh))[0] == 200


@pytest.mark.usefixtures("echo_backend")
async def test_jwks_uri_is_fetched_by_pilot_and_inlined(mesh: Mesh) -> None:
    """A key set served by URL (on the test's loopback block) is fetched by pilot itself and
    verifies the issuer's tokens at the sidecar, with no cluster towards the issuer."""
    issuer = Issuer.generate(ISSUER)
    fetched = 0

    async def jwks(request: web.Request) -> web.Response:
        nonlocal fetched
        fetched += 1
        return web.Response(text=issuer.jwks(), content_type="application/json")

    app = web.Application()
    app.router.add_get("/jwks.json", jwks)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, f"{mesh.block}.250", 8080).start()
    try:
        rule = {"issuer": ISSUER, "jwksUri": f"http://{mesh.block}.250:8080/jwks.json"}
        await _mesh_with(mesh, _request_authentication("a-jwt", [rule], app="a"))

        async def accepted() -> bool | None:
            return True if (await _ask(mesh, issuer.token()))[0] == 200 else None

        await eventually(accepted, "a token verified with the fetched key set")
        assert (await _ask(mesh, Issuer.generate(ISSUER).token()))[0] == 401
        assert fetched >= 1
    finally:
        await runner.cleanup()
