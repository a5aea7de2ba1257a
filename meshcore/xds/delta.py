"""The incremental (delta) xDS protocol for one stream, without any I/O.

The server tracks, per type, which resource versions the client holds: seeded from
`initial_resource_versions` when a client reconnects, updated with every response. A response
carries only resources whose version differs, and names that went away in
`removed_resources`. Subscribe and unsubscribe are honoured even when the request carries a
stale nonce (only its ACK/NACK part is ignored then). A subscribed name that does not exist is
answered once in `removed_resources`, so the client stops waiting for it. A NACKed version is
not sent again; the next change is. EDS is resent after each CDS change for cluster warming.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from meshcore.xds import types
from meshcore.xds.protocol import WILDCARD, ClientReply, Outgoing, StreamProtocol, push_order
from meshcore.xds.resource import EMPTY_TYPE, Resource, Snapshot
from meshcore.xds.status import StreamInfo


@dataclass(slots=True)
class _DeltaSubscription:
    names: set[str] = field(default_factory=set)
    wildcard: bool = False
    client_versions: dict[str, str] = field(default_factory=dict)
    unknown_to_announce: set[str] = field(default_factory=set)
    nonce: str = ""
    evaluated_version: str | None = None
    dirty: bool = True
    owes_first_response: bool = True
    force: bool = False


class DeltaProtocol(StreamProtocol):
    """Per-stream delta logic; see the module docstring for the rules."""

    def __init__(
        self, info: StreamInfo, supported: frozenset[str], fixed_type: str | None = None
    ) -> None:
        super().__init__(info, supported, fixed_type)
        self._subs: dict[str, _DeltaSubscription] = {}

    def on_request(self, request: Any) -> ClientReply | None:
        type_url = self._type_of(request)
        subscribe = list(request.resource_names_subscribe)
        unsubscribe = list(request.resource_names_unsubscribe)
        sub = self._subs.get(type_url)
        if sub is None:
            names = {n for n in subscribe if n != WILDCARD}
            self._subs[type_url] = _DeltaSubscription(
                names=names,
                wildcard=not subscribe or WILDCARD in subscribe,
                client_versions=dict(request.initial_resource_versions),
                unknown_to_announce=set(names),
            )
            return None
        self._subscribe(sub, subscribe)
        self._unsubscribe(sub, unsubscribe)
        nonce = request.response_nonce
        if not nonce or not sub.nonce:
            return None
        status = self.info.status(type_url)
        return self._reply(type_url, request, sub.nonce, status.sent_version, status.acked_version)

    def responses(self, snapshot: Snapshot) -> list[Outgoing]:
        out: list[Outgoing] = []
        for type_url in push_order(self._subs):
            sub = self._subs[type_url]
            current = snapshot.get(type_url) or EMPTY_TYPE
            if not (
                sub.dirty
                or sub.force
                or sub.owes_first_response
                or current.version != sub.evaluated_version
            ):
                continue
            sub.dirty = False
            sub.evaluated_version = current.version
            if sub.wildcard:
                desired = dict(current.resources)
            else:
                desired = {n: current.resources[n] for n in sub.names if n in current.resources}
            updates = [
                desired[name]
                for name in sorted(desired)
                if sub.force or sub.client_versions.get(name) != desired[name].version
            ]
            removed = {n for n in sub.client_versions if n not in desired}
            removed.update(n for n in sub.unknown_to_announce if n not in desired)
            sub.unknown_to_announce.clear()
            sub.force = False
            if not updates and not removed and not sub.owes_first_response:
                continue
            out.append(self._respond(type_url, sub, current.version, updates, sorted(removed)))
            if type_url == types.CLUSTER and types.ENDPOINT in self._subs and (updates or removed):
                self._subs[types.ENDPOINT].force = True
        return out

    def _respond(
        self,
        type_url: str,
        sub: _DeltaSubscription,
        version: str,
        updates: list[Resource],
        removed: list[str],
    ) -> Outgoing:
        nonce = self._record_sent(type_url, version)
        envelope = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version,
            type_url=type_url,
            nonce=nonce,
            removed_resources=removed,
        ).SerializeToString()
        payload = envelope + b"".join(r.delta_field for r in updates)
        for resource in updates:
            sub.client_versions[resource.name] = resource.version
        for name in removed:
            sub.client_versions.pop(name, None)
        sub.nonce = nonce
        sub.owes_first_response = False
        return Outgoing(type_url, version, nonce, payload, len(updates))

    @staticmethod
    def _subscribe(sub: _DeltaSubscription, names: list[str]) -> None:
        for name in names:
            if name == WILDCARD:
                if not sub.wildcard:
                    sub.wildcard = True
                    sub.dirty = True
            elif name not in sub.names:
                sub.names.add(name)
                sub.unknown_to_announce.add(name)
                if not sub.wildcard:
                    # A fresh subscription wants the resource even if we believe it has it.
                    sub.client_versions.pop(name, None)
                sub.dirty = True

    @staticmethod
    def _unsubscribe(sub: _DeltaSubscription, names: list[str]) -> None:
        for name in names:
            if name == WILDCARD:
                if sub.wildcard:
                    sub.wildcard = False
                    sub.dirty = True
                    for held in [n for n in sub.client_versions if n not in sub.names]:
                        del sub.client_versions[held]
            elif name in sub.names or name in sub.client_versions:
                sub.names.discard(name)
                sub.unknown_to_announce.discard(name)
                if not sub.wildcard:
                    sub.client_versions.pop(name, None)
                sub.dirty = True
