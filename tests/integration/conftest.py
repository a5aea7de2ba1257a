"""Fixtures for integration tests with real Envoy processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.bootstrap import XdsApi
from tests.integration.mesh import Mesh, allocate_block


@pytest.fixture(params=[XdsApi.GRPC, XdsApi.DELTA_GRPC], ids=["sotw", "delta"])
def xds_api(request: pytest.FixtureRequest) -> XdsApi:
    return XdsApi(request.param)


@pytest.fixture
async def mesh(tmp_path: Path, xds_api: XdsApi) -> AsyncIterator[Mesh]:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    built = Mesh(allocate_block(), config_dir, tmp_path / "run", xds_api)
    try:
        yield built
    finally:
        await built.close()
        current = asyncio.current_task()
        leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        assert not leftover, f"tasks left pending after the mesh stopped: {leftover}"
