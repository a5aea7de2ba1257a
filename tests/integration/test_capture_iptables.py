"""`mesh-agent iptables` (the istio-init role) in network namespaces the tests make.

What is checked on the real kernel: the rules as `iptables-save` prints them are exactly the
ones rendered (so the idempotence comparison holds), applying twice changes nothing, clean-up
restores the namespace's tables exactly (other rules untouched), the dry run touches nothing;
and real connections land where Istio's capture sends them (`capture_probe` tells where each
one was accepted and where it was headed). Topology: `tests.support.netns`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.capture.iptables import NatTable
from agent.capture.rules import CHAINS, CaptureConfig, build_rules
from tests.support.netns import (
    APP_UID,
    GATEWAY,
    PROXY_UID,
    Netns,
    Topology,
    create_topology,
    iptables_save,
    readable_by_pods,
    requires_root,
)

pytestmark = [requires_root, readable_by_pods]

AGENT_IPTABLES = (sys.executable, "-m", "agent", "iptables")
PROBE = str(Path(__file__).resolve().parents[1] / "support" / "capture_probe.py")
POD_IP = "198.18.0.10"
SECOND_HUB_IP = "198.18.0.2"  # excluded from capture below


@pytest.fixture
def topology() -> Iterator[Topology]:
    built = create_topology()
    try:
        yield built
    finally:
        built.close()


def _capture_lines(saved: str) -> list[str]:
    return [line for line in saved.splitlines() if "ISTIO_" in line]


def test_apply_twice_changes_nothing_and_cleanup_removes_exactly_what_it_added(
    topology: Topology,
) -> None:
    netns = topology.add_pod("p", POD_IP).netns
    # Someone else's rules in nat and filter, which the capture must leave alone.
    netns.run("iptables", "-t", "nat", "-N", "OTHER")
    netns.run("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "9", "-j", "OTHER")
    netns.run("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "ACCEPT")
    before = iptables_save(netns)

    dry_run = netns.run(*AGENT_IPTABLES, "--dry-run")
    assert iptables_save(netns) == before
    netns.run(*AGENT_IPTABLES)
    applied = iptables_save(netns)
    # Rendered exactly as iptables-save prints it: chains, jumps and every rule, in order.
    assert set(_capture_lines(applied)) == set(_capture_lines(dry_run))
    table = NatTable.parse(netns.run("iptables-save", "-t", "nat"))
    wanted = build_rules(CaptureConfig())
    assert {chain: table.chains[chain] for chain in CHAINS} == {
        chain: wanted.chain_rules(chain) for chain in CHAINS
    }
    assert [line for line in applied.splitlines() if "ISTIO_" not in line] == before.splitlines()
    assert _check(netns) == 0

    again = subprocess.run(
        netns.exec_argv(*AGENT_IPTABLES), capture_output=True, text=True, check=True
    )
    assert "already in place" in again.stderr
    assert iptables_save(netns) == applied

    netns.run(*AGENT_IPTABLES, "--cleanup")
    assert iptables_save(netns) == before
    assert _check(netns) == 1
    netns.run(*AGENT_IPTABLES, "--cleanup")  # nothing left to remove: still fine
    assert iptables_save(netns) == before


def test_a_changed_configuration_replaces_the_rules(topology: Topology) -> None:
    netns = topology.add_pod("p", POD_IP).netns
    netns.run(*AGENT_IPTABLES)
    netns.run(*AGENT_IPTABLES, "-b", "8080", "-i", "198.18.0.0/16")
    saved = iptables_save(netns)
    assert "-A ISTIO_INBOUND -p tcp -m tcp --dport 8080 -j ISTIO_IN_REDIRECT" in saved
    assert "-A ISTIO_OUTPUT -d 198.18.0.0/16 -j ISTIO_REDIRECT" in saved
    assert "-A ISTIO_OUTPUT -j ISTIO_REDIRECT" not in saved
    assert saved.count("-j ISTIO_INBOUND") == saved.count("-j ISTIO_OUTPUT") == 1
    assert _check(netns, "-b", "8080", "-i", "198.18.0.0/16") == 0
    assert _check(netns) == 1


def test_connections_land_where_istio_capture_sends_them(topology: Topology) -> None:
    pod = topology.add_pod("p", POD_IP)
    topology.hub.run("ip", "addr", "add", f"{SECOND_HUB_IP}/32", "dev", "br0")
    pod.netns.run(*AGENT_IPTABLES, "-x", f"{SECOND_HUB_IP}/32", "-o", "2222")
    assert_capture_semantics(topology.hub, pod.netns)


def assert_capture_semantics(hub: Netns, pod: Netns) -> None:
    """Istio's capture, connection by connection, for the rules that `mesh-agent iptables
    -x <SECOND_HUB_IP>/32 -o 2222` installs in `pod` (at `POD_IP`)."""
    listeners = [
        _listen(pod, 15001, 15006, 8080, 15090, 15008),
        _listen(hub, 7777, 2222),
    ]
    try:
        app, proxy = APP_UID, PROXY_UID
        # The application's outbound TCP goes to 15001, its destination kept.
        assert _connect(pod, app, GATEWAY, 7777) == f"15001 {GATEWAY}:7777"
        # The proxy's own connections (uid 1337: Envoy, the agent) go out as they are.
        assert _connect(pod, proxy, GATEWAY, 7777) == f"7777 {GATEWAY}:7777"
        # Excluded outbound port and range.
        assert _connect(pod, app, GATEWAY, 2222) == f"2222 {GATEWAY}:2222"
        assert _connect(pod, app, SECOND_HUB_IP, 7777) == f"7777 {SECOND_HUB_IP}:7777"
        # Loopback: the application to itself is not captured, by 127.0.0.1 or its own
        # address; the proxy to the pod address is sent to inbound (app -> VIP -> itself).
        assert _connect(pod, app, "127.0.0.1", 8080) == "8080 127.0.0.1:8080"
        assert _connect(pod, app, POD_IP, 8080) == f"8080 {POD_IP}:8080"
        assert _connect(pod, proxy, POD_IP, 8080) == f"15006 {POD_IP}:8080"
        assert _connect(pod, proxy, "127.0.0.1", 8080) == "8080 127.0.0.1:8080"
        # Inbound TCP goes to 15006, except the proxy's own ports and the tunnel port.
        assert _connect(hub, None, POD_IP, 8080) == f"15006 {POD_IP}:8080"
        assert _connect(hub, None, POD_IP, 15090) == f"15090 {POD_IP}:15090"
        assert _connect(hub, None, POD_IP, 15008) == f"15008 {POD_IP}:15008"
    finally:
        for listener in listeners:
            listener.kill()
            listener.wait()


def _check(netns: Netns, *flags: str) -> int:
    argv = netns.exec_argv(*AGENT_IPTABLES, "--check", *flags)
    return subprocess.run(argv, capture_output=True, check=False).returncode


def _listen(netns: Netns, *ports: int) -> subprocess.Popen[bytes]:
    argv = netns.exec_argv(sys.executable, PROBE, "listen", *map(str, ports))
    listener = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):  # bounded: 5 s
        listening = netns.run("ss", "-Hltn")
        if all(f":{port} " in listening for port in ports):
            return listener
        time.sleep(0.05)
    listener.kill()
    raise AssertionError(f"probe did not listen on {ports} in {netns.name}")


def _connect(netns: Netns, uid: int | None, host: str, port: int) -> str:
    argv = netns.exec_argv(sys.executable, PROBE, "connect", host, str(port), uid=uid)
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
