"""`meshctl apply / get / delete --kubernetes`: Istio resources as the API server's custom
objects, through the real kubernetes-asyncio client against the fake API server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meshctl.__main__ import main
from tests.support.kube_fake import KubeFake
from tests.support.shared import BOOKINFO_NETWORKING

REVIEWS_V3 = BOOKINFO_NETWORKING / "virtual-service-reviews-v3.yaml"


@pytest.fixture
async def kube() -> AsyncIterator[KubeFake]:
    async with KubeFake() as fake:
        fake.add_custom_resource(
            "networking.istio.io",
            ("v1", "v1beta1", "v1alpha3"),
            "VirtualService",
            "virtualservices",
        )
        yield fake


async def meshctl(*argv: str) -> int:
    # The CLI runs its own event loop; keep it off the one serving the fake API.
    return await asyncio.to_thread(main, list(argv))


async def test_apply_get_delete(kube: KubeFake, capsys, tmp_path: Path) -> None:
    assert await meshctl("apply", "-f", str(REVIEWS_V3), "--kubernetes", kube.url) == 0
    assert "reviews created" in capsys.readouterr().out
    stored = kube.get("networking.istio.io/v1", "VirtualService", "reviews")
    assert stored["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v3"

    assert await meshctl("apply", "-f", str(REVIEWS_V3), "--kubernetes", kube.url) == 0
    assert "reviews unchanged" in capsys.readouterr().out

    changed = tmp_path / "v1.yaml"
    changed.write_text(REVIEWS_V3.read_text().replace("subset: v3", "subset: v1"))
    assert await meshctl("apply", "-f", str(changed), "--kubernetes", kube.url) == 0
    assert "reviews configured" in capsys.readouterr().out

    assert await meshctl("get", "vs", "reviews", "-o", "json", "--kubernetes", kube.url) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v1"

    assert await meshctl("delete", "vs", "reviews", "--kubernetes", kube.url) == 0
    assert await meshctl("get", "vs", "reviews", "--kubernetes", kube.url) == 1
    assert "not found" in capsys.readouterr().err


async def test_core_kinds_are_kubectl_s(kube: KubeFake, capsys) -> None:
    assert await meshctl("get", "pods", "--kubernetes", kube.url) == 1
    assert "use kubectl" in capsys.readouterr().err
