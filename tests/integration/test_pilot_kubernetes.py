"""Kubernetes Services, EndpointSlices and Pods -> galley -> pilot -> real Envoy sidecars.

The API fake holds a small app the way a cluster would: a ClusterIP Service selecting
`app=hello`, its pods (whose IPs are the sidecars' loopback addresses, since the pods here are
local processes) and the EndpointSlice the endpoint controller would write. Galley reads them
through kubernetes-asyncio and distributes them; pilot's Kubernetes registry turns them into
the service and its endpoints. Scaling (a second pod, the slice updated) and scaling down must
move traffic while the Envoys keep running.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from galley.server import Galley, GalleyOptions
from tests.integration.mesh import Mesh, Sidecar, eventually
from tests.support.kube_fake import KubeFake

URL = "http://hello.default.svc.cluster.local:8080/"
HELLO_CLUSTER = "outbound|8080||hello.default.svc.cluster.local"


def kube_service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "hello", "namespace": "default", "labels": {"app": "hello"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "selector": {"app": "hello"},
            "ports": [{"name": "http-web", "port": 8080, "targetPort": "web", "protocol": "TCP"}],
        },
    }


def kube_pod(name: str, ip: str, app: str) -> dict[str, Any]:
    """A running, ready pod; a Deployment's pods share one service account."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {
            "serviceAccountName": app,
            "containers": [
                {
                    "name": app,
                    "image": "hello:1",
                    "ports": [{"name": "web", "containerPort": 8080, "protocol": "TCP"}],
                }
            ],
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
        },
    }


def kube_slice(pods: dict[str, str]) -> dict[str, Any]:
    """The Service's EndpointSlice listing `pods` (name -> IP), all ready."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "hello-x7k2p",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "hello"},
        },
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": [ip],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "targetRef": {"kind": "Pod", "namespace": "default", "name": name},
            }
            for name, ip in pods.items()
        ],
        "ports": [{"name": "http-web", "port": 8080, "protocol": "TCP"}],
    }


async def answered_by(mesh: Mesh, client: Sidecar, requests: int) -> Counter[str]:
    """Which backend answered each of `requests` requests (non-200 counted by status)."""
    seen: Counter[str] = Counter()
    for _ in range(requests):
        status, body = await mesh.get_via(client, URL)
        seen[body.split("\n")[0].removeprefix("hello from ") if status == 200 else str(status)] += 1
    return seen


def full_pushes(mesh: Mesh) -> float:
    assert mesh.pilot is not None
    registry = mesh.pilot.metrics.registry
    return registry.get_sample_value("pilot_push_triggers_total", {"type": "full"}) or 0.0


async def until_answered_by(mesh: Mesh, client: Sidecar, backends: set[str]) -> None:
    async def probe() -> bool | None:
        return True if set(await answered_by(mesh, client, 8)) == backends else None

    await eventually(probe, f"traffic reaching exactly {sorted(backends)}")


@pytest.mark.envoy
async def test_kubernetes_service_routes_to_pods_and_follows_scaling(mesh: Mesh) -> None:
    hello_1, hello_2, client_ip = mesh.next_ip(), mesh.next_ip(), mesh.next_ip()
    async with KubeFake(bookmark_interval=0.2) as api:
        api.create(kube_service())
        api.create(kube_pod("hello-1", hello_1, "hello"))
        api.create(kube_pod("client", client_ip, "client"))
        api.create(kube_slice({"hello-1": hello_1}))
        options = GalleyOptions(
            kubernetes=api.url, host=f"{mesh.block}.250", grpc_port=0, monitoring_port=0
        )
        async with Galley(options) as galley:
            await mesh.start_pilot(galley=galley.address)
            await mesh.add_sidecar("hello-1", hello_1, app_port=8080, labels={"app": "hello"})
            client = await mesh.add_sidecar("client", client_ip, labels={"app": "client"})
            await mesh.synced({"hello-1", "client"})
            await until_answered_by(mesh, client, {"hello-1"})

            # Scale up: a second pod becomes ready and the endpoint controller lists it. Only
            # endpoints change (the same service account), so pilot pushes EDS, not everything.
            full = full_pushes(mesh)
            assert full >= 1  # the first registry was a full push
            await mesh.add_sidecar("hello-2", hello_2, app_port=8080, labels={"app": "hello"})
            api.create(kube_pod("hello-2", hello_2, "hello"))
            api.update(kube_slice({"hello-1": hello_1, "hello-2": hello_2}))
            await until_answered_by(mesh, client, {"hello-1", "hello-2"})

            # Scale down: the first pod leaves the slice; traffic drains to the second. Traffic
            # alone cannot tell (a few requests can all pick the second of two endpoints by
            # chance): wait for the client Envoy to hold only the second.
            api.update(kube_slice({"hello-2": hello_2}))

            async def only_hello_2() -> bool | None:
                hosts = (await mesh.cluster_hosts(client)).get(HELLO_CLUSTER)
                return True if hosts == [hello_2] else None

            await eventually(only_hello_2, "the client Envoy holding only hello-2")
            await until_answered_by(mesh, client, {"hello-2"})
            assert await answered_by(mesh, client, 10) == Counter({"hello-2": 10})
            assert full_pushes(mesh) == full
            await mesh.stop_pilot()
