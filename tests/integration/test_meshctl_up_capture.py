"""`meshctl up --capture -d` end to end (root): bookinfo with every workload in its own network
namespace, its traffic captured by iptables, the applications unmodified, then `meshctl down`.

The mesh runs detached exactly as a user starts it, on a copy of examples/bookinfo (so the
test can add Istio's samples to it). What makes it safe beside other tests (xdist runs the
other capture tests at the same time): every name the mesh makes carries its tag
(`lm<pid>x<n>`, the pid of its own process), its pods' addresses live only inside its own hub
namespace, and its one link to the root namespace is a /30 that no address or route of the
host overlaps, chosen when it starts.

Proof: productpage through the gateway, from the root namespace as a user would ask it, shows
all three reviews versions, then only v3 once Istio's samples are copied into the directory
(the translated copy follows it); every inbound connection of every pod was a TLS handshake
(Envoy's virtualInbound stats); the application's outbound connections were captured and the
agent's own were not (iptables' counters); the applications run as uid 1000 with no proxy
setting in their environment and the agents as 1337; after `down` no namespace, link,
/etc/netns entry, file or process of the mesh is left. And when the mesh was killed outright
(nothing cleaned up), `down` removes all it left from the run directory's record.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from localmesh.capture import APP_UID, PROXY_UID, ROOT_LINKS, CaptureRecord
from localmesh.netns import ETC_NETNS, Netns, namespaces, running
from localmesh.state import MeshState, process_alive
from tests.integration.mesh import eventually
from tests.support.netns import readable_by_pods, requires_root, rule_packets
from tests.support.shared import BOOKINFO_NETWORKING

pytestmark = [pytest.mark.envoy, requires_root, readable_by_pods]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bookinfo"
PLAIN_HTTP = str(Path(__file__).resolve().parents[1] / "support" / "plain_http.py")
PODS = ("productpage-v1", "details-v1", "reviews-v1", "reviews-v2", "reviews-v3", "ratings-v1")
REDIRECT_OUTBOUND = "-A ISTIO_OUTPUT -j ISTIO_REDIRECT"
PROXY_UID_RETURN = f"-A ISTIO_OUTPUT -m owner --uid-owner {PROXY_UID} -j RETURN"
INBOUND = "listener.0.0.0.0_15006."


def meshctl(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshctl", *argv],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
def capture_mesh(tmp_path: Path) -> Iterator[tuple[Path, Path, str]]:
    """(config dir, run dir, productpage URL) of a running capture mesh; stopped afterwards."""
    config_dir, run_dir = tmp_path / "bookinfo", tmp_path / "run"
    shutil.copytree(EXAMPLE, config_dir)
    started = meshctl("up", "--capture", str(config_dir), "-d", "--run-dir", str(run_dir))
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        url = re.search(r"curl (http://\S+:8080/productpage)", started.stdout)
        assert url is not None, started.stdout
        yield config_dir, run_dir, url[1]
    finally:
        meshctl("down", "--run-dir", str(run_dir))


async def reviews_seen(url: str, count: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for _ in range(count):
            async with session.get(url) as response:
                text = await response.text()
            found = re.search(r"^reviews: (reviews-v\d)", text, re.MULTILINE)
            seen[found.group(1) if found else f"status {response.status}: {text[:80]}"] += 1
    return seen


def envoy_stats(pod: Netns) -> dict[str, int]:
    """The sidecar's counters, asked on the pod's own loopback (its admin API is there)."""
    url = "http://127.0.0.1:15000/stats?format=json"
    argv = pod.exec_argv(sys.executable, PLAIN_HTTP, "get", url)
    answer = json.loads(subprocess.run(argv, capture_output=True, check=True, timeout=30).stdout)
    stats = json.loads(answer["body"])["stats"]
    return {stat["name"]: stat["value"] for stat in stats if "value" in stat}


def processes(pod: Netns) -> dict[int, tuple[str, int, dict[str, str]]]:
    """pid -> (command line, uid, environment) of what runs in the pod."""
    found = {}
    for pid in netns_pids(pod.name):
        proc = Path("/proc", pid)
        command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        uid = re.search(r"^Uid:\s+(\d+)", (proc / "status").read_text(), re.M)
        assert uid is not None
        entries = (proc / "environ").read_bytes().split(b"\0")
        environment = dict(entry.decode().partition("=")[::2] for entry in entries if entry)
        found[int(pid)] = (command, int(uid[1]), environment)
    return found


def leftovers(record: CaptureRecord, pids: list[int]) -> list[str]:
    """What is left of the mesh `record` names, and of the processes `pids` once in its pods."""
    found = [f"namespace {n}" for n in namespaces() if n.startswith(f"{record.tag}-")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    found += [f"link {record.tag}r"] if f"{record.tag}r" in links.stdout else []
    found += [str(path) for path in ETC_NETNS.glob(f"{record.tag}-*")]
    found += [str(record.work_dir)] if record.work_dir.exists() else []
    found += [f"process {pid}" for pid in pids if running(pid)]
    # Envoys and agents: their command lines name the tag.
    named = subprocess.run(["pgrep", "-f", record.tag], capture_output=True, text=True)
    return found + [f"process {pid}" for pid in named.stdout.split()]


async def test_bookinfo_with_capture(capture_mesh: tuple[Path, Path, str]) -> None:
    config_dir, run_dir, url = capture_mesh
    state, record = MeshState.load(run_dir), CaptureRecord.load(run_dir)
    assert state is not None and state.ready and record is not None
    # The URL is the hub's end of the mesh's own link, which the test process reaches.
    assert ipaddress.IPv4Address(urlsplit(url).hostname) in ROOT_LINKS
    pods = {name: Netns(f"{record.tag}-{name}.default") for name in PODS}
    assert {record.hub.name, *(pod.name for pod in pods.values())} <= set(namespaces())

    status = await asyncio.to_thread(meshctl, "status", "--run-dir", str(run_dir), "-o", "json")
    assert status.returncode == 0, status.stdout + status.stderr
    components = {c["name"]: c["healthy"] for c in json.loads(status.stdout)["components"]}
    proxies = await asyncio.to_thread(
        meshctl, "proxy-status", "--run-dir", str(run_dir), "-o", "json"
    )
    assert proxies.returncode == 0, proxies.stderr
    rows = json.loads(proxies.stdout)
    assert len(rows) >= 7 and all(row["lds"] == "SYNCED" for row in rows), rows
    assert set(PODS) | {"pilot", "galley", "citadel", "mixer", "istio-ingressgateway"} <= set(
        components
    )
    assert all(components.values()), components

    seen = await reviews_seen(url, 45)
    assert set(seen) == {"reviews-v1", "reviews-v2", "reviews-v3"}, seen

    # Istio's own sample files, written into the user's directory: only v3 within seconds.
    for sample in ("destination-rule-all.yaml", "virtual-service-reviews-v3.yaml"):
        shutil.copy(BOOKINFO_NETWORKING / sample, config_dir / sample)

    async def only_v3() -> bool | None:
        return True if await reviews_seen(url, 20) == Counter({"reviews-v3": 20}) else None

    await eventually(only_v3, "only reviews-v3 answering", attempts=100, interval=0.1)

    # Every connection into every pod went through capture to virtualInbound, and was TLS.
    for name, pod in pods.items():
        stats = await asyncio.to_thread(envoy_stats, pod)
        connections = stats[INBOUND + "downstream_cx_total"]
        handshakes = stats[INBOUND + "ssl.handshake"]
        assert connections > 0 and connections == handshakes, (name, connections, handshakes)
    # productpage's own calls were captured (it has no proxy setting); its agent's and Envoy's
    # connections to the control plane were not.
    packets = await asyncio.to_thread(rule_packets, pods["productpage-v1"])
    assert packets[REDIRECT_OUTBOUND] > 0 and packets[PROXY_UID_RETURN] > 0, packets

    started: list[int] = []
    for name, pod in pods.items():
        running = await asyncio.to_thread(processes, pod)
        started += running
        apps = [(uid, env) for cmd, uid, env in running.values() if "localmesh.bookinfo" in cmd]
        agents = [uid for command, uid, _ in running.values() if "-m agent" in command]
        assert len(apps) == 1 and agents == [PROXY_UID], (name, running)
        uid, environment = apps[0]
        assert uid == APP_UID
        assert not [key for key in environment if key.lower().endswith("_proxy")], environment

    down = await asyncio.to_thread(meshctl, "down", "--run-dir", str(run_dir))
    assert down.returncode == 0 and "stopped" in down.stdout, down.stdout + down.stderr
    assert not process_alive(state.pid)
    assert MeshState.load(run_dir) is None and CaptureRecord.load(run_dir) is None
    assert await asyncio.to_thread(leftovers, record, started) == []


def test_down_removes_what_a_dead_mesh_left(tmp_path: Path) -> None:
    """The mesh killed outright cleans up nothing; `down` finds it all from the record."""
    run_dir = tmp_path / "run"
    started = meshctl(
        "up", "--capture", str(EXAMPLE.parent / "hello"), "-d", "--run-dir", str(run_dir)
    )
    record = CaptureRecord.load(run_dir)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert record is not None
        mine = [name for name in namespaces() if name.startswith(f"{record.tag}-")]
        pids = [int(pid) for name in mine for pid in netns_pids(name)]
        os.kill(record.pid, signal.SIGKILL)
        assert eventually_dead(record.pid)
        assert leftovers(record, pids), "the killed mesh left its namespaces and pods running"
        down = meshctl("down", "--run-dir", str(run_dir))
        assert (
            down.returncode == 0 and f"removed the network namespaces {record.tag}-*" in down.stdout
        )
        assert leftovers(record, pids) == []
        assert CaptureRecord.load(run_dir) is None
    finally:
        meshctl("down", "--run-dir", str(run_dir))


def netns_pids(name: str) -> list[str]:
    return subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True
    ).stdout.split()


def eventually_dead(pid: int) -> bool:
    for _ in range(100):  # bounded: 10 s
        if not running(pid):
            return True
        time.sleep(0.1)
    return False
