"""Gateway credentials from Kubernetes Secrets, served by pilot over SDS to a real Envoy router.

A Gateway's HTTPS SIMPLE server names `credentialName: my-cert`; the Secret is a YAML file in
pilot's config directory, in the gateway's namespace. The gateway must terminate TLS with that
certificate (the client trusts the test CA and reads the served subject) in front of a backend
behind a sidecar; replacing the Secret must make new connections see the new certificate with
the same Envoy process, and a broken replacement must leave the last good certificate in place
without a NACK. Runs for state-of-the-world and delta xDS.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import textwrap
from pathlib import Path
from typing import Any

import pytest

from agent.bootstrap import XdsApi
from meshcore.xds import types
from tests.integration.mesh import Mesh, eventually, service_entry, workload_entry
from tests.integration.test_gateways import INGRESS, add_gateway
from tests.support.certs import ServerFiles, write_server_certificate

pytestmark = pytest.mark.envoy

HOST = "bookinfo.example.com"
RENEWED = "renewed.example.com"
SECRET_NAME = "kubernetes://my-cert"
ALL_TYPES = ("cds", "eds", "lds", "rds", "sds")
GATEWAY = textwrap.dedent(
    f"""\
    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {{name: secure, namespace: default}}
    spec:
      selector: {{istio: ingressgateway}}
      servers:
      - port: {{number: 8443, name: https, protocol: HTTPS}}
        hosts: [{HOST}]
        tls: {{mode: SIMPLE, credentialName: my-cert}}
    ---
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: secure, namespace: default}}
    spec:
      hosts: [{HOST}]
      gateways: [secure]
      http:
      - route: [{{destination: {{host: productpage, port: {{number: 9080}}}}}}]
    """
)


def tls_secret(certificate: bytes, key: bytes) -> str:
    """A kubernetes.io/tls Secret `my-cert` in istio-system, the gateway's namespace."""
    data = {"tls.crt": certificate, "tls.key": key}
    encoded = "\n".join(f"  {k}: {base64.b64encode(v).decode()}" for k, v in data.items())
    return (
        "apiVersion: v1\nkind: Secret\n"
        "metadata: {name: my-cert, namespace: istio-system}\n"
        f"type: kubernetes.io/tls\ndata:\n{encoded}\n"
    )


def secret_of(files: ServerFiles) -> str:
    return tls_secret(files.certificate.read_bytes(), files.private_key.read_bytes())


async def served_subject(ip: str, files: ServerFiles) -> str:
    """The common name of the certificate the gateway presents to a client trusting `files`'
    CA (an ssl.SSLError, an OSError, if it presents another)."""
    context = ssl.create_default_context(cafile=str(files.ca_certificate))
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(ip, 8443, ssl=context, server_hostname=HOST), timeout=3
    )
    try:
        certificate: dict[str, Any] = writer.get_extra_info("peercert")
        return dict(pair[0] for pair in certificate["subject"])["commonName"]
    finally:
        writer.close()
        await writer.wait_closed()


async def test_gateway_serves_and_rotates_the_secrets_certificate(
    mesh: Mesh, tmp_path: Path
) -> None:
    first = write_server_certificate(tmp_path / "first", HOST)
    renewed = write_server_certificate(tmp_path / "renewed", RENEWED, HOST)
    backend_ip = mesh.next_ip()
    mesh.write(
        "mesh",
        service_entry("productpage", 9080),
        workload_entry("productpage-v1", backend_ip, "productpage"),
        GATEWAY,
    )
    mesh.write("secret", secret_of(first))
    await mesh.start_pilot()
    await mesh.add_sidecar("productpage-v1", backend_ip, app_port=9080)
    gateway = await add_gateway(mesh, "istio-ingressgateway", mesh.next_ip(), INGRESS)
    await mesh.synced({"productpage-v1"})
    await mesh.synced({"istio-ingressgateway"}, ALL_TYPES)
    pid = gateway.envoy.pid

    async def first_subject() -> str | None:
        return await served_subject(gateway.ip, first)

    assert await eventually(first_subject, "the first certificate") == HOST
    trusting = ssl.create_default_context(cafile=str(first.ca_certificate))
    url = f"https://{gateway.ip}:8443/productpage"
    async with mesh.http().get(
        url, ssl=trusting, server_hostname=HOST, headers={"Host": f"{HOST}:8443"}
    ) as response:
        assert response.status == 200
        assert (await response.text()).startswith("hello from productpage-v1")
    dump = await mesh.admin_json(gateway, "/config_dump?resource=dynamic_active_secrets")
    assert [entry["name"] for entry in dump["configs"]] == [SECRET_NAME]

    mesh.write("secret", secret_of(renewed))

    async def renewed_subject() -> str | None:
        subject = await served_subject(gateway.ip, renewed)
        return subject if subject == RENEWED else None

    assert await eventually(renewed_subject, "the renewed certificate") == RENEWED
    with pytest.raises(ssl.SSLCertVerificationError):
        await served_subject(gateway.ip, first)
    assert gateway.envoy.pid == pid

    # A broken replacement is left out: Envoy keeps the renewed certificate and NACKs nothing.
    mesh.write("secret", tls_secret(b"not a certificate", renewed.private_key.read_bytes()))
    version = await eventually(lambda: _dropped(mesh), "pilot to leave the broken Secret out")

    async def answered() -> dict[str, Any] | None:
        """The gateway's syncz entry once Envoy has answered everything pilot sent since: delta
        sends the Secret's removal (which Envoy ignores), state of the world sends nothing."""
        (entry,) = [e for e in await mesh.syncz() if e["proxy"].startswith("istio-ingressgateway")]
        removal_sent = (
            mesh.xds_api is not XdsApi.DELTA_GRPC or entry["sds"]["sent_version"] == version
        )
        settled = all(entry[t]["state"] in ("SYNCED", "NACK") for t in ALL_TYPES)
        return entry if removal_sent and settled else None

    entry = await eventually(answered, "the gateway to answer pilot's last push")
    assert not any(entry[t]["nack_error"] for t in ALL_TYPES)
    assert not any((await mesh.stats(gateway, r"update_rejected$")).values())
    assert await served_subject(gateway.ip, renewed) == RENEWED
    assert gateway.envoy.pid == pid


async def _dropped(mesh: Mesh) -> str | None:
    """The gateway's SDS version in pilot once it no longer holds `my-cert`."""
    assert mesh.pilot is not None
    cache = mesh.pilot.discovery.cache
    for key in cache.node_keys():
        snapshot = cache.get(key)
        if key.startswith("router~") and snapshot is not None:
            secrets = snapshot.types[types.SECRET]
            return None if SECRET_NAME in secrets.resources else secrets.version
    return None
