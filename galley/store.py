"""The versioned store of accepted configuration: snapshots, history, and who owns what.

Sources (the directory, the Kubernetes API) hand in changes with `apply`; each change that
alters anything becomes a new immutable `StoreSnapshot` with the next version, and an entry in a
bounded history saying what changed, when and from where. A key belongs to the origin that
first supplied it ("file:/etc/mesh/a.yaml", "kubernetes"); another origin claiming it is refused
with an error that names the owner, and nothing already accepted changes. Subscribers (the
distribution server) are called synchronously after each new snapshot. Event-loop only.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from meshconfig import Resource

Key = tuple[str, str, str]  # (kind id, namespace, name)


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    version: int
    resources: Mapping[Key, Resource]

    def of_kind(self, kind_id: str) -> list[Resource]:
        return [r for key, r in self.resources.items() if key[0] == kind_id]


@dataclass(frozen=True, slots=True)
class Change:
    version: int
    at: float
    origin: str
    added: tuple[Key, ...] = ()
    updated: tuple[Key, ...] = ()
    removed: tuple[Key, ...] = ()


@dataclass(frozen=True, slots=True)
class Conflict:
    key: Key
    origin: str
    owner: str

    def __str__(self) -> str:
        kind, namespace, name = self.key
        return f"{kind} {namespace}/{name} from {self.origin} is already defined by {self.owner}"


class ConflictError(ValueError):
    def __init__(self, conflicts: list[Conflict]) -> None:
        super().__init__("; ".join(map(str, conflicts)))
        self.conflicts = conflicts


@dataclass
class ConfigStore:
    history_limit: int = 100
    _resources: dict[Key, Resource] = field(default_factory=dict)
    _owners: dict[Key, str] = field(default_factory=dict)
    _history: deque[Change] = field(init=False)
    _version: int = 0
    _snapshot: StoreSnapshot = field(init=False)
    _subscribers: list[Callable[[StoreSnapshot, Change], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._history = deque(maxlen=self.history_limit)
        self._snapshot = StoreSnapshot(0, MappingProxyType({}))

    @property
    def snapshot(self) -> StoreSnapshot:
        return self._snapshot

    def history(self) -> list[Change]:
        """Recent changes, newest last."""
        return list(self._history)

    def owner(self, key: Key) -> str | None:
        return self._owners.get(key)

    def keys_of(self, origin: str) -> set[Key]:
        return {key for key, owner in self._owners.items() if owner == origin}

    def subscribe(self, callback: Callable[[StoreSnapshot, Change], None]) -> None:
        self._subscribers.append(callback)

    def conflicts(self, origin: str, upserts: Iterable[Resource]) -> list[Conflict]:
        """Keys in `upserts` that another origin owns (the change would be refused)."""
        found = []
        for resource in upserts:
            owner = self._owners.get(resource.key)
            if owner is not None and owner != origin:
                found.append(Conflict(resource.key, origin, owner))
        return found

    def apply(
        self, origin: str, upserts: Iterable[Resource] = (), removals: Iterable[Key] = ()
    ) -> Change | None:
        """Apply one atomic change from `origin`: the recorded Change, or None if nothing changed.

        Raises ConflictError (and applies nothing) if another origin owns any upserted key.
        """
        upserts = list(upserts)
        conflicts = self.conflicts(origin, upserts)
        if conflicts:
            raise ConflictError(conflicts)
        added, updated, removed = [], [], []
        for resource in upserts:
            previous = self._resources.get(resource.key)
            if previous is None:
                added.append(resource.key)
            elif previous == resource:
                continue
            else:
                updated.append(resource.key)
            self._resources[resource.key] = resource
            self._owners[resource.key] = origin
        for key in removals:
            if self._owners.get(key) == origin:
                del self._resources[key]
                del self._owners[key]
                removed.append(key)
        if not (added or updated or removed):
            return None
        self._version += 1
        change = Change(
            self._version, time.time(), origin, tuple(added), tuple(updated), tuple(removed)
        )
        self._history.append(change)
        self._snapshot = StoreSnapshot(self._version, MappingProxyType(dict(self._resources)))
        for callback in tuple(self._subscribers):
            callback(self._snapshot, change)
        return change
