"""Ingress and egress gateways through real Envoy routers configured by pilot.

Each gateway is an Envoy started as a router (`router~<ip>~<pod>.<ns>~...`, labels in its node
metadata), which pilot gives the listeners and routes of the Gateways its labels select. The
tests send real traffic: Istio's bookinfo-gateway.yaml unchanged in front of a productpage
workload, an HTTPS SIMPLE server terminating TLS with a certificate the client trusts, and the
classic egress pattern (a sidecar's request for an external host sent through the egress
gateway, visible in the gateway's stats). Every test runs for state-of-the-world and delta xDS.
"""

from __future__ import annotations

import json
import ssl
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.bootstrap import ProxySpec, ProxyType
from localmesh.demo_app import DemoApp
from tests.integration.mesh import (
    Mesh,
    Sidecar,
    eventually,
    service_entry,
    workload_entry,
)
from tests.support.certs import write_server_certificate
from tests.support.shared import BOOKINFO_NETWORKING

pytestmark = pytest.mark.envoy

INGRESS = {"istio": "ingressgateway"}
EGRESS = {"istio": "egressgateway"}
BOOKINFO_PATHS = ("/productpage", "/static/x", "/login", "/logout", "/api/v1/products")
EGRESS_GATEWAY = "istio-egressgateway.istio-system.svc.cluster.local"
EXTERNAL = "external.example.com"
EXTERNAL_PORT = 8000


async def add_gateway(mesh: Mesh, name: str, ip: str, labels: dict[str, str]) -> Sidecar:
    """A router Envoy in istio-system; kept with the mesh's proxies so `mesh.close` stops it."""
    spec = ProxySpec(
        ip=ip,
        pod=name,
        namespace="istio-system",
        pilot=f"{mesh.pilot_ip}:15010",
        proxy_type=ProxyType.ROUTER,
        xds_api=mesh.xds_api,
        service_account=name,
        labels=labels,
    )
    return await mesh.start_proxy(name, spec)


async def _productpage_behind(mesh: Mesh, *documents: str) -> None:
    """productpage (9080) behind a sidecar, plus `documents`, with pilot running."""
    ip = mesh.next_ip()
    mesh.write(
        "mesh",
        service_entry("productpage", 9080),
        workload_entry("productpage-v1", ip, "productpage"),
        *documents,
    )
    await mesh.start_pilot()
    await mesh.add_sidecar("productpage-v1", ip, app_port=9080, labels={"app": "productpage"})


async def _answered_by(mesh: Mesh, url: str, **options: Any) -> tuple[int, dict[str, str]]:
    """(status, the demo app's JSON echo or {}) for one request."""
    async with mesh.http().get(url, allow_redirects=False, **options) as response:
        body = await response.text()
        lines = body.splitlines()
        echo = json.loads(lines[1]) if body.startswith("hello from") else {}
        return response.status, echo


async def _first_success(mesh: Mesh, url: str, **options: Any) -> dict[str, str]:
    """The first 200 answer, once the gateway and the backend have their config."""

    async def probe() -> dict[str, str] | None:
        status, echo = await _answered_by(mesh, url, **options)
        return echo if status == 200 else None

    return await eventually(probe, f"200 from {url}")


async def test_bookinfo_gateway_routes_productpage_paths(mesh: Mesh) -> None:
    await _productpage_behind(mesh, (BOOKINFO_NETWORKING / "bookinfo-gateway.yaml").read_text())
    gateway = await add_gateway(mesh, "istio-ingressgateway", mesh.next_ip(), INGRESS)
    await mesh.synced({"productpage-v1", "istio-ingressgateway"})
    base = f"http://{gateway.ip}:8080"
    assert (await _first_success(mesh, base + "/productpage"))["workload"] == "productpage-v1"
    for path in BOOKINFO_PATHS:
        status, echo = await _answered_by(mesh, base + path)
        assert (status, echo.get("path")) == (200, path)
    assert (await _answered_by(mesh, base + "/other"))[0] == 404
    dump = await mesh.admin_json(gateway, "/config_dump?resource=dynamic_listeners")
    (listener,) = [entry["active_state"]["listener"] for entry in dump["configs"]]
    assert listener["name"] == "0.0.0.0_8080"
    assert listener["address"]["socket_address"]["address"] == gateway.ip


async def test_https_simple_gateway_terminates_tls(mesh: Mesh, tmp_path: Path) -> None:
    host = "bookinfo.example.com"
    files = write_server_certificate(tmp_path / "certs", host)
    documents = textwrap.dedent(
        f"""\
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {{name: secure, namespace: default}}
        spec:
          selector: {{istio: ingressgateway}}
          servers:
          - port: {{number: 8443, name: https, protocol: HTTPS}}
            hosts: [{host}]
            tls:
              mode: SIMPLE
              serverCertificate: {files.certificate}
              privateKey: {files.private_key}
        ---
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: secure, namespace: default}}
        spec:
          hosts: [{host}]
          gateways: [secure]
          http:
          - route: [{{destination: {{host: productpage, port: {{number: 9080}}}}}}]
        """
    )
    await _productpage_behind(mesh, documents)
    gateway = await add_gateway(mesh, "istio-ingressgateway", mesh.next_ip(), INGRESS)
    await mesh.synced({"productpage-v1", "istio-ingressgateway"})
    trusting = ssl.create_default_context(cafile=str(files.ca_certificate))
    echo = await _first_success(
        mesh,
        f"https://{gateway.ip}:8443/productpage",
        ssl=trusting,
        server_hostname=host,
        headers={"Host": f"{host}:8443"},
    )
    assert echo["workload"] == "productpage-v1"
    assert echo["x-forwarded-proto"] == "https"
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await _answered_by(mesh, f"https://{gateway.ip}:8443/productpage", server_hostname=host)


async def test_egress_gateway_carries_requests_for_an_external_host(mesh: Mesh) -> None:
    client_ip, gateway_ip, external_ip = mesh.next_ip(), mesh.next_ip(), mesh.next_ip()
    external = DemoApp("external", external_ip, EXTERNAL_PORT)
    await external.start()
    try:
        mesh.write("egress", _egress_config(gateway_ip, external_ip))
        await mesh.start_pilot()
        client = await mesh.add_sidecar("client", client_ip)
        gateway = await add_gateway(mesh, "istio-egressgateway", gateway_ip, EGRESS)
        await mesh.synced({"client", "istio-egressgateway"})

        async def through_client() -> str | None:
            status, body = await mesh.get_via(client, f"http://{EXTERNAL}:{EXTERNAL_PORT}/x")
            return body if status == 200 else None

        assert (await eventually(through_client, "external answer")).startswith(
            "hello from external"
        )
        gateway_cluster = f"outbound|{EXTERNAL_PORT}||{EXTERNAL}"
        stats = await mesh.stats(gateway, rf"cluster\.{gateway_cluster}\.upstream_rq_200$")
        assert stats.get(f"cluster.{gateway_cluster}.upstream_rq_200", 0) >= 1
        via = f"outbound|{EXTERNAL_PORT}||{EGRESS_GATEWAY}"
        client_stats = await mesh.stats(client, rf"cluster\.{via}\.upstream_rq_200$")
        assert client_stats.get(f"cluster.{via}.upstream_rq_200", 0) >= 1
    finally:
        await external.stop()


def _egress_config(gateway_ip: str, external_ip: str) -> str:
    """Istio's egress gateway pattern for a host outside the mesh (here on loopback)."""
    port = EXTERNAL_PORT
    return textwrap.dedent(
        f"""\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: external, namespace: default}}
        spec:
          hosts: [{EXTERNAL}]
          location: MESH_EXTERNAL
          resolution: STATIC
          ports: [{{number: {port}, name: http, protocol: HTTP}}]
          endpoints: [{{address: {external_ip}}}]
        ---
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: istio-egressgateway, namespace: istio-system}}
        spec:
          hosts: [{EGRESS_GATEWAY}]
          location: MESH_INTERNAL
          resolution: STATIC
          ports: [{{number: {port}, name: http, protocol: HTTP}}]
          workloadSelector: {{labels: {{istio: egressgateway}}}}
        ---
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {{name: istio-egressgateway, namespace: istio-system}}
        spec:
          address: {gateway_ip}
          labels: {{istio: egressgateway}}
        ---
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {{name: istio-egressgateway, namespace: default}}
        spec:
          selector: {{istio: egressgateway}}
          servers:
          - port: {{number: {port}, name: http, protocol: HTTP}}
            hosts: [{EXTERNAL}]
        ---
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: external-through-egress, namespace: default}}
        spec:
          hosts: [{EXTERNAL}]
          gateways: [istio-egressgateway, mesh]
          http:
          - match: [{{gateways: [mesh], port: {port}}}]
            route: [{{destination: {{host: {EGRESS_GATEWAY}, port: {{number: {port}}}}}}}]
          - match: [{{gateways: [istio-egressgateway], port: {port}}}]
            route: [{{destination: {{host: {EXTERNAL}, port: {{number: {port}}}}}}}]
        """
    )
