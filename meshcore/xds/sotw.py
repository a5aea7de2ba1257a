"""The state-of-the-world xDS protocol for one stream, without any I/O.

`SotwProtocol` takes requests (`on_request`) and snapshots (`responses`) and decides what to
send, following Envoy's xDS document: a fresh nonce per response; an ACK is never answered; a
NACK keeps the last good version and the rejected version is not sent again; a request echoing
a stale nonce is ignored; wildcard versus named subscriptions with the legacy empty-list rule
for LDS/CDS; names subscribed before they exist are remembered and sent when they appear;
LDS/CDS responses carry the full set; types go out in `PUSH_ORDER`, and EDS is sent again
after every CDS response so that warming clusters get their endpoints. The transport
(`server.py`) owns the socket and calls in; keeping it free of I/O makes every rule unit-testable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from meshcore.xds import types
from meshcore.xds.protocol import WILDCARD, ClientReply, Outgoing, StreamProtocol, push_order
from meshcore.xds.resource import EMPTY_TYPE, Resource, Snapshot
from meshcore.xds.status import StreamInfo


@dataclass(slots=True)
class _Subscription:
    names: set[str] = field(default_factory=set)
    wildcard: bool = False
    explicit: bool = False  # a name was subscribed once: the legacy wildcard rule is over
    nonce: str = ""
    sent_key: tuple[str, tuple[str, ...] | None] | None = None
    evaluated_version: str | None = None
    dirty: bool = True  # the subscription changed since the last evaluation
    force: bool = True  # answer even if nothing changed (first request, EDS after CDS)


class SotwProtocol(StreamProtocol):
    """Per-stream state-of-the-world logic; see the module docstring for the rules."""

    def __init__(
        self, info: StreamInfo, supported: frozenset[str], fixed_type: str | None = None
    ) -> None:
        super().__init__(info, supported, fixed_type)
        self._subs: dict[str, _Subscription] = {}

    def on_request(self, request: Any) -> ClientReply | None:
        """Apply one DiscoveryRequest; return the ACK/NACK it carries, if it carries one."""
        type_url = self._type_of(request)
        sub = self._subs.get(type_url)
        nonce = request.response_nonce
        if sub is None or not nonce or not sub.nonce:
            # The first request for this type on this stream: any nonce it carries belongs to
            # an earlier stream, and it is always answered.
            if sub is None:
                sub = self._subs[type_url] = _Subscription()
            self._apply_names(type_url, sub, request.resource_names)
            sub.force = True
            sub.dirty = True
            return None
        version = request.version_info
        reply = self._reply(type_url, request, sub.nonce, version, version)
        if reply is None:
            return None
        if self._apply_names(type_url, sub, request.resource_names):
            sub.dirty = True
        return reply

    def responses(self, snapshot: Snapshot) -> list[Outgoing]:
        """Everything to send now, in push order; empty if the client is up to date."""
        out: list[Outgoing] = []
        for type_url in push_order(self._subs):
            sub = self._subs[type_url]
            current = snapshot.get(type_url) or EMPTY_TYPE
            if not (sub.force or sub.dirty or current.version != sub.evaluated_version):
                continue
            sub.dirty = False
            sub.evaluated_version = current.version
            selected: list[Resource]
            if sub.wildcard:
                selected = list(current.resources.values())
                key: tuple[str, tuple[str, ...] | None] = (current.version, None)
            else:
                available = current.resources
                selected = [available[n] for n in sorted(sub.names) if n in available]
                key = (current.version, tuple(r.name for r in selected))
            if not sub.force and key == sub.sent_key:
                continue
            if not selected and not sub.wildcard and type_url not in types.FULL_STATE_TYPES:
                sub.force = False  # nothing named exists yet: remember, answer when it appears
                continue
            out.append(self._respond(type_url, sub, current.version, key, selected))
            if type_url == types.CLUSTER and types.ENDPOINT in self._subs:
                self._subs[types.ENDPOINT].force = True
        return out

    def _respond(
        self,
        type_url: str,
        sub: _Subscription,
        version: str,
        key: tuple[str, tuple[str, ...] | None],
        selected: list[Resource],
    ) -> Outgoing:
        nonce = self._record_sent(type_url, version)
        envelope = discovery_pb2.DiscoveryResponse(
            version_info=version, type_url=type_url, nonce=nonce
        ).SerializeToString()
        payload = envelope + b"".join(r.sotw_field for r in selected)
        sub.nonce = nonce
        sub.sent_key = key
        sub.force = False
        return Outgoing(type_url, version, nonce, payload, len(selected))

    @staticmethod
    def _apply_names(type_url: str, sub: _Subscription, requested: Iterable[str]) -> bool:
        names = set(requested)
        wildcard = WILDCARD in names
        names.discard(WILDCARD)
        if names:
            sub.explicit = True
        elif not wildcard and type_url in types.LEGACY_WILDCARD_TYPES and not sub.explicit:
            wildcard = True
        changed = wildcard != sub.wildcard or names != sub.names
        sub.wildcard = wildcard
        sub.names = names
        return changed
