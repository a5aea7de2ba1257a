"""Nonces for one stream: fresh per response, and recognisable when a client echoes them.

A nonce is `<stream id>-<sequence>` in hex. A client that echoes one we issued earlier is
stale (the xDS rule: ignore it); one we never issued is garbage, which is a protocol error
worth a clear status rather than silent confusion.
"""

from __future__ import annotations

import enum


class NonceCheck(enum.Enum):
    CURRENT = "current"
    STALE = "stale"
    GARBAGE = "garbage"


class NonceIssuer:
    __slots__ = ("_prefix", "_sequence")

    def __init__(self, stream_id: int) -> None:
        self._prefix = f"{stream_id:x}-"
        self._sequence = 0

    def next(self) -> str:
        self._sequence += 1
        return f"{self._prefix}{self._sequence:x}"

    def check(self, nonce: str, latest: str) -> NonceCheck:
        """Classify a nonce echoed by the client against the latest one sent for its type."""
        if nonce == latest:
            return NonceCheck.CURRENT
        if not nonce.startswith(self._prefix):
            return NonceCheck.GARBAGE
        try:
            sequence = int(nonce[len(self._prefix) :], 16)
        except ValueError:
            return NonceCheck.GARBAGE
        if 0 < sequence <= self._sequence:
            return NonceCheck.STALE
        return NonceCheck.GARBAGE
