"""Pods in network namespaces for the capture tests, on a bridge that no real network reaches.

The topology is `localmesh.netns`'s (a hub namespace with bridge br0 at 198.18.0.1/24, pod
namespaces with veths into it), one per test, named `mcap<pid>x<n>-...` so xdist workers and
tests never share one. The tests add no link to the root namespace: pilot and citadel run
in-process on an event loop inside the hub (`run_in`), so the control plane listens on the
bridge's address and the test talks to the pods directly. The pods are made by hand
(`add_pod`: a veth into the bridge, what a runtime does) or left empty for the CNI plugins to
set up (`add_namespace`).

Clean-up: `Topology.close()` removes every namespace and /etc/netns entry of the test's
topology and is run from a fixture's `finally`; topologies left by a test process that died
(its pid is gone) are removed when the next one is made. Tests that need all this skip when
not root, and fail (rather than skip) as root when a tool is missing, since CI runs as root.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from localmesh.capture import code_paths
from localmesh.netns import (
    BRIDGE,
    Netns,
    Pod,
    Topology,
    missing_tools,
    new_tag,
    remove_orphans,
    run_in,
    unreadable_for,
    write_hosts,
)

__all__ = [
    "APP_UID",
    "BRIDGE",
    "GATEWAY",
    "PROXY_UID",
    "SUBNET_PREFIX",
    "Netns",
    "Pod",
    "PodProcess",
    "Topology",
    "create_topology",
    "iptables_save",
    "readable_by_pods",
    "requires_root",
    "rule_packets",
    "run_in",
    "write_hosts",
]

SUBNET_PREFIX = "198.18.0"
GATEWAY = f"{SUBNET_PREFIX}.1"
PREFIX_LENGTH = 24
APP_UID = 1000
PROXY_UID = 1337
_PREFIX = "mcap"

requires_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="network namespaces and iptables need root (CI runs as root)"
)
# The pods' processes run as APP_UID and PROXY_UID and load this checkout's code: a checkout
# below a folder only root may enter (`mktemp -d` makes them 0700) cannot host them.
readable_by_pods = pytest.mark.skipif(
    os.geteuid() == 0 and any(unreadable_for(uid, code_paths()) for uid in (APP_UID, PROXY_UID)),
    reason="the pods run as uid 1000 and 1337, which cannot read this checkout",
)


def create_topology() -> Topology:
    """A fresh hub for one test; fails, naming what to install, when a tool is missing."""
    missing = missing_tools()
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: apt-get install iproute2 iptables util-linux")
    remove_orphans(_PREFIX)
    bridge = ipaddress.IPv4Interface(f"{GATEWAY}/{PREFIX_LENGTH}")
    return Topology.create(new_tag(_PREFIX), bridge)


def iptables_save(netns: Netns) -> str:
    """`iptables-save` of every table, without its comments (they carry the time) and without
    empty tables: iptables-nft creates a table (built-in chains, ACCEPT, no rule) just by
    listing it, which is as good as none."""
    tables = re.findall(r"^\*.*?^COMMIT$", netns.run("iptables-save"), re.M | re.S)
    return "\n".join(table for table in tables if not _empty_table(table))


def rule_packets(netns: Netns) -> dict[str, int]:
    """`-A CHAIN spec` -> how many packets (first packets of connections, in nat) it matched."""
    packets = {}
    for line in netns.run("iptables-save", "-c", "-t", "nat").splitlines():
        if match := re.fullmatch(r"\[(\d+):\d+\] (-A .*)", line):
            packets[match[2]] = int(match[1])
    return packets


def _empty_table(saved: str) -> bool:
    return all(
        line.startswith("*") or line == "COMMIT" or re.fullmatch(r":\S+ ACCEPT \[\d+:\d+\]", line)
        for line in saved.splitlines()
    )


@dataclass
class PodProcess:
    """A process started in a pod namespace from a `run_in` loop; output goes to `log`."""

    name: str
    process: asyncio.subprocess.Process
    log: Path

    @classmethod
    async def start(
        cls, name: str, netns: Netns, argv: Sequence[str], log: Path, uid: int, env: dict[str, str]
    ) -> PodProcess:
        with log.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                *netns.exec_argv(*argv, uid=uid),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
            )
        return cls(name, process, log)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 5.0)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")
