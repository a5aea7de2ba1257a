"""listchecker: is a value on a list? Allow lists and deny lists of strings, IP ranges, regexes.

Params as Istio's list adapter had them: `overrides` (entries written in the handler),
`providerUrl` (a file path, `file://` URL or `http(s)://` URL whose body lists one entry per
line, `#` comments allowed), fetched at start and every `refreshInterval`; a fetched list is
dropped if no refresh succeeded for `ttl`, after which checks answer UNAVAILABLE rather than
guess. `entryType`: STRINGS, CASE_INSENSITIVE_STRINGS, IP_ADDRESSES (addresses and CIDR
ranges) or REGEX (a value matches if any regex is found in it). `blacklist`: deny listed
values instead of admitting only them; either denial is PERMISSION_DENIED, as in Istio 1.4.
Results may be reused for `cachingInterval` or `cachingUseCount` checks.

Template: listentry (field `value`). The handler owns one task, the refresher, when it has a
provider; the current list is swapped whole, so checks never see half a list.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import aiohttp
from pydantic import BaseModel, model_validator

from meshcore.lifecycle import cancel_and_wait
from mixer.adapters.base import (
    DEFAULT_VALID_USE_COUNT,
    PARAMS_CONFIG,
    PERMISSION_DENIED,
    UNAVAILABLE,
    CheckResult,
    DurationParam,
    Environment,
    Handler,
    Instance,
    Status,
    parse_params,
)

log = logging.getLogger(__name__)

FETCH_TIMEOUT = 10.0


class EntryType(StrEnum):
    STRINGS = "STRINGS"
    CASE_INSENSITIVE_STRINGS = "CASE_INSENSITIVE_STRINGS"
    IP_ADDRESSES = "IP_ADDRESSES"
    REGEX = "REGEX"


class ListParams(BaseModel):
    model_config = PARAMS_CONFIG
    provider_url: str = ""
    refresh_interval: DurationParam = datetime.timedelta(seconds=60)
    ttl: DurationParam = datetime.timedelta(seconds=300)
    caching_interval: DurationParam = datetime.timedelta(seconds=300)
    caching_use_count: int = DEFAULT_VALID_USE_COUNT
    overrides: list[str] = []
    entry_type: EntryType = EntryType.STRINGS
    blacklist: bool = False

    @model_validator(mode="after")
    def _entries_parse(self) -> ListParams:
        compile_entries(self.entry_type, self.overrides)
        if self.refresh_interval <= datetime.timedelta(0):
            raise ValueError("refreshInterval must be positive")
        return self


Matcher = Callable[[Any], bool]


def compile_entries(entry_type: EntryType, entries: Iterable[str]) -> Matcher:
    """A predicate telling whether a value is on the list `entries` of type `entry_type`."""
    items = [entry.strip() for entry in entries if entry.strip()]
    if entry_type is EntryType.STRINGS:
        exact = frozenset(items)
        return lambda value: str(value) in exact
    if entry_type is EntryType.CASE_INSENSITIVE_STRINGS:
        folded = frozenset(item.casefold() for item in items)
        return lambda value: str(value).casefold() in folded
    if entry_type is EntryType.REGEX:
        try:
            combined = re.compile("|".join(f"(?:{item})" for item in items)) if items else None
        except re.error as error:
            raise ValueError(f"invalid regex in the list: {error}") from None
        return lambda value: combined is not None and combined.search(str(value)) is not None
    try:
        networks = [ipaddress.ip_network(item, strict=False) for item in items]
    except ValueError as error:
        raise ValueError(f"invalid IP address or range in the list: {error}") from None

    def contains(value: Any) -> bool:
        try:
            address = ipaddress.ip_address(value if isinstance(value, bytes) else str(value))
        except ValueError:
            return False
        return any(address in network for network in networks)

    return contains


def parse_list(body: str) -> list[str]:
    """A provider's list: one entry per line, blank lines and `#` comments skipped."""
    lines = (line.partition("#")[0].strip() for line in body.splitlines())
    return [line for line in lines if line]


async def fetch(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as reply:
            reply.raise_for_status()
            return await reply.text()
    path = Path(parsed.path if parsed.scheme == "file" else url)
    return await asyncio.to_thread(path.read_text, encoding="utf-8")


@dataclass(frozen=True, slots=True)
class _Fetched:
    matches: Matcher
    at: float  # monotonic time of the fetch


class ListHandler(Handler):
    def __init__(self, params: ListParams) -> None:
        self.params = params
        self._overrides = compile_entries(params.entry_type, params.overrides)
        self._fetched: _Fetched | None = None
        self._task: asyncio.Task[None] | None = None
        self._valid = (params.caching_interval, params.caching_use_count)

    async def start(self) -> None:
        if not self.params.provider_url:
            return
        await self.refresh()
        self._task = asyncio.create_task(self._refresh_forever(), name="listchecker-refresh")

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None

    async def refresh(self) -> bool:
        """Fetch the provider's list now; on failure keep the last one (until its ttl)."""
        url = self.params.provider_url
        try:
            entries = parse_list(await fetch(url))
            matches = compile_entries(self.params.entry_type, entries)
        except (OSError, aiohttp.ClientError, TimeoutError, ValueError) as error:
            log.warning("listchecker: cannot refresh the list from %s: %s", url, error)
            return False
        self._fetched = _Fetched(matches, time.monotonic())
        return True

    async def _refresh_forever(self) -> None:
        interval = self.params.refresh_interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            await self.refresh()

    def listed(self, value: Any) -> bool | None:
        """Whether `value` is on the list; None when the provider's list is not usable."""
        if self._overrides(value):
            return True
        if not self.params.provider_url:
            return False
        fetched = self._fetched
        if fetched is None or time.monotonic() - fetched.at > self.params.ttl.total_seconds():
            return None
        return fetched.matches(value)

    async def check(self, instance: Instance) -> CheckResult:
        value = instance.fields.get("value")
        listed = self.listed(value)
        duration, uses = self._valid
        shown = _shown(value)
        if listed is None:
            return CheckResult(Status(UNAVAILABLE, "the list is not available"), duration, 1)
        if self.params.blacklist and listed:
            return CheckResult(Status(PERMISSION_DENIED, f"{shown} is blacklisted"), duration, uses)
        if not self.params.blacklist and not listed:
            return CheckResult(
                Status(PERMISSION_DENIED, f"{shown} is not whitelisted"), duration, uses
            )
        return CheckResult(Status(), duration, uses)


def _shown(value: Any) -> str:
    if isinstance(value, bytes) and len(value) in (4, 16):
        return str(ipaddress.ip_address(value))
    return str(value)


class ListChecker:
    name: ClassVar[str] = "listchecker"
    templates: ClassVar[frozenset[str]] = frozenset({"listentry"})

    def build(self, params: Mapping[str, Any], env: Environment) -> Handler:
        return ListHandler(parse_params(ListParams, params))


ADAPTER = ListChecker()
