"""`LocalMesh`: citadel, pilot, a sidecar per WorkloadEntry and a demo app per served port, in
one process.

The directory is the mesh: its ServiceEntries and WorkloadEntries are pilot's registry, and
every WorkloadEntry becomes a running "pod": an Envoy sidecar (supervised, with its readiness
endpoint on 15021) bound to the entry's address, plus, for each service port the workload
serves, the demo application listening on the pod's private application address. That address
is the WorkloadEntry annotation `localmesh.pymesh.dev/app-address` if present, otherwise the
pod address with the second octet raised by one (127.10.0.2 -> 127.11.0.2): only the sidecar
forwards there, as only a pod's sidecar reaches its localhost.

Every hop is mutual TLS, as in an Istio mesh: each sidecar's agent gets its workload
certificate from citadel (a bootstrap token minted for the pod's service account, renewals over
mTLS) and serves it to Envoy over SDS; Envoy reaches pilot on 15011 with it, and pilot's auto
mTLS makes sidecar-to-sidecar traffic mutual TLS. Citadel keeps its CA under the run directory,
so a restarted mesh keeps its root.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import yaml

from agent.bootstrap import ProxySpec
from agent.envoy_process import EnvoyOptions
from agent.health import HealthServer
from agent.workload import CitadelAccess, WorkloadProxy
from citadel.server import Citadel, CitadelOptions
from localmesh.demo_app import DemoApp
from meshcore.identity import CONTROL_PLANE_HOST, SpiffeId
from meshcore.lifecycle import Service
from pilot.config_files import load_config_directory
from pilot.model import WorkloadInstance
from pilot.push_context import PushContext
from pilot.server import Pilot, PilotOptions

APP_ADDRESS_ANNOTATION = "localmesh.pymesh.dev/app-address"
HTTP_PROXY_PORT = 15080
PILOT_MTLS_PORT = 15011


@dataclass
class Pod:
    """One workload of the local mesh and what runs for it."""

    workload: WorkloadInstance
    app_address: str
    app_ports: tuple[int, ...]
    services: tuple[str, ...]  # "host:port" of the service ports it serves
    proxy: WorkloadProxy | None = None
    health: HealthServer | None = None
    apps: list[DemoApp] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.workload.name


def default_app_address(pod_address: str) -> str:
    octets = str(ipaddress.IPv4Address(pod_address)).split(".")
    octets[1] = str((int(octets[1]) + 1) % 256)
    return ".".join(octets)


def _annotations(directory: Path) -> dict[tuple[str, str], dict[str, str]]:
    """WorkloadEntry annotations by (namespace, name); the registry has no use for them."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for path in sorted(directory.glob("*.y*ml")):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and document.get("kind") == "WorkloadEntry":
                meta = document.get("metadata") or {}
                key = (meta.get("namespace", "default"), meta.get("name", ""))
                found[key] = dict(meta.get("annotations") or {})
    return found


def plan_pods(directory: Path) -> list[Pod]:
    """Every WorkloadEntry of the directory as a pod, with the ports its application serves."""
    registry = load_config_directory(directory).registry
    context = PushContext.build(registry, version="plan")
    annotations = _annotations(directory)
    pods = []
    for workload in registry.workloads:
        app_ports: set[int] = set()
        services = []
        for service in context.services:
            if service.selects(workload):
                for port in service.ports:
                    app_ports.add(workload.endpoint_port(port))
                    services.append(f"{service.hostname}:{port.number}")
        notes = annotations.get((workload.namespace, workload.name), {})
        pods.append(
            Pod(
                workload,
                notes.get(APP_ADDRESS_ANNOTATION) or default_app_address(workload.address),
                tuple(sorted(app_ports)),
                tuple(services),
            )
        )
    return pods


class LocalMesh(Service):
    """Starts and stops the whole local mesh; `async with LocalMesh(dir)`."""

    def __init__(
        self,
        config_dir: Path,
        run_dir: Path,
        *,
        pilot_host: str = "127.0.0.1",
        citadel_host: str = "127.0.0.2",
        envoy_options: EnvoyOptions | None = None,
    ) -> None:
        self.config_dir = config_dir
        self.run_dir = run_dir
        # The CA directory outlives the run: the mesh keeps its root across restarts.
        self.citadel = Citadel(CitadelOptions(ca_dir=run_dir / "ca", host=citadel_host))
        self._pilot_host = pilot_host
        self._pilot: Pilot | None = None  # made once citadel has its CA: pilot needs a cert
        self.pods = plan_pods(config_dir)
        self._envoy_options = envoy_options or EnvoyOptions(
            log_level="warning", concurrency=1, drain_seconds=1.0
        )
        self._pod_stacks: list[contextlib.AsyncExitStack] = []
        self._started: list[Service] = []
        # SDS sockets live here: Unix socket paths must stay short, run directories need not.
        self._sockets: tempfile.TemporaryDirectory[str] | None = None

    async def start(self) -> None:
        try:
            self._sockets = tempfile.TemporaryDirectory(prefix="localmesh-sds-")
            await self.citadel.start()
            self._started.append(self.citadel)
            self._pilot = self._make_pilot()
            await self._pilot.start()
            self._started.append(self._pilot)
            for pod in self.pods:
                stack = contextlib.AsyncExitStack()
                self._pod_stacks.append(stack)
                await self._start_pod(pod, stack)
        except BaseException:
            await self.stop()
            raise

    @property
    def pilot(self) -> Pilot:
        if self._pilot is None:
            raise RuntimeError("the local mesh is not started")
        return self._pilot

    def _make_pilot(self) -> Pilot:
        """Pilot on 15010, and on 15011 with a serving certificate from citadel's CA."""
        ca = self.citadel.ca
        serving = ca.server_credentials(CONTROL_PLANE_HOST, self._pilot_host)
        options = PilotOptions(
            config_dir=self.config_dir,
            host=self._pilot_host,
            mtls_port=PILOT_MTLS_PORT,
            tls_cert_chain=serving.chain_pem,
            tls_key=serving.key_pem,
            tls_roots=ca.root_pem,
        )
        return Pilot(options)

    async def stop(self) -> None:
        """Stop every pod at once (each drains its Envoy), then pilot."""
        stacks, self._pod_stacks = self._pod_stacks, []
        await asyncio.gather(*(stack.aclose() for stack in stacks))
        started, self._started = self._started, []
        for service in reversed(started):
            await service.stop()
        if self._sockets is not None:
            self._sockets.cleanup()
            self._sockets = None

    async def _start_pod(self, pod: Pod, stack: contextlib.AsyncExitStack) -> None:
        workload = pod.workload
        for port in pod.app_ports:
            app = DemoApp(workload.name, pod.app_address, port)
            await stack.enter_async_context(app)
            pod.apps.append(app)
        assert self.pilot.mtls_address is not None and self._sockets is not None
        spec = ProxySpec(
            ip=workload.address,
            pod=workload.name,
            namespace=workload.namespace,
            pilot=self.pilot.mtls_address,
            pilot_mtls=True,
            service_account=workload.service_account or "default",
            labels=dict(workload.labels),
            http_proxy_port=HTTP_PROXY_PORT,
            app_address=pod.app_address,
        )
        identity = SpiffeId(spec.namespace, spec.service_account)
        citadel = CitadelAccess(
            self.citadel.address,
            self.citadel.mtls_address,
            self.citadel.ca.root_pem,
            self.citadel.tokens.mint(identity),
        )
        pod.proxy = WorkloadProxy(
            spec,
            self.run_dir / f"{workload.name}.{workload.namespace}",
            self._envoy_options,
            citadel,
            Path(self._sockets.name, f"{workload.name}.{workload.namespace}.sock"),
        )
        await stack.enter_async_context(pod.proxy)
        pod.health = HealthServer(spec.ip, spec.admin_url)
        await stack.enter_async_context(pod.health)

    async def wait_ready(self, attempts: int = 300, interval: float = 0.1) -> list[str]:
        """Wait until every pod's /healthz/ready says 200; return the pods still not ready."""
        pending = list(self.pods)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            for _ in range(attempts):
                still = []
                for pod in pending:
                    url = f"http://{pod.workload.address}:15021/healthz/ready"
                    try:
                        async with session.get(url) as response:
                            if response.status != 200:
                                still.append(pod)
                    except (aiohttp.ClientError, OSError, TimeoutError):
                        still.append(pod)
                pending = still
                if not pending:
                    break
                await asyncio.sleep(interval)
        return [pod.name for pod in pending]

    def try_commands(self) -> list[str]:
        """curl commands that go client sidecar -> service -> backend sidecar -> application."""
        clients = [p for p in self.pods if not p.services] or self.pods
        if not clients:
            return []
        proxy = f"http://{clients[0].workload.address}:{HTTP_PROXY_PORT}"
        targets = sorted({s for pod in self.pods for s in pod.services})
        return [f"curl -x {proxy} http://{target}/" for target in targets]
