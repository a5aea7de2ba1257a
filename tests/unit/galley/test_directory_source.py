"""DirectorySource passes driven by `load()`: what each file contributes, refuses and removes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from galley.sources.directory import DirectorySource
from galley.store import ConfigStore
from meshconfig import kind_for
from tests.unit.galley.galley_test_kind import WIDGET, documents, widget

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1}
spec: {replicas: 1}
"""


def key(name: str, ns: str = "default") -> tuple[str, str, str]:
    return (WIDGET.id, ns, name)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
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


def test_initial_load_reads_the_tree_and_skips_hidden_entries(
    tmp_path: Path, store: ConfigStore, source: DirectorySource
) -> None:
    top = write(tmp_path / "top.yaml", widget("top"))
    nested = write(tmp_path / "a" / "b" / "nested.yml", widget("nested", ns="other"))
    as_json = write(
        tmp_path / "a" / "json.json",
        '{"apiVersion": "test.pymesh.io/v1", "kind": "Widget",'
        ' "metadata": {"name": "json"}, "spec": {"host": "j.example.com"}}',
    )
    write(tmp_path / "..data" / "top.yaml", widget("from-configmap-internals"))
    write(tmp_path / ".hidden.yaml", widget("hidden"))
    write(tmp_path / "notes.txt", widget("text"))

    assert source.load() == {}

    resources = store.snapshot.resources
    assert set(resources) == {key("top"), key("nested", "other"), key("json")}
    assert store.owner(key("top")) == f"file:{top}"
    assert store.owner(key("nested", "other")) == f"file:{nested}"
    assert store.owner(key("json")) == f"file:{as_json}"
    assert resources[key("json")].spec.model_dump() == {"host": "j.example.com", "port": 80}


def test_an_edit_replaces_only_that_files_resources(
    tmp_path: Path, store: ConfigStore, source: DirectorySource
) -> None:
    a = write(tmp_path / "a.yaml", documents(widget("one"), widget("two")))
    write(tmp_path / "b.yaml", widget("other"))
    source.load()
    before = store.snapshot
    write(a, documents(widget("one", port=81), widget("three")))

    source.load()

    change = store.history()[-1]
    assert change.version == before.version + 1
    assert change.origin == f"file:{a}"
    assert (change.added, change.updated, change.removed) == (
        (key("three"),),
        (key("one"),),
        (key("two"),),
    )
    assert store.snapshot.resources[key("other")] is before.resources[key("other")]


def test_an_unchanged_tree_makes_no_new_version(
    tmp_path: Path, store: ConfigStore, source: DirectorySource
) -> None:
    write(tmp_path / "a.yaml", widget("one"))
    source.load()
    version = store.snapshot.version

    source.load()

    assert store.snapshot.version == version


def test_an_invalid_file_keeps_its_last_accepted_content_until_fixed(
    tmp_path: Path,
    store: ConfigStore,
    source: DirectorySource,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = write(tmp_path / "a.yaml", widget("one"))
    source.load()
    accepted = store.snapshot
    # Atomic per file: the valid new document is not taken either.
    write(a, documents(widget("one", port=70000), widget("two")))

    with caplog.at_level(logging.ERROR):
        errors = source.load()

    assert store.snapshot is accepted
    message = errors[str(a)]
    assert message.startswith(f"{a}: Widget default/one: spec.port: ")
    assert source.errors == errors
    assert failures(registry) == 1
    assert any(r.levelno == logging.ERROR and message in r.getMessage() for r in caplog.records)

    source.load()  # nothing new: not reported again
    assert failures(registry) == 1

    write(a, documents(widget("one"), widget("two")))
    assert source.load() == {}
    assert set(store.snapshot.resources) == {key("one"), key("two")}


def test_unparsable_and_duplicate_content_are_refused(
    tmp_path: Path, store: ConfigStore, source: DirectorySource
) -> None:
    broken = write(tmp_path / "broken.yaml", "kind: [unclosed\n")
    twice = write(tmp_path / "twice.yaml", documents(widget("same"), widget("same", port=81)))

    errors = source.load()

    assert "cannot parse YAML" in errors[str(broken)]
    assert errors[str(twice)] == f"{twice}: Widget default/same: is defined more than once"
    assert store.snapshot.resources == {}


def test_a_deleted_file_removes_its_resources_and_its_error(
    tmp_path: Path, store: ConfigStore, source: DirectorySource
) -> None:
    a = write(tmp_path / "a.yaml", widget("one"))
    bad = write(tmp_path / "bad.yaml", widget("bad", port="x"))
    write(tmp_path / "b.yaml", widget("kept"))
    source.load()
    a.unlink()
    bad.unlink()

    assert source.load() == {}

    assert set(store.snapshot.resources) == {key("kept")}
    assert store.history()[-1].removed == (key("one"),)


def test_the_second_file_defining_a_resource_is_refused_naming_the_first(
    tmp_path: Path, store: ConfigStore, source: DirectorySource
) -> None:
    first = write(tmp_path / "a.yaml", widget("shared"))
    second = write(tmp_path / "b.yaml", documents(widget("shared", port=81), widget("extra")))

    errors = source.load()

    assert errors == {
        str(second): f"{second}: Widget default/shared: is already defined by file:{first}"
    }
    assert store.snapshot.resources[key("shared")].spec.model_dump()["port"] == 80
    assert key("extra") not in store.snapshot.resources

    first.unlink()  # the owner lets go: the refused file is taken on the next pass
    assert source.load() == {}
    assert store.owner(key("shared")) == f"file:{second}"
    assert key("extra") in store.snapshot.resources


def test_a_resource_moved_between_files_in_one_pass_is_not_an_error(
    tmp_path: Path, store: ConfigStore, source: DirectorySource
) -> None:
    # b.yaml is read before z.yaml lets go of the resource.
    write(tmp_path / "z.yaml", widget("moving"))
    source.load()
    write(tmp_path / "b.yaml", widget("moving"))
    write(tmp_path / "z.yaml", "")

    assert source.load() == {}
    assert store.owner(key("moving")) == f"file:{tmp_path / 'b.yaml'}"


def test_unknown_kinds_are_skipped(
    tmp_path: Path, store: ConfigStore, source: DirectorySource, caplog: pytest.LogCaptureFixture
) -> None:
    if kind_for("apps/v1", "Deployment") is not None:
        pytest.skip("the mesh accepts Deployments now")
    write(tmp_path / "app.yaml", documents(DEPLOYMENT, widget("one")))

    with caplog.at_level(logging.DEBUG, logger="galley.sources.directory"):
        assert source.load() == {}

    assert set(store.snapshot.resources) == {key("one")}
    assert any("Deployment" in r.getMessage() for r in caplog.records)


def test_a_missing_directory_is_an_error_and_changes_nothing(
    tmp_path: Path, store: ConfigStore, registry: CollectorRegistry
) -> None:
    root = tmp_path / "config"
    write(root / "a.yaml", widget("one"))
    source = DirectorySource(root, store, registry=registry)
    source.load()
    (root / "a.yaml").unlink()
    root.rmdir()

    with pytest.raises(NotADirectoryError):
        source.load()
    assert set(store.snapshot.resources) == {key("one")}


def test_two_files_may_swap_resources_in_one_pass(
    tmp_path: Path, store: ConfigStore, source: DirectorySource
) -> None:
    a = write(tmp_path / "a.yaml", widget("x"))
    b = write(tmp_path / "b.yaml", widget("y"))
    source.load()
    write(a, widget("y"))
    write(b, widget("x"))

    assert source.load() == {}
    assert store.owner(key("x")) == f"file:{b}"
    assert store.owner(key("y")) == f"file:{a}"
