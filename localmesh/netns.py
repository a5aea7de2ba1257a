"""Network namespaces for transparent capture: a hub namespace with a bridge, pods wired to it.

`meshctl up --capture` (`localmesh.capture`) and the capture tests build the same shape, so it
lives here once:

    root namespace         hub namespace ("the node")               pod namespaces
    +------------+         +--------------------------------+        +--------------------------+
    | <tag>r     |--veth---| up0 (optional /30 to the root) |        | eth0 <pod address>, lo   |
    | (the user) |         | bridge br0 (its addresses) ----|--veth--| default route via br0    |
    +------------+         | sockets of whoever entered it  |        | iptables capture, if any |
                           +--------------------------------+        +--------------------------+

A thread that enters a namespace (`entered`, `run_in`) opens every later socket there, servers
and clients alike, and the processes it starts begin there: that is how an in-process control
plane serves the pods from the hub. Only the optional link reaches the root namespace; the hub
has no route beyond its bridge and that link, so nothing else leaves.

Names: every namespace of a topology is `<tag>-<name>` (the hub `<tag>-hub`) and its link's root
end is `<tag>r`, where the tag is `<prefix><pid>x<n>` (the creating process and a counter), so
concurrent topologies (xdist workers, two meshes) never share one and the tag alone finds all
of it: `remove(tag)` kills what still runs in its namespaces, deletes the link, the namespaces
and their /etc/netns entries, whichever process asks (`meshctl down` from another process).
Topologies whose process is gone are removed by the next `remove_orphans` of their prefix.
The loopback range is no use on veths (every namespace routes 127.0.0.0/8 to its own `lo`),
hence addresses from 198.18.0.0/15, reserved for testing network devices (RFC 2544).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

T = TypeVar("T")

BRIDGE: Final = "br0"
UPLINK: Final = "up0"  # the hub's end of the link to the root namespace
NETNS_DIR: Final = Path("/var/run/netns")
ETC_NETNS: Final = Path("/etc/netns")
TOOLS: Final = ("ip", "iptables", "iptables-save", "iptables-restore", "nsenter", "setpriv", "ss")
KILL_WAIT: Final = 5.0  # seconds `remove` waits for what it killed to be gone
_CLONE_NEWNET: Final = 0x40000000
_counter = itertools.count(1)


class NetnsError(RuntimeError):
    """A command setting up or tearing down namespaces failed; the message says what it said."""


def run(*argv: str, stdin: str | None = None) -> str:
    """Run a command to completion; raise NetnsError with its output if it fails."""
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def missing_tools() -> list[str]:
    """The commands building a topology needs that this host lacks."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def unreadable_for(uid: int, paths: Iterable[Path]) -> list[Path]:
    """Those of `paths` that a process running as `uid` (its own gid, no other groups), as the
    pods' processes run, cannot read: asked as that uid, so every directory on the way counts
    (a checkout under a folder only root may enter, say)."""
    as_uid = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    return [
        path
        for path in paths
        if subprocess.run([*as_uid, "test", "-r", str(path)], check=False).returncode != 0
    ]


def new_tag(prefix: str) -> str:
    """A tag no other live topology has: the prefix, this process's pid and a counter."""
    return f"{prefix}{os.getpid()}x{next(_counter)}"


@dataclass(frozen=True)
class Netns:
    """A named network namespace (`ip netns`)."""

    name: str

    @property
    def path(self) -> str:
        return str(NETNS_DIR / self.name)

    def exec_argv(
        self, *argv: str, uid: int | None = None, env: Mapping[str, str] | None = None
    ) -> list[str]:
        """`argv` inside this namespace, as `uid` (same gid, no other groups) if given, with
        exactly `env` as its environment if given (none of the caller's: no proxy settings).
        `env` runs before `setpriv`, as root: run as the new uid it could not execute a program
        under a directory only root may enter (a pyenv interpreter under /root), which
        `setpriv` still can."""
        prefix = ["ip", "netns", "exec", self.name]
        if env is not None:
            prefix += ["env", "-i", *(f"{key}={value}" for key, value in env.items())]
        if uid is not None:
            prefix += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        return [*prefix, *argv]

    def run(self, *argv: str, stdin: str | None = None) -> str:
        return run(*self.exec_argv(*argv), stdin=stdin)


@dataclass(frozen=True)
class Pod:
    name: str
    netns: Netns
    ip: str


@dataclass
class Topology:
    """The hub (bridge `br0` at `bridge`) and the pods on it; `close()` removes all of it."""

    tag: str
    bridge: ipaddress.IPv4Interface
    pods: int = 0

    @property
    def hub(self) -> Netns:
        return Netns(f"{self.tag}-hub")

    @classmethod
    def create(cls, tag: str, bridge: ipaddress.IPv4Interface) -> Topology:
        topology = cls(tag, bridge)
        hub = topology.hub
        try:
            run("ip", "netns", "add", hub.name)
            hub.run("ip", "link", "set", "lo", "up")  # the hub's own addresses are reached over lo
            hub.run("ip", "link", "add", BRIDGE, "type", "bridge")
            hub.run("ip", "addr", "add", str(bridge), "dev", BRIDGE)
            hub.run("ip", "link", "set", BRIDGE, "up")
        except BaseException:
            topology.close()
            raise
        return topology

    def add_address(self, address: ipaddress.IPv4Address) -> None:
        """Another address of the hub on the bridge's network (one per control plane service,
        so each keeps its standard ports)."""
        prefix = self.bridge.network.prefixlen
        self.hub.run("ip", "addr", "add", f"{address}/{prefix}", "dev", BRIDGE)

    def link_root(self, network: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
        """A veth pair from the root namespace (`<tag>r`, the network's first address) to the
        hub (`up0`, its second); returns the hub's end, which the root namespace reaches."""
        root_end, hub_end = itertools.islice(network.hosts(), 2)
        device = f"{self.tag}r"
        run(
            "ip",
            "link",
            "add",
            device,
            "type",
            "veth",
            "peer",
            "name",
            UPLINK,
            "netns",
            self.hub.name,
        )
        run("ip", "addr", "add", f"{root_end}/{network.prefixlen}", "dev", device)
        run("ip", "link", "set", device, "up")
        self.hub.run("ip", "addr", "add", f"{hub_end}/{network.prefixlen}", "dev", UPLINK)
        self.hub.run("ip", "link", "set", UPLINK, "up")
        return hub_end

    def add_namespace(self, name: str) -> Netns:
        """An empty pod namespace (only `lo`, down): what a runtime hands its CNI plugins."""
        netns = Netns(f"{self.tag}-{name}")
        run("ip", "netns", "add", netns.name)
        return netns

    def add_pod(self, name: str, ip: str) -> Pod:
        """A pod namespace wired to the bridge: eth0 with `ip`, lo up, default route."""
        netns = self.add_namespace(name)
        self.pods += 1
        veth = f"veth{self.pods}"  # in the hub only: no other topology sees the name
        peer = ("peer", "name", "eth0", "netns", netns.name)
        self.hub.run("ip", "link", "add", veth, "type", "veth", *peer)
        self.hub.run("ip", "link", "set", veth, "master", BRIDGE, "up")
        netns.run("ip", "addr", "add", f"{ip}/{self.bridge.network.prefixlen}", "dev", "eth0")
        netns.run("ip", "link", "set", "eth0", "up")
        netns.run("ip", "link", "set", "lo", "up")
        netns.run("ip", "route", "add", "default", "via", str(self.bridge.ip))
        return Pod(name, netns, ip)

    def close(self) -> None:
        remove(self.tag)


def write_hosts(netns: Netns, entries: Mapping[str, str]) -> None:
    """The pod's /etc/hosts (`ip netns exec` bind-mounts /etc/netns/<name>/hosts there), host
    name -> address: how its applications resolve service names, as kube-dns would answer
    them. Rewritten in place, so the processes already running there see the new entries."""
    directory = ETC_NETNS / netns.name
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    lines = ["127.0.0.1 localhost", *(f"{ip} {host}" for host, ip in entries.items())]
    hosts = directory / "hosts"
    hosts.write_text("\n".join(lines) + "\n")
    hosts.chmod(0o644)  # whatever the umask: the pod's users read it


def namespaces() -> list[str]:
    return [line.split(" ", 1)[0] for line in run("ip", "netns", "list").splitlines() if line]


def remove(tag: str) -> None:
    """Remove everything of the topology `tag`: what still runs in its namespaces (killed),
    its link to the root namespace, its namespaces and their /etc/netns entries. Whatever is
    already gone is skipped, so it can be repeated."""
    names = [name for name in namespaces() if name.startswith(f"{tag}-")]
    killed = []
    for name in names:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
        for pid in map(int, pids.stdout.split()):
            if pid != os.getpid():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
    deadline = time.monotonic() + KILL_WAIT
    while any(map(running, killed)) and time.monotonic() < deadline:
        time.sleep(0.05)
    subprocess.run(["ip", "link", "delete", f"{tag}r"], capture_output=True, check=False)
    for name in names:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
    for directory in ETC_NETNS.glob(f"{tag}-*"):
        shutil.rmtree(directory, ignore_errors=True)


def running(pid: int) -> bool:
    """Whether `pid` still runs: a zombie (dead, its parent yet to reap it) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def remove_orphans(prefix: str) -> None:
    """Remove the topologies (of `prefix`) whose process is gone: killed before its clean-up."""
    tags = {tag for name in namespaces() if (tag := tag_of(prefix, name)) is not None}
    for tag in sorted(tags):
        pid = tag.removeprefix(prefix).split("x")[0]
        if not Path(f"/proc/{pid}").exists():
            remove(tag)


def tag_of(prefix: str, name: str) -> str | None:
    """The tag of a namespace named by a topology of `prefix`; None for any other name."""
    match = re.fullmatch(rf"({re.escape(prefix)}\d+x\d+)-.+", name)
    return match[1] if match else None


def free_link(
    candidates: ipaddress.IPv4Network, taken: Iterable[ipaddress.IPv4Network]
) -> ipaddress.IPv4Network:
    """The first /30 of `candidates` that overlaps none of `taken`."""
    used = list(taken)
    for link in candidates.subnets(new_prefix=30):
        if not any(link.overlaps(network) for network in used):
            return link
    raise NetnsError(f"no free /30 left in {candidates} for a link to the root namespace")


def root_networks() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks the calling thread's namespace has an address in or a route to (all
    routing tables; the default route aside, which overlaps everything)."""
    found = []
    for link in json.loads(run("ip", "-j", "-4", "addr", "show")):
        for address in link.get("addr_info", []):
            found.append(ipaddress.IPv4Network(f"{address['local']}/{address['prefixlen']}", False))
    for route in json.loads(run("ip", "-j", "-4", "route", "show", "table", "all")):
        if route.get("dst", "default") != "default":
            found.append(ipaddress.IPv4Network(route["dst"], strict=False))
    return found


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
            _setns(netns.path)
            outcome.append(asyncio.run(bounded()))
        except BaseException as error:  # handed to the calling thread
            failure.append(error)

    worker = threading.Thread(target=thread, name=f"netns-{netns.name}")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return outcome[0]


@contextlib.contextmanager
def entered(netns: Netns) -> Iterator[None]:
    """The calling thread inside `netns` for the block, back in its own namespace after. Sockets
    opened in the block stay in `netns`; so do threads started in it, since a thread begins in
    the namespace of the thread that starts it."""
    own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        _setns(netns.path)
        try:
            yield
        finally:
            _setns_fd(own, "the thread's own namespace")
    finally:
        os.close(own)


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        _setns_fd(fd, path)
    finally:
        os.close(fd)


def _setns_fd(fd: int, what: str) -> None:
    """setns(2) for the calling thread only (os.setns is Python 3.12+)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns {what}: {os.strerror(error)}")
