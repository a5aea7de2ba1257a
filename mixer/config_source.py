"""Where Mixer's configuration comes from: a directory it watches, or galley's distribution.

Both deliver the whole current set of Mixer's kinds (config.istio.io: handler, instance, rule,
QuotaSpec, QuotaSpecBinding, and the legacy per-adapter and per-template kinds; and the
registry's Pods and WorkloadEntries, which the kubernetesenv adapter reads) to one
callback, which compiles it; a set the callback refuses leaves the previous configuration in
force. The directory is read like pilot reads its own (every *.yaml, *.yml, *.json below it,
hidden entries skipped, kinds Mixer does not use skipped, any invalid document refusing the
whole read); galley has validated what it distributes already. Each source owns one task,
`run()`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from watchfiles import awatch

from galley.client import ConfigClient
from meshconfig import (
    ConfigValidationError,
    Kind,
    Resource,
    UnknownKindError,
    load_documents,
    validate_document,
)
from meshconfig.policy import KINDS as POLICY_KINDS
from meshcore.tls import MeshTls
from mixer.workloads import REGISTRY_KINDS

log = logging.getLogger(__name__)

SUFFIXES = frozenset({".yaml", ".yml", ".json"})
# Mixer's own kinds, and the registry kinds its attribute generators (kubernetesenv) read.
MIXER_KINDS: tuple[Kind, ...] = (*POLICY_KINDS, *REGISTRY_KINDS)
MIXER_KIND_IDS = frozenset(kind.id for kind in MIXER_KINDS)

OnResources = Callable[[list[Resource]], None]


class SourceError(ValueError):
    """The directory cannot be read as a whole (unreadable file, duplicate resource)."""


def load_directory(root: Path) -> list[Resource]:
    """Mixer's resources in `root`; raises ConfigValidationError, SourceError or OSError."""
    if not root.is_dir():
        raise SourceError(f"{root} is not a directory")
    resources: dict[tuple[str, str, str], Resource] = {}
    for file in sorted(root.rglob("*")):
        relative = file.relative_to(root).parts
        if file.suffix not in SUFFIXES or any(part.startswith(".") for part in relative):
            continue
        if not file.is_file():
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise SourceError(f"{file}: cannot read: {error}") from error
        for document in load_documents(text, str(file)):
            try:
                resource = validate_document(document, str(file))
            except UnknownKindError:
                continue
            if resource.kind.id not in MIXER_KIND_IDS:
                continue
            if resource.key in resources:
                raise SourceError(f"{file}: {resource.label} is defined twice")
            resources[resource.key] = resource
    return list(resources.values())


class DirectorySource:
    """Reads `directory` now (`load`) and again whenever a file below it changes (`run`)."""

    def __init__(self, directory: Path, on_change: OnResources, *, settle_ms: int = 50) -> None:
        self.directory = directory
        self.last_error = ""
        self._on_change = on_change
        self._settle_ms = settle_ms

    @property
    def ready(self) -> bool:
        return True

    def load(self) -> list[Resource]:
        return load_directory(self.directory)

    def reload(self) -> None:
        try:
            resources = self.load()
        except (ConfigValidationError, SourceError, OSError) as error:
            self.last_error = str(error)
            log.error("mixer config in %s refused, keeping the last: %s", self.directory, error)
            return
        self.last_error = ""
        self._on_change(resources)

    async def run(self) -> None:
        async for _ in awatch(self.directory, debounce=self._settle_ms, step=20, recursive=True):
            try:
                self.reload()
            except Exception:  # a bug in one reload must not end the watch
                log.exception("reloading %s failed", self.directory)


class GalleySource:
    """Mixer's kinds from galley at `address`; hands over the set once every kind arrived."""

    def __init__(
        self,
        address: str,
        on_change: OnResources,
        *,
        node_id: str,
        tls: MeshTls | None = None,
    ) -> None:
        self.last_error = ""
        self._on_change = on_change
        self._current: dict[str, list[Resource]] = {}
        self.client = ConfigClient(address, MIXER_KINDS, self._changed, node_id=node_id, tls=tls)

    @property
    def ready(self) -> bool:
        return bool(self.client.synced.is_set())

    async def run(self) -> None:
        await self.client.run()

    def _changed(self, kind: Kind, resources: list[Resource]) -> None:
        self._current[kind.id] = resources
        if len(self._current) < len(MIXER_KINDS):
            return  # a partial set would drop rules that are still in force
        self._on_change([r for group in self._current.values() for r in group])
