"""The JSON Web Key Sets that RequestAuthentication names by URL, fetched by pilot itself.

A `jwtRule` gives its issuer's public keys inline (`jwks`), by URL (`jwksUri`), or not at all,
in which case they are found through the issuer's OpenID discovery document. Like istiod in its
default mode (PILOT_JWT_ENABLE_REMOTE_JWKS=istiod), pilot fetches every URL once and inlines the
key set into each proxy's jwt_authn filter, rather than configuring Envoy's `remote_jwks`: a
sidecar then needs no cluster (nor egress) towards the issuer, every proxy gets the same keys in
the same push, and a key set that cannot be fetched fails closed in the generated config
(`request_authentication` inlines a key nobody holds, so every token is rejected).

`JwksResolver` is the cache. Pilot hands it the URLs its configuration names (`jwks_locations`)
before building a push context: URLs already known answer from the cache, new ones are fetched
there and then (bounded by the rules' `timeout`, 5 s by default, as istiod blocks on a first
fetch), and URLs no longer named are forgotten. Its refresh task refetches each key set every
`refresh_interval` (istiod: 20 minutes), a failed one every `retry_interval`, keeps the last
good copy when a refetch fails, and calls `on_change` when a key set changed, so that pilot
pushes again. It owns one aiohttp session and that task; everything runs on pilot's event loop,
so the cache needs no lock (two fetches of one URL at once are harmless: both store its keys).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit

import aiohttp

from meshconfig import Resource
from meshconfig.base import duration_seconds
from meshconfig.security.authentication import JwtRule, RequestAuthenticationSpec
from meshcore.lifecycle import Service, cancel_and_wait

log = logging.getLogger(__name__)

OPENID_CONFIGURATION: Final = "/.well-known/openid-configuration"
DEFAULT_TIMEOUT: Final = 5.0  # seconds; istiod's default for a rule without `timeout`
REFRESH_INTERVAL: Final = 20 * 60.0  # istiod's PILOT_JWT_PUB_KEY_REFRESH_INTERVAL
RETRY_INTERVAL: Final = 30.0
MAX_DOCUMENT_BYTES: Final = 1 << 20


def jwks_location(rule: JwtRule) -> str | None:
    """The URL pilot fetches the rule's keys from: its `jwksUri`, else its issuer's OpenID
    discovery document; None when the keys are inline or the issuer is not an http(s) URL."""
    if rule.jwks is not None:
        return None
    if rule.jwks_uri is not None:
        return rule.jwks_uri
    if rule.issuer is not None and urlsplit(rule.issuer).scheme in ("http", "https"):
        return rule.issuer.rstrip("/") + OPENID_CONFIGURATION
    return None


def jwks_locations(policies: Iterable[Resource]) -> dict[str, float]:
    """Every URL the RequestAuthentications' rules fetch keys from, with its fetch timeout in
    seconds (the shortest of the rules naming it)."""
    found: dict[str, float] = {}
    for policy in policies:
        spec = policy.spec
        assert isinstance(spec, RequestAuthenticationSpec), policy.label
        for rule in spec.jwt_rules or ():
            location = jwks_location(rule)
            if location is not None:
                timeout = _timeout(rule)
                found[location] = min(timeout, found.get(location, timeout))
    return found


def _timeout(rule: JwtRule) -> float:
    return DEFAULT_TIMEOUT if rule.timeout is None else duration_seconds(rule.timeout)


@dataclass(slots=True)
class _Entry:
    """One URL's cached key set (None until a fetch succeeded) and its last fetch attempt."""

    location: str
    timeout: float
    jwks: str | None = None
    fetched_at: float = 0.0
    ok: bool = False

    def due(self, now: float, refresh_interval: float, retry_interval: float) -> bool:
        return now - self.fetched_at >= (refresh_interval if self.ok else retry_interval)


class JwksResolver(Service):
    """Fetches and caches key sets by URL; `on_change` is called when a refetch changed one."""

    def __init__(
        self,
        on_change: Callable[[], None],
        *,
        refresh_interval: float = REFRESH_INTERVAL,
        retry_interval: float = RETRY_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_change = on_change
        self._refresh_interval = refresh_interval
        self._retry_interval = retry_interval
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._refresh_forever(), name="pilot-jwks-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def resolve(self, wanted: Mapping[str, float]) -> Mapping[str, str]:
        """Keep exactly the `wanted` URLs (URL -> fetch timeout), fetch those not seen before,
        and return every key set known: URL -> JWKS JSON text."""
        for gone in self._entries.keys() - wanted.keys():
            del self._entries[gone]
        new = []
        for location, timeout in sorted(wanted.items()):
            entry = self._entries.get(location)
            if entry is None:
                entry = self._entries[location] = _Entry(location, timeout)
                new.append(entry)
            entry.timeout = timeout
        await asyncio.gather(*(self._fetch(entry) for entry in new))
        return self.key_sets()

    def key_sets(self) -> Mapping[str, str]:
        """URL -> JWKS JSON text for every URL whose keys were fetched at least once."""
        return MappingProxyType(
            {
                location: entry.jwks
                for location, entry in sorted(self._entries.items())
                if entry.jwks is not None
            }
        )

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(min(self._retry_interval, self._refresh_interval))
            await self.refresh_due()

    async def refresh_due(self) -> None:
        """Refetch the key sets that are due, and call `on_change` if any of them changed."""
        now = self._clock()
        intervals = (self._refresh_interval, self._retry_interval)
        due = [entry for entry in self._entries.values() if entry.due(now, *intervals)]
        if not due:
            return
        before = self.key_sets()
        await asyncio.gather(*(self._fetch(entry) for entry in due))
        if self.key_sets() != before:
            self._on_change()

    async def _fetch(self, entry: _Entry) -> None:
        entry.fetched_at = self._clock()
        try:
            jwks = await asyncio.wait_for(self._download(entry.location), entry.timeout)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            entry.ok = False
            log.warning("cannot fetch the JWKS at %s: %s", entry.location, error or type(error))
            return
        entry.jwks, entry.ok = jwks, True

    async def _download(self, location: str) -> str:
        text = await self._get(location)
        if location.endswith(OPENID_CONFIGURATION):
            text = await self._get(_discovered_jwks_uri(text))
        _check_jwks(text)
        return text

    async def _get(self, url: str) -> str:
        if self._session is None:
            raise RuntimeError("the JWKS resolver is not started")
        body = bytearray()
        async with self._session.get(url) as response:
            response.raise_for_status()
            async for chunk in response.content.iter_any():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise ValueError(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
        return body.decode()


def _discovered_jwks_uri(document: str) -> str:
    found = json.loads(document)
    uri = found.get("jwks_uri") if isinstance(found, dict) else None
    if not isinstance(uri, str) or urlsplit(uri).scheme not in ("http", "https"):
        raise ValueError("the OpenID configuration has no http(s) jwks_uri")
    return uri


def _check_jwks(text: str) -> None:
    found = json.loads(text)
    keys = found.get("keys") if isinstance(found, dict) else None
    if not (isinstance(keys, list) and keys and all(isinstance(key, dict) for key in keys)):
        raise ValueError('not a JSON Web Key Set ({"keys": [...]})')
