"""Pods in network namespaces for the capture tests, on a bridge that no real network reaches.

Topology, one per test (every name carries the test process's pid and a counter, so xdist
workers and tests never share one):

    hub namespace ("the node")                       pod namespaces
    +--------------------------------------+        +------------------------------+
    | bridge br0, 198.18.0.1/24             |--veth--| eth0 198.18.0.N/24, lo        |
    | pilot and citadel, in the test process:|        | default route via 198.18.0.1  |
    |   `run_in` runs their event loop in a  |--veth--| app (uid 1000), agent + Envoy |
    |   thread that entered this namespace   |        |   (uid 1337), iptables capture|
    +--------------------------------------+        +------------------------------+

Why this shape: the sidecars must reach pilot and citadel, which the tests run in-process.
A thread that enters the hub namespace before it starts its event loop opens every socket
of that loop there (grpc binds in the calling thread), so the control plane listens on the
bridge's address and the test talks to the pods directly, with no link to the root
namespace at all. The pods are made by hand (`add_pod`: a veth into the bridge, what a
runtime does) or left empty for the CNI plugins to set up (`add_namespace`).

Addresses: 198.18.0.0/15 is reserved for testing network devices (RFC 2544) and routed
nowhere; and since the root namespace gets no interface, address, route or rule from these
tests and the hub has no route beyond its bridge, no packet can leave the test's own
namespaces whatever the address. (The loopback range cannot be used on veths: every
namespace routes all of 127.0.0.0/8 to its own `lo`.)

Clean-up: `Topology.close()` deletes every namespace and /etc/netns entry it made, and is
run from a fixture's `finally`; namespaces left by a test process that died (its pid is
gone) are deleted when the next topology is made. Tests that need all this skip when not
root, and fail (rather than skip) as root when a tool is missing, since CI runs as root.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

SUBNET_PREFIX = "198.18.0"
GATEWAY = f"{SUBNET_PREFIX}.1"
PREFIX_LENGTH = 24
BRIDGE = "br0"
APP_UID = 1000
PROXY_UID = 1337
NETNS_DIR = Path("/var/run/netns")
ETC_NETNS = Path("/etc/netns")
TOOLS = ("ip", "iptables", "iptables-save", "iptables-restore", "nsenter", "setpriv")
_CLONE_NEWNET = 0x40000000
_NAME_PREFIX = "mcap"
_counter = itertools.count(1)

requires_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="network namespaces and iptables need root (CI runs as root)"
)


def check_tools() -> None:
    """Fail, naming what to install, when a tool the capture tests need is missing."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: apt-get install iproute2 iptables util-linux")


def run(*argv: str, stdin: str | None = None) -> str:
    """Run a command to completion; raise with its output if it fails."""
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class Netns:
    name: str

    @property
    def path(self) -> str:
        return str(NETNS_DIR / self.name)

    def exec_argv(self, *argv: str, uid: int | None = None) -> list[str]:
        """`argv` inside this namespace, as `uid` (same gid, no other groups) if given."""
        prefix = ["ip", "netns", "exec", self.name]
        if uid is not None:
            prefix += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        return [*prefix, *argv]

    def run(self, *argv: str, stdin: str | None = None) -> str:
        return run(*self.exec_argv(*argv), stdin=stdin)

    def iptables_save(self) -> str:
        """`iptables-save` of every table, without its comments (they carry the time) and
        without empty tables: iptables-nft creates a table (built-in chains, ACCEPT, no rule)
        just by listing it, which is as good as none."""
        tables = re.findall(r"^\*.*?^COMMIT$", self.run("iptables-save"), re.M | re.S)
        return "\n".join(table for table in tables if not _empty_table(table))

    def rule_packets(self) -> dict[str, int]:
        """`-A CHAIN spec` -> how many packets (first packets of connections, in nat) it
        matched."""
        packets = {}
        for line in self.run("iptables-save", "-c", "-t", "nat").splitlines():
            if match := re.fullmatch(r"\[(\d+):\d+\] (-A .*)", line):
                packets[match[2]] = int(match[1])
        return packets


@dataclass(frozen=True)
class Pod:
    name: str
    netns: Netns
    ip: str


@dataclass
class Topology:
    """The hub (bridge at `GATEWAY`) and the pods on it; `close()` removes all of it."""

    hub: Netns
    namespaces: list[Netns] = field(default_factory=list)

    @classmethod
    def create(cls) -> Topology:
        check_tools()
        _remove_orphans()
        tag = f"{_NAME_PREFIX}{os.getpid()}x{next(_counter)}"
        topology = cls(Netns(f"{tag}-hub"))
        try:
            topology._add_namespace(topology.hub)
            hub = topology.hub
            hub.run("ip", "link", "set", "lo", "up")  # the hub's own address is reached over lo
            hub.run("ip", "link", "add", BRIDGE, "type", "bridge")
            hub.run("ip", "addr", "add", f"{GATEWAY}/{PREFIX_LENGTH}", "dev", BRIDGE)
            hub.run("ip", "link", "set", BRIDGE, "up")
        except BaseException:
            topology.close()
            raise
        return topology

    def add_namespace(self, name: str) -> Netns:
        """An empty pod namespace (only `lo`, down): what a runtime hands its CNI plugins."""
        netns = Netns(f"{self.hub.name.removesuffix('-hub')}-{name}")
        self._add_namespace(netns)
        return netns

    def add_pod(self, name: str, ip: str) -> Pod:
        """A pod namespace wired to the bridge: eth0 with `ip`, lo up, default route."""
        netns = self.add_namespace(name)
        veth = f"v{name}"[:15]
        peer = ("peer", "name", "eth0", "netns", netns.name)
        self.hub.run("ip", "link", "add", veth, "type", "veth", *peer)
        self.hub.run("ip", "link", "set", veth, "master", BRIDGE, "up")
        netns.run("ip", "addr", "add", f"{ip}/{PREFIX_LENGTH}", "dev", "eth0")
        netns.run("ip", "link", "set", "eth0", "up")
        netns.run("ip", "link", "set", "lo", "up")
        netns.run("ip", "route", "add", "default", "via", GATEWAY)
        return Pod(name, netns, ip)

    def set_hosts(self, netns: Netns, entries: dict[str, str]) -> None:
        """The pod's /etc/hosts (`ip netns exec` mounts /etc/netns/<name>/hosts there): how
        its applications resolve service names, as kube-dns would answer them."""
        directory = ETC_NETNS / netns.name
        directory.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost", *(f"{ip} {host}" for host, ip in entries.items())]
        (directory / "hosts").write_text("\n".join(lines) + "\n")
        directory.chmod(0o755)

    def close(self) -> None:
        for netns in reversed(self.namespaces):
            _delete(netns.name)
        self.namespaces.clear()

    def _add_namespace(self, netns: Netns) -> None:
        self.namespaces.append(netns)
        run("ip", "netns", "add", netns.name)


def _empty_table(saved: str) -> bool:
    return all(
        line.startswith("*") or line == "COMMIT" or re.fullmatch(r":\S+ ACCEPT \[\d+:\d+\]", line)
        for line in saved.splitlines()
    )


def _delete(name: str) -> None:
    subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
    shutil.rmtree(ETC_NETNS / name, ignore_errors=True)


def _remove_orphans() -> None:
    """Delete the namespaces of test processes that are gone (killed before their clean-up)."""
    for line in run("ip", "netns", "list").splitlines():
        name = line.split(" ", 1)[0]
        if match := re.fullmatch(rf"{_NAME_PREFIX}(\d+)x\d+-.+", name):
            pid = int(match[1])
            if not Path(f"/proc/{pid}").exists():
                _delete(name)


def run_in(netns: Netns, scenario: Callable[[], Awaitable[T]], timeout: float) -> T:
    """Run `scenario()` on a new event loop in a thread inside `netns`; every socket that loop
    opens (servers and clients alike) is in that namespace. Returns its result or raises its
    exception; it is cancelled after `timeout` seconds."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    async def bounded() -> T:
        return await asyncio.wait_for(scenario(), timeout)

    def thread() -> None:
        try:
            _enter(netns.path)
            outcome.append(asyncio.run(bounded()))
        except BaseException as error:  # handed to the calling thread
            failure.append(error)

    worker = threading.Thread(target=thread, name=f"netns-{netns.name}")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return outcome[0]


def _enter(path: str) -> None:
    """setns(2) for the calling thread only (os.setns is Python 3.12+)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns {path}: {os.strerror(error)}")
    finally:
        os.close(fd)


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
