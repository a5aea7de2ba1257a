"""Mixer config across files: the directory source refuses a file whose change would break the
Mixer config (a rule naming a handler that does not exist, an expression of the wrong type, a
handler deleted while a rule uses it) as Istio's galley refused it, keeping what was accepted."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from galley.sources.directory import DirectorySource
from galley.store import ConfigStore
from meshconfig import load_documents, validate_document
from tests.unit.galley.galley_mixer_config import DENY_V3, handler, instance, rule
from tests.unit.galley.galley_test_kind import documents, widget

HANDLER = ("config.istio.io/handler", "default", "deny")
INSTANCE = ("config.istio.io/instance", "default", "nothing")
RULE = ("config.istio.io/rule", "default", "deny-v3")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def store() -> ConfigStore:
    return ConfigStore()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def source(tmp_path: Path, store: ConfigStore, registry: CollectorRegistry) -> DirectorySource:
    return DirectorySource(tmp_path, store, registry=registry)


def failures(registry: CollectorRegistry) -> float:
    value = registry.get_sample_value("galley_validation_failed_total", {"source": "directory"})
    return value or 0.0


def match_of(store: ConfigStore) -> str | None:
    spec = store.snapshot.resources[RULE].spec_dict()
    match: str | None = spec.get("match")
    return match


def test_a_rule_and_what_it_names_are_accepted_in_any_file_order(
    tmp_path: Path, store: ConfigStore, source: DirectorySource
) -> None:
    # a-rule.yaml is read before the handler and instance it names exist.
    write(tmp_path / "a-rule.yaml", rule())
    write(tmp_path / "b-handler.yaml", documents(handler(), instance()))

    assert source.load() == {}

    assert {RULE, HANDLER, INSTANCE} <= set(store.snapshot.resources)


def test_a_rule_with_a_type_error_is_refused_naming_field_and_position(
    tmp_path: Path,
    store: ConfigStore,
    source: DirectorySource,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    write(tmp_path / "handler.yaml", documents(handler(), instance()))
    rules = write(tmp_path / "rule.yaml", rule())
    source.load()
    accepted = store.snapshot
    write(rules, rule(match='destination.labels["app"] == 3'))

    with caplog.at_level(logging.ERROR):
        errors = source.load()

    assert store.snapshot is accepted  # the previous rule stays in force
    assert errors == {
        str(rules): f"{rules}: rule default/deny-v3: spec.match: line 1, column 27: "
        "'==' needs operands of one type, got STRING and INT64 "
        "(in 'destination.labels[\"app\"] == 3')"
    }
    assert failures(registry) == 1
    assert any(errors[str(rules)] in r.getMessage() for r in caplog.records)

    write(rules, rule(match='source.labels["version"] == "v2"'))
    assert source.load() == {}
    assert match_of(store) == 'source.labels["version"] == "v2"'


def test_a_syntax_error_is_refused_by_the_document_check(
    tmp_path: Path, store: ConfigStore, source: DirectorySource
) -> None:
    mixer = write(tmp_path / "mixer.yaml", documents(handler(), instance(), rule()))
    source.load()
    write(mixer, documents(handler(), instance(), rule(match="source.ip ==")))

    errors = source.load()

    assert errors[str(mixer)].startswith(
        f"{mixer}: rule default/deny-v3: spec.match: line 1, column 13: expected an operand"
    )
    assert match_of(store) == DENY_V3


def test_a_rule_naming_a_missing_handler_waits_for_it(
    tmp_path: Path, store: ConfigStore, source: DirectorySource, registry: CollectorRegistry
) -> None:
    write(tmp_path / "instance.yaml", instance())
    rules = write(tmp_path / "rule.yaml", documents(rule(), widget("beside-the-rule")))

    errors = source.load()

    assert errors == {
        str(rules): f"{rules}: rule default/deny-v3: spec.actions[0].handler: handler 'deny' "
        "not found (as deny.handler.default)"
    }
    # Refused as a whole: the Widget in the same file is not taken either.
    assert set(store.snapshot.resources) == {INSTANCE}
    assert failures(registry) == 1

    write(tmp_path / "handler.yaml", handler())  # rule.yaml is unchanged but taken now
    assert source.load() == {}
    assert {RULE, HANDLER} <= set(store.snapshot.resources)


def test_an_instance_the_handler_cannot_take_is_refused(
    tmp_path: Path, source: DirectorySource
) -> None:
    metric = instance("requests", template="metric", params={"value": "1"})
    rules = write(
        tmp_path / "mixer.yaml", documents(handler(), metric, rule(instances=("requests",)))
    )

    errors = source.load()

    assert errors[str(rules)] == (
        f"{rules}: rule default/deny-v3: spec.actions[0].instances[0]: adapter 'denier' of "
        "handler deny.handler.default does not support template 'metric' (it supports "
        "checknothing, listentry, quota)"
    )


def test_deleting_a_handler_a_rule_uses_is_refused_until_the_rule_goes(
    tmp_path: Path, store: ConfigStore, source: DirectorySource, registry: CollectorRegistry
) -> None:
    handlers = write(tmp_path / "handler.yaml", documents(handler(), instance()))
    rules = write(tmp_path / "rule.yaml", rule())
    source.load()
    accepted = store.snapshot
    handlers.unlink()

    errors = source.load()

    assert store.snapshot is accepted  # the handler and instance stay in force
    message = errors[str(handlers)]
    assert message.splitlines() == [
        f"{handlers}: deleting it breaks rule default/deny-v3 (from {rules}): "
        "spec.actions[0].handler: handler 'deny' not found (as deny.handler.default)",
        f"{handlers}: deleting it breaks rule default/deny-v3 (from {rules}): "
        "spec.actions[0].instances[0]: instance 'nothing' not found "
        "(as nothing.instance.default)",
    ]
    assert failures(registry) == 1
    assert source.load() == errors and failures(registry) == 1  # not news the second time

    rules.unlink()  # the rule goes: the handler file's deletion is taken in the same pass
    assert source.load() == {}
    assert not store.snapshot.resources


def test_a_deleted_handler_file_that_comes_back_is_accepted_again(
    tmp_path: Path, store: ConfigStore, source: DirectorySource
) -> None:
    text = documents(handler(), instance())
    handlers = write(tmp_path / "handler.yaml", text)
    write(tmp_path / "rule.yaml", rule())
    source.load()
    handlers.unlink()
    assert str(handlers) in source.load()
    version = store.snapshot.version

    write(handlers, text)

    assert source.load() == {}
    assert store.snapshot.version == version


def test_a_rule_and_its_handler_deleted_together_go_together(
    tmp_path: Path, store: ConfigStore, source: DirectorySource
) -> None:
    handlers = write(tmp_path / "a-handler.yaml", documents(handler(), instance()))
    rules = write(tmp_path / "b-rule.yaml", rule())
    source.load()
    handlers.unlink()  # removed first in the pass, while the rule still names it
    rules.unlink()

    assert source.load() == {}
    assert not store.snapshot.resources


def test_changing_a_handler_so_a_rule_breaks_is_refused(
    tmp_path: Path, store: ConfigStore, source: DirectorySource
) -> None:
    handlers = write(tmp_path / "handler.yaml", documents(handler(), instance()))
    rules = write(tmp_path / "rule.yaml", rule())
    source.load()

    write(handlers, documents(handler(adapter="prometheus"), instance()))
    errors = source.load()

    assert errors[str(handlers)] == (
        f"{handlers}: this change breaks rule default/deny-v3 (from {rules}): "
        "spec.actions[0].instances[0]: adapter 'prometheus' of handler deny.handler.default "
        "does not support template 'checknothing' (it supports metric)"
    )
    adapter = store.snapshot.resources[HANDLER].spec_dict()["compiledAdapter"]
    assert adapter == "denier"


def test_a_problem_already_in_the_store_does_not_block_other_changes(
    tmp_path: Path, store: ConfigStore, source: DirectorySource
) -> None:
    # A broken rule that came from elsewhere (the Kubernetes API: galley cannot refuse it).
    (broken,) = [validate_document(d, "kubernetes") for d in load_documents(rule("other"))]
    store.apply("kubernetes", [broken])

    write(tmp_path / "mixer.yaml", documents(handler("h2"), instance("i2")))

    assert source.load() == {}
    assert ("config.istio.io/handler", "default", "h2") in store.snapshot.resources


def test_renaming_the_handler_file_a_rule_uses_is_accepted(
    tmp_path: Path, store: ConfigStore, source: DirectorySource
) -> None:
    old = write(tmp_path / "handler.yaml", documents(handler(), instance()))
    write(tmp_path / "rule.yaml", rule())
    source.load()
    new = tmp_path / "handlers.yaml"
    old.rename(new)  # in one pass: handler.yaml lets go of what handlers.yaml takes

    assert source.load() == {}

    assert store.owner(HANDLER) == store.owner(INSTANCE) == f"file:{new}"
    assert {RULE, HANDLER, INSTANCE} <= set(store.snapshot.resources)


def test_moving_a_handler_a_rule_uses_between_files_is_accepted(
    tmp_path: Path, store: ConfigStore, source: DirectorySource
) -> None:
    first = write(tmp_path / "a.yaml", documents(handler(), instance()))
    second = write(tmp_path / "b.yaml", rule())
    source.load()
    write(first, instance())
    write(second, documents(rule(), handler()))

    assert source.load() == {}

    assert store.owner(HANDLER) == f"file:{second}"


def test_a_rename_whose_new_content_breaks_a_rule_is_refused_whole(
    tmp_path: Path, store: ConfigStore, source: DirectorySource
) -> None:
    old = write(tmp_path / "handler.yaml", documents(handler(), instance()))
    write(tmp_path / "rule.yaml", rule())
    source.load()
    accepted = store.snapshot
    old.unlink()
    new = write(tmp_path / "handlers.yaml", documents(handler(adapter="prometheus"), instance()))

    errors = source.load()

    assert store.snapshot is accepted
    # Both files are refused for what the change as a whole would break.
    assert errors[str(old)] == errors[str(new)]
    assert errors[str(new)] == (
        f"{old}: this change, with {new}, breaks rule default/deny-v3 (from "
        f"{tmp_path / 'rule.yaml'}): spec.actions[0].instances[0]: adapter 'prometheus' of "
        "handler deny.handler.default does not support template 'checknothing' "
        "(it supports metric)"
    )

    write(new, documents(handler(), instance()))
    assert source.load() == {}
    assert store.owner(HANDLER) == f"file:{new}"


def test_in_a_refused_move_each_problem_names_its_own_file(
    tmp_path: Path, store: ConfigStore, source: DirectorySource
) -> None:
    old = write(tmp_path / "a.yaml", documents(handler(), instance(), rule()))
    source.load()
    write(old, documents(instance(), rule()))  # the handler moves to b.yaml...
    new = write(tmp_path / "b.yaml", documents(handler(), rule("r2", match="source.ip == 1")))

    errors = source.load()  # ...beside a rule with a type error

    assert errors[str(old)] == errors[str(new)]
    assert errors[str(new)].startswith(
        f"{new}: rule default/r2: spec.match: line 1, column 11: '==' needs operands"
    )
    assert store.owner(HANDLER) == f"file:{old}"
