"""Configuration from a directory tree of YAML and JSON files, kept live with watchfiles.

Each file is its own origin in the store (`file:<absolute path>`) and changes atomically: its
documents are validated together and, if every one is valid, replace that file's previous
resources in one `ConfigStore.apply`. A file that is invalid, or that claims a resource another
file already owns, is refused as a whole; its last accepted content stays in force and the
reason is logged, counted and kept in `errors` until the file is accepted again. Documents of
kinds the mesh does not know (Deployments beside Istio config) are skipped. Hidden files and
directories are never read, so Kubernetes ConfigMap mounts (`..data` links) count once.

Every pass re-reads the whole tree and acts only on files whose text changed (plus files
refused for a conflict, which another file's change may have resolved), so the watcher's event
details never matter. The caller owns the one task that runs `run()`; cancelling it leaves
nothing behind. Event-loop only, like the store.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter
from watchfiles import awatch

from galley.store import ConfigStore, ConflictError, Key
from meshconfig import (
    ConfigValidationError,
    Resource,
    UnknownKindError,
    load_documents,
    validate_document,
)

log = logging.getLogger(__name__)

SUFFIXES = frozenset({".yaml", ".yml", ".json"})
# How often the watcher thread wakes when nothing changes; its first wake-up marks `watching`.
_WAKE_MS = 200
_STEP_MS = 20  # a batch of changes is complete after this long without another


def validation_failures(registry: CollectorRegistry | None) -> Counter:
    """The `galley_validation_failed` counter (label `source`), on `registry`."""
    return Counter(
        "galley_validation_failed",
        "Configuration refused by validation or for a conflict, by source",
        ["source"],
        registry=registry,
    )


@dataclass(frozen=True, slots=True)
class _Refusal:
    message: str
    conflict: bool = False  # another file owns a resource: may resolve without an edit here


class DirectorySource:
    def __init__(
        self,
        path: str | Path,
        store: ConfigStore,
        *,
        settle_ms: int = 50,
        failures: Counter | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.path = Path(path).absolute()
        self.errors: dict[str, str] = {}  # file -> why its current text is refused
        self.watching = asyncio.Event()  # set once the watcher sees every later change
        self._store = store
        self._settle_ms = settle_ms
        if failures is None:
            failures = validation_failures(registry or CollectorRegistry())
        self._failures = failures
        self._texts: dict[Path, str | None] = {}  # last text read; None if unreadable
        self._keys: dict[Path, set[Key]] = {}  # what each file's accepted content defines
        self._conflicted: set[Path] = set()

    @staticmethod
    def origin(file: Path) -> str:
        return f"file:{file}"

    def load(self) -> dict[str, str]:
        """Read the tree and apply what changed since the last pass; the files refused now.

        Raises OSError if the directory itself is missing, and changes nothing then: a directory
        that vanishes (an unmounted volume) must not take the accepted config with it.
        """
        if not self.path.is_dir():
            raise NotADirectoryError(f"{self.path} is not a directory")
        present = self._scan()
        for file in sorted(self._texts.keys() - set(present)):
            self._remove(file)
        retry: list[tuple[Path, list[Resource]]] = []
        for file in present:
            outcome = self._read(file)
            if isinstance(outcome, _Refusal):
                self._refuse(file, outcome)
            elif outcome is not None:
                refusal = self._apply(file, outcome)
                if refusal is not None:
                    retry.append((file, outcome))
        # A resource moved from one file to another in the same pass may be taken by the new
        # file before the old one lets go; one more try settles that before reporting.
        for file, resources in retry:
            refusal = self._apply(file, resources)
            if refusal is not None:
                self._refuse(file, refusal)
        return dict(self.errors)

    async def run(self) -> None:
        """Watch the tree until cancelled, applying each change as it settles."""
        async for changes in awatch(
            self.path,
            watch_filter=None,
            debounce=self._settle_ms,
            step=_STEP_MS,
            rust_timeout=_WAKE_MS,
            yield_on_timeout=True,
            recursive=True,
        ):
            if self.watching.is_set() and not changes:
                continue
            # The first wake-up also catches what changed between load() and the watch.
            self.watching.set()
            try:
                self.load()
            except Exception:  # a missing directory or a bug must not end the watch
                log.exception("reading %s failed; the accepted config stays in force", self.path)

    def _scan(self) -> list[Path]:
        found: list[Path] = []
        for root, dirs, files in os.walk(self.path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found.extend(
                Path(root, name)
                for name in files
                if not name.startswith(".") and Path(name).suffix in SUFFIXES
            )
        return sorted(found)

    def _read(self, file: Path) -> list[Resource] | _Refusal | None:
        """The file's resources, why it is refused, or None if there is nothing to do."""
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:  # deleted since the scan: the next pass removes it
            return None
        except (OSError, UnicodeDecodeError) as error:
            self._texts[file] = None
            return _Refusal(f"{file}: cannot read: {error}")
        if text == self._texts.get(file) and file not in self._conflicted:
            return None
        self._texts[file] = text
        source = str(file)
        try:
            documents = load_documents(text, source)
        except ConfigValidationError as error:
            return _Refusal(str(error))
        resources: dict[Key, Resource] = {}
        problems: list[str] = []
        for document in documents:
            try:
                resource = validate_document(document, source)
            except UnknownKindError as error:
                log.debug("skipping a document galley does not handle: %s", error)
                continue
            except ConfigValidationError as error:
                problems.append(str(error))
                continue
            if resource.key in resources:
                problems.append(f"{source}: {resource.label}: is defined more than once")
            resources[resource.key] = resource
        if problems:
            return _Refusal("\n".join(problems))
        return list(resources.values())

    def _apply(self, file: Path, resources: list[Resource]) -> _Refusal | None:
        keys = {resource.key for resource in resources}
        try:
            self._store.apply(self.origin(file), resources, self._keys.get(file, set()) - keys)
        except ConflictError as error:
            labels = {resource.key: resource.label for resource in resources}
            return _Refusal(
                "\n".join(
                    f"{file}: {labels[c.key]}: is already defined by {c.owner}"
                    for c in error.conflicts
                ),
                conflict=True,
            )
        self._keys[file] = keys
        self._conflicted.discard(file)
        if self.errors.pop(str(file), None) is not None:
            log.info("%s accepted again", file)
        return None

    def _refuse(self, file: Path, refusal: _Refusal) -> None:
        if refusal.conflict:
            self._conflicted.add(file)
        else:
            self._conflicted.discard(file)
        if self.errors.get(str(file)) == refusal.message:
            return  # already reported; a retry that fails the same way is not news
        self.errors[str(file)] = refusal.message
        self._failures.labels(source="directory").inc()
        log.error(
            "refused %s; its last accepted content stays in force:\n%s", file, refusal.message
        )

    def _remove(self, file: Path) -> None:
        self._texts.pop(file, None)
        self._conflicted.discard(file)
        self.errors.pop(str(file), None)
        keys = self._keys.pop(file, set())
        if keys:
            self._store.apply(self.origin(file), (), keys)
            log.info("%s deleted: removed %d resources", file, len(keys))
