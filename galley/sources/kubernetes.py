"""Configuration from the Kubernetes API: list, then watch, every kind galley serves.

Each watched scope (a kind, or a kind in one namespace when a namespace filter is set) runs the
loop client-go's reflector runs: list to learn the whole truth and its resourceVersion, then
watch from that version, resuming from the last event or bookmark when the server ends the
watch, and listing again when the server answers 410 Gone (its event log no longer reaches back
that far). A list replaces the scope's contents in the store in one atomic change, so objects
deleted while the watch was down disappear. Errors back off exponentially up to a bound; a kind
whose group or version the server does not serve (its CRD is not installed) counts as empty
and is looked for again later.

Every object goes through `meshconfig.validate_document` with origin "kubernetes". An invalid
object, or one that another origin (a file) already defines, is logged, counted and kept in
`errors`, and skipped: the last accepted version of it stays in the store until the object is
fixed or deleted.

The API is reached generically through kubernetes-asyncio's `ApiClient.call_api`, so core kinds,
other built-in groups and custom resources take the same path. `KubernetesSource.run` owns the
ApiClient and one task per scope under a TaskGroup; cancelling `run` ends them all and closes
the client. Event-loop only, like the store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter

from galley.sources.directory import validation_failures
from galley.store import ConfigStore, Key
from meshconfig import ConfigValidationError, Kind, Resource, all_kinds, validate_document
from meshcore.kube import ApiClientFactory

log = logging.getLogger(__name__)

ORIGIN = "kubernetes"
# The core kinds the mesh reads beside the Istio kinds: the service registry's (Istio's galley
# served these) and Secrets, which hold gateway credentials (`credentialName`).
REGISTRY_CORE_KINDS = frozenset({"Namespace", "Node", "Pod", "Service", "Endpoints", "Secret"})


_ACCEPT_JSON = {"Accept": "application/json"}
_AUTH = ["BearerToken"]


def default_kinds() -> list[Kind]:
    """Every meshconfig kind with an API group, plus the core kinds the registry needs."""
    return [k for k in all_kinds() if k.group or k.kind in REGISTRY_CORE_KINDS]


class _Expired(Exception):
    """The watch's resourceVersion is older than the server's event log: list again."""


class _NotServed(Exception):
    """The server does not serve this kind (no such group, version or resource)."""


@dataclass(eq=False)
class _Scope:
    kind: Kind
    namespace: str | None  # None: every namespace, or a cluster-scoped kind
    version: str = ""  # the API version listed and watched, chosen by discovery
    resource_version: str | None = None  # where the next watch resumes; None: list first
    events: int = 0  # events and bookmarks received, to tell progress from a loop of failures
    synced: bool = False
    absent: bool = False  # the server did not serve the kind at the last look

    @property
    def api_version(self) -> str:
        return f"{self.kind.group}/{self.version}" if self.kind.group else self.version

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.kind.id}{where}"

    def covers(self, key: Key) -> bool:
        return key[0] == self.kind.id and (self.namespace is None or key[1] == self.namespace)

    def path(self) -> str:
        group = f"/apis/{self.kind.group}" if self.kind.group else "/api"
        base = f"{group}/{self.version}"
        namespace = f"/namespaces/{self.namespace}" if self.namespace else ""
        return f"{base}{namespace}/{self.kind.plural}"

    def key_of(self, obj: Mapping[str, Any]) -> Key:
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace", "")) if self.kind.namespaced else ""
        return (self.kind.id, namespace, str(meta.get("name", "")))


class KubernetesSource:
    """Feeds `store` under origin "kubernetes"; the caller owns the task that runs `run()`."""

    def __init__(
        self,
        store: ConfigStore,
        api_client: ApiClientFactory,
        *,
        kinds: Iterable[Kind] | None = None,
        namespaces: Iterable[str] | None = None,
        watch_timeout: float = 300.0,
        backoff: tuple[float, float] = (0.5, 30.0),
        absent_retry: float = 60.0,
        failures: Counter | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """`namespaces` None watches every namespace; `watch_timeout` is the shortest server-side
        watch (each asks for between one and two times it, as client-go does); `backoff` is the
        first and the longest delay after an error; `absent_retry` how often a kind the server
        does not serve is looked for again."""
        self.errors: dict[Key, str] = {}  # objects refused now, and why
        self.synced = asyncio.Event()  # set once every scope has listed once
        self._store = store
        self._api_client = api_client
        self._watch_timeout = watch_timeout
        self._backoff = backoff
        self._absent_retry = absent_retry
        if failures is None:
            failures = validation_failures(registry or CollectorRegistry())
        self._failures = failures
        wanted = sorted(namespaces) if namespaces is not None else None
        self._scopes: list[_Scope] = []
        for kind in default_kinds() if kinds is None else kinds:
            if wanted is None or not kind.namespaced:
                self._scopes.append(_Scope(kind, None))
            else:
                self._scopes.extend(_Scope(kind, namespace) for namespace in wanted)

    def status(self) -> dict[str, dict[str, Any]]:
        """Per watched scope: where its watch resumes, whether it has listed, whether it is served.

        For galley's debug page and for tests.
        """
        return {
            str(scope): {
                "resourceVersion": scope.resource_version,
                "synced": scope.synced,
                "served": not scope.absent,
            }
            for scope in self._scopes
        }

    async def run(self) -> None:
        """List and watch every scope until cancelled."""
        if not self._scopes:
            self.synced.set()
            return
        api = await self._api_client()
        try:
            async with asyncio.TaskGroup() as group:
                for scope in self._scopes:
                    group.create_task(self._run_scope(api, scope), name=f"galley-kube {scope}")
        finally:
            await api.close()

    async def _run_scope(self, api: client.ApiClient, scope: _Scope) -> None:
        failures = 0  # attempts in a row that made no progress
        while True:
            seen = scope.events
            try:
                if scope.resource_version is None:
                    await self._list(api, scope)
                await self._watch(api, scope)
                failures = 0  # the server ended the watch when asked to: resume at once
                continue
            except _Expired as expired:
                log.info("%s: %s; listing again", scope, expired)
                scope.resource_version = None
                at_once = True
            except _NotServed as absent:
                self._absent(scope, str(absent))
                await asyncio.sleep(self._absent_retry)
                continue
            except (ApiException, aiohttp.ClientError, OSError, TimeoutError, ValueError) as error:
                log.warning("%s: %s", scope, _describe(error))
                at_once = False
            except Exception:
                log.exception("%s: unexpected failure", scope)
                at_once = False
            if scope.events != seen:
                failures = 0
            failures += 1
            # A 410 after progress is routine; only a 410 loop (or an error) waits and backs off.
            if not (at_once and failures == 1):
                delay = min(self._backoff[1], self._backoff[0] * 2 ** (failures - 1))
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    # -- talking to the API ------------------------------------------------------------------

    async def _get(
        self, api: client.ApiClient, path: str, query: list[tuple[str, str]] | None = None
    ) -> dict[str, Any]:
        try:
            body = await api.call_api(
                path,
                "GET",
                query_params=query or [],
                header_params=dict(_ACCEPT_JSON),
                response_types_map={200: "object"},
                auth_settings=_AUTH,
                _return_http_data_only=True,
                _request_timeout=aiohttp.ClientTimeout(total=60),
            )
        except ApiException as error:
            if error.status == 404:
                raise _NotServed(f"{path} is not served") from None
            raise
        if not isinstance(body, dict):
            raise ValueError(f"{path} answered {type(body).__name__}, not an object")
        return body

    async def _choose_version(self, api: client.ApiClient, scope: _Scope) -> None:
        if scope.kind.group:
            found = await self._get(api, f"/apis/{scope.kind.group}")
            served = [v.get("version") for v in found.get("versions") or ()]
        else:
            served = (await self._get(api, "/api")).get("versions") or []
        for version in scope.kind.versions:
            if version in served:
                scope.version = version
                return
        raise _NotServed(f"the server serves none of versions {', '.join(scope.kind.versions)}")

    async def _list(self, api: client.ApiClient, scope: _Scope) -> None:
        await self._choose_version(api, scope)
        listed = await self._get(api, scope.path())
        upserts: list[Resource] = []
        present: set[Key] = set()
        for item in listed.get("items") or ():
            key = scope.key_of(item)
            present.add(key)
            resource = self._validate(scope, key, item)
            if resource is not None:
                upserts.append(resource)
        self._replace(scope, upserts, present)
        scope.absent = False
        scope.resource_version = str(listed["metadata"]["resourceVersion"])
        self._mark_synced(scope)

    async def _watch(self, api: client.ApiClient, scope: _Scope) -> None:
        seconds = max(1, int(self._watch_timeout * random.uniform(1.0, 2.0)))
        query = [
            ("watch", "true"),
            ("resourceVersion", str(scope.resource_version)),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(seconds)),
        ]
        response = await api.call_api(
            scope.path(),
            "GET",
            query_params=query,
            header_params=dict(_ACCEPT_JSON),
            auth_settings=_AUTH,
            _preload_content=False,
            # No event for this long past the server's own deadline means the connection is dead.
            _request_timeout=aiohttp.ClientTimeout(sock_connect=30, sock_read=seconds + 30),
        )
        try:
            if response.status == 410:
                raise _Expired(await response.text())
            if response.status != 200:
                raise ApiException(status=response.status, reason=await response.text())
            async for line in response.content:
                if line.strip():
                    self._on_event(scope, json.loads(line))
        finally:
            response.close()

    # -- applying what the API says ----------------------------------------------------------

    def _on_event(self, scope: _Scope, event: Mapping[str, Any]) -> None:
        event_type = event.get("type")
        obj = event.get("object") or {}
        if event_type == "ERROR":
            if obj.get("code") == 410:
                raise _Expired(obj.get("message", "resource version expired"))
            raise ApiException(status=obj.get("code"), reason=obj.get("message"))
        if event_type in ("ADDED", "MODIFIED"):
            resource = self._validate(scope, scope.key_of(obj), obj)
            if resource is not None:
                self._store.apply(ORIGIN, [resource])
        elif event_type == "DELETED":
            key = scope.key_of(obj)
            self.errors.pop(key, None)
            self._store.apply(ORIGIN, (), [key])
        elif event_type != "BOOKMARK":
            raise ValueError(f"unknown watch event type {event_type!r}")
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            scope.resource_version = str(version)
        scope.events += 1

    def _validate(self, scope: _Scope, key: Key, obj: Mapping[str, Any]) -> Resource | None:
        """The accepted resource, or None after reporting why it is refused."""
        # Lists of built-in kinds leave apiVersion and kind off their items.
        document = {"apiVersion": scope.api_version, "kind": scope.kind.kind, **obj}
        try:
            resource = validate_document(document, ORIGIN)
        except ConfigValidationError as error:
            self._refuse(key, str(error))
            return None
        conflicts = self._store.conflicts(ORIGIN, [resource])
        if conflicts:
            self._refuse(key, f"{ORIGIN}: {conflicts[0]}")
            return None
        if self.errors.pop(key, None) is not None:
            log.info("%s accepted again", resource.label)
        return resource

    def _refuse(self, key: Key, message: str) -> None:
        if self.errors.get(key) == message:
            return  # already reported (a re-list sees the same object again)
        self.errors[key] = message
        self._failures.labels(source=ORIGIN).inc()
        log.error("refused; the last accepted version stays in force:\n%s", message)

    def _replace(self, scope: _Scope, upserts: list[Resource], present: set[Key]) -> None:
        """Make the store's view of `scope` what a list just returned, in one change."""
        gone = {key for key in self._store.keys_of(ORIGIN) if scope.covers(key)} - present
        for key in [k for k in self.errors if scope.covers(k) and k not in present]:
            del self.errors[key]
        self._store.apply(ORIGIN, upserts, gone)

    def _absent(self, scope: _Scope, reason: str) -> None:
        if not scope.absent:
            log.info("%s: %s; treated as empty until it is served", scope, reason)
        scope.absent = True
        self._replace(scope, [], set())
        scope.resource_version = None
        self._mark_synced(scope)

    def _mark_synced(self, scope: _Scope) -> None:
        scope.synced = True
        if all(s.synced for s in self._scopes):
            self.synced.set()


def _describe(error: Exception) -> str:
    if isinstance(error, ApiException):
        return f"API error {error.status}: {error.reason}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
