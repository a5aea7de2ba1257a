"""The latest snapshot per node, and wake-ups for the streams that watch it.

This is the seam between configuration and transport (as in go-control-plane): a provider
(pilot, galley) computes snapshots and calls `set`; each stream watches one key and is woken
when its snapshot is replaced. Nothing here sends bytes or knows about gRPC. Several streams
may watch one key (a proxy using per-type services opens one stream per type), and several
keys may hold the same `Snapshot` object, so generated resources are shared, not copied.
All methods run on the event loop thread; there is no locking.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from meshcore.xds.resource import Snapshot


class SnapshotCache:
    """Latest snapshot per key, with change notification to watchers."""

    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}
        self._watches: dict[str, set[SnapshotWatch]] = {}

    def set(self, key: str, snapshot: Snapshot) -> None:
        """Publish a snapshot for `key` and wake the streams that watch it (if it changed)."""
        if self._snapshots.get(key) is snapshot:
            return
        self._snapshots[key] = snapshot
        for watch in tuple(self._watches.get(key, ())):
            watch.on_change()

    def get(self, key: str) -> Snapshot | None:
        return self._snapshots.get(key)

    def delete(self, key: str) -> None:
        self._snapshots.pop(key, None)

    def node_keys(self) -> Iterator[str]:
        return iter(tuple(self._snapshots))

    def watched_keys(self) -> Iterator[str]:
        """Keys that at least one open stream is watching."""
        return iter(tuple(k for k, w in self._watches.items() if w))

    def watch(self, key: str, on_change: Callable[[], None]) -> SnapshotWatch:
        watch = SnapshotWatch(self, key, on_change)
        self._watches.setdefault(key, set()).add(watch)
        return watch

    def _unwatch(self, watch: SnapshotWatch) -> None:
        watchers = self._watches.get(watch.key)
        if watchers is None:
            return
        watchers.discard(watch)
        if not watchers:
            del self._watches[watch.key]


class SnapshotWatch:
    """One stream's handle on a key: read the current snapshot, get called when it changes."""

    __slots__ = ("_cache", "key", "on_change")

    def __init__(self, cache: SnapshotCache, key: str, on_change: Callable[[], None]) -> None:
        self._cache = cache
        self.key = key
        self.on_change = on_change

    @property
    def snapshot(self) -> Snapshot | None:
        return self._cache.get(self.key)

    def close(self) -> None:
        self._cache._unwatch(self)
