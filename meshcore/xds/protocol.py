"""What the state-of-the-world and delta protocols share: types, nonces, ACK/NACK bookkeeping.

Both protocol classes derive from `StreamProtocol`, which resolves a request's type URL (or
refuses it), classifies the nonce a request echoes (current, stale, garbage), records ACKs and
NACKs in the stream's status, and issues the nonce of each response it records as sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from meshcore.xds import types
from meshcore.xds.nonce import NonceCheck, NonceIssuer
from meshcore.xds.status import StreamError, StreamInfo

WILDCARD = "*"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One response ready for the wire, in pieces (mostly shared with other streams' responses)
    that are joined only when it is written: a stream's later responses wait unjoined."""

    type_url: str
    version: str
    nonce: str
    parts: tuple[bytes, ...]
    resource_count: int

    @property
    def payload(self) -> bytes:
        return b"".join(self.parts)


@dataclass(frozen=True, slots=True)
class ClientReply:
    """What a request told us about an earlier response: an ACK, or a NACK with its error."""

    type_url: str
    version: str
    error: str | None = None

    @property
    def is_nack(self) -> bool:
        return self.error is not None


def check_type(type_url: str, supported: frozenset[str], fixed_type: str | None) -> str:
    """Resolve a request's type URL or raise the status a client should see."""
    if fixed_type is not None:
        if type_url and type_url != fixed_type:
            raise StreamError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"this service serves only {fixed_type}, got type_url {type_url!r}",
            )
        return fixed_type
    if not type_url:
        raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, "request has no type_url")
    if type_url not in supported:
        raise StreamError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"unknown type URL {type_url!r}; served types: {', '.join(sorted(supported))}",
        )
    return type_url


class NameSets:
    """Encoded name lists, each with its names as one frozenset shared by every stream that
    sends the same list: thousands of streams request the same thousand EDS names, and each
    would otherwise build (and hold) a thousand strings of its own. The caller chooses the
    key, bytes that determine the names; a full cache is emptied and starts again."""

    def __init__(self, limit: int = 64) -> None:
        self._limit = limit
        self._sets: dict[bytes, tuple[bytes, frozenset[str]]] = {}

    def get(self, key: bytes, names: Iterable[str]) -> tuple[bytes, frozenset[str]]:
        """The cached key (equal to `key`) and names; `names` is read only when absent."""
        found = self._sets.get(key)
        if found is None:
            if len(self._sets) >= self._limit:
                self._sets.clear()
            found = self._sets[key] = (key, frozenset(names))
        return found


class SetEdits:
    """Name sets edited by many streams alike, the result shared by every stream making the
    same edit to the same set: when a service is added, a thousand delta streams each
    subscribe to its EDS name, and each would otherwise hold a copy of a thousand names (to
    keep in memory, and for the garbage collector to walk). A full cache starts again."""

    def __init__(self, limit: int = 64) -> None:
        self._limit = limit
        # (names, added, removed) -> the result
        self._edits: dict[tuple[frozenset[str], ...], frozenset[str]] = {}

    def apply(
        self, names: frozenset[str], added: frozenset[str], removed: frozenset[str]
    ) -> frozenset[str]:
        """`names` with `added` and without `removed` (applied in that order)."""
        key = (names, added, removed)
        found = self._edits.get(key)
        if found is None:
            if len(self._edits) >= self._limit:
                self._edits.clear()
            found = self._edits[key] = (names | added) - removed
        return found


def push_order(subscribed: Iterable[str]) -> list[str]:
    """Subscribed types in make-before-break order, unknown extras last in name order."""
    present = set(subscribed)
    ordered = [t for t in types.PUSH_ORDER if t in present]
    return ordered + sorted(present.difference(types.PUSH_ORDER))


class StreamProtocol:
    """Base of `SotwProtocol` and `DeltaProtocol`: one per stream, no I/O."""

    def __init__(
        self, info: StreamInfo, supported: frozenset[str], fixed_type: str | None = None
    ) -> None:
        self.info = info
        self._supported = supported
        self._fixed_type = fixed_type
        self._nonces = NonceIssuer(info.stream_id)

    def _type_of(self, request: Any) -> str:
        return check_type(request.type_url, self._supported, self._fixed_type)

    def _reply(
        self, type_url: str, request: Any, latest_nonce: str, ack_version: str, nack_version: str
    ) -> ClientReply | None:
        """The ACK or NACK a request carries for `latest_nonce`; None if its nonce is stale."""
        nonce = request.response_nonce
        check = self._nonces.check(nonce, latest_nonce)
        if check is NonceCheck.GARBAGE:
            raise StreamError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"response_nonce {nonce!r} for {type_url} was never sent on this stream",
            )
        if check is NonceCheck.STALE:
            return None  # superseded by a newer response; the client will answer that one
        if request.HasField("error_detail"):
            status = self.info.status(type_url)
            status.nack_error = request.error_detail.message
            status.nack_nonce = nonce
            return ClientReply(type_url, nack_version, request.error_detail.message)
        return self._record_ack(type_url, nonce, ack_version)

    def _record_ack(self, type_url: str, nonce: str, version: str) -> ClientReply:
        """Note that the client applied the response with `nonce` and holds `version`."""
        status = self.info.status(type_url)
        status.acked_version = version
        status.acked_nonce = nonce
        status.nack_error = ""
        return ClientReply(type_url, version)

    def _record_sent(self, type_url: str, version: str) -> str:
        """Note a response of `type_url` at `version` as sent; return its fresh nonce."""
        nonce = self._nonces.next()
        status = self.info.status(type_url)
        status.sent_version = version
        status.sent_nonce = nonce
        status.sent_at = time.time()
        return nonce
