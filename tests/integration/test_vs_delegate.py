"""Delegate VirtualServices through real Envoy sidecars: the root VirtualService for `a` hands
`/api` to a delegate, which sends `/api/v2` to `b` and the rest of `/api` to `a`; a delegate
rule outside `/api` never applies. Runs for state-of-the-world and delta xDS."""

from __future__ import annotations

import json

import pytest

from tests.integration.mesh import Mesh, service_entry, workload_entry

pytestmark = pytest.mark.envoy

A = "http://a.default.svc.cluster.local:8080"
ROOT = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a]
  http:
  - match: [{uri: {prefix: /api}}]
    delegate: {name: a-api}
  - route: [{destination: {host: a}}]
"""
DELEGATE = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a-api, namespace: default}
spec:
  http:
  - match: [{uri: {prefix: /api/v2}}]
    route: [{destination: {host: b}}]
  - match: [{uri: {prefix: /elsewhere}}]
    route: [{destination: {host: b}}]
  - route: [{destination: {host: a}}]
"""


async def test_root_delegates_api_paths(mesh: Mesh) -> None:
    a_ip, b_ip, client_ip = mesh.next_ip(), mesh.next_ip(), mesh.next_ip()
    mesh.write(
        "mesh",
        service_entry("a", 8080),
        service_entry("b", 8080),
        workload_entry("a-v1", a_ip, "a"),
        workload_entry("b-v1", b_ip, "b"),
        workload_entry("client", client_ip, "client"),
        ROOT,
        DELEGATE,
    )
    await mesh.start_pilot()
    await mesh.add_sidecar("a-v1", a_ip, app_port=8080, labels={"app": "a"})
    await mesh.add_sidecar("b-v1", b_ip, app_port=8080, labels={"app": "b"})
    client = await mesh.add_sidecar("client", client_ip)
    await mesh.synced({"a-v1", "b-v1", "client"})

    expected = {
        "/api/v2/users": "b-v1",
        "/api/v2": "b-v1",
        "/api/v1/users": "a-v1",
        "/api": "a-v1",
        "/elsewhere": "a-v1",  # the delegate's /elsewhere rule lies outside /api: dropped
        "/": "a-v1",
    }
    for path, workload in expected.items():
        status, body = await mesh.get_via(client, A + path)
        assert status == 200, (path, body)
        answered = json.loads(body.splitlines()[1])
        assert (answered["workload"], answered["path"]) == (workload, path)
