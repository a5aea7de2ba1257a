"""`meshctl up --capture`: the local mesh with every workload in a network namespace of its own,
its traffic captured by iptables as in an Istio pod, the applications unmodified (root only).

Topology (`localmesh.netns`), all named by the mesh's tag `lm<pid>x<n>`:

    root namespace        <tag>-hub ("the node")                  <tag>-<pod>.<namespace>
    +---------------+     +-------------------------------+       +----------------------------+
    | <tag>r        |-----| up0: the gateway, :8080       |       | eth0 198.18.1.N/16         |
    | 198.19.255.1  |     |   (198.19.255.2: the URL)     |       | capture rules (iptables)   |
    | (the user)    |     | br0 198.18.0.1 pilot          |-veth--| agent + Envoy, uid 1337    |
    +---------------+     |     198.18.0.2 citadel        |       | application, uid 1000, no  |
                          |     198.18.0.3 galley         |       |   proxy settings, resolves |
                          |     198.18.0.4 mixer          |       |   services by /etc/hosts   |
                          +-------------------------------+       +----------------------------+

The control plane and the ingress gateway are this process's own (`LocalMesh`'s): its event loop
runs in a thread that entered the hub (`netns.entered`), so they listen there and the gateway's
Envoy starts there. The root namespace gets one link, a /30 out of 198.19.255.0/24 that no
address or route of the host overlaps (the first such: usually 198.19.255.0/30), so the user
reaches the gateway at the hub's end; nothing else of the host is touched. Each pod is what an
Istio pod is: the capture rules installed first (the istio-init role, `agent.capture`), then
`mesh-agent --interception REDIRECT` as uid/gid 1337 (certificate from citadel with a bootstrap
token, pilot over mutual TLS on 15011; neither connection is captured), then the application as
uid 1000 with an environment of its own (no HTTP_PROXY) listening on the pod's 127.0.0.1. It
calls services by name: its /etc/hosts (/etc/netns/<namespace name>/hosts) maps them to VIPs that
only capture delivers. The registry comes from a translated copy of the directory in the run
directory (`localmesh.capture_config`), kept in step with the original while the mesh runs.

Clean-up: the tag names everything (namespaces, link, /etc/netns entries, the agents' files in
/tmp/<tag>), and `capture.json` in the run directory records it before anything is made, so
`meshctl down` can remove all of it from another process even if the mesh died. Deleting a pod's
namespace also deletes its capture rules: no iptables rule is ever added outside the pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import grpc
from watchfiles import awatch

from agent.capture.iptables import Iptables
from agent.capture.rules import PROXY_ID, CaptureConfig, build_rules
from localmesh import netns
from localmesh.app_process import AppProcess
from localmesh.capture_config import Allocation, Translation, translate, write
from localmesh.mesh import LocalMesh, MeshAddresses, Pod, plan_pods
from localmesh.state import MeshState
from meshcore.identity import SpiffeId
from meshcore.lifecycle import cancel_and_wait

log = logging.getLogger(__name__)

PREFIX: Final = "lm"
RECORD: Final = "capture.json"
CONFIG_DIR: Final = "capture-config"
CONTROL_PLANE: Final = MeshAddresses(
    pilot="198.18.0.1", citadel="198.18.0.2", galley="198.18.0.3", mixer="198.18.0.4", gateway=""
)
"""In the hub, on the bridge; pilot's is the bridge's own, the pods' default gateway."""
BRIDGE_ADDRESS: Final = ipaddress.IPv4Interface(f"{CONTROL_PLANE.pilot}/16")
ROOT_LINKS: Final = ipaddress.IPv4Network("198.19.255.0/24")
APP_UID: Final = 1000
PROXY_UID: Final = PROXY_ID
APP_HOST: Final = "127.0.0.1"  # where applications listen: their pod's own loopback


class CaptureError(RuntimeError):
    """Capture mode cannot run here (a tool is missing) or its set-up failed."""


def code_paths() -> tuple[Path, ...]:
    """Files the pods' processes must read to start: this project's code (the agent, the demo
    applications) and the packages it runs on."""
    return (Path(__file__), Path(grpc.__file__))


def _check_readable_by_pods() -> None:
    for uid, role in ((PROXY_UID, "sidecars"), (APP_UID, "applications")):
        unreadable = netns.unreadable_for(uid, code_paths())
        if unreadable:
            raise CaptureError(
                f"--capture runs {role} as uid {uid}, which cannot read {unreadable[0]}: run "
                "from a checkout other users may enter and read (no folder on the way with "
                "mode 0700, as `mktemp -d` makes)"
            )


@dataclass(frozen=True)
class CaptureRecord:
    """What a capture mesh made, for whoever removes it: its tag names all of it."""

    tag: str
    pid: int

    @property
    def hub(self) -> netns.Netns:
        return netns.Netns(f"{self.tag}-hub")

    @property
    def work_dir(self) -> Path:
        """The agents' files (token, root certificate, SDS socket, Envoy's): short paths, and
        readable by uid 1337, which a run directory under a private one would not be."""
        return Path(tempfile.gettempdir(), self.tag)

    def pod_netns(self, pod: Pod) -> netns.Netns:
        return netns.Netns(f"{self.tag}-{pod.name}.{pod.workload.namespace}")

    def save(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / RECORD).write_text(json.dumps({"tag": self.tag, "pid": self.pid}) + "\n")

    @classmethod
    def load(cls, run_dir: Path) -> CaptureRecord | None:
        """The record of the capture mesh run from `run_dir`, None if there is none."""
        path = run_dir / RECORD
        try:
            raw = json.loads(path.read_text())
            return cls(str(raw["tag"]), int(raw["pid"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is not a capture record: {error}") from error

    def remove(self, run_dir: Path) -> None:
        """Remove everything the mesh made, then the record; safe to repeat."""
        netns.remove(self.tag)
        shutil.rmtree(self.work_dir, ignore_errors=True)
        (run_dir / RECORD).unlink(missing_ok=True)


class CaptureSite:
    """The namespaces and the translated configuration a capture mesh runs on: made (`create`)
    from the root namespace before the mesh's event loop starts, removed by `close()`."""

    def __init__(
        self,
        source: Path,
        run_dir: Path,
        record: CaptureRecord,
        allocation: Allocation,
        pods: Mapping[netns.Netns, str],
        gateway: ipaddress.IPv4Address,
    ) -> None:
        self.source = source
        self.run_dir = run_dir
        self.record = record
        self._allocation = allocation
        self._pods = dict(pods)  # pod namespace -> its Kubernetes namespace (for hosts files)
        self.addresses = replace(CONTROL_PLANE, gateway=str(gateway))

    @property
    def config_dir(self) -> Path:
        return self.run_dir / CONFIG_DIR

    @classmethod
    def create(cls, source: Path, run_dir: Path) -> CaptureSite:
        """Translate the configuration, then build the topology for its workloads."""
        allocation = Allocation()
        translation = translate(source, allocation)
        config_dir = run_dir / CONFIG_DIR
        shutil.rmtree(config_dir, ignore_errors=True)
        write(translation, config_dir)
        pods = plan_pods(config_dir)  # invalid configuration fails here, before any namespace
        missing = netns.missing_tools()
        if missing:
            raise CaptureError(f"--capture needs {', '.join(missing)} (iproute2, iptables)")
        _check_readable_by_pods()
        netns.remove_orphans(PREFIX)
        record = CaptureRecord(netns.new_tag(PREFIX), os.getpid())
        record.save(run_dir)  # before anything is made: `down` finds whatever gets made
        try:
            topology = netns.Topology.create(record.tag, BRIDGE_ADDRESS)
            for service in (CONTROL_PLANE.citadel, CONTROL_PLANE.galley, CONTROL_PLANE.mixer):
                topology.add_address(ipaddress.IPv4Address(service))
            gateway = topology.link_root(netns.free_link(ROOT_LINKS, netns.root_networks()))
            record.work_dir.mkdir()
            record.work_dir.chmod(0o755)  # whatever the umask: uid 1337 goes through it
            namespaces = {}
            for pod in pods:
                workload = pod.workload
                made = topology.add_pod(f"{workload.name}.{workload.namespace}", workload.address)
                Iptables(made.netns.path).apply(build_rules(CaptureConfig()))
                namespaces[made.netns] = workload.namespace
            site = cls(source, run_dir, record, allocation, namespaces, gateway)
            site._write_hosts(translation)
        except BaseException:
            record.remove(run_dir)
            raise
        return site

    def close(self) -> None:
        self.record.remove(self.run_dir)

    def sync(self) -> bool:
        """Translate the source directory again into the mesh's copy and the pods' hosts
        files; return whether the copy changed."""
        translation = translate(self.source, self._allocation)
        self._write_hosts(translation)
        return write(translation, self.config_dir)

    async def follow(self) -> None:
        """Keep the mesh's copy in step with the source directory until cancelled: an edit
        reaches galley (and routing) as it does without capture."""
        async for _ in awatch(self.source):
            try:
                if self.sync():
                    log.info("capture: configuration from %s translated again", self.source)
            except (OSError, ValueError) as error:
                log.warning("capture: cannot translate %s: %s", self.source, error)

    def _write_hosts(self, translation: Translation) -> None:
        for pod, namespace in self._pods.items():
            netns.write_hosts(pod, translation.hosts(namespace))


class CaptureMesh(LocalMesh):
    """`LocalMesh` on a `CaptureSite`: the same control plane and gateway, run in the hub (the
    caller's event loop runs in a thread inside it); each pod a capture namespace with the agent
    and the application as processes there."""

    def __init__(
        self, site: CaptureSite, run_dir: Path, *, progress: Callable[[str], None]
    ) -> None:
        super().__init__(site.config_dir, run_dir, addresses=site.addresses, progress=progress)
        self.site = site
        self._follow: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._follow = asyncio.create_task(self.site.follow(), name="capture config")
        await super().start()  # which stops everything, `follow` included, if it fails

    async def stop(self) -> None:
        await super().stop()
        follow, self._follow = self._follow, None
        if follow is not None:
            await cancel_and_wait([follow])

    def state(self, ready: bool) -> MeshState:
        return replace(super().state(ready), config_dir=str(self.site.source))

    async def _start_pod(self, pod: Pod, stack: contextlib.AsyncExitStack) -> None:
        workload = pod.workload
        name = f"{workload.name}.{workload.namespace}"
        pod_netns = self.site.record.pod_netns(pod)
        account = workload.service_account or "default"
        files = self.site.record.work_dir / name
        files.mkdir()
        token, root = files / "token", files / "root-cert.pem"
        token.write_text(self.citadel.tokens.mint(SpiffeId(workload.namespace, account)))
        token.chmod(0o600)
        root.write_bytes(self.citadel.ca.root_pem)
        for path in (files, token, root):
            os.chown(path, PROXY_UID, PROXY_UID)
        agent = [
            *(sys.executable, "-m", "agent", "--ip", workload.address, "--pod", workload.name),
            *("--namespace", workload.namespace, "--service-account", account),
            *("--labels", ",".join(f"{k}={v}" for k, v in workload.labels.items())),
            *("--interception", "REDIRECT", "--pilot", self._pilot_mtls(), "--pilot-mtls"),
            *("--citadel", self.citadel.address, "--citadel-root", str(root)),
            *("--token-file", str(token), "--run-dir", str(files)),
            *("--drain-seconds", "1", "--log-level", "warning"),
        ]
        environment = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONUNBUFFERED": "1"}
        argv = pod_netns.exec_argv(*agent, uid=PROXY_UID, env=environment)
        log_dir = self.run_dir / name
        agent_process = AppProcess(f"{name} agent", argv, {}, log_dir / "agent.log")
        await stack.enter_async_context(agent_process)
        command = pod.command or _demo_app(workload.name, pod.app_ports)
        if not command:
            return  # a client: nothing to run but its sidecar
        environment |= {
            "HOME": "/",
            "APP_ADDRESS": APP_HOST,
            "APP_PORTS": ",".join(map(str, pod.app_ports)),
            "POD_NAME": workload.name,
            "POD_NAMESPACE": workload.namespace,
            "SERVICE_ACCOUNT": account,
        }
        argv = pod_netns.exec_argv(*command, uid=APP_UID, env=environment)
        pod.process = AppProcess(name, argv, {}, log_dir / "app.log")
        await stack.enter_async_context(pod.process)

    async def _app_listening(self, pod: Pod) -> bool:
        """Asked inside the pod (`ss`): a connection from outside would be captured and count
        as a plaintext inbound connection."""
        pod_netns = self.site.record.pod_netns(pod)
        for port in pod.app_ports:
            ss = pod_netns.exec_argv("ss", "-Hltn", "sport", "=", f":{port}")
            process = await asyncio.create_subprocess_exec(
                *ss, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
            )
            listening, _ = await process.communicate()
            if not listening.strip():
                return False
        return True


def _demo_app(workload: str, ports: tuple[int, ...]) -> tuple[str, ...]:
    """The built-in demo app on the workload's ports, as a process; nothing for a client."""
    if not ports:
        return ()
    return (sys.executable, "-m", "localmesh.demo_app", workload, *map(str, ports))
