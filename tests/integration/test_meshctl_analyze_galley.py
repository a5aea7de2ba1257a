"""`meshctl analyze --galley`: a real galley's distributed configuration, analyzed by the CLI."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from galley.server import Galley, GalleyOptions
from tests.integration.mesh import allocate_block
from tests.support.shared import BOOKINFO_NETWORKING

SERVICES = "\n---\n".join(
    f"""\
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 9080, name: http}}]
"""
    for name in ("productpage", "reviews", "ratings", "details")
)


@pytest.fixture
async def galley(tmp_path: Path) -> AsyncIterator[Galley]:
    """Bookinfo's services, gateway and v1 routing, but reviews routed to v3 with no rules."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "services.yaml").write_text(SERVICES)
    for name in ("bookinfo-gateway.yaml", "virtual-service-reviews-v3.yaml"):
        shutil.copy(BOOKINFO_NETWORKING / name, config / name)
    options = GalleyOptions(
        config_dir=config, host=f"{allocate_block()}.250", grpc_port=0, monitoring_port=0
    )
    async with Galley(options) as running:
        yield running


async def meshctl(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meshctl",
        "analyze",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_analyzes_what_galley_distributes(galley: Galley) -> None:
    assert galley.options.config_dir is not None
    origin = galley.options.config_dir / "virtual-service-reviews-v3.yaml"

    code, out, err = await meshctl("--galley", galley.address)
    assert code == 79, err
    assert out.splitlines() == [
        f"Error [IST0101] (VirtualService default/reviews {origin}) "
        'Referenced host+subset in destinationrule not found: "reviews+v3"'
    ]
    assert f"Analyzers found issues when analyzing galley at {galley.address}." in err

    code, out, _ = await meshctl("--galley", galley.address, "-o", "json")
    assert code == 79
    assert json.loads(out) == [
        {
            "code": "IST0101",
            "level": "Error",
            "resource": "VirtualService default/reviews",
            "origin": str(origin),
            "message": 'Referenced host+subset in destinationrule not found: "reviews+v3"',
        }
    ]


async def test_files_overlay_galley_as_if_applied(galley: Galley) -> None:
    rules = BOOKINFO_NETWORKING / "destination-rule-all.yaml"
    code, out, err = await meshctl("--galley", galley.address, str(rules))
    assert (code, out) == (0, ""), err
    assert err == (
        f"\u2714 No validation issues found when analyzing galley at {galley.address}, {rules}.\n"
    )
