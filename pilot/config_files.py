"""Pilot's whole input read straight from a directory (pilot without galley).

Every *.yaml, *.yml and *.json file below the directory (hidden entries skipped, so a mounted
ConfigMap's `..data` link is read once) is validated with `meshconfig`, exactly as galley would;
kinds the mesh does not know are skipped. The registry kinds (ServiceEntry, WorkloadEntry,
WorkloadGroup, and the Kubernetes Service, EndpointSlice, Endpoints and Pod objects galley would
read from a cluster) become the `RegistrySnapshot`; the traffic kinds, and the Secrets gateways
take their credentials from, the `IstioConfig`. Any invalid resource rejects the whole read with
its message, and the caller keeps what it had.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from meshconfig import Resource, UnknownKindError, load_documents, validate_document
from pilot.istio_config import IstioConfig
from pilot.registry import ConfigError, RegistrySnapshot, Source
from pilot.registry.resources import RegistryReader

SUFFIXES = frozenset({".yaml", ".yml", ".json"})


@dataclass(frozen=True, slots=True)
class PilotInput:
    registry: RegistrySnapshot = field(default_factory=RegistrySnapshot)
    istio: IstioConfig = field(default_factory=IstioConfig)

    @classmethod
    def from_resources(
        cls, resources: list[Resource], registry: RegistryReader | None = None
    ) -> PilotInput:
        """`registry`: the reader of the caller's earlier inputs, to convert only what is new."""
        registry = registry or RegistryReader()
        return cls(registry.read(resources), IstioConfig.from_resources(resources))


def load_config_directory(directory: str | Path) -> PilotInput:
    """Read and validate the directory once; raises ConfigValidationError or ConfigError."""
    return DirectoryReader().read(directory)


class DirectoryReader:
    """Reads a config directory again and again, validating only the files that changed.

    A file's validated resources are kept under its (inode, size, mtime): an edit, an atomic
    replace or a touch makes it read again, while the other thousands of files of a large
    mesh are not parsed on every change (pilot re-reads the directory on each one).
    """

    def __init__(self) -> None:
        self._files: dict[Path, tuple[tuple[int, int, int], list[Resource]]] = {}
        self._registry = RegistryReader()

    def read(self, directory: str | Path) -> PilotInput:
        """Raises ConfigValidationError or ConfigError; the cache keeps only valid files."""
        root = Path(directory)
        if not root.is_dir():
            raise ConfigError(Source(str(root)), "", "is not a directory")
        resources: list[Resource] = []
        seen: dict[tuple[str, str, str], str] = {}
        present: set[Path] = set()
        for file in sorted(root.rglob("*")):
            relative = file.relative_to(root).parts
            if file.suffix not in SUFFIXES or any(p.startswith(".") for p in relative):
                continue
            if not file.is_file():
                continue
            present.add(file)
            for resource in self._resources(file):
                if resource.key in seen:
                    meta = resource.metadata
                    where = Source(str(file), resource.kind.kind, meta.namespace, meta.name)
                    raise ConfigError(
                        where, "metadata.name", f"also defined in {seen[resource.key]}"
                    )
                seen[resource.key] = str(file)
                resources.append(resource)
        for gone in self._files.keys() - present:
            del self._files[gone]
        return PilotInput.from_resources(resources, self._registry)

    def _resources(self, file: Path) -> list[Resource]:
        try:
            status = file.stat()
            stamp = (status.st_ino, status.st_size, status.st_mtime_ns)
            cached = self._files.get(file)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(Source(str(file)), "", f"cannot read: {error}") from error
        found = []
        for document in load_documents(text, str(file)):
            try:
                found.append(validate_document(document, str(file)))
            except UnknownKindError:
                continue
        self._files[file] = (stamp, found)
        return found
