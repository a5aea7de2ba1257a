"""The incremental (delta) xDS protocol for one stream, without any I/O.

The server tracks, per type, which resource versions the client holds: seeded from
`initial_resource_versions` when a client reconnects, updated with every response. A response
carries only resources whose version differs, and names that went away in
`removed_resources`. Subscribe and unsubscribe are honoured even when the request carries a
stale nonce (only its ACK/NACK part is ignored then). A subscribed name that does not exist is
answered once in `removed_resources`, so the client stops waiting for it. A NACKed version is
not sent again; the next change is. The endpoints of every cluster a CDS response changed are
resent after it, for cluster warming.

Once a stream has been brought up to date with a snapshot (its `basis`), the next push need
not compare every name the client holds: `TypeSnapshot.diff` says what changed between the two
snapshots, computed once for all the streams making the same move, and only those names and
the ones just subscribed are looked at. The full comparison remains for the first response,
reconnects, and wildcard changes.

A thousand delta streams subscribe to the same thousand EDS names when they connect. The
transport finds a request's subscribed names in the bytes it arrived as
(`subscribed_names`), and streams sending the same ones share one set of strings; they go on
sharing it, and the sets they edit alike (`SetEdits`), for as long as they stay subscribed.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from meshcore.xds import types
from meshcore.xds.protocol import (
    WILDCARD,
    ClientReply,
    NameSets,
    Outgoing,
    SetEdits,
    StreamProtocol,
    push_order,
)
from meshcore.xds.resource import EMPTY_TYPE, Resource, Snapshot, TypeSnapshot
from meshcore.xds.status import StreamInfo
from meshcore.xds.wire import field_end, string_field, tag

# DeltaDiscoveryRequest's fields, as numbered in its proto.
_NODE, _TYPE_URL, _SUBSCRIBE, _NONCE = 1, 2, 3, 6
_SUBSCRIPTIONS = NameSets()
_EDITS = SetEdits()
_NONE: frozenset[str] = frozenset()


def subscribed_names(payload: bytes, request: Any) -> Collection[str]:
    """The names `request` (parsed from `payload`) subscribes to. When it only subscribes
    (and perhaps ACKs), Envoy writes them in one run between the type URL and the nonce; that
    run is the key of a set shared by every stream sending the same one. Otherwise the names,
    each interned."""
    requested = request.resource_names_subscribe
    if not len(requested):
        return ()
    if (
        not len(request.resource_names_unsubscribe)
        and not len(request.initial_resource_versions)
        and not request.HasField("error_detail")
    ):
        start = field_end(payload, field_end(payload, 0, _NODE), _TYPE_URL)
        tail = string_field(_NONCE, request.response_nonce)
        end = len(payload) - len(tail)
        if start < end and payload[start] == tag(_SUBSCRIBE) and payload.endswith(tail):
            return _SUBSCRIPTIONS.get(payload[start:end], requested)[1]
    return [sys.intern(n) for n in requested]


@dataclass(slots=True)
class _DeltaSubscription:
    names: frozenset[str] = _NONE  # shared between streams: replaced, never changed
    wildcard: bool = False
    # What the client holds, name -> version, while there is no `basis` to say it.
    client_versions: dict[str, str] = field(default_factory=dict)
    unknown_to_announce: set[str] = field(default_factory=set)  # also: subscribed since basis
    nonce: str = ""
    evaluated_version: str | None = None
    # The snapshot the client holds exactly, for the names it subscribed before this
    # evaluation (all of them for a wildcard); None: `client_versions` says what it holds.
    basis: TypeSnapshot | None = None
    basis_wildcard: bool = False  # whether the client held all of `basis` (a wildcard)
    dirty: bool = True
    owes_first_response: bool = True
    rewarm: set[str] = field(default_factory=set)  # names to resend: their clusters changed

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names

    def hold_basis(self) -> None:
        """Say what the client holds by name (`client_versions`) instead of by `basis`."""
        if self.basis is not None:
            self.client_versions = {
                n: r.version
                for n, r in self.basis.resources.items()
                if self.basis_wildcard or (n in self.names and n not in self.unknown_to_announce)
            }
            self.basis = None


class DeltaProtocol(StreamProtocol):
    """Per-stream delta logic; see the module docstring for the rules."""

    def __init__(
        self, info: StreamInfo, supported: frozenset[str], fixed_type: str | None = None
    ) -> None:
        super().__init__(info, supported, fixed_type)
        self._subs: dict[str, _DeltaSubscription] = {}
        self._order: list[str] = []

    def on_request(
        self, request: Any, subscribe: Collection[str] | None = None
    ) -> ClientReply | None:
        """Apply one DeltaDiscoveryRequest; return the ACK/NACK it carries, if it carries one.
        `subscribe`: its subscribed names, when the transport found them in its bytes."""
        type_url = self._type_of(request)
        if subscribe is None:
            # Interned: a thousand streams subscribing to the same names share the strings.
            subscribe = [sys.intern(n) for n in request.resource_names_subscribe]
        unsubscribe = list(request.resource_names_unsubscribe)
        sub = self._subs.get(type_url)
        if sub is None:
            names = subscribe if isinstance(subscribe, frozenset) else frozenset(subscribe)
            if WILDCARD in names:
                names = names - {WILDCARD}
            self._subs[type_url] = _DeltaSubscription(
                names=names,
                wildcard=not subscribe or WILDCARD in subscribe,
                client_versions=dict(request.initial_resource_versions),
                unknown_to_announce=set(names),
            )
            self._order = push_order(self._subs)
            return None
        self._subscribe(sub, subscribe)
        self._unsubscribe(sub, unsubscribe)
        nonce = request.response_nonce
        if not nonce or not sub.nonce:
            return None
        status = self.info.status(type_url)
        return self._reply(type_url, request, sub.nonce, status.sent_version, status.acked_version)

    def needs_evaluation(self) -> bool:
        """Whether requests since the last `responses` may call for a response."""
        return any(sub.dirty or sub.owes_first_response for sub in self._subs.values())

    def responses(self, snapshot: Snapshot) -> list[Outgoing]:
        out: list[Outgoing] = []
        for type_url in self._order:
            sub = self._subs[type_url]
            current = snapshot.get(type_url) or EMPTY_TYPE
            if not (
                sub.dirty
                or sub.rewarm
                or sub.owes_first_response
                or current.version != sub.evaluated_version
            ):
                continue
            sub.dirty = False
            sub.evaluated_version = current.version
            if sub.basis is None:
                updates, removed = self._compare_all(sub, current)
            else:
                updates, removed = self._compare_changes(sub, current)
            # Whatever goes out, the client then holds `current` for every name it wants.
            sub.basis, sub.basis_wildcard = current, sub.wildcard
            sub.client_versions = {}
            sub.unknown_to_announce.clear()
            sub.rewarm.clear()
            if updates == [] and not removed and not sub.owes_first_response:
                continue
            out.append(self._respond(type_url, sub, current, updates, removed))
            endpoints = self._subs.get(types.ENDPOINT)
            if type_url == types.CLUSTER and endpoints is not None:
                sent = current.resources.keys() if updates is None else (r.name for r in updates)
                endpoints.rewarm.update(sent)
        return out

    @staticmethod
    def _compare_all(
        sub: _DeltaSubscription, current: TypeSnapshot
    ) -> tuple[list[Resource] | None, list[str]]:
        """Updates and removals against `client_versions`; None for updates: all of
        `current` (a client holding nothing yet that wants all of it)."""
        available = current.resources
        versions = sub.client_versions
        if not versions and available and not sub.wildcard and available.keys() <= sub.names:
            return None, sorted(n for n in sub.unknown_to_announce if n not in available)
        if sub.wildcard:
            desired = set(available) if versions else available.keys()
            absent = [n for n in sub.unknown_to_announce if n not in available]
            if not versions:
                return (None if available else []), sorted(absent)
            candidates: Iterable[tuple[str, Resource]] = current.items()
        else:
            names = sub.names
            desired = {n for n in names if n in available}
            absent = [n for n in sub.unknown_to_announce if n not in desired]
            candidates = ((n, available[n]) for n in sorted(desired))
        rewarm = sub.rewarm
        updates = [r for n, r in candidates if n in rewarm or versions.get(n) != r.version]
        removed = {n for n in versions if n not in desired}
        removed.update(absent)
        return updates, sorted(removed)

    @staticmethod
    def _compare_changes(
        sub: _DeltaSubscription, current: TypeSnapshot
    ) -> tuple[list[Resource], list[str]]:
        """What differs from the client's holdings, knowing they are `sub.basis` for every
        name wanted before this evaluation, and that names subscribed since are
        `unknown_to_announce`."""
        basis = sub.basis
        assert basis is not None
        changed, gone = current.diff(basis)
        wants = sub.wants
        updates = {r.name: r for r in changed if wants(r.name)}
        removed = {n for n in gone if wants(n)}
        available = current.resources
        for name in sub.unknown_to_announce:
            resource = available.get(name)
            if resource is None:
                removed.add(name)
            elif not (sub.basis_wildcard and name in basis.resources):
                updates[name] = resource  # unless a wildcard brought it (if changed, see above)
        for name in sub.rewarm:
            resource = available.get(name)
            if resource is not None and wants(name):
                updates[name] = resource
        return [updates[n] for n in sorted(updates)], sorted(removed)

    def _respond(
        self,
        type_url: str,
        sub: _DeltaSubscription,
        current: TypeSnapshot,
        updates: list[Resource] | None,
        removed: list[str],
    ) -> Outgoing:
        """A response with `updates` (None: every resource of `current`) and `removed`."""
        version = current.version
        nonce = self._record_sent(type_url, version)
        envelope = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version,
            type_url=type_url,
            nonce=nonce,
            removed_resources=removed,
        ).SerializeToString()
        if updates is None:
            parts = (envelope, *current.delta_parts())
            count = len(current.resources)
        else:
            parts = (envelope, *(r.delta_field for r in updates))
            count = len(updates)
        sub.nonce = nonce
        sub.owes_first_response = False
        return Outgoing(type_url, version, nonce, parts, count)

    @staticmethod
    def _subscribe(sub: _DeltaSubscription, names: Iterable[str]) -> None:
        added: set[str] = set()
        for name in names:
            if name == WILDCARD:
                if not sub.wildcard:
                    sub.hold_basis()  # everything not yet held is now wanted: compare all
                    sub.wildcard = True
                    sub.dirty = True
            elif name not in sub.names and name not in added:
                added.add(name)
                sub.unknown_to_announce.add(name)
                if not sub.wildcard:
                    # A fresh subscription wants the resource even if we believe it has it.
                    sub.client_versions.pop(name, None)
                sub.dirty = True
        if added:
            sub.names = _EDITS.apply(sub.names, frozenset(added), _NONE)

    @staticmethod
    def _unsubscribe(sub: _DeltaSubscription, names: list[str]) -> None:
        removed: set[str] = set()
        for name in names:
            if name == WILDCARD:
                if sub.wildcard:
                    sub.wildcard = False
                    sub.dirty = True
                    for held in [
                        n for n in sub.client_versions if n not in sub.names or n in removed
                    ]:
                        del sub.client_versions[held]
            elif name in sub.names or name in sub.client_versions:
                removed.add(name)
                sub.unknown_to_announce.discard(name)
                if not sub.wildcard:
                    sub.client_versions.pop(name, None)
                sub.dirty = True
        if removed:
            sub.names = _EDITS.apply(sub.names, _NONE, frozenset(removed))
