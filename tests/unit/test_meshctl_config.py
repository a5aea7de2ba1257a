"""`meshctl apply / get / delete` against a configuration directory (what galley watches)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from meshctl.__main__ import main
from tests.support.shared import BOOKINFO_NETWORKING

REVIEWS_V3 = BOOKINFO_NETWORKING / "virtual-service-reviews-v3.yaml"


def test_apply_creates_then_leaves_unchanged_then_configures(tmp_path: Path, capsys) -> None:
    store = tmp_path / "mesh"
    store.mkdir()
    assert main(["apply", "-f", str(REVIEWS_V3), "--dir", str(store)]) == 0
    assert "virtualservice.networking.istio.io/reviews created" in capsys.readouterr().out
    (written,) = store.iterdir()
    assert yaml.safe_load(written.read_text())["spec"]["http"][0]["route"][0]["destination"] == {
        "host": "reviews",
        "subset": "v3",
    }
    assert main(["apply", "-f", str(REVIEWS_V3), "--dir", str(store)]) == 0
    assert "reviews unchanged" in capsys.readouterr().out
    changed = tmp_path / "v1.yaml"
    changed.write_text(REVIEWS_V3.read_text().replace("subset: v3", "subset: v1"))
    assert main(["apply", "-f", str(changed), "--dir", str(store)]) == 0
    assert "reviews configured" in capsys.readouterr().out
    assert [p.name for p in store.iterdir()] == [written.name]
    assert "subset: v1" in written.read_text()


def test_an_invalid_document_applies_nothing(tmp_path: Path, capsys) -> None:
    store = tmp_path / "mesh"
    store.mkdir()
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        REVIEWS_V3.read_text() + "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: broken}\nspec: {host: ''}\n"
    )
    assert main(["apply", "-f", str(bad), "--dir", str(store)]) == 1
    assert "DestinationRule" in capsys.readouterr().err
    assert list(store.iterdir()) == []


def test_a_hand_written_file_with_several_documents_is_left_to_its_author(
    tmp_path: Path, capsys
) -> None:
    store = tmp_path / "mesh"
    store.mkdir()
    both = store / "routing.yaml"
    both.write_text((BOOKINFO_NETWORKING / "virtual-service-all-v1.yaml").read_text())
    assert main(["apply", "-f", str(REVIEWS_V3), "--dir", str(store)]) == 1
    assert f"defined in {both} with other documents" in capsys.readouterr().err
    assert main(["delete", "vs", "reviews", "--dir", str(store)]) == 1


def test_get_and_delete(tmp_path: Path, capsys) -> None:
    store = tmp_path / "mesh"
    store.mkdir()
    assert main(["apply", "-f", str(REVIEWS_V3), "--dir", str(store)]) == 0
    capsys.readouterr()
    assert main(["get", "virtualservices", "--dir", str(store)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "NAMESPACE            NAME",
        "default              reviews",
    ]
    assert main(["get", "vs", "reviews", "-o", "json", "--dir", str(store)]) == 0
    assert json.loads(capsys.readouterr().out)["metadata"]["name"] == "reviews"
    assert main(["get", "vs", "ratings", "--dir", str(store)]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["delete", "-f", str(REVIEWS_V3), "--dir", str(store)]) == 0
    assert list(store.iterdir()) == []


@pytest.mark.parametrize("name", ["nope", "virtualservicez"])
def test_unknown_kinds_are_named(tmp_path: Path, capsys, name: str) -> None:
    assert main(["get", name, "--dir", str(tmp_path)]) == 1
    assert f"unknown kind {name!r}" in capsys.readouterr().err


def test_without_a_store_or_a_running_mesh(tmp_path: Path, capsys) -> None:
    assert main(["get", "vs", "--run-dir", str(tmp_path)]) == 1
    assert "no local mesh runs" in capsys.readouterr().err
