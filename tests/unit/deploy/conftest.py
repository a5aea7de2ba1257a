"""The rendered base (deploy/base through the test kustomize renderer), shared by the tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.unit.deploy.kustomize import render

BASE = Path(__file__).resolve().parents[3] / "deploy" / "base"

Find = Callable[[str, str], dict[str, Any]]


@pytest.fixture(scope="session")
def manifests() -> list[dict[str, Any]]:
    return render(BASE)


@pytest.fixture(scope="session")
def find(manifests: list[dict[str, Any]]) -> Find:
    """The one rendered resource of `kind` named `name`."""

    def find(kind: str, name: str) -> dict[str, Any]:
        found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
        assert len(found) == 1, f"{len(found)} {kind} named {name}"
        return found[0]

    return find
