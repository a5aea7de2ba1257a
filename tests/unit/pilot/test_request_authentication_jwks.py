"""Pilot's JWKS fetching for RequestAuthentication: which URLs, the cache and its refreshes.

The resolver talks to a small aiohttp server on loopback that serves key sets, an OpenID
discovery document and failures; time is a fake clock the tests advance.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from meshconfig import Resource, validate_document
from pilot.jwks import JwksResolver, jwks_locations

JWKS = json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "BBBB"}]})
# Larger than one read from the socket, smaller than the limit.
MANY_KEYS = json.dumps(
    {"keys": [{"kty": "oct", "kid": f"{n:06}", "k": "x" * 64} for n in range(5000)]}
)
ROTATED = json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "x": "CCCC", "y": "DDDD"}]})


def policy(*rules: dict[str, object]) -> Resource:
    return validate_document(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "RequestAuthentication",
            "metadata": {"name": "jwt", "namespace": "default"},
            "spec": {"jwtRules": list(rules)},
        }
    )


def test_locations_are_jwks_uris_or_discovery_documents() -> None:
    found = jwks_locations(
        [
            policy(
                {"issuer": "https://a.example.com", "jwksUri": "https://keys.example.com/a"},
                {"issuer": "https://b.example.com/", "timeout": "2s"},
                {"issuer": "https://c.example.com", "jwks": JWKS},
                {"issuer": "d@example.com"},
            ),
            policy({"jwksUri": "https://keys.example.com/a", "timeout": "500ms"}),
        ]
    )
    assert found == {
        "https://keys.example.com/a": 0.5,  # the shortest timeout of the rules naming it
        "https://b.example.com/.well-known/openid-configuration": 2.0,
    }


@dataclass
class KeyServer:
    """What the test server answers: the key set at /jwks (an HTTP status instead, if set)."""

    jwks: str = JWKS
    status: int = 200
    hits: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        if self.status != 200:
            return web.Response(status=self.status)
        if request.path == "/.well-known/openid-configuration":
            jwks_uri = str(request.url.with_path("/jwks"))
            return web.json_response({"issuer": str(request.url.origin()), "jwks_uri": jwks_uri})
        if request.path == "/big":
            return web.Response(text=" " * (2 << 20))
        if request.path == "/many-keys":
            return web.Response(text=MANY_KEYS, content_type="application/json")
        if request.path == "/slow":
            await asyncio.sleep(1)
        if request.path == "/not-jwks":
            return web.json_response({"keys": []})
        return web.Response(text=self.jwks, content_type="application/json")


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def keys() -> AsyncIterator[tuple[KeyServer, str]]:
    state = KeyServer()
    app = web.Application()
    app.router.add_get("/{tail:.*}", state.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield state, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
async def resolver_parts() -> AsyncIterator[tuple[JwksResolver, Clock, list[str]]]:
    clock, changes = Clock(), []
    resolver = JwksResolver(
        lambda: changes.append("changed"), refresh_interval=600, retry_interval=30, clock=clock
    )
    async with resolver:
        yield resolver, clock, changes


async def test_resolve_fetches_new_urls_and_forgets_old_ones(
    keys: tuple[KeyServer, str], resolver_parts: tuple[JwksResolver, Clock, list[str]]
) -> None:
    server, base = keys
    resolver, _, _ = resolver_parts
    found = await resolver.resolve({f"{base}/jwks": 5.0, f"{base}/other": 5.0})
    assert found == {f"{base}/jwks": JWKS, f"{base}/other": JWKS}
    assert len(server.hits) == 2
    # Known URLs answer from the cache; a URL no longer wanted is dropped.
    assert await resolver.resolve({f"{base}/jwks": 5.0}) == {f"{base}/jwks": JWKS}
    assert len(server.hits) == 2


async def test_a_large_key_set_is_read_whole(
    keys: tuple[KeyServer, str], resolver_parts: tuple[JwksResolver, Clock, list[str]]
) -> None:
    _, base = keys
    resolver, _, _ = resolver_parts
    assert await resolver.resolve({f"{base}/many-keys": 5.0}) == {f"{base}/many-keys": MANY_KEYS}


async def test_discovery_document_leads_to_the_key_set(
    keys: tuple[KeyServer, str], resolver_parts: tuple[JwksResolver, Clock, list[str]]
) -> None:
    server, base = keys
    resolver, _, _ = resolver_parts
    location = f"{base}/.well-known/openid-configuration"
    assert await resolver.resolve({location: 5.0}) == {location: JWKS}
    assert server.hits == ["/.well-known/openid-configuration", "/jwks"]


@pytest.mark.parametrize("path", ["/big", "/not-jwks", "/.well-known/openid-configuration"])
async def test_failures_leave_no_key_set(
    keys: tuple[KeyServer, str],
    resolver_parts: tuple[JwksResolver, Clock, list[str]],
    path: str,
) -> None:
    server, base = keys
    resolver, _, _ = resolver_parts
    if path.startswith("/.well-known"):
        server.status = 503
    assert await resolver.resolve({base + path: 5.0}) == {}
    unreachable = "http://127.0.0.1:9/jwks"  # discard port: connection refused
    assert await resolver.resolve({unreachable: 5.0}) == {}


async def test_a_slow_url_is_bounded_by_its_timeout(
    keys: tuple[KeyServer, str], resolver_parts: tuple[JwksResolver, Clock, list[str]]
) -> None:
    _, base = keys
    resolver, _, _ = resolver_parts
    # /slow answers after a second, with keys: only the timeout keeps them out.
    assert await resolver.resolve({f"{base}/slow": 0.05, f"{base}/jwks": 5.0}) == {
        f"{base}/jwks": JWKS
    }


async def test_refresh_keeps_keys_fresh_and_reports_changes(
    keys: tuple[KeyServer, str], resolver_parts: tuple[JwksResolver, Clock, list[str]]
) -> None:
    server, base = keys
    resolver, clock, changes = resolver_parts
    location = f"{base}/jwks"
    await resolver.resolve({location: 5.0})

    clock.now += 599  # not due yet
    await resolver.refresh_due()
    assert len(server.hits) == 1

    clock.now += 1  # due; same keys: nothing to push
    await resolver.refresh_due()
    assert (len(server.hits), changes) == (2, [])

    server.jwks = ROTATED
    clock.now += 600
    await resolver.refresh_due()
    assert resolver.key_sets() == {location: ROTATED}
    assert changes == ["changed"]

    # A failed refetch keeps the last good keys and retries sooner.
    server.status = 500
    clock.now += 600
    await resolver.refresh_due()
    assert resolver.key_sets() == {location: ROTATED}
    server.status, server.jwks = 200, JWKS
    clock.now += 30
    await resolver.refresh_due()
    assert resolver.key_sets() == {location: JWKS}
    assert changes == ["changed", "changed"]


async def test_a_failed_first_fetch_is_retried(
    keys: tuple[KeyServer, str], resolver_parts: tuple[JwksResolver, Clock, list[str]]
) -> None:
    server, base = keys
    resolver, clock, changes = resolver_parts
    server.status = 404
    location = f"{base}/jwks"
    assert await resolver.resolve({location: 5.0}) == {}
    server.status = 200
    clock.now += 30
    await resolver.refresh_due()
    assert resolver.key_sets() == {location: JWKS}
    assert changes == ["changed"]
