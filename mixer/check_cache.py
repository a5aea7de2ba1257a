"""Reuse Check verdicts for requests whose referenced attributes are the same.

Istio's Mixer client cached Check results in the proxy; Envoy's ext_authz has no such cache,
so Mixer keeps one itself, as the client did: a verdict depends only on the attributes its
evaluation looked at (the referenced attributes: whole attributes, or single keys of string
maps such as one request header), so any later request with equal values for those, and
absent where they were absent, gets the same verdict. Different requests may look at different
attributes (a rule's `&&` stops early), so the cache remembers each distinct set ("shape") it
has seen and tries each. An entry lasts for its verdict's valid duration and valid use count,
and everything is dropped when the configuration changes (`clear`).

Only preconditions are cached; quota is charged on every request. Bounded: at most
`max_entries` verdicts (least recently stored go first) and `max_shapes` shapes. Owned by one
event loop; no locks, no tasks.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# A referenced attribute: (name, None) for the whole value, (name, key) for one map key.
Reference = tuple[str, str | None]
Shape = tuple[Reference, ...]

_ABSENT = object()


def shape_of(references: Iterable[Reference]) -> Shape:
    return tuple(sorted(set(references), key=lambda r: (r[0], r[1] or "")))


def _hashable(value: Any) -> Hashable:
    if isinstance(value, Mapping):
        return frozenset(value.items())
    if isinstance(value, list):
        return tuple(value)
    return value  # type: ignore[no-any-return]


def key_of(shape: Shape, attributes: Mapping[str, Any]) -> tuple[Hashable, ...]:
    """The values of `shape`'s references in `attributes` (absent ones as a sentinel)."""
    values: list[Hashable] = []
    for name, map_key in shape:
        value = attributes.get(name, _ABSENT)
        if map_key is not None:
            value = value.get(map_key, _ABSENT) if isinstance(value, Mapping) else _ABSENT
        values.append(_hashable(value))
    return tuple(values)


@dataclass(slots=True)
class _Entry:
    verdict: Any
    expires: float
    uses: int


class CheckCache:
    """Verdicts by (shape, values); `lookup` before evaluating, `store` after."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        max_entries: int = 100_000,
        max_shapes: int = 64,
    ) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._max_shapes = max_shapes
        self._shapes: dict[Shape, None] = {}  # insertion-ordered set
        self._entries: collections.OrderedDict[tuple[Shape, tuple[Hashable, ...]], _Entry] = (
            collections.OrderedDict()
        )
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget everything (the configuration changed)."""
        self._shapes.clear()
        self._entries.clear()

    def lookup(self, attributes: Mapping[str, Any]) -> Any | None:
        """A verdict still valid for `attributes`, counting one use of it; else None."""
        now = self._clock()
        for shape in self._shapes:
            cache_key = (shape, key_of(shape, attributes))
            entry = self._entries.get(cache_key)
            if entry is None:
                continue
            if entry.expires <= now or entry.uses <= 0:
                del self._entries[cache_key]
                continue
            entry.uses -= 1
            self.hits += 1
            return entry.verdict
        self.misses += 1
        return None

    def store(
        self,
        attributes: Mapping[str, Any],
        references: Iterable[Reference],
        verdict: Any,
        valid_seconds: float,
        valid_uses: int,
    ) -> None:
        """Remember `verdict` for requests agreeing with `attributes` on `references`."""
        if valid_seconds <= 0 or valid_uses <= 0:
            return
        shape = shape_of(references)
        if shape not in self._shapes:
            if len(self._shapes) >= self._max_shapes:
                return  # too many ways of looking: caching would cost more than it saves
            self._shapes[shape] = None
        cache_key = (shape, key_of(shape, attributes))
        self._entries[cache_key] = _Entry(verdict, self._clock() + valid_seconds, valid_uses)
        self._entries.move_to_end(cache_key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
