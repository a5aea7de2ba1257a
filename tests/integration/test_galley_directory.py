"""DirectorySource watching a real directory: edits, bad edits, deletions, ConfigMap swaps."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from galley.sources.directory import DirectorySource
from galley.store import ConfigStore
from meshconfig import kind_for
from tests.support.shared import BOOKINFO_NETWORKING
from tests.unit.galley.galley_test_kind import WIDGET, widget, widget_kind

BOOKINFO = BOOKINFO_NETWORKING
POLL_S = 0.01
WAIT_S = 5.0


async def until(condition: Callable[[], bool]) -> None:
    """Wait for `condition`, polling at most WAIT_S seconds."""
    for _ in range(int(WAIT_S / POLL_S)):
        if condition():
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"condition not met within {WAIT_S}s")


def key(name: str) -> tuple[str, str, str]:
    return (WIDGET.id, "default", name)


@pytest.fixture(autouse=True)
def _widgets() -> Iterator[None]:
    with widget_kind():
        yield


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def store() -> ConfigStore:
    return ConfigStore()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    root = tmp_path / "config"
    root.mkdir()
    return root


@pytest.fixture
async def watched(
    config: Path, store: ConfigStore, registry: CollectorRegistry
) -> AsyncIterator[DirectorySource]:
    """A source that has loaded `config` and is watching it; cancelled and checked afterwards."""
    (config / "seed.yaml").write_text(widget("seed"))
    source = DirectorySource(config, store, registry=registry)
    source.load()
    task = asyncio.create_task(source.run())
    try:
        await asyncio.wait_for(source.watching.wait(), WAIT_S)
        yield source
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        current = asyncio.current_task()
        leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        assert not leftover, f"tasks left pending after cancelling the watch: {leftover}"


async def test_an_edit_becomes_a_new_version(
    config: Path, store: ConfigStore, watched: DirectorySource
) -> None:
    version = store.snapshot.version
    (config / "seed.yaml").write_text(widget("seed", port=8080))

    await until(lambda: store.snapshot.version > version)

    assert store.snapshot.version == version + 1
    assert store.snapshot.resources[key("seed")].spec.model_dump()["port"] == 8080


async def test_new_files_in_new_directories_are_picked_up(
    config: Path, store: ConfigStore, watched: DirectorySource
) -> None:
    nested = config / "team" / "reviews"
    nested.mkdir(parents=True)
    (nested / "new.yml").write_text(widget("new"))

    await until(lambda: key("new") in store.snapshot.resources)

    assert store.owner(key("new")) == f"file:{nested / 'new.yml'}"


async def test_a_bad_edit_is_reported_and_a_fix_clears_it(
    config: Path,
    store: ConfigStore,
    registry: CollectorRegistry,
    watched: DirectorySource,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed = config / "seed.yaml"
    other = config / "other.yaml"
    other.write_text(widget("other"))
    await until(lambda: key("other") in store.snapshot.resources)
    accepted = store.snapshot

    with caplog.at_level(logging.ERROR, logger="galley.sources.directory"):
        seed.write_text(widget("seed", port=-1))
        await until(lambda: str(seed) in watched.errors)

    assert watched.errors[str(seed)].startswith(f"{seed}: Widget default/seed: spec.port: ")
    assert store.snapshot is accepted
    assert registry.get_sample_value("galley_validation_failed_total", {"source": "directory"}) == 1
    assert watched.errors[str(seed)] in caplog.text

    # Another file's change goes through while seed.yaml stays refused, and touches only it.
    other.write_text(widget("other", port=9090))
    await until(lambda: store.snapshot.version > accepted.version)
    assert store.history()[-1].updated == (key("other"),)
    assert store.snapshot.resources[key("seed")] is accepted.resources[key("seed")]

    seed.write_text(widget("seed", port=8443))
    await until(lambda: not watched.errors)
    assert store.snapshot.resources[key("seed")].spec.model_dump()["port"] == 8443


async def test_a_deleted_file_removes_its_resources(
    config: Path, store: ConfigStore, watched: DirectorySource
) -> None:
    (config / "seed.yaml").unlink()

    await until(lambda: key("seed") not in store.snapshot.resources)

    assert store.history()[-1].removed == (key("seed"),)


async def test_a_configmap_volume_swap_is_one_change_per_file(
    config: Path, store: ConfigStore, watched: DirectorySource
) -> None:
    # The kubelet's layout: files are links into ..data, itself a link to a timestamped dir
    # that is replaced by renaming a new link over it.
    first = config / "..2024_01_01"
    first.mkdir()
    (first / "mesh.yaml").write_text(widget("mounted"))
    (config / "..data").symlink_to(first.name)
    (config / "mesh.yaml").symlink_to("..data/mesh.yaml")
    await until(lambda: key("mounted") in store.snapshot.resources)

    second = config / "..2024_01_02"
    second.mkdir()
    (second / "mesh.yaml").write_text(widget("mounted", port=9443))
    (config / "..data_tmp").symlink_to(second.name)
    os.replace(config / "..data_tmp", config / "..data")
    shutil.rmtree(first)

    await until(lambda: store.snapshot.resources[key("mounted")].spec.model_dump()["port"] == 9443)
    assert store.owner(key("mounted")) == f"file:{config / 'mesh.yaml'}"
    assert watched.errors == {}


async def test_bookinfo_routes_with_a_conflict_resolved_by_deleting_the_owner(
    config: Path, store: ConfigStore, watched: DirectorySource
) -> None:
    if kind_for("networking.istio.io/v1", "VirtualService") is None:
        pytest.skip("the networking kinds are not defined yet")
    all_v1 = config / "virtual-service-all-v1.yaml"
    split = config / "virtual-service-reviews-80-20.yaml"
    all_v1.write_text((BOOKINFO / all_v1.name).read_text())
    split.write_text((BOOKINFO / split.name).read_text())
    reviews = ("networking.istio.io/VirtualService", "default", "reviews")

    await until(lambda: str(split) in watched.errors)
    assert watched.errors[str(split)] == (
        f"{split}: VirtualService default/reviews: is already defined by file:{all_v1}"
    )
    assert store.owner(reviews) == f"file:{all_v1}"

    all_v1.unlink()
    await until(lambda: store.owner(reviews) == f"file:{split}")
    assert watched.errors == {}


def test_the_whole_bookinfo_directory_loads_with_only_conflicts_refused() -> None:
    if kind_for("networking.istio.io/v1", "VirtualService") is None:
        pytest.skip("the networking kinds are not defined yet")
    store = ConfigStore()

    errors = DirectorySource(BOOKINFO, store).load()

    # Several files are alternative versions of the same routes: one of each is taken.
    assert str(BOOKINFO / "virtual-service-reviews-v3.yaml") in errors
    for message in errors.values():
        for line in message.splitlines():
            assert ": is already defined by file:" in line, line
    names = {name for kind, _, name in store.snapshot.resources if kind.endswith("VirtualService")}
    assert {"bookinfo", "reviews", "ratings", "details"} <= names
