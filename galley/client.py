"""The client library pilot and mixer use to consume galley's configuration.

It subscribes to the kinds a service needs over galley's xDS distribution, turns each received
`ConfigResource` back into a validated `meshconfig.Resource` (a resource this side cannot
accept is NACKed with the reason and the last accepted set stays), and hands the service the
full current set of a kind after every change. Reconnects resync through the xDS client.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from envoy.config.core.v3 import base_pb2
from google.protobuf import any_pb2

from meshconfig import Kind, Resource, kind_for, validate_document
from meshcore.identity import CONTROL_PLANE_HOST
from meshcore.tls import MeshTls
from meshcore.xds.client import XdsClient
from protos.galley.v1 import config_pb2

OnChange = Callable[[Kind, list[Resource]], None]


def decode(type_url: str, packed: any_pb2.Any) -> tuple[str, Resource]:
    """A distributed ConfigResource as a validated Resource, under its MCP name."""
    message = config_pb2.ConfigResource()
    if not packed.Unpack(message):
        raise ValueError(f"expected {message.DESCRIPTOR.full_name}, got {packed.type_url}")
    kind = kind_for(message.api_version, message.kind)
    if kind is None or kind.id != type_url:
        raise ValueError(f"{message.api_version} {message.kind} arrived under type {type_url}")
    meta = message.metadata
    document: dict[str, Any] = {
        "apiVersion": message.api_version,
        "kind": message.kind,
        "metadata": {
            "name": meta.name,
            "namespace": meta.namespace,
            "labels": dict(meta.labels),
            "annotations": dict(meta.annotations),
            "resourceVersion": meta.resource_version,
            "generation": meta.generation,
        },
    }
    spec = json.loads(message.spec_json or "{}")
    if kind.spec_is_whole_object:
        document.update(spec)
    else:
        document["spec"] = spec
    if message.status_json:
        document["status"] = json.loads(message.status_json)
    resource = validate_document(document, source=message.origin)
    return (f"{meta.namespace}/{meta.name}" if meta.namespace else meta.name), resource


class ConfigClient:
    """Keeps the current resources of `kinds` from galley at `address`; `run()` is its task."""

    def __init__(
        self,
        address: str,
        kinds: Iterable[Kind],
        on_change: OnChange,
        *,
        node_id: str,
        delta: bool = True,
        tls: MeshTls | None = None,
    ) -> None:
        """`tls`: galley is served over mutual TLS; present this certificate, verify galley as
        the control plane."""
        self._kinds = {kind.id: kind for kind in kinds}
        self._on_change = on_change
        self._client: XdsClient[Resource] = XdsClient(
            address,
            base_pb2.Node(id=node_id),
            sorted(self._kinds),
            decode,
            self._update,
            delta=delta,
            credentials=None if tls is None else tls.channel_credentials(),
            server_name="" if tls is None else CONTROL_PLANE_HOST,
        )

    @property
    def synced(self) -> Any:
        """An asyncio.Event set once every kind has been received."""
        return self._client.synced

    def current(self) -> Mapping[str, list[Resource]]:
        return {kind_id: list(self._client.resources(kind_id).values()) for kind_id in self._kinds}

    async def run(self) -> None:
        await self._client.run()

    def _update(self, type_url: str, resources: Mapping[str, Resource]) -> None:
        self._on_change(self._kinds[type_url], [resources[name] for name in sorted(resources)])
