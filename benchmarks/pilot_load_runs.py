"""The load generator's shortcut past resources it has decoded before: runs of response bytes.

Why: pilot sends thousands of streams the same resources in the same order (a view's clusters,
endpoint assignments, route configurations), each response adding only its envelope (version,
type, nonce) and, for clusters and listeners, a few resources of the proxy's own. Parsing every
response in full and looking each resource up cost the load generator more CPU than pilot spent
sending, on the same two cores. Here a response is cut into its envelope (the fields before the
first resource) and its body; a body that starts with a `Run` of resource fields seen before is
recognised by comparing bytes in place, and only the rest is parsed. The run carries what
decoding its resources gave (any value, here the caller's per-resource records), so the caller
gets the same answer as from a full parse.

Runs are learned from full parses (`learn`): a body is remembered whole, and when another body
shares a long leading part with one remembered (the same view's resources, followed by another
proxy's own), that part becomes the run instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from meshcore.xds.wire import read_varint

T = TypeVar("T")

RESOURCES_TAG = 0x12  # field 2, length-delimited: `resources` in both kinds of response
KEY_BYTES = 64  # runs are indexed by their first bytes
MIN_SHARED = 8  # resources a leading part must have to become a run of its own
MAX_RUNS_PER_KEY = 16


def body_start(payload: bytes) -> int | None:
    """Where the first resource field begins (the end, if there is none); None if a field
    before it is one this reader does not walk (a group, a fixed-size or a high-numbered one)."""
    position, size = 0, len(payload)
    while position < size:
        tag = payload[position]
        if tag == RESOURCES_TAG:
            return position
        if tag & 0x80:
            return None
        position += 1
        wire_type = tag & 7
        if wire_type == 2:
            length, position = read_varint(payload, position)
            position += length
        elif wire_type == 0:
            _, position = read_varint(payload, position)
        else:
            return None
    return position


def entry_ends(payload: bytes, start: int) -> list[int] | None:
    """Where each resource field from `start` on ends; None if anything else follows them."""
    ends = []
    position, size = start, len(payload)
    while position < size:
        if payload[position] != RESOURCES_TAG:
            return None
        length, position = read_varint(payload, position + 1)
        position += length
        ends.append(position)
    return ends


@dataclass(frozen=True, slots=True)
class Run(Generic[T]):
    """Consecutive resource fields as they came on the wire, and what each one decoded to."""

    encoded: bytes
    decoded: tuple[T, ...]


class RunIndex(Generic[T]):
    """Runs by the first bytes of their encoding, for one kind of response (SotW or delta)."""

    def __init__(self) -> None:
        self._runs: dict[bytes, list[Run[T]]] = {}

    def match(self, payload: bytes, start: int) -> Run[T] | None:
        """A run that `payload` holds from `start` on, compared in place; the longest."""
        for run in self._runs.get(payload[start : start + KEY_BYTES], ()):
            if payload.startswith(run.encoded, start):
                return run
        return None

    def learn(self, payload: bytes, start: int, decoded: Sequence[T]) -> None:
        """Remember the body of a response parsed in full: from `start`, resource fields that
        decoded to `decoded`, in order. A body holding anything else is not remembered."""
        ends = entry_ends(payload, start)
        if not decoded or ends is None or len(ends) != len(decoded):
            return
        key = payload[start : start + KEY_BYTES]
        runs = self._runs.setdefault(key, [])
        for index, known in enumerate(runs):
            shared = _shared_count(known.decoded, decoded)
            if shared >= MIN_SHARED and shared < len(known.decoded):
                # The same leading resources, another tail: keep just the leading part.
                runs[index] = Run(payload[start : ends[shared - 1]], tuple(decoded[:shared]))
                runs.sort(key=lambda run: -len(run.encoded))
                return
        runs.append(Run(payload[start:], tuple(decoded)))
        runs.sort(key=lambda run: -len(run.encoded))
        del runs[MAX_RUNS_PER_KEY:]

    def clear(self) -> None:
        self._runs.clear()


def _shared_count(known: Sequence[T], fresh: Sequence[T]) -> int:
    """How many leading records the two have in common (the same objects)."""
    count = 0
    for old, new in zip(known, fresh, strict=False):
        if old is not new:
            break
        count += 1
    return count
