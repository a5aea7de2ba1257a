"""A fake Kubernetes API server that speaks the real wire protocol, for tests.

No API server runs here, and kmock cannot serve kubernetes-asyncio's watches (DESIGN.md, Tests),
so every test that drives the real client (galley's Kubernetes source, pilot's registry, the
webhooks' TokenReview) runs against this instead: one aiohttp server on 127.0.0.1 with an
in-memory object store, one global resourceVersion counter and an event log as etcd keeps them.
Tests change objects directly (`create`, `update`, `delete`), compact the log and break open
watches to reproduce what a real cluster does to its clients.

What it serves: discovery (`/api`, `/apis`, `/apis/<group>`, `/api/v1`, `/apis/<group>/<version>`,
`/version`), list/get/create/replace/delete of every registered resource type, namespaced or
not, label selectors, watches (replay from a resourceVersion, 410 Expired when it was compacted,
bookmarks, `timeoutSeconds`) and TokenReview answered by a hook. Creating a
CustomResourceDefinition registers its resource type; `fail_requests` makes the next requests
fail, to exercise a client's retries. Not served: PATCH, subresources, fieldSelector,
pagination (`limit` is ignored and everything is returned), a list's `resourceVersion` (a list
always shows the newest state), checking that a namespace exists.

`KubeFake` owns its aiohttp runner and the handler task of every open request; `stop` ends the
watches first, so nothing is left pending. Event-loop only; the direct methods never await, so
a test can make several changes that no client observes in between.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from meshcore.lifecycle import Service

Object = dict[str, Any]
TokenReviewer = Callable[[Mapping[str, Any]], Mapping[str, Any]]

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_ALL_VERBS = ("create", "delete", "get", "list", "update", "watch")
_TOKEN_REVIEWS = ("authentication.k8s.io", "tokenreviews")
_CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One served resource. Built-in kinds drop apiVersion/kind from list items as the API does."""

    group: str  # "" for the core group
    versions: tuple[str, ...]  # served, preferred first
    kind: str
    plural: str
    namespaced: bool = True
    custom: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version


BUILTIN_TYPES = (
    ResourceType("", ("v1",), "Namespace", "namespaces", namespaced=False),
    ResourceType("", ("v1",), "Node", "nodes", namespaced=False),
    ResourceType("", ("v1",), "Pod", "pods"),
    ResourceType("", ("v1",), "Service", "services"),
    ResourceType("", ("v1",), "Endpoints", "endpoints"),
    ResourceType("", ("v1",), "ConfigMap", "configmaps"),
    ResourceType("", ("v1",), "Secret", "secrets"),
    ResourceType("", ("v1",), "ServiceAccount", "serviceaccounts"),
    ResourceType("discovery.k8s.io", ("v1",), "EndpointSlice", "endpointslices"),
    ResourceType("authentication.k8s.io", ("v1",), "TokenReview", "tokenreviews", namespaced=False),
    ResourceType(
        "apiextensions.k8s.io",
        ("v1",),
        "CustomResourceDefinition",
        "customresourcedefinitions",
        namespaced=False,
    ),
)


class KubeApiError(Exception):
    """An API failure, answered as a `Status` object (and raised by the direct methods)."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message

    def status(self) -> Object:
        return _status(self.code, self.reason, self.message)


def _status(code: int, reason: str, message: str) -> Object:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _not_found(message: str = "the server could not find the requested resource") -> KubeApiError:
    return KubeApiError(404, "NotFound", message)


def _bad_request(message: str) -> KubeApiError:
    return KubeApiError(400, "BadRequest", message)


def _parse_bool(text: str, name: str) -> bool:
    """Go's strconv.ParseBool, which the API server uses for query flags."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _bad_request(f"invalid value for {name}: {text!r}")


_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[-A-Za-z0-9_.]*"
_EXISTS = re.compile(rf"^(!?)\s*({_KEY})$")
_EQUALITY = re.compile(rf"^({_KEY})\s*(==|!=|=)\s*({_VALUE})$")
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s*\(([^()]*)\)$")


@dataclass(frozen=True, slots=True)
class _Requirement:
    key: str
    operator: str  # "exists", "!exists", "in", "notin"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "exists":
            return present
        if self.operator == "!exists":
            return not present
        if self.operator == "in":
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A parsed `labelSelector`: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x)`."""

    requirements: tuple[_Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        requirements = []
        for term in _split_terms(text):
            if match := _SET.match(term):
                values = frozenset(v.strip() for v in match[3].split(",") if v.strip())
                requirements.append(_Requirement(match[1], match[2], values))
            elif match := _EQUALITY.match(term):
                operator = "notin" if match[2] == "!=" else "in"
                requirements.append(_Requirement(match[1], operator, frozenset({match[3]})))
            elif match := _EXISTS.match(term):
                requirements.append(_Requirement(match[2], "!exists" if match[1] else "exists"))
            else:
                raise ValueError(f"unable to parse requirement: {term!r}")
        return cls(tuple(requirements))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def _split_terms(text: str) -> list[str]:
    """Commas separate requirements, except inside the parentheses of a set."""
    terms, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            terms.append(text[start:index])
            start = index + 1
    terms.append(text[start:])
    return [t.strip() for t in terms if t.strip()]


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    labels = obj.get("metadata", {}).get("labels")
    return labels if isinstance(labels, Mapping) else {}


def _namespace(obj: Mapping[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("namespace", ""))


def _body_of(obj: Mapping[str, Any]) -> Object:
    """What a generation counts: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


@dataclass(frozen=True, slots=True)
class _Event:
    revision: int
    type: str  # ADDED, MODIFIED, DELETED
    resource: tuple[str, str]
    obj: Object
    previous: Object | None = None


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    query: Mapping[str, str]


@dataclass(eq=False)
class _Watch:
    """One open watch: what it selects, and the encoded events waiting to be written."""

    rtype: ResourceType
    version: str
    namespace: str | None
    selector: LabelSelector
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)

    def view(self, event: _Event) -> bytes | None:
        """The event as this watch sees it, or None; selector moves become ADDED/DELETED."""
        if event.resource != self.rtype.key:
            return None
        if self.namespace is not None and _namespace(event.obj) != self.namespace:
            return None
        matches = self.selector.matches(_labels(event.obj))
        if event.type == "MODIFIED" and event.previous is not None:
            matched = self.selector.matches(_labels(event.previous))
            if matched and not matches:
                gone = copy.deepcopy(event.previous)
                gone["metadata"]["resourceVersion"] = str(event.revision)
                return self.encode("DELETED", gone)
            if matches and not matched:
                return self.encode("ADDED", event.obj)
        return self.encode(event.type, event.obj) if matches else None

    def encode(self, event_type: str, obj: Object) -> bytes:
        served = {**obj, "apiVersion": self.rtype.api_version(self.version)}
        return _line({"type": event_type, "object": served})


def _line(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeFake(Service):
    """The fake API server. `async with KubeFake() as kube:` then point a client at `kube.url`."""

    def __init__(
        self,
        *,
        bookmark_interval: float = 1.0,
        token_reviewer: TokenReviewer | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.bookmark_interval = bookmark_interval
        self.token_reviewer = token_reviewer
        self.requests: list[RecordedRequest] = []
        self._host = host
        self._port = 0
        self._runner: web.AppRunner | None = None
        self._types: dict[tuple[str, str], ResourceType] = {}
        self._objects: dict[tuple[str, str], dict[tuple[str, str], Object]] = {}
        self._log: list[_Event] = []
        self._revision = 1
        self._compacted = 0
        self._watches: set[_Watch] = set()
        self._failing = (0, 500, "InternalError")  # requests still to fail, and how
        for rtype in BUILTIN_TYPES:
            self.add_resource_type(rtype)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("KubeFake is not started")
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, self._host, 0).start()
        self._port = runner.addresses[0][1]
        self._runner = runner

    async def stop(self) -> None:
        self.break_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- what tests drive directly -----------------------------------------------------------

    def add_resource_type(self, rtype: ResourceType) -> None:
        self._types[rtype.key] = rtype
        self._objects.setdefault(rtype.key, {})

    def add_custom_resource(
        self, group: str, versions: tuple[str, ...], kind: str, plural: str, namespaced: bool = True
    ) -> ResourceType:
        rtype = ResourceType(group, versions, kind, plural, namespaced, custom=True)
        self.add_resource_type(rtype)
        return rtype

    @property
    def resource_version(self) -> str:
        """The newest revision, as a list made now would report it."""
        return str(self._revision)

    def create(self, obj: Mapping[str, Any]) -> Object:
        rtype, version = self._type_of(obj)
        return self._create(rtype, version, None, obj)

    def update(self, obj: Mapping[str, Any]) -> Object:
        """Replace an existing object; a metadata.resourceVersion in `obj` must be current."""
        rtype, version = self._type_of(obj)
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace", "default") if rtype.namespaced else ""
        return self._replace(rtype, version, namespace, str(meta.get("name", "")), obj)

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "default") -> Object:
        rtype, version = self._type_of({"apiVersion": api_version, "kind": kind})
        return self._delete(rtype, version, namespace if rtype.namespaced else "", name)

    def get(
        self, api_version: str, kind: str, name: str, namespace: str = "default"
    ) -> Object | None:
        rtype, _ = self._type_of({"apiVersion": api_version, "kind": kind})
        found = self._objects[rtype.key].get((namespace if rtype.namespaced else "", name))
        return copy.deepcopy(found) if found is not None else None

    def compact(self) -> None:
        """Forget every event so far: watching from an older version now answers 410 Expired."""
        self._compacted = self._revision
        self._log.clear()

    def break_watches(self) -> int:
        """End every open watch now, as an API server restart would; returns how many."""
        watches = list(self._watches)
        self._watches.clear()
        for watch in watches:
            watch.queue.put_nowait(None)
        return len(watches)

    def fail_requests(self, count: int, code: int = 500, reason: str = "InternalError") -> None:
        """Answer the next `count` requests, whatever they ask, with this error Status."""
        self._failing = (count, code, reason)

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    # -- the store ---------------------------------------------------------------------------

    def _type_of(self, obj: Mapping[str, Any]) -> tuple[ResourceType, str]:
        api_version = str(obj.get("apiVersion", ""))
        group, _, version = api_version.rpartition("/")
        for rtype in self._types.values():
            if rtype.group == group and rtype.kind == obj.get("kind"):
                if version in rtype.versions:
                    return rtype, version
                break
        raise _not_found(f"no resource type for {api_version} {obj.get('kind')}")

    def _next_revision(self) -> int:
        self._revision += 1
        return self._revision

    def _record(self, event: _Event) -> None:
        self._log.append(event)
        for watch in self._watches:
            line = watch.view(event)
            if line is not None:
                watch.queue.put_nowait(line)

    def _create(
        self, rtype: ResourceType, version: str, namespace: str | None, body: Mapping[str, Any]
    ) -> Object:
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise KubeApiError(422, "Invalid", f"{rtype.kind}: metadata.name: Required value")
        if rtype.namespaced:
            if namespace is not None and meta.setdefault("namespace", namespace) != namespace:
                raise _bad_request("the namespace of the object does not match the request")
            meta.setdefault("namespace", "default")
        else:
            meta.pop("namespace", None)
        key = (_namespace(obj), name)
        if key in self._objects[rtype.key]:
            raise KubeApiError(
                409, "AlreadyExists", f'{rtype.plural}.{rtype.group} "{name}" already exists'
            )
        revision = self._next_revision()
        obj["apiVersion"] = rtype.api_version(version)
        obj["kind"] = rtype.kind
        meta.update(
            uid=str(uuid.uuid4()),
            creationTimestamp=_now(),
            resourceVersion=str(revision),
            generation=1,
        )
        self._objects[rtype.key][key] = obj
        if rtype.key == _CRDS:
            self._register_crd(obj)
        self._record(_Event(revision, "ADDED", rtype.key, copy.deepcopy(obj)))
        return copy.deepcopy(obj)

    def _replace(
        self, rtype: ResourceType, version: str, namespace: str, name: str, body: Mapping[str, Any]
    ) -> Object:
        old = self._objects[rtype.key].get((namespace, name))
        if old is None:
            raise _not_found(f'{rtype.plural} "{name}" not found')
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        if meta.get("name", name) != name or meta.get("namespace", namespace) != namespace:
            raise _bad_request("the name or namespace of the object does not match the request")
        expected = meta.get("resourceVersion")
        if expected and expected != old["metadata"]["resourceVersion"]:
            raise KubeApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {rtype.plural} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
            )
        revision = self._next_revision()
        obj["apiVersion"] = rtype.api_version(version)
        obj["kind"] = rtype.kind
        generation = old["metadata"]["generation"]
        meta.update(
            name=name,
            uid=old["metadata"]["uid"],
            creationTimestamp=old["metadata"]["creationTimestamp"],
            resourceVersion=str(revision),
            generation=generation + (_body_of(obj) != _body_of(old)),
        )
        if rtype.namespaced:
            meta["namespace"] = namespace
        self._objects[rtype.key][namespace, name] = obj
        if rtype.key == _CRDS:
            self._register_crd(obj)
        self._record(_Event(revision, "MODIFIED", rtype.key, copy.deepcopy(obj), old))
        return copy.deepcopy(obj)

    def _delete(self, rtype: ResourceType, version: str, namespace: str, name: str) -> Object:
        old = self._objects[rtype.key].pop((namespace, name), None)
        if old is None:
            raise _not_found(f'{rtype.plural} "{name}" not found')
        revision = self._next_revision()
        old["metadata"]["resourceVersion"] = str(revision)
        self._record(_Event(revision, "DELETED", rtype.key, copy.deepcopy(old)))
        if rtype.key == _CRDS:
            self._unregister_crd(old)
        return {**old, "apiVersion": rtype.api_version(version)}

    def _register_crd(self, crd: Mapping[str, Any]) -> None:
        spec = crd.get("spec", {})
        versions = tuple(v["name"] for v in spec.get("versions", ()) if v.get("served", True))
        names = spec.get("names", {})
        self.add_custom_resource(
            spec["group"], versions, names["kind"], names["plural"], spec.get("scope") != "Cluster"
        )

    def _unregister_crd(self, crd: Mapping[str, Any]) -> None:
        key = (crd["spec"]["group"], crd["spec"]["names"]["plural"])
        self._types.pop(key, None)
        self._objects.pop(key, None)
        for watch in [w for w in self._watches if w.rtype.key == key]:
            self._watches.discard(watch)
            watch.queue.put_nowait(None)

    # -- HTTP ----------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(RecordedRequest(request.method, request.path, dict(request.query)))
        try:
            count, code, reason = self._failing
            if count > 0:
                self._failing = (count - 1, code, reason)
                raise KubeApiError(code, reason, "a failure the test asked for")
            return await self._dispatch(request)
        except KubeApiError as error:
            return web.json_response(error.status(), status=error.code)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if request.method != "GET" and len(parts) < 3:
            raise KubeApiError(405, "MethodNotAllowed", "the server does not allow this method")
        if parts == ["version"]:
            return web.json_response(_VERSION)
        if parts == ["api"]:
            return web.json_response(self._core_versions())
        if parts == ["apis"]:
            groups = [self._group(g) for g in dict.fromkeys(t.group for t in self._types.values())]
            body = {"kind": "APIGroupList", "apiVersion": "v1", "groups": [g for g in groups if g]}
            return web.json_response(body)
        if len(parts) == 2 and parts[0] == "apis":
            found = self._group(parts[1]) if parts[1] else None
            if found is None:
                raise _not_found()
            return web.json_response({"kind": "APIGroup", "apiVersion": "v1", **found})
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise _not_found()
        if not rest:
            if request.method != "GET":
                raise KubeApiError(405, "MethodNotAllowed", "the server does not allow this method")
            return web.json_response(self._resource_list(group, version))
        return await self._resource_request(request, group, version, rest)

    def _core_versions(self) -> Object:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self._host}:{self._port}"}
            ],
        }

    def _group(self, group: str) -> Object | None:
        if not group:
            return None
        versions = [v for t in self._types.values() if t.group == group for v in t.versions]
        if not versions:
            return None
        served = [{"groupVersion": f"{group}/{v}", "version": v} for v in dict.fromkeys(versions)]
        return {"name": group, "versions": served, "preferredVersion": served[0]}

    def _resource_list(self, group: str, version: str) -> Object:
        served = [t for t in self._types.values() if t.group == group and version in t.versions]
        if not served:
            raise _not_found()
        resources = [
            {
                "name": t.plural,
                "singularName": t.kind.lower(),
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": ["create"] if t.key == _TOKEN_REVIEWS else list(_ALL_VERBS),
            }
            for t in served
        ]
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    async def _resource_request(
        self, request: web.Request, group: str, version: str, rest: list[str]
    ) -> web.StreamResponse:
        namespace: str | None = None
        if len(rest) in (3, 4) and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 2:
            raise _not_found()
        rtype = self._types.get((group, rest[0]))
        if rtype is None or version not in rtype.versions:
            raise _not_found()
        if namespace is not None and not rtype.namespaced:
            raise _not_found()
        name = rest[1] if len(rest) == 2 else None
        if name is not None and rtype.namespaced and namespace is None:
            raise _not_found()
        method = request.method
        if rtype.key == _TOKEN_REVIEWS:
            if method != "POST" or name is not None:
                raise KubeApiError(405, "MethodNotAllowed", "tokenreviews only accept create")
            return self._token_review(await _json_body(request))
        if name is None and method == "GET":
            if _parse_bool(request.query.get("watch", "false"), "watch"):
                return await self._watch(request, rtype, version, namespace)
            return web.json_response(self._list(request, rtype, version, namespace))
        if name is None and method == "POST":
            created = self._create(rtype, version, namespace, await _json_body(request))
            return web.json_response(created, status=201)
        if name is None:
            raise KubeApiError(405, "MethodNotAllowed", f"{method} is not allowed on a list")
        key = (namespace or "", name)
        if method == "GET":
            found = self._objects[rtype.key].get(key)
            if found is None:
                raise _not_found(f'{rtype.plural} "{name}" not found')
            return web.json_response({**found, "apiVersion": rtype.api_version(version)})
        if method == "PUT":
            body = await _json_body(request)
            return web.json_response(self._replace(rtype, version, *key, body))
        if method == "DELETE":
            return web.json_response(self._delete(rtype, version, *key))
        raise KubeApiError(405, "MethodNotAllowed", f"{method} is not supported by the fake")

    def _selector(self, request: web.Request) -> LabelSelector:
        if "fieldSelector" in request.query:
            raise _bad_request("fieldSelector is not supported by the fake")
        try:
            return LabelSelector.parse(request.query.get("labelSelector", ""))
        except ValueError as error:
            raise _bad_request(str(error)) from None

    def _selected(
        self, rtype: ResourceType, namespace: str | None, selector: LabelSelector
    ) -> list[Object]:
        return [
            obj
            for (ns, _), obj in sorted(self._objects[rtype.key].items())
            if (namespace is None or ns == namespace) and selector.matches(_labels(obj))
        ]

    def _list(
        self, request: web.Request, rtype: ResourceType, version: str, namespace: str | None
    ) -> Object:
        api_version = rtype.api_version(version)
        items = []
        for obj in self._selected(rtype, namespace, self._selector(request)):
            if rtype.custom:
                items.append({**obj, "apiVersion": api_version})
            else:
                items.append({k: v for k, v in obj.items() if k not in ("apiVersion", "kind")})
        return {
            "kind": f"{rtype.kind}List",
            "apiVersion": api_version,
            "metadata": {"resourceVersion": self.resource_version},
            "items": items,
        }

    async def _watch(
        self, request: web.Request, rtype: ResourceType, version: str, namespace: str | None
    ) -> web.StreamResponse:
        query = request.query
        bookmarks = _parse_bool(query.get("allowWatchBookmarks", "false"), "allowWatchBookmarks")
        timeout_text = query.get("timeoutSeconds", "")
        if timeout_text and not timeout_text.isdigit():
            raise _bad_request(f"invalid timeoutSeconds: {timeout_text!r}")
        timeout = int(timeout_text) if timeout_text else None
        watch = _Watch(rtype, version, namespace, self._selector(request))
        since = query.get("resourceVersion", "")
        expired = False
        if since in ("", "0"):
            initial = [
                watch.encode("ADDED", o) for o in self._selected(rtype, namespace, watch.selector)
            ]
        elif not since.isdigit():
            raise _bad_request(f"invalid resource version: {since!r}")
        elif int(since) < self._compacted:
            message = f"too old resource version: {since} ({self._compacted})"
            initial = [_line({"type": "ERROR", "object": _status(410, "Expired", message)})]
            expired = True
        else:
            replay = (watch.view(e) for e in self._log if e.revision > int(since))
            initial = [line for line in replay if line is not None]
        if not expired:
            self._watches.add(watch)  # in the same step as the replay: no event falls between
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await response.prepare(request)
            for line in initial:
                await response.write(line)
            if not expired:
                await self._stream(response, watch, timeout, bookmarks)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away; nothing to answer
        finally:
            self._watches.discard(watch)
        return response

    async def _stream(
        self, response: web.StreamResponse, watch: _Watch, seconds: int | None, bookmarks: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        while True:
            waits = [] if deadline is None else [deadline - loop.time()]
            if bookmarks:
                waits.append(self.bookmark_interval)
            try:
                async with asyncio.timeout(min(waits) if waits else None):
                    line = await watch.queue.get()
            except TimeoutError:
                if deadline is not None and loop.time() >= deadline:
                    return
                # The queue is empty, so every event up to the newest revision has been written.
                bookmark = {
                    "kind": watch.rtype.kind,
                    "apiVersion": watch.rtype.api_version(watch.version),
                    "metadata": {"resourceVersion": self.resource_version},
                }
                await response.write(_line({"type": "BOOKMARK", "object": bookmark}))
                continue
            if line is None:
                return
            await response.write(line)

    def _token_review(self, review: Mapping[str, Any]) -> web.StreamResponse:
        spec = review.get("spec", {})
        if self.token_reviewer is None:
            status: Mapping[str, Any] = {
                "authenticated": False,
                "error": "no token reviewer configured",
            }
        else:
            status = self.token_reviewer(spec)
        body = {
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": dict(status),
        }
        return web.json_response(body, status=201)


async def _json_body(request: web.Request) -> Object:
    try:
        body = await request.json()
    except ValueError:
        raise _bad_request("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise _bad_request("the request body is not a JSON object")
    return body


_VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-kubefake",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}
