"""The state-of-the-world xDS protocol for one stream, without any I/O.

`SotwProtocol` takes requests (`on_request`) and snapshots (`responses`) and decides what to
send, following Envoy's xDS document: a fresh nonce per response; an ACK is never answered; a
NACK keeps the last good version and the rejected version is not sent again; a request echoing
a stale nonce is ignored; wildcard versus named subscriptions with the legacy empty-list rule
for LDS/CDS; names subscribed before they exist are remembered and sent when they appear;
LDS/CDS responses carry the full set; types go out in `PUSH_ORDER`, and the endpoints of every
cluster a CDS response changed are sent again right after it, so that warming clusters get
them. The transport (`server.py`) owns the socket and calls in; keeping it free of I/O makes
every rule unit-testable.

At scale (thousands of streams, a thousand EDS names each) the per-request and per-push work
is kept small, since it is multiplied by every stream:

- Envoy repeats every subscribed EDS name in each ACK. The names are compared still encoded,
  and equal lists share one set (`NameSets`), instead of building a thousand strings per ACK
  per stream. The transport says where the encoded names lie in the bytes the request came as
  (`wire_names`), so an unchanged list is recognised without copying it; without that they are
  re-encoded from the parsed request (`_names_key`).
- For EDS and RDS, which need not carry the full set, a response carries only what the
  client lacks: the resources that changed since what the stream was last sent (its `basis`;
  Envoy updates the ones in the response and keeps the others) and those of names it did not
  hold (`held`). A request that only drops names is not answered (as in Istio); one that adds
  a cluster's name after a CDS change gets that cluster's endpoints, not the thousand others
  again. A stream's first response, and the endpoints after its first CDS response, carry
  every name.
- A response carrying a whole type concatenates the snapshot's pre-encoded body
  (`TypeSnapshot.sotw_parts`), shared by every stream holding that snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from meshcore.xds import types
from meshcore.xds.protocol import (
    WILDCARD,
    ClientReply,
    NameSets,
    Outgoing,
    StreamProtocol,
    push_order,
)
from meshcore.xds.resource import EMPTY_TYPE, Resource, Snapshot, TypeSnapshot
from meshcore.xds.status import StreamInfo
from meshcore.xds.wire import field_end, leading_string, string_field, tag

_NOT_NAMES = ("version_info", "node", "type_url", "response_nonce", "error_detail")
# Encoded name list -> (the same bytes, its set): streams with equal lists share both objects.
_NAME_SETS = NameSets()

Key = tuple[str, frozenset[str] | None]


# DiscoveryRequest's fields, as numbered in its proto.
_VERSION, _NODE, _NAMES, _TYPE_URL, _NONCE = 1, 2, 3, 4, 5


@dataclass(frozen=True, slots=True)
class WireNames:
    """Where a request's encoded names lie in the bytes it arrived as."""

    payload: bytes
    start: int
    end: int

    def equals(self, key: bytes | None) -> bool:
        return (
            key is not None
            and len(key) == self.end - self.start
            and self.payload.startswith(key, self.start)  # compared in place, not copied
        )

    def key(self) -> bytes:
        return self.payload[self.start : self.end]


def wire_names(payload: bytes, request: Any) -> WireNames:
    """The request's encoded names in its wire bytes: what lies between its version and node
    (fields 1 and 2) and its type URL and nonce (fields 4 and 5), where Envoy, writing fields
    in number order, puts them. Two requests with equal names there name the same resources.
    A request laid out otherwise has its names re-encoded instead."""
    if not len(request.resource_names):
        return WireNames(b"", 0, 0)
    start = field_end(payload, field_end(payload, 0, _VERSION), _NODE)
    tail = string_field(_TYPE_URL, request.type_url) + string_field(_NONCE, request.response_nonce)
    end = len(payload) - len(tail)
    if end <= start or payload[start] != tag(_NAMES) or not payload.endswith(tail):
        key = _names_key(request)
        return WireNames(key, 0, len(key))
    return WireNames(payload, start, end)


def _names_key(request: Any) -> bytes:
    """The request's subscribed names, still encoded (comparing bytes is cheap)."""
    if not len(request.resource_names):
        return b""
    names_only = type(request)()
    names_only.CopyFrom(request)
    for name in _NOT_NAMES:
        names_only.ClearField(name)
    encoded: bytes = names_only.SerializeToString()
    return encoded


@dataclass(slots=True)
class _Subscription:
    names: frozenset[str] = frozenset()
    names_key: bytes | None = None  # `names` as last requested, encoded
    wildcard: bool = False
    explicit: bool = False  # a name was subscribed once: the legacy wildcard rule is over
    nonce: str = ""
    ack_tail: bytes = b""  # how a plain ACK of the latest response ends: type URL and nonce
    sent_key: Key | None = None  # (version, names) of the last response with all it wanted
    held: frozenset[str] = frozenset()  # EDS/RDS names the client holds as of `basis`
    evaluated_version: str | None = None
    basis: TypeSnapshot | None = None  # what the stream was last sent (or found it needs none)
    rewarm: frozenset[str] = frozenset()  # EDS names to send again: their clusters changed
    dirty: bool = True  # the client wants something new since the last evaluation
    force: bool = True  # answer even if nothing changed (first request)


class SotwProtocol(StreamProtocol):
    """Per-stream state-of-the-world logic; see the module docstring for the rules."""

    def __init__(
        self, info: StreamInfo, supported: frozenset[str], fixed_type: str | None = None
    ) -> None:
        super().__init__(info, supported, fixed_type)
        self._subs: dict[str, _Subscription] = {}
        self._order: list[str] = []

    def on_request(self, request: Any, names: WireNames | None = None) -> ClientReply | None:
        """Apply one DiscoveryRequest; return the ACK/NACK it carries, if it carries one.
        `names`: where its encoded names are, when the transport has its bytes."""
        type_url = self._type_of(request)
        sub = self._subs.get(type_url)
        nonce = request.response_nonce
        if sub is None or not nonce or not sub.nonce:
            # The first request for this type on this stream: any nonce it carries belongs to
            # an earlier stream, and it is always answered.
            if sub is None:
                sub = self._subs[type_url] = _Subscription()
                self._order = push_order(self._subs)
            self._apply_names(type_url, sub, request, names)
            sub.force = True
            sub.dirty = True
            return None
        version = request.version_info
        reply = self._reply(type_url, request, sub.nonce, version, version)
        if reply is None:
            return None
        if self._apply_names(type_url, sub, request, names):
            sub.dirty = True
        return reply

    def plain_ack(self, payload: bytes) -> ClientReply | None:
        """The ACK an encoded request carries, if it is nothing more: the latest response's
        type and nonce, the names last requested, no error. Recognised from its bytes, without
        parsing the thousand names an EDS ACK repeats; None for any other request (parse it
        and call `on_request`)."""
        for type_url, sub in self._subs.items():
            tail, names = sub.ack_tail, sub.names_key
            if not tail or names is None or not payload.endswith(tail):
                continue
            start = field_end(payload, field_end(payload, 0, _VERSION), _NODE)
            if len(payload) - len(tail) - start != len(names):
                return None
            if not payload.startswith(names, start):
                return None
            return self._record_ack(type_url, sub.nonce, leading_string(payload, _VERSION))
        return None

    def needs_evaluation(self) -> bool:
        """Whether requests since the last `responses` may call for a response."""
        return any(sub.force or sub.dirty for sub in self._subs.values())

    def responses(self, snapshot: Snapshot) -> list[Outgoing]:
        """Everything to send now, in push order; empty if the client is up to date."""
        out: list[Outgoing] = []
        for type_url in self._order:
            sub = self._subs[type_url]
            current = snapshot.get(type_url) or EMPTY_TYPE
            if not (
                sub.force or sub.dirty or sub.rewarm or current.version != sub.evaluated_version
            ):
                continue
            previous = sub.basis
            response = self._evaluate(type_url, sub, current)
            if response is None:
                continue
            out.append(response)
            if type_url == types.CLUSTER:
                self._rewarm_endpoints(current, previous)
        return out

    def _evaluate(
        self, type_url: str, sub: _Subscription, current: TypeSnapshot
    ) -> Outgoing | None:
        rewarm, sub.rewarm = sub.rewarm, frozenset()
        dirty, sub.dirty = sub.dirty, False
        sub.evaluated_version = current.version
        if sub.wildcard:
            key: Key = (current.version, None)
            if not (sub.force or rewarm) and key == sub.sent_key:
                return None
            return self._respond(type_url, sub, current, key, None)
        available = current.resources
        if sub.force or sub.basis is None or type_url in types.FULL_STATE_TYPES:
            sub.held = sub.names
            key = (current.version, sub.names)
            if not (sub.force or rewarm & sub.names) and key == sub.sent_key:
                sub.basis = current
                return None
            if available and available.keys() <= sub.names:
                return self._respond(type_url, sub, current, key, None)  # names cover all
            selected = [available[n] for n in sorted(sub.names) if n in available]
            if not selected and type_url not in types.FULL_STATE_TYPES:
                # Nothing named exists yet: remember, and answer when it appears.
                sub.force = False
                sub.basis = current
                return None
            return self._respond(type_url, sub, current, key, selected)
        changed, _ = current.diff(sub.basis)
        names = sub.names
        selected = [r for r in changed if r.name in names]
        # The client can lack a name it holds no resource of only after a request added it,
        # and such a request makes the subscription dirty.
        lacking = (rewarm | (names - sub.held) if dirty else rewarm) & names
        sub.held = names
        if lacking:
            sent = {r.name for r in selected}
            selected += (available[n] for n in lacking if n in available and n not in sent)
            selected.sort(key=lambda r: r.name)
        if not selected:
            sub.basis = current
            return None
        return self._respond(type_url, sub, current, None, selected)

    def _rewarm_endpoints(self, clusters: TypeSnapshot, previous: TypeSnapshot | None) -> None:
        """After a CDS response, the endpoints of each cluster it added or changed go out
        again (an EDS cluster's endpoints are named after it): Envoy warms a changed cluster
        anew and waits for them. Before any earlier CDS response, all of them do."""
        endpoints = self._subs.get(types.ENDPOINT)
        if endpoints is None:
            return
        if previous is None:
            endpoints.force = True
            return
        changed, _ = clusters.diff(previous)
        if changed:
            endpoints.rewarm = endpoints.rewarm | {r.name for r in changed}

    def _respond(
        self,
        type_url: str,
        sub: _Subscription,
        current: TypeSnapshot,
        key: Key | None,
        selected: list[Resource] | None,
    ) -> Outgoing:
        """A response with `selected`, or with every resource of `current` for None."""
        version = current.version
        nonce = self._record_sent(type_url, version)
        envelope = discovery_pb2.DiscoveryResponse(
            version_info=version, type_url=type_url, nonce=nonce
        ).SerializeToString()
        if selected is None:
            parts = (envelope, *current.sotw_parts())
            count = len(current.resources)
        else:
            parts = (envelope, *(r.sotw_field for r in selected))
            count = len(selected)
        sub.nonce = nonce
        sub.ack_tail = string_field(_TYPE_URL, type_url) + string_field(_NONCE, nonce)
        sub.sent_key = key
        sub.basis = current
        sub.force = False
        return Outgoing(type_url, version, nonce, parts, count)

    @staticmethod
    def _apply_names(
        type_url: str, sub: _Subscription, request: Any, wire: WireNames | None
    ) -> bool:
        """Take the request's names; whether that needs an answer: the client wants something
        it did not ask for before, or (for LDS and CDS, always complete) anything changed."""
        if wire is None:
            key = _names_key(request)
            wire = WireNames(key, 0, len(key))
        if wire.equals(sub.names_key):
            return False
        key = wire.key()
        if key:
            sub.names_key, names = _NAME_SETS.get(key, request.resource_names)
        else:
            sub.names_key, names = key, frozenset()
        wildcard = WILDCARD in names
        if wildcard:
            names = names - {WILDCARD}
        if names:
            sub.explicit = True
        elif not wildcard and type_url in types.LEGACY_WILDCARD_TYPES and not sub.explicit:
            wildcard = True
        changed = wildcard != sub.wildcard or names != sub.names
        grew = (wildcard and not sub.wildcard) or not names <= sub.names
        sub.wildcard = wildcard
        sub.names = names
        if type_url in types.FULL_STATE_TYPES:
            return changed
        # The client forgets what it stops naming: naming it again is answered.
        sub.held = sub.held & names
        return grew
