"""Pilot's service registry: Istio ServiceEntry + WorkloadEntry resources -> the service model.

`load_directory` reads them from YAML files; `SnapshotBuilder` accepts them from any other
source. Both produce an immutable `RegistrySnapshot`, from which pilot builds a push context.
"""

from pilot.registry.errors import ConfigError, Source
from pilot.registry.files import load_directory
from pilot.registry.snapshot import RegistrySnapshot, SnapshotBuilder

__all__ = ["ConfigError", "RegistrySnapshot", "SnapshotBuilder", "Source", "load_directory"]
