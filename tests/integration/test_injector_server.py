"""The sidecar injector over real HTTPS, as the API server calls it: AdmissionReview v1 bodies
built from bookinfo's Deployments, the certificate verified for the injector's Service name,
and the returned JSONPatch applied by an independent RFC 6902 applier to give exactly what
`meshctl kube-inject` gives offline."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import re
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from agent.injector import InjectionConfig
from agent.injector.server import InjectionWebhook
from meshctl.__main__ import main as meshctl
from tests.support.certs import ServerFiles, write_server_certificate
from tests.support.shared import ISTIO

BOOKINFO = ISTIO / "samples" / "bookinfo" / "platform" / "kube" / "bookinfo.yaml"
SERVICE_NAME = "istio-sidecar-injector.istio-system.svc"
ADMISSION = "admission.k8s.io/v1"
REPO = str(Path(__file__).resolve().parents[2])


def apply_json_patch(document: Any, patch: list[dict[str, Any]]) -> Any:
    """RFC 6902 add/remove/replace, written apart from the library the injector uses."""
    document = copy.deepcopy(document)
    for operation in patch:
        steps = [s.replace("~1", "/").replace("~0", "~") for s in operation["path"].split("/")[1:]]
        parent = document
        for step in steps[:-1]:
            parent = parent[int(step)] if isinstance(parent, list) else parent[step]
        last, op = steps[-1], operation["op"]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if op == "add":
                assert index <= len(parent), f"{operation['path']} is past the end"
                parent.insert(index, operation["value"])
            elif op == "remove":
                del parent[index]
            else:
                assert op == "replace", f"unexpected operation {op}"
                parent[index] = operation["value"]
        elif op == "add":
            parent[last] = operation["value"]
        else:
            assert last in parent, f"{op} of missing {operation['path']}"
            if op == "remove":
                del parent[last]
            else:
                assert op == "replace", f"unexpected operation {op}"
                parent[last] = operation["value"]
    return document


def bookinfo_deployments() -> list[dict[str, Any]]:
    return [
        doc
        for doc in yaml.safe_load_all(BOOKINFO.read_text())
        if doc and doc["kind"] == "Deployment"
    ]


def pod_of(deployment: dict[str, Any]) -> dict[str, Any]:
    """The pod a ReplicaSet of `deployment` asks the API server to create."""
    template = copy.deepcopy(deployment["spec"]["template"])
    name = deployment["metadata"]["name"]
    metadata = template["metadata"]
    metadata["labels"]["pod-template-hash"] = "5d7f8b9c6"
    metadata.update(
        generateName=f"{name}-5d7f8b9c6-",
        namespace="bookinfo",
        ownerReferences=[
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": f"{name}-5d7f8b9c6",
                "uid": "6a0c1f3e-0000-4000-8000-000000000001",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    )
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}


def review(pod: dict[str, Any], uid: str) -> dict[str, Any]:
    return {
        "apiVersion": ADMISSION,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "bookinfo",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


@pytest.fixture
def certificate(tmp_path: Path) -> ServerFiles:
    return write_server_certificate(tmp_path / "tls", SERVICE_NAME)


@pytest.fixture
async def webhook(certificate: ServerFiles) -> AsyncIterator[InjectionWebhook]:
    server = InjectionWebhook(
        InjectionConfig(), certificate.certificate, certificate.private_key, port=0
    )
    async with server:
        yield server


@pytest.fixture
async def client(certificate: ServerFiles) -> AsyncIterator[aiohttp.ClientSession]:
    trust = ssl.create_default_context(cafile=certificate.ca_certificate)
    connector = aiohttp.TCPConnector(ssl=trust)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


async def post(client: aiohttp.ClientSession, url: str, body: Any) -> dict[str, Any]:
    async with client.post(url, json=body, server_hostname=SERVICE_NAME) as answer:
        assert answer.status == 200
        assert answer.content_type == "application/json"
        decoded: dict[str, Any] = await answer.json()
        return decoded


def kube_inject(path: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """`meshctl kube-inject -f path`, parsed."""
    capsys.readouterr()
    assert meshctl(["kube-inject", "-f", str(path)]) == 0
    return list(yaml.safe_load_all(capsys.readouterr().out))


async def test_bookinfo_pods_are_patched_into_what_kube_inject_makes(
    webhook: InjectionWebhook,
    client: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    deployments = bookinfo_deployments()
    assert len(deployments) == 6
    pods = [pod_of(deployment) for deployment in deployments]
    manifest = tmp_path / "pods.yaml"
    manifest.write_text(yaml.safe_dump_all(pods))
    offline_pods = kube_inject(manifest, capsys)
    offline_templates = {
        doc["metadata"]["name"]: doc["spec"]["template"]
        for doc in kube_inject(BOOKINFO, capsys)
        if doc["kind"] == "Deployment"
    }

    for number, (deployment, pod, offline_pod) in enumerate(
        zip(deployments, pods, offline_pods, strict=True)
    ):
        uid = f"d1c0ffee-0000-4000-8000-{number:012d}"
        answer = await post(client, webhook.url, review(pod, uid))

        assert (answer["apiVersion"], answer["kind"]) == (ADMISSION, "AdmissionReview")
        response = answer["response"]
        assert (response["uid"], response["allowed"], response["patchType"]) == (
            uid,
            True,
            "JSONPatch",
        )
        patched = apply_json_patch(pod, json.loads(base64.b64decode(response["patch"])))
        assert patched == offline_pod

        # The Deployment injected offline differs only by the label the ReplicaSet adds.
        template = offline_templates[deployment["metadata"]["name"]]
        assert patched["metadata"]["annotations"] == template["metadata"]["annotations"]
        labels = dict(patched["metadata"]["labels"])
        assert labels.pop("pod-template-hash") == "5d7f8b9c6"
        assert labels == template["metadata"]["labels"]
        assert _without_label_flag(patched["spec"]) == _without_label_flag(template["spec"])


def _without_label_flag(spec: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    proxy = next(c for c in spec["containers"] if c["name"] == "istio-proxy")
    proxy["args"][proxy["args"].index("--labels") + 1] = "..."
    return spec


async def test_an_opted_out_pod_is_admitted_unchanged(
    webhook: InjectionWebhook, client: aiohttp.ClientSession
) -> None:
    pod = pod_of(bookinfo_deployments()[0])
    pod["metadata"]["annotations"] = {"sidecar.istio.io/inject": "false"}

    answer = await post(client, webhook.url, review(pod, "u-1"))

    assert answer["response"] == {"uid": "u-1", "allowed": True}


async def test_an_uninjectable_pod_is_admitted_with_a_warning(
    webhook: InjectionWebhook, client: aiohttp.ClientSession
) -> None:
    pod = pod_of(bookinfo_deployments()[0])
    pod["metadata"]["annotations"] = {"traffic.sidecar.istio.io/includeOutboundIPRanges": "x"}

    response = (await post(client, webhook.url, review(pod, "u-2")))["response"]

    assert response["allowed"] is True
    assert "patch" not in response
    assert "includeOutboundIPRanges" in response["warnings"][0]


async def test_a_malformed_review_is_a_bad_request(
    webhook: InjectionWebhook, client: aiohttp.ClientSession
) -> None:
    for body in (b"{not json", json.dumps({"kind": "AdmissionReview"}).encode()):
        async with client.post(webhook.url, data=body, server_hostname=SERVICE_NAME) as answer:
            assert answer.status == 400
            assert (await answer.text()).startswith("malformed AdmissionReview")


async def test_ready_answers_over_https(
    webhook: InjectionWebhook, client: aiohttp.ClientSession
) -> None:
    url = webhook.url.replace("/inject", "/ready")
    async with client.get(url, server_hostname=SERVICE_NAME) as answer:
        assert answer.status == 200


async def test_the_command_serves_until_sigterm(
    certificate: ServerFiles, client: aiohttp.ClientSession
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "agent.injector", "--port", "0", "--proxy-image", "img:9"),
        *("--tls-cert", str(certificate.certificate), "--tls-key", str(certificate.private_key)),
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    try:
        assert process.stderr is not None
        url = None
        while url is None:
            line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
            assert line, "the injector exited before serving"
            found = re.search(r"sidecar injector on (\S+) \(image img:9\)", line)
            url = found[1] if found else None

        answer = await post(client, url, review(pod_of(bookinfo_deployments()[0]), "u-3"))
        assert answer["response"]["patchType"] == "JSONPatch"
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
