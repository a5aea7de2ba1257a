"""Serving the store over xDS ("MCP over xDS"): one type URL per kind, all subscribers alike.

Every accepted store snapshot becomes one xDS `Snapshot` published under a single cache key,
so all subscribers (pilot, mixer, meshctl) share the same encoded resources. A change rebuilds
only the kinds it touched, a resource is encoded again only when its content changed, and its
`store_version` records the store version in which that content was accepted. Implements the
xDS core's `StreamCallbacks`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from types import MappingProxyType
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from galley.store import Change, ConfigStore, Key, StoreSnapshot
from meshconfig import Kind, Resource
from meshcore.xds.cache import SnapshotCache
from meshcore.xds.resource import Resource as XdsResource
from meshcore.xds.resource import Snapshot, TypeSnapshot
from meshcore.xds.status import StreamInfo
from protos.galley.v1 import config_pb2

log = logging.getLogger(__name__)

CACHE_KEY = "galley"


def resource_name(resource: Resource) -> str:
    """MCP's naming: "<namespace>/<name>", or "<name>" for cluster-scoped kinds."""
    meta = resource.metadata
    return f"{meta.namespace}/{meta.name}" if meta.namespace else meta.name


def encode(resource: Resource, store_version: int) -> config_pb2.ConfigResource:
    meta = resource.metadata
    status = resource.status_dict()
    return config_pb2.ConfigResource(
        api_version=resource.kind.preferred_api_version,
        kind=resource.kind.kind,
        metadata=config_pb2.ObjectMeta(
            name=meta.name,
            namespace=meta.namespace,
            labels=dict(meta.labels),
            annotations=dict(meta.annotations),
            resource_version=meta.resource_version,
            generation=meta.generation,
        ),
        spec_json=_json(resource.spec_dict()),
        status_json="" if status is None else _json(status),
        origin=resource.source,
        store_version=store_version,
    )


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class ConfigDistributor:
    def __init__(self, store: ConfigStore, kinds: Iterable[Kind], registry: CollectorRegistry):
        self.cache = SnapshotCache()
        self._kind_ids = tuple(sorted(kind.id for kind in kinds))
        self._encoded: dict[Key, tuple[Resource, XdsResource]] = {}
        self._subscribers = Gauge(
            "galley_subscribers", "Open distribution streams.", registry=registry
        )
        self._rejects = Counter(
            "galley_distribution_rejects",
            "Resources a subscriber rejected (NACK).",
            ["kind"],
            registry=registry,
        )
        self._version = Gauge(
            "galley_snapshot_version", "Version of the distributed snapshot.", registry=registry
        )
        self._types: dict[str, TypeSnapshot] = {}
        store.subscribe(self._publish)
        self._publish(store.snapshot)

    @property
    def type_urls(self) -> frozenset[str]:
        return frozenset(self._kind_ids)

    def _publish(self, snapshot: StoreSnapshot, change: Change | None = None) -> None:
        """Publish `snapshot`; with a `change`, only the kinds it touched are rebuilt."""
        touched = (
            set(self._kind_ids)
            if change is None
            else {key[0] for key in (*change.added, *change.updated, *change.removed)}
        )
        by_type: dict[str, list[XdsResource]] = {k: [] for k in self._kind_ids if k in touched}
        for key, resource in snapshot.resources.items():
            if key[0] not in by_type:
                continue
            cached = self._encoded.get(key)
            if cached is None or cached[0] != resource:
                message = encode(resource, snapshot.version)
                cached = (resource, XdsResource.from_message(resource_name(resource), message))
                self._encoded[key] = cached
            by_type[key[0]].append(cached[1])
        if change is not None:
            for key in change.removed:
                self._encoded.pop(key, None)
        self._types.update((kind_id, TypeSnapshot.of(rs)) for kind_id, rs in by_type.items())
        self.cache.set(CACHE_KEY, Snapshot(MappingProxyType(dict(self._types))))
        self._version.set(snapshot.version)

    # StreamCallbacks: every subscriber sees the same configuration.

    def on_stream_open(self, stream: StreamInfo) -> str:
        self._subscribers.inc()
        return CACHE_KEY

    def on_stream_closed(self, stream: StreamInfo) -> None:
        self._subscribers.dec()

    def on_response_sent(
        self, stream: StreamInfo, type_url: str, resource_count: int, seconds: float
    ) -> None:
        log.debug("sent %d %s to %s", resource_count, type_url, stream.node_id)

    def on_ack(self, stream: StreamInfo, type_url: str, version: str) -> None:
        log.debug("%s acknowledged %s %s", stream.node_id, type_url, version)

    def on_nack(self, stream: StreamInfo, type_url: str, error: str) -> None:
        self._rejects.labels(type_url).inc()
