"""`LocalMesh`: the whole mesh on one machine: control plane, ingress gateway, every workload.

The directory is the mesh, in Istio's own format: galley watches it and feeds pilot, so editing
a file changes routing within a second. Its ServiceEntries and WorkloadEntries are the registry,
and every WorkloadEntry becomes a running "pod": an Envoy sidecar (supervised, readiness on
15021) bound to the entry's address, and the application. The application is the command the
entry's annotation `localmesh.pymesh.dev/command` names (run as a supervised process with the
pod's identity in its environment and its sidecar as HTTP proxy), or without one the built-in
demo app on each port the workload serves. It listens on the pod's private application
address: the annotation `localmesh.pymesh.dev/app-address`, else the pod address with the
second octet raised by one (127.10.0.2 -> 127.11.0.2), which only the pod's sidecar forwards to,
as only a pod's sidecar reaches its localhost.

Every hop is mutual TLS, as in an Istio mesh: galley serves pilot and mixer with certificates
from citadel; each agent gets its workload certificate from citadel (a bootstrap token minted
for the pod's service account, renewals over mTLS) and serves it to Envoy over SDS; Envoy
reaches pilot on 15011 with it, and auto mTLS makes sidecar to sidecar traffic mutual TLS.
Mixer answers the sidecars' policy checks (fail-open) and turns their reports into Istio's
Prometheus metrics on its 42422. An ingress gateway (labels `istio: ingressgateway`, Istio's)
runs as Envoy in router mode on its own address, serving what the directory's Gateways ask.
Each control-plane service has its own loopback address, so all keep Istio's ports. Citadel keeps
its CA under the run directory, so a restarted mesh keeps its root. With root, capture mode
(`localmesh.capture`) runs the same control plane and gateway with each pod in a network
namespace of its own, its traffic captured by iptables instead of sent to an HTTP proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import shlex
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from agent.bootstrap import ProxySpec, ProxyType
from agent.envoy_process import EnvoyOptions
from agent.health import HealthServer
from agent.workload import CitadelAccess, WorkloadProxy
from citadel.server import Citadel, CitadelOptions
from galley.server import Galley, GalleyOptions
from localmesh.app_process import AppProcess
from localmesh.demo_app import DemoApp
from localmesh.state import Endpoint, MeshState
from meshcore.identity import CONTROL_PLANE_HOST, SpiffeId
from meshcore.lifecycle import Service
from meshcore.tls import MeshTls
from mixer.server import Mixer, MixerOptions
from pilot.config_files import load_config_directory
from pilot.mesh_config import MeshConfig
from pilot.model import WorkloadInstance
from pilot.push_context import PushContext
from pilot.server import Pilot, PilotOptions

APP_ADDRESS_ANNOTATION = "localmesh.pymesh.dev/app-address"
COMMAND_ANNOTATION = "localmesh.pymesh.dev/command"
HTTP_PROXY_PORT = 15080
PILOT_MTLS_PORT = 15011
# Galley's, mixer's and pilot's certificates are issued once, at start, and not renewed while
# the mesh runs (workload certificates are); citadel's maximum lifetime keeps a long-running
# local mesh working.
CONTROL_PLANE_TTL = datetime.timedelta(days=90)
GATEWAY_LABELS = {"istio": "ingressgateway", "app": "istio-ingressgateway"}
GATEWAY_NAME = "istio-ingressgateway"


@dataclass(frozen=True)
class MeshAddresses:
    """Where the control plane and the ingress gateway listen (each its own loopback IP)."""

    pilot: str = "127.0.0.1"
    citadel: str = "127.0.0.2"
    galley: str = "127.0.0.3"
    mixer: str = "127.0.0.4"
    gateway: str = "127.0.0.1"  # http://127.0.0.1:8080/ for a Gateway server on port 8080


@dataclass
class Pod:
    """One workload of the local mesh and what runs for it."""

    workload: WorkloadInstance
    app_address: str
    app_ports: tuple[int, ...]
    services: tuple[str, ...]  # "host:port" of the service ports it serves
    command: tuple[str, ...] = ()  # the application; empty: the built-in demo app
    proxy: WorkloadProxy | None = None
    health: HealthServer | None = None
    apps: list[DemoApp] = field(default_factory=list)
    process: AppProcess | None = None

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
                _command(notes.get(COMMAND_ANNOTATION, "")),
            )
        )
    return pods


def _command(text: str) -> tuple[str, ...]:
    """The annotation's command line; `python` means the mesh's own interpreter, which has
    the project (and its demo applications) installed."""
    argv = shlex.split(text)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return tuple(argv)


def gateway_urls(directory: Path, gateway_host: str) -> list[str]:
    """URLs the ingress gateway serves: per Gateway server (HTTP, ingress gateway selector), the
    first path a VirtualService bound to that Gateway matches, else `/`."""
    istio = load_config_directory(directory).istio
    urls = []
    for gateway in istio.gateways:
        spec: Any = gateway.spec
        if any(GATEWAY_LABELS.get(k) != v for k, v in (spec.selector or {}).items()):
            continue
        name = f"{gateway.metadata.namespace}/{gateway.metadata.name}"
        path = next(
            (
                match.uri.exact or match.uri.prefix
                for vs in istio.virtual_services_for(gateway.metadata.namespace, name)
                for rule in vs.spec.http or ()  # type: ignore[attr-defined]
                for match in rule.match or ()
                if match.uri is not None and (match.uri.exact or match.uri.prefix)
            ),
            "/",
        )
        for server in spec.servers or ():
            if server.port.protocol.upper() in ("HTTP", "HTTP2"):
                urls.append(f"http://{gateway_host}:{server.port.number}{path}")
    return urls


class LocalMesh(Service):
    """Starts and stops the whole local mesh; `async with LocalMesh(dir, run_dir)`."""

    def __init__(
        self,
        config_dir: Path,
        run_dir: Path,
        *,
        addresses: MeshAddresses | None = None,
        envoy_options: EnvoyOptions | None = None,
        progress: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.config_dir = config_dir
        self._progress = progress
        self.run_dir = run_dir
        self.addresses = addresses or MeshAddresses()
        # The CA directory outlives the run: the mesh keeps its root across restarts.
        self.citadel = Citadel(CitadelOptions(ca_dir=run_dir / "ca", host=self.addresses.citadel))
        # Made once citadel has its CA: both serve (and pilot calls galley) with its certificates.
        self._galley: Galley | None = None
        self._mixer: Mixer | None = None
        self._pilot: Pilot | None = None
        self.pods = plan_pods(config_dir)
        self.gateway: WorkloadProxy | None = None
        self._envoy_options = envoy_options or EnvoyOptions(
            log_level="warning", concurrency=1, drain_seconds=1.0
        )
        self._stacks: list[contextlib.AsyncExitStack] = []
        self._started: list[Service] = []
        # SDS sockets live here: Unix socket paths must stay short, run directories need not.
        self._sockets: tempfile.TemporaryDirectory[str] | None = None

    @property
    def pilot(self) -> Pilot:
        if self._pilot is None:
            raise RuntimeError("the local mesh is not started")
        return self._pilot

    @property
    def galley(self) -> Galley:
        if self._galley is None:
            raise RuntimeError("the local mesh is not started")
        return self._galley

    @property
    def mixer(self) -> Mixer:
        if self._mixer is None:
            raise RuntimeError("the local mesh is not started")
        return self._mixer

    def _make_mixer(self) -> Mixer:
        """Mixer fed by galley over mutual TLS; Prometheus metrics on its 42422."""
        tls = self._control_plane_tls(self.addresses.mixer)
        options = MixerOptions(
            galley=self.galley.address,
            galley_mtls=True,
            host=self.addresses.mixer,
            tls_cert_chain=tls.cert_chain,
            tls_key=tls.key,
            tls_roots=tls.roots,
        )
        return Mixer(options)

    def _control_plane_tls(self, host: str) -> MeshTls:
        """A certificate from citadel's CA for the control plane's name and `host`."""
        ca = self.citadel.ca
        serving = ca.server_credentials(CONTROL_PLANE_HOST, host, ttl=CONTROL_PLANE_TTL)
        return MeshTls(serving.chain_pem, serving.key_pem, ca.root_pem)

    async def start(self) -> None:
        try:
            self._sockets = tempfile.TemporaryDirectory(prefix="localmesh-sds-")
            await self.citadel.start()
            self._started.append(self.citadel)
            self._progress("citadel started")
            self._galley = Galley(
                GalleyOptions(
                    config_dir=self.config_dir,
                    host=self.addresses.galley,
                    tls=self._control_plane_tls(self.addresses.galley),
                )
            )
            await self._galley.start()
            self._started.append(self._galley)
            self._progress("galley started")
            self._mixer = self._make_mixer()
            await self._mixer.start()
            self._started.append(self._mixer)
            self._progress("mixer started")
            self._pilot = self._make_pilot()
            await self._pilot.start()
            self._started.append(self._pilot)
            await self._wait_pilot_ready()
            self._progress("pilot started, configuration from galley received")
            await self._start_gateway()
            self._progress(f"{GATEWAY_NAME} started on {self.addresses.gateway}")
            for pod in self.pods:
                stack = contextlib.AsyncExitStack()
                self._stacks.append(stack)
                await self._start_pod(pod, stack)
                self._progress(f"{pod.name} started on {pod.workload.address}")
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every pod and the gateway at once (each drains its Envoy), then the control
        plane in reverse order."""
        stacks, self._stacks = self._stacks, []
        await asyncio.gather(*(stack.aclose() for stack in stacks))
        started, self._started = self._started, []
        for service in reversed(started):
            await service.stop()
        if self._sockets is not None:
            self._sockets.cleanup()
            self._sockets = None

    async def _wait_pilot_ready(self, attempts: int = 200, interval: float = 0.05) -> None:
        """Until pilot's /ready says its configuration came from galley: a sidecar that
        connected earlier would go ready with an empty registry, and the first request fail."""
        url = f"http://{self.addresses.pilot}:{self.pilot.monitoring.port}/ready"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            for _ in range(attempts):
                try:
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, OSError, TimeoutError):
                    pass
                await asyncio.sleep(interval)
        raise RuntimeError(f"pilot did not get its configuration from galley ({url})")

    def _make_pilot(self) -> Pilot:
        """Pilot fed by galley over mutual TLS, serving 15010 and, with a certificate from
        citadel, 15011."""
        tls = self._control_plane_tls(self.addresses.pilot)
        mixer = f"{self.addresses.mixer}:{self.mixer.port}"
        options = PilotOptions(
            galley=self.galley.address,
            galley_mtls=True,
            # Sidecars ask Mixer (fail-open: policy never blocks the demo when Mixer is down)
            # and report every request to it.
            mesh=MeshConfig(
                disable_policy_checks=False,
                policy_check_fail_open=True,
                mixer_check_server=mixer,
                mixer_report_server=mixer,
            ),
            host=self.addresses.pilot,
            mtls_port=PILOT_MTLS_PORT,
            tls_cert_chain=tls.cert_chain,
            tls_key=tls.key,
            tls_roots=tls.roots,
        )
        return Pilot(options)

    def _proxy(self, spec: ProxySpec, stack_name: str) -> WorkloadProxy:
        """A proxy with its certificate from citadel, reaching pilot over mutual TLS."""
        assert self._sockets is not None
        identity = SpiffeId(spec.namespace, spec.service_account)
        citadel = CitadelAccess(
            self.citadel.address,
            self.citadel.mtls_address,
            self.citadel.ca.root_pem,
            self.citadel.tokens.mint(identity),
        )
        return WorkloadProxy(
            spec,
            self.run_dir / stack_name,
            self._envoy_options,
            citadel,
            Path(self._sockets.name, f"{stack_name}.sock"),
        )

    def _pilot_mtls(self) -> str:
        address = self.pilot.mtls_address
        assert address is not None
        return address

    async def _start_gateway(self) -> None:
        spec = ProxySpec(
            ip=self.addresses.gateway,
            pod=GATEWAY_NAME,
            namespace="istio-system",
            pilot=self._pilot_mtls(),
            pilot_mtls=True,
            proxy_type=ProxyType.ROUTER,
            service_account="istio-ingressgateway-service-account",
            labels=GATEWAY_LABELS,
        )
        stack = contextlib.AsyncExitStack()
        self._stacks.append(stack)
        self.gateway = await stack.enter_async_context(
            self._proxy(spec, f"{GATEWAY_NAME}.istio-system")
        )
        await stack.enter_async_context(HealthServer(spec.ip, spec.admin_url))

    async def _start_pod(self, pod: Pod, stack: contextlib.AsyncExitStack) -> None:
        """The pod's sidecar and application, stopped by `stack`; capture mode
        (`localmesh.capture.CaptureMesh`) runs them in the pod's network namespace instead."""
        workload = pod.workload
        name = f"{workload.name}.{workload.namespace}"
        spec = ProxySpec(
            ip=workload.address,
            pod=workload.name,
            namespace=workload.namespace,
            pilot=self._pilot_mtls(),
            pilot_mtls=True,
            service_account=workload.service_account or "default",
            labels=dict(workload.labels),
            http_proxy_port=HTTP_PROXY_PORT,
            app_address=pod.app_address,
        )
        if pod.command:
            sidecar = f"http://{workload.address}:{HTTP_PROXY_PORT}"
            environment = {
                "APP_ADDRESS": pod.app_address,
                "APP_PORTS": ",".join(map(str, pod.app_ports)),
                "POD_NAME": workload.name,
                "POD_NAMESPACE": workload.namespace,
                "SERVICE_ACCOUNT": spec.service_account,
                "HTTP_PROXY": sidecar,
                "http_proxy": sidecar,
                "NO_PROXY": "",
                "no_proxy": "",
            }
            log_file = self.run_dir / name / "app.log"
            pod.process = AppProcess(name, pod.command, environment, log_file)
            await stack.enter_async_context(pod.process)
        else:
            for port in pod.app_ports:
                app = DemoApp(workload.name, pod.app_address, port)
                await stack.enter_async_context(app)
                pod.apps.append(app)
        pod.proxy = await stack.enter_async_context(self._proxy(spec, name))
        pod.health = HealthServer(spec.ip, spec.admin_url)
        await stack.enter_async_context(pod.health)

    async def wait_ready(self, attempts: int = 300, interval: float = 0.1) -> list[str]:
        """Wait until every pod (its sidecar's /healthz/ready says 200 and its application
        accepts connections on each port) and the gateway are ready; return those still not."""
        pending = [GATEWAY_NAME, *(pod.name for pod in self.pods)]
        pods = {pod.name: pod for pod in self.pods}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            for _ in range(attempts):
                pending = [
                    name for name in pending if not await self._ready(session, pods.get(name))
                ]
                if not pending:
                    break
                await asyncio.sleep(interval)
        return sorted(pending)

    async def _ready(self, session: aiohttp.ClientSession, pod: Pod | None) -> bool:
        """The pod's (None: the gateway's) readiness, as a kubelet's probes would see it."""
        address = pod.workload.address if pod is not None else self.addresses.gateway
        try:
            async with session.get(f"http://{address}:15021/healthz/ready") as response:
                if response.status != 200:
                    return False
            return pod is None or await self._app_listening(pod)
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def _app_listening(self, pod: Pod) -> bool:
        """Whether the pod's application accepts connections on each of its ports."""
        for port in pod.app_ports:
            connecting = asyncio.open_connection(pod.app_address, port)
            _, writer = await asyncio.wait_for(connecting, timeout=1)
            writer.close()
            await writer.wait_closed()
        return True

    def state(self, ready: bool) -> MeshState:
        """What `meshctl status` and `down` need to find this mesh (`localmesh.state`)."""

        def monitored(name: str, host: str, port: int) -> Endpoint:
            return Endpoint(name, f"{host}:{port}", f"http://{host}:{port}/ready")

        def pod(name: str, address: str) -> Endpoint:
            return Endpoint(name, address, f"http://{address}:15021/healthz/ready")

        addresses = self.addresses
        control_plane = [
            monitored("citadel", addresses.citadel, self.citadel.monitoring.port),
            monitored("galley", addresses.galley, self.galley.monitoring.port),
            monitored("mixer", addresses.mixer, self.mixer.monitoring.port),
            monitored("pilot", addresses.pilot, self.pilot.monitoring.port),
            pod(GATEWAY_NAME, addresses.gateway),
        ]
        pods = [pod(p.name, p.workload.address) for p in self.pods]
        urls = gateway_urls(self.config_dir, addresses.gateway)
        return MeshState(os.getpid(), str(self.config_dir), ready, control_plane, pods, urls)

    def try_commands(self) -> list[str]:
        """curl commands through the ingress gateway, and through a client's sidecar
        (client sidecar -> service -> backend sidecar -> application) when a workload serves
        nothing (a client)."""
        commands = [f"curl {url}" for url in gateway_urls(self.config_dir, self.addresses.gateway)]
        clients = [p for p in self.pods if not p.services]
        if clients:
            proxy = f"http://{clients[0].workload.address}:{HTTP_PROXY_PORT}"
            targets = sorted({s for pod in self.pods for s in pod.services})
            commands += [f"curl -x {proxy} http://{target}/" for target in targets]
        return commands
