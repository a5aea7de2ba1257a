"""Transparent capture end to end: unmodified applications in pods, sidecars they never hear of.

Two pods on the hub's bridge (`tests.support.netns`): `client` set up by the CNI plugins as a
runtime would (bridge + host-local, then `mesh-cni`), `server` by hand with `mesh-agent
iptables` (the istio-init role). Each runs `mesh-agent --interception REDIRECT` (Envoy with
certificates from citadel, pilot over mutual TLS) as uid 1337; the applications are
`plain_http.py` run as uid 1000 with no proxy settings. Pilot and citadel run in the test's
event loop inside the hub. The client application asks for the server's service by name
(its /etc/hosts holds the service's VIP, which no host owns: only capture can deliver it).

Proof, from both sides: the server application sees the client's SPIFFE ID in
x-forwarded-client-cert (mutual TLS between the sidecars); both Envoys' stats show the
request (outbound cluster on the client, inbound on the server, through 15001 and 15006);
iptables' own counters show that exactly the application's connections were redirected,
none of the agent's or Envoy's (uid 1337) though they had talked to pilot and citadel; a
destination outside the mesh is passed through (PassthroughCluster) to where it was headed,
and a server port no service declares is passed through inbound too (from 127.0.0.6).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.integration.mesh import Mesh, eventually
from tests.support.cni import DEBIAN_PLUGINS, CniRuntime, install_mesh_cni
from tests.support.netns import (
    APP_UID,
    BRIDGE,
    GATEWAY,
    PROXY_UID,
    SUBNET_PREFIX,
    Netns,
    PodProcess,
    Topology,
    create_topology,
    readable_by_pods,
    requires_root,
    rule_packets,
    run_in,
    write_hosts,
)

pytestmark = [pytest.mark.envoy, requires_root, readable_by_pods]

SUPPORT = Path(__file__).resolve().parents[1] / "support"
PLAIN_HTTP = str(SUPPORT / "plain_http.py")
CLIENT_IP, SERVER_IP = f"{SUBNET_PREFIX}.10", f"{SUBNET_PREFIX}.11"
SERVER_VIP = f"{SUBNET_PREFIX}.200"
SERVER_HOST = "server.default.svc.cluster.local"
OUTSIDE_PORT = 18080  # a plain server in the hub, known to no registry
PATH = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
REDIRECT_OUTBOUND = "-A ISTIO_OUTPUT -j ISTIO_REDIRECT"
REDIRECT_INBOUND = "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT"
PROXY_UID_RETURN = f"-A ISTIO_OUTPUT -m owner --uid-owner {PROXY_UID} -j RETURN"
PASSTHROUGH_SOURCE_RETURN = "-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN"
UNDECLARED_PORT = 9999  # the server application listens here too; no service says so


@pytest.fixture
def topology() -> Iterator[Topology]:
    built = create_topology()
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def work_dir() -> Iterator[Path]:
    """Readable by the pods' users; short, for the agents' SDS socket paths."""
    path = Path(tempfile.mkdtemp(prefix="mcap-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_request_through_both_sidecars_is_mutual_tls(topology: Topology, work_dir: Path) -> None:
    run_in(topology.hub, lambda: _scenario(topology, work_dir), timeout=150)


async def _scenario(topology: Topology, work: Path) -> None:
    config_dir = work / "config"
    config_dir.mkdir()
    mesh = Mesh(SUBNET_PREFIX, config_dir, work / "control")
    processes: list[PodProcess] = []
    outside = web.AppRunner(_outside_app())
    try:
        client = _cni_pod(topology, work)
        server = topology.add_pod("server", SERVER_IP).netns
        server.run(sys.executable, "-m", "agent", "iptables")
        write_hosts(client, {SERVER_HOST: SERVER_VIP})
        mesh.write(
            "registry",
            _service_with_vip(),
            _workload("client", CLIENT_IP),
            _workload("server", SERVER_IP),
        )
        await mesh.start_citadel()
        await mesh.start_pilot(mtls=True)
        await outside.setup()
        await web.TCPSite(outside, GATEWAY, OUTSIDE_PORT).start()

        processes.append(await _start_app(server, 8080, work))
        processes.append(await _start_app(server, UNDECLARED_PORT, work))
        processes.append(await _start_agent(mesh, "client", client, CLIENT_IP, work))
        processes.append(await _start_agent(mesh, "server", server, SERVER_IP, work))
        await mesh.synced({"client", "server"})
        await asyncio.gather(*(_ready(mesh, ip) for ip in (CLIENT_IP, SERVER_IP)))

        before = rule_packets(client)
        assert before[PROXY_UID_RETURN] > 0, "the agent and Envoy reached pilot and citadel"
        assert before[REDIRECT_OUTBOUND] == 0, "none of that was captured"

        answer = await _app_get(client, f"http://{SERVER_HOST}:8080/hello")
        assert answer["status"] == 200, answer
        echoed = json.loads(answer["body"])
        headers = {key.lower(): value for key, value in echoed["headers"].items()}
        assert "URI=spiffe://cluster.local/ns/default/sa/client" in headers.get(
            "x-forwarded-client-cert", ""
        ), headers
        outside_answer = await _app_get(client, f"http://{GATEWAY}:{OUTSIDE_PORT}/")
        assert outside_answer == {"status": 200, "body": f"outside saw {CLIENT_IP}"}

        # A port of the server no service declares: passed through at both ends.
        undeclared = await _app_get(client, f"http://{SERVER_IP}:{UNDECLARED_PORT}/")
        assert undeclared["status"] == 200, undeclared

        after = rule_packets(client)
        assert after[REDIRECT_OUTBOUND] == 3  # the application's three connections, no more
        server_packets = rule_packets(server)
        assert server_packets[REDIRECT_INBOUND] >= 2
        # Envoy's inbound passthrough connects from 127.0.0.6, which is let through.
        assert server_packets[PASSTHROUGH_SOURCE_RETURN] == 1

        client_stats = await _stats(client)
        outbound = f"cluster.outbound|8080||{SERVER_HOST}"
        assert client_stats[f"{outbound}.upstream_rq_200"] == 1
        assert client_stats[f"{outbound}.ssl.handshake"] >= 1
        assert client_stats["cluster.PassthroughCluster.upstream_cx_total"] == 2
        # virtualOutbound accepted the connections and handed the service's to 0.0.0.0_8080.
        assert client_stats["listener.0.0.0.0_15001.downstream_cx_total"] >= 1
        assert client_stats["http.outbound_0.0.0.0_8080.downstream_rq_total"] == 1
        server_stats = await _stats(server)
        assert server_stats["cluster.inbound|8080||.upstream_rq_200"] == 1
        assert server_stats["listener.0.0.0.0_15006.downstream_cx_total"] >= 2
        assert server_stats["cluster.InboundPassthroughClusterIpv4.upstream_cx_total"] == 1
        assert not await mesh.nack_errors()
    except BaseException:
        for process in processes:
            print(f"--- {process.name} ---\n{process.output()[-4000:]}")
        raise
    finally:
        await asyncio.gather(*(process.stop() for process in processes))
        await outside.cleanup()
        await mesh.close()


def _cni_pod(topology: Topology, work: Path) -> Netns:
    """The client pod, set up as a runtime does: bridge + host-local, then mesh-cni."""
    pod = topology.add_namespace("client")
    pod.run("ip", "link", "set", "lo", "up")
    ranges = [[{"subnet": f"{SUBNET_PREFIX}.0/24", "rangeStart": CLIENT_IP, "rangeEnd": CLIENT_IP}]]
    bridge = {
        "type": "bridge",
        "bridge": BRIDGE,
        "isGateway": True,
        "ipam": {
            "type": "host-local",
            "dataDir": str(work / "ipam"),
            "ranges": ranges,
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    }
    network = {"cniVersion": "1.0.0", "name": "meshnet", "plugins": [bridge, {"type": "mesh-cni"}]}
    plugins = install_mesh_cni(work / "cni-bin").parent
    runtime = CniRuntime(network, [DEBIAN_PLUGINS, plugins], topology.hub)
    runtime.add("client", pod, "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=client")
    return pod


def _service_with_vip() -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: server, namespace: default}}
        spec:
          hosts: [{SERVER_HOST}]
          addresses: [{SERVER_VIP}]
          location: MESH_INTERNAL
          resolution: STATIC
          ports: [{{number: 8080, name: http, protocol: HTTP}}]
          workloadSelector: {{labels: {{app: server}}}}
        """
    )


def _workload(name: str, ip: str) -> str:
    """A WorkloadEntry labelled as injected workloads are (tlsMode istio: auto mTLS)."""
    return textwrap.dedent(
        f"""\
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {{name: {name}, namespace: default}}
        spec:
          address: {ip}
          labels: {{app: {name}, security.istio.io/tlsMode: istio}}
          serviceAccount: {name}
        """
    )


def _outside_app() -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(text=f"outside saw {request.remote}")

    app = web.Application()
    app.router.add_get("/", answer)
    return app


async def _start_app(netns: Netns, port: int, work: Path) -> PodProcess:
    argv = [sys.executable, PLAIN_HTTP, "serve", str(port)]
    log = work / f"server-app-{port}.log"
    app = await PodProcess.start(f"server-app-{port}", netns, argv, log, APP_UID, PATH)

    async def listening() -> bool | None:
        return True if f":{port} " in netns.run("ss", "-Hltn") else None

    await eventually(listening, f"the server application listening on {port}")
    return app


async def _start_agent(mesh: Mesh, name: str, netns: Netns, ip: str, work: Path) -> PodProcess:
    assert mesh.citadel is not None and mesh.pilot is not None
    pod_dir = work / name
    pod_dir.mkdir()
    token, root = pod_dir / "token", pod_dir / "root-cert.pem"
    token.write_text(mesh.citadel_access("default", name).token)
    root.write_bytes(mesh.citadel.ca.root_pem)
    for path in (pod_dir, token, root):
        os.chown(path, PROXY_UID, PROXY_UID)
    argv = [
        *(sys.executable, "-m", "agent", "--ip", ip, "--pod", name, "--service-account", name),
        *("--labels", f"app={name}", "--interception", "REDIRECT"),
        *("--pilot", f"{GATEWAY}:15011", "--pilot-mtls", "--citadel", mesh.citadel.address),
        *("--citadel-root", str(root), "--token-file", str(token), "--run-dir", str(pod_dir)),
        *("--drain-seconds", "0.2", "--log-level", "warning"),
    ]
    env = PATH | {"PYTHONUNBUFFERED": "1"}
    log = work / f"{name}-agent.log"
    return await PodProcess.start(f"{name}-agent", netns, argv, log, PROXY_UID, env)


async def _ready(mesh: Mesh, ip: str) -> None:
    """The agent's readiness (15021, not captured), from the hub."""

    async def probe() -> bool | None:
        async with mesh.http().get(f"http://{ip}:15021/healthz/ready") as response:
            return True if response.status == 200 else None

    await eventually(probe, f"sidecar {ip} ready", attempts=300)


async def _app_get(netns: Netns, url: str) -> dict[str, Any]:
    """One request by the unmodified application: uid 1000, no proxy settings."""
    argv = netns.exec_argv(sys.executable, PLAIN_HTTP, "get", url, uid=APP_UID)
    return await _run_json(argv)


async def _stats(netns: Netns) -> dict[str, int]:
    """Envoy's counters from its admin API on the pod's loopback, asked inside the pod."""
    url = "http://127.0.0.1:15000/stats?format=json"
    answer = await _run_json(netns.exec_argv(sys.executable, PLAIN_HTTP, "get", url))
    stats = json.loads(answer["body"])["stats"]
    return {stat["name"]: stat["value"] for stat in stats if "value" in stat}


async def _run_json(argv: list[str]) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=PATH
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result
