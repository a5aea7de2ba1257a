"""`make up`'s path end to end: `meshctl up -d` on the bookinfo demo, then status, proxy-status,
routing changes from Istio's own bookinfo samples, mutual TLS on every hop, and `meshctl down`.

The mesh runs detached exactly as a user starts it (a `meshctl` process), on a copy of
examples/bookinfo so the test can add configuration files to it. Control plane and gateway
addresses come from the test's own loopback block; the workloads keep the example's addresses
(127.20.0.x, used by no other test).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from localmesh.state import MeshState, process_alive
from tests.integration.mesh import allocate_block, eventually
from tests.support.shared import BOOKINFO_NETWORKING

pytestmark = pytest.mark.envoy

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bookinfo"
PODS = ("productpage-v1", "details-v1", "reviews-v1", "reviews-v2", "reviews-v3", "ratings-v1")


def pgrep(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return found.stdout.split()


def meshctl(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshctl", *argv],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
def local_mesh(tmp_path: Path) -> Iterator[tuple[Path, Path, str]]:
    """(config dir, run dir, gateway address) of a running mesh; stopped afterwards."""
    config_dir, run_dir = tmp_path / "bookinfo", tmp_path / "run"
    shutil.copytree(EXAMPLE, config_dir)
    block = allocate_block()
    hosts = {"pilot": ".1", "citadel": ".2", "galley": ".3", "gateway": ".4", "mixer": ".5"}
    flags = [arg for name, last in hosts.items() for arg in (f"--{name}-host", block + last)]
    started = meshctl("up", str(config_dir), "-d", "--run-dir", str(run_dir), *flags)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"curl http://{block}.4:8080/productpage" in started.stdout
        yield config_dir, run_dir, f"{block}.4"
    finally:
        meshctl("down", "--run-dir", str(run_dir))


async def reviews_seen(gateway: str, count: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for _ in range(count):
            async with session.get(f"http://{gateway}:8080/productpage") as response:
                text = await response.text()
            found = re.search(r"^reviews: (reviews-v\d)", text, re.MULTILINE)
            seen[found.group(1) if found else f"status {response.status}: {text[:80]}"] += 1
    return seen


async def inbound_tls(address: str) -> tuple[int, int]:
    """(connections, TLS handshakes) on the pod's inbound listener for 9080."""
    prefix = f"listener.{address}_9080."
    url = f"http://{address}:15000/stats?format=json&filter=^{re.escape(prefix)}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        body = await response.json()
    stats = {s["name"]: s["value"] for s in body["stats"] if "value" in s}
    return stats.get(prefix + "downstream_cx_total", 0), stats.get(prefix + "ssl.handshake", 0)


async def test_make_up_path(local_mesh: tuple[Path, Path, str]) -> None:
    config_dir, run_dir, gateway = local_mesh
    state = MeshState.load(run_dir)
    assert state is not None and state.ready

    status = await asyncio.to_thread(meshctl, "status", "--run-dir", str(run_dir), "-o", "json")
    assert status.returncode == 0, status.stdout + status.stderr
    components = {c["name"]: c["healthy"] for c in json.loads(status.stdout)["components"]}
    assert set(PODS) | {"pilot", "galley", "citadel", "istio-ingressgateway"} <= set(components)
    assert all(components.values())

    again = await asyncio.to_thread(meshctl, "up", str(config_dir), "-d", "--run-dir", str(run_dir))
    assert again.returncode == 1 and "already running" in again.stdout

    # Round robin over the three reviews versions, as bookinfo without routing rules.
    seen = await reviews_seen(gateway, 45)
    assert set(seen) == {"reviews-v1", "reviews-v2", "reviews-v3"}, seen

    # Istio's own sample files, written into the watched directory: only v3 within seconds.
    for sample in ("destination-rule-all.yaml", "virtual-service-reviews-v3.yaml"):
        shutil.copy(BOOKINFO_NETWORKING / sample, config_dir / sample)

    async def only_v3() -> bool | None:
        return True if await reviews_seen(gateway, 20) == Counter({"reviews-v3": 20}) else None

    await eventually(only_v3, "only reviews-v3 answering", attempts=100, interval=0.1)

    # Every hop into a workload was mutual TLS: each inbound connection made a handshake.
    addresses = {pod.name: pod.address for pod in state.pods}
    for pod in ("productpage-v1", "details-v1", "reviews-v3", "ratings-v1"):
        connections, handshakes = await inbound_tls(addresses[pod])
        assert connections > 0 and connections == handshakes, (pod, connections, handshakes)

    # Every request was reported to Mixer: Istio's metric counts the gateway's calls.
    mixer = next(c.address for c in state.control_plane if c.name == "mixer").split(":")[0]

    async def productpage_counted() -> float | None:
        url = f"http://{mixer}:42422/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            text = await response.text()
        total = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("istio_requests_total{")
            and 'destination_service="productpage.default.svc.cluster.local"' in line
        )
        return total if total >= 45 else None

    await eventually(productpage_counted, "istio_requests_total counting productpage's requests")

    proxy_status = await asyncio.to_thread(
        meshctl, "proxy-status", "--run-dir", str(run_dir), "-o", "json"
    )
    assert proxy_status.returncode == 0, proxy_status.stderr
    rows = json.loads(proxy_status.stdout)
    assert {row["name"] for row in rows} >= {f"{pod}.default" for pod in PODS}
    for row in rows:
        assert all(row[t] == "SYNCED" for t in ("cds", "lds", "eds", "rds")), row

    apps = await asyncio.to_thread(pgrep, "localmesh.bookinfo")
    assert len(apps) == len(PODS)
    down = await asyncio.to_thread(meshctl, "down", "--run-dir", str(run_dir))
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not process_alive(state.pid)
    assert MeshState.load(run_dir) is None
    # Nothing of the mesh is left: its Envoys (their command lines name the run directory),
    # its applications.
    assert await asyncio.to_thread(pgrep, str(run_dir)) == []
    assert not any(process_alive(int(pid)) for pid in apps)
