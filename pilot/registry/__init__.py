"""Pilot's service registry: Istio ServiceEntry + WorkloadEntry resources, and Kubernetes
Services, EndpointSlices and Pods (`pilot.registry.kubernetes`) -> the service model.

`SnapshotBuilder` accepts them from any source (`pilot.config_files` reads a directory,
`pilot.config_galley` consumes galley) and merges the two registries by hostname. Both sources
produce an immutable `RegistrySnapshot`, from which pilot builds a push context, after adding
the WorkloadEntries that connected proxies registered through their WorkloadGroup
(`pilot.registry.autoregister`).
"""

from pilot.registry.errors import ConfigError, Source
from pilot.registry.snapshot import GroupConfig, RegistrySnapshot, SnapshotBuilder

__all__ = ["ConfigError", "GroupConfig", "RegistrySnapshot", "SnapshotBuilder", "Source"]
