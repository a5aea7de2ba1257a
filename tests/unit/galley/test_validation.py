"""ChangeValidator: which changes a snapshot check sees, and how often it runs."""

from __future__ import annotations

from galley.store import ConfigStore
from galley.validation import MIXER, ChangeValidator, SnapshotCheck
from meshconfig import ConfigValidationError, Resource, load_documents, validate_document
from tests.unit.galley.galley_mixer_config import handler, instance, rule
from tests.unit.galley.galley_test_kind import widget


def resources(*texts: str) -> list[Resource]:
    return [validate_document(d, "test.yaml") for t in texts for d in load_documents(t)]


class Counting:
    """Mixer's check, counting the resources of each run."""

    def __init__(self) -> None:
        self.runs: list[int] = []

    def __call__(self, found: list[Resource]) -> list[ConfigValidationError]:
        self.runs.append(len(found))
        return MIXER.validate(found)


def counting_validator(store: ConfigStore) -> tuple[ChangeValidator, Counting]:
    counting = Counting()
    return ChangeValidator(store, [SnapshotCheck("mixer", MIXER.groups, counting)]), counting


def test_changes_outside_the_checks_groups_never_run_it() -> None:
    store = ConfigStore()
    validator, counting = counting_validator(store)
    store.apply("file:a", resources(widget("w")))

    assert validator.problems(resources(widget("w", port=81))) == []
    assert validator.problems((), [("test.pymesh.io/Widget", "default", "w")]) == []
    assert counting.runs == []


def test_unchanged_resources_and_absent_removals_are_no_change() -> None:
    store = ConfigStore()
    validator, counting = counting_validator(store)
    mixer = resources(handler(), instance(), rule())
    store.apply("file:a", mixer)

    assert validator.problems(mixer, [("config.istio.io/rule", "default", "absent")]) == []
    assert counting.runs == []


def test_the_snapshot_is_judged_once_per_version_and_only_when_needed() -> None:
    store = ConfigStore()
    validator, counting = counting_validator(store)
    store.apply("file:a", resources(handler(), instance()))

    assert validator.problems(resources(rule())) == []
    assert counting.runs == [3]  # the candidate only: it has no problems
    broken = resources(rule(handler="missing"))
    (first,) = validator.problems(broken)
    (second,) = validator.problems(broken)
    assert counting.runs == [3, 3, 2, 3]  # the store's own problems once, for both
    assert first == second and first.changed
    assert [str(e) for e in first.errors] == [
        "spec.actions[0].handler: handler 'missing' not found (as missing.handler.default)"
    ]


def test_a_refusal_names_the_source_and_what_breaks_where() -> None:
    store = ConfigStore()
    validator = ChangeValidator(store)
    store.apply("file:a", resources(handler(), instance(), rule()))
    key = ("config.istio.io/handler", "default", "deny")

    refusal = validator.refusal("/etc/mesh/h.yaml", (), [key], change="deleting it")

    assert refusal == (
        "/etc/mesh/h.yaml: deleting it breaks rule default/deny-v3 (from test.yaml): "
        "spec.actions[0].handler: handler 'deny' not found (as deny.handler.default)"
    )
