"""The registry from validated `meshconfig` resources, as galley distributes them.

Galley has already checked the schema; the registry still applies its own rules (the same host
declared twice, for example) through the shared `SnapshotBuilder`, so a directory and galley
give pilot exactly the same registry for the same input.
"""

from __future__ import annotations

from collections.abc import Iterable

from meshconfig import Resource
from pilot.registry.errors import Source
from pilot.registry.snapshot import KINDS, RegistrySnapshot, SnapshotBuilder

GROUP = "networking.istio.io"


def from_resources(resources: Iterable[Resource]) -> RegistrySnapshot:
    """ServiceEntries and WorkloadEntries among `resources`; ConfigError as from a file."""
    builder = SnapshotBuilder()
    for resource in sorted(resources, key=lambda r: r.key):
        if resource.kind.group != GROUP or resource.kind.kind not in KINDS:
            continue
        meta = resource.metadata
        source = Source(resource.source or "galley", resource.kind.kind, meta.namespace, meta.name)
        builder.add(source, resource.spec_dict())
    return builder.build()
