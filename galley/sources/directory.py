"""Configuration from a directory tree of YAML and JSON files, kept live with watchfiles.

Each file is its own origin in the store (`file:<absolute path>`) and changes atomically: its
documents are validated together and, if every one is valid, replace that file's previous
resources in one `ConfigStore.apply`. A file that is invalid, that claims a resource another
file already owns, or whose change would break config across resources (a Mixer rule naming a
handler that does not exist, see `galley.validation`), is refused as a whole; its last accepted
content stays in force and the reason is logged, counted and kept in `errors` until the file
is accepted again. Deleting a file is a change like any other: if removing its resources would
break others (a handler a rule still uses), the deletion is refused the same way and its
resources stay until the rule goes too. Documents of kinds the mesh does not know (Deployments
beside Istio config) are skipped. Hidden files and directories are never read, so Kubernetes
ConfigMap mounts (`..data` links) count once.

Every pass re-reads the whole tree and acts only on files whose text changed, plus files
refused for a reason another file's change may resolve (a conflict, a reference, a deletion
refused), so the watcher's event details never matter. Within a pass, changes are tried until
no more can be accepted, so the order files are read in never matters either: a rule and the
handler it names may arrive in one pass in any order. Changes that hand resources over (a file
renamed, a resource moved to another file, two files swapping) are judged and applied as one,
since neither half is acceptable alone while a rule uses what moves; the store sees the old
owners let go before the new ones take, all before any subscriber can read it. The caller owns
the one task that runs `run()`; cancelling it leaves nothing behind. Event-loop only, like the
store.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter
from watchfiles import awatch

from galley.store import ConfigStore, Key
from galley.validation import ChangeValidator
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
class _Change:
    """One file's pending change: its new resources, or None when it was deleted."""

    file: Path
    resources: list[Resource] | None


@dataclass(frozen=True, slots=True)
class _Refusal:
    message: str
    # Another file's change may resolve it without an edit here (a resource another file owns,
    # a reference to a resource another file may add, a deletion that breaks another file).
    retry: bool = False


class DirectorySource:
    def __init__(
        self,
        path: str | Path,
        store: ConfigStore,
        *,
        settle_ms: int = 50,
        failures: Counter | None = None,
        registry: CollectorRegistry | None = None,
        validator: ChangeValidator | None = None,
    ) -> None:
        """`validator` judges changes across resources (by default: against `store`)."""
        self.path = Path(path).absolute()
        self.errors: dict[str, str] = {}  # file -> why its current text is refused
        self.watching = asyncio.Event()  # set once the watcher sees every later change
        self._store = store
        self._settle_ms = settle_ms
        if failures is None:
            failures = validation_failures(registry or CollectorRegistry())
        self._failures = failures
        self._validator = validator if validator is not None else ChangeValidator(store)
        self._texts: dict[Path, str | None] = {}  # last text read; None if unreadable
        self._keys: dict[Path, set[Key]] = {}  # what each file's accepted content defines
        self._retry: set[Path] = set()  # refused for a reason another file may resolve

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
        pending = [_Change(file, None) for file in sorted(self._texts.keys() - set(present))]
        for file in present:
            outcome = self._read(file)
            if isinstance(outcome, _Refusal):
                self._refuse(file, outcome)
            elif outcome is not None:
                pending.append(_Change(file, outcome))
        # One change may wait on another of the same pass: a rule is accepted only once the
        # handler it names is. Try until a round accepts nothing more, then report.
        while pending:
            refused = [found for group in self._groups(pending) for found in self._judge(group)]
            if len(refused) == len(pending):
                for change, refusal in refused:
                    self._refuse(change.file, refusal)
                break
            pending = [change for change, _ in refused]
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
        if text == self._texts.get(file) and file not in self._retry:
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

    def _released(self, change: _Change) -> set[Key]:
        """The keys the change takes out of the file's accepted content."""
        accepted = self._keys.get(change.file, set())
        if change.resources is None:
            return set(accepted)
        return accepted - {resource.key for resource in change.resources}

    def _groups(self, pending: list[_Change]) -> list[list[_Change]]:
        """The pending changes, grouped where one hands resources over to another (a resource
        moved between files, a file renamed): one lets go of a key that the other takes, and
        neither is acceptable without the other when a rule uses what moves."""
        releaser = {key: index for index, c in enumerate(pending) for key in self._released(c)}
        parent = list(range(len(pending)))

        def root(index: int) -> int:
            while parent[index] != index:
                index = parent[index] = parent[parent[index]]
            return index

        for index, change in enumerate(pending):
            for resource in change.resources or ():
                other = releaser.get(resource.key)
                if other is not None and other != index:
                    parent[root(other)] = root(index)
        groups: dict[int, list[_Change]] = {}
        for index, change in enumerate(pending):
            groups.setdefault(root(index), []).append(change)
        return list(groups.values())

    def _judge(self, group: list[_Change]) -> list[tuple[_Change, _Refusal]]:
        """Apply the group's changes if they may be; those refused, and why."""
        if len(group) == 1:
            refusal = self._change(group[0])
            return [] if refusal is None else [(group[0], refusal)]
        together = self._together(group)
        if together is None:
            return []
        # Not as a whole: a part may still be acceptable alone. What is not is refused for the
        # reason the whole was, which names the real problem (alone, a file that takes a moved
        # resource would only hear that the other file still has it).
        return [(change, together) for change in group if self._change(change) is not None]

    def _together(self, group: list[_Change]) -> _Refusal | None:
        """Apply the group's changes as one, if they are conflict-free and break nothing."""
        owners = {self.origin(change.file): change for change in group}
        released = {change.file: self._released(change) for change in group}
        claimed: dict[Key, str] = {}
        conflicts = []
        for change in group:
            origin = self.origin(change.file)
            for resource in change.resources or ():
                owner = claimed.get(resource.key) or self._store.owner(resource.key)
                handed = owner in owners and resource.key in released[owners[owner].file]
                if owner not in (None, origin) and not (handed and resource.key not in claimed):
                    conflicts.append(
                        f"{change.file}: {resource.label}: is already defined by {owner}"
                    )
                claimed[resource.key] = origin
        if conflicts:
            return _Refusal("\n".join(conflicts), retry=True)
        files = [str(change.file) for change in group]
        broken = self._validator.refusal(
            files[0],
            [resource for change in group for resource in change.resources or ()],
            set().union(*released.values()),
            change=f"this change, with {', '.join(files[1:])},",
        )
        if broken is not None:
            return _Refusal(broken, retry=True)
        # Let go first, then take: each store change is then free of conflicts.
        for change in group:
            if released[change.file]:
                self._store.apply(self.origin(change.file), (), released[change.file])
        for change in group:
            if change.resources is not None:
                self._store.apply(self.origin(change.file), change.resources)
        for change in group:
            self._accepted(change)
        return None

    def _change(self, change: _Change) -> _Refusal | None:
        return self._remove(change) if change.resources is None else self._apply(change)

    def _apply(self, change: _Change) -> _Refusal | None:
        file, resources = change.file, change.resources or []
        origin = self.origin(file)
        conflicts = self._store.conflicts(origin, resources)
        if conflicts:
            labels = {resource.key: resource.label for resource in resources}
            return _Refusal(
                "\n".join(
                    f"{file}: {labels[c.key]}: is already defined by {c.owner}" for c in conflicts
                ),
                retry=True,
            )
        removals = self._released(change)
        broken = self._validator.refusal(str(file), resources, removals)
        if broken is not None:
            return _Refusal(broken, retry=True)
        self._store.apply(origin, resources, removals)
        self._accepted(change)
        return None

    def _remove(self, change: _Change) -> _Refusal | None:
        """Remove a deleted file's resources, unless that breaks other config: then they stay,
        and the file is remembered so the next pass tries again."""
        keys = self._released(change)
        if keys:
            broken = self._validator.refusal(str(change.file), (), keys, change="deleting it")
            if broken is not None:
                return _Refusal(broken, retry=True)
            self._store.apply(self.origin(change.file), (), keys)
        self._accepted(change)
        return None

    def _accepted(self, change: _Change) -> None:
        """Record an applied change: the file's keys now, or the file forgotten if deleted."""
        file = change.file
        self._retry.discard(file)
        if change.resources is None:
            keys = self._keys.pop(file, set())
            self._texts.pop(file, None)
            self.errors.pop(str(file), None)
            if keys:
                log.info("%s deleted: removed %d resources", file, len(keys))
            return
        self._keys[file] = {resource.key for resource in change.resources}
        if self.errors.pop(str(file), None) is not None:
            log.info("%s accepted again", file)

    def _refuse(self, file: Path, refusal: _Refusal) -> None:
        if refusal.retry:
            self._retry.add(file)
        else:
            self._retry.discard(file)
        if self.errors.get(str(file)) == refusal.message:
            return  # already reported; a retry that fails the same way is not news
        self.errors[str(file)] = refusal.message
        self._failures.labels(source="directory").inc()
        log.error(
            "refused %s; its last accepted content stays in force:\n%s", file, refusal.message
        )
