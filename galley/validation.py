"""Validation across resources: what a change would break that no single resource shows.

Some configuration is only valid together. A Mixer rule names its handler and instances, which
may live in other files; the handler's adapter must support the templates of the instances the
rule sends it; an expression's attributes must be in the vocabulary. `ChangeValidator` judges a
change (resources added or replaced, keys removed) against the snapshot it would produce, the
store's snapshot with the change applied, and returns the problems the change would bring in.
Problems the snapshot already has are not held against a change that does not add to them: an
unrelated edit is not refused because of a broken object that arrived from the Kubernetes API,
which galley cannot refuse (the API server already stored it).

Each `SnapshotCheck` covers some API groups, runs only when a change touches one of them, and
sees only those groups' resources. The one check today is Mixer's (config.istio.io, with
`meshconfig.policy.compiled.validate_mixer_resources`), as Istio's galley ran Mixer's own
validator against its snapshot. What it refuses is what Istio's refused: a rule naming a handler
or instance that does not exist, or one that is invalid, and deleting or changing a handler or
instance so that a rule still using it breaks. Pilot's kinds need no check here: their
cross-resource rules are analyzer warnings in Istio, not refusals.

The validator remembers the problems of the last snapshot it saw, by store version, so a burst
of changes compiles the accepted config once. Event-loop only, like the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from galley.store import ConfigStore, Key
from meshconfig import ConfigValidationError, FieldError, Resource
from meshconfig.policy import GROUP as MIXER_GROUP
from meshconfig.policy.compiled import validate_mixer_resources


@dataclass(frozen=True, slots=True)
class SnapshotCheck:
    """Validates the resources of `groups` together; one ConfigValidationError per resource
    with problems, `resource` its label ("rule default/r")."""

    name: str
    groups: frozenset[str]
    validate: Callable[[list[Resource]], list[ConfigValidationError]]


MIXER = SnapshotCheck("mixer", frozenset({MIXER_GROUP}), validate_mixer_resources)
DEFAULT_CHECKS: tuple[SnapshotCheck, ...] = (MIXER,)


@dataclass(frozen=True, slots=True)
class Problem:
    """New problems of one resource of the snapshot a change would make."""

    resource: Resource
    errors: tuple[FieldError, ...]
    changed: bool  # the resource is one the change adds or replaces


def _group(key: Key) -> str:
    kind_id = key[0]
    return "" if kind_id.startswith("core/") else kind_id.rpartition("/")[0]


class ChangeValidator:
    """Judges changes against `store`'s current snapshot with `checks`."""

    def __init__(
        self, store: ConfigStore, checks: Sequence[SnapshotCheck] = DEFAULT_CHECKS
    ) -> None:
        self._store = store
        self._checks = tuple(checks)
        self._seen: dict[str, _Seen] = {}  # by check name

    def problems(
        self, upserts: Iterable[Resource] = (), removals: Iterable[Key] = ()
    ) -> list[Problem]:
        """The problems the change would bring into the store's snapshot (none: acceptable)."""
        upserts, removals = list(upserts), list(removals)
        found: list[Problem] = []
        for check in self._checks:
            found.extend(self._check(check, upserts, removals))
        return found

    def refusal(
        self,
        source: str,
        upserts: Iterable[Resource] = (),
        removals: Iterable[Key] = (),
        *,
        change: str = "this change",
    ) -> str | None:
        """Why the change from `source` must be refused, one line per problem; None if it may
        be accepted. Problems of the changed resources read like any validation error (prefixed
        with the resource's own source, else `source`); problems the change causes elsewhere
        read "`source`: `change` breaks <resource> (from <its source>): <problem>"."""
        found = self.problems(upserts, removals)
        if not found:
            return None
        lines = []
        for problem in found:
            resource = problem.resource
            if problem.changed:  # named by where it comes from, like any validation error
                origin = resource.source or source
                lines.append(str(ConfigValidationError(resource.label, problem.errors, origin)))
            else:
                where = f" (from {resource.source})" if resource.source else ""
                lines.extend(
                    f"{source}: {change} breaks {resource.label}{where}: {error}"
                    for error in problem.errors
                )
        return "\n".join(lines)

    def _check(
        self, check: SnapshotCheck, upserts: list[Resource], removals: list[Key]
    ) -> list[Problem]:
        relevant = [r for r in upserts if r.kind.group in check.groups]
        gone = [key for key in removals if _group(key) in check.groups]
        if not relevant and not gone:
            return []
        seen = self._current(check)
        current = seen.resources
        changed = {r.key: r for r in relevant if current.get(r.key) != r}
        removed = [key for key in gone if key in current]
        if not changed and not removed:
            return []
        candidate = dict(current)
        for key in removed:
            del candidate[key]
        candidate.update(changed)
        errors = check.validate(list(candidate.values()))
        if not errors:
            return []
        before = seen.problems(check)
        by_label = {resource.label: resource for resource in candidate.values()}
        found = []
        for error in errors:
            new = tuple(e for e in error.errors if (error.resource, e) not in before)
            resource = by_label.get(error.resource)
            if new and resource is not None:
                found.append(Problem(resource, new, resource.key in changed))
        return found

    def _current(self, check: SnapshotCheck) -> _Seen:
        snapshot = self._store.snapshot
        seen = self._seen.get(check.name)
        if seen is None or seen.version != snapshot.version:
            resources = {
                key: resource
                for key, resource in snapshot.resources.items()
                if resource.kind.group in check.groups
            }
            seen = self._seen[check.name] = _Seen(snapshot.version, resources)
        return seen


@dataclass(slots=True)
class _Seen:
    """One check's view of one store version: its resources, and their problems once asked."""

    version: int
    resources: Mapping[Key, Resource]
    _problems: frozenset[tuple[str, FieldError]] | None = None

    def problems(self, check: SnapshotCheck) -> frozenset[tuple[str, FieldError]]:
        """(resource label, error) for every problem the snapshot has already."""
        if self._problems is None:
            self._problems = frozenset(
                (error.resource, field_error)
                for error in check.validate(list(self.resources.values()))
                for field_error in error.errors
            )
        return self._problems
