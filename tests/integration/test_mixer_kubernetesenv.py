"""Attribute generation through Mixer's API: kubernetesenv fills the workload attributes from
the Pods and WorkloadEntries in Mixer's config directory, for Report (Istio's metrics) and
Check (a rule on source.labels) when the client sent only addresses."""

from __future__ import annotations

import ipaddress
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from mixer import compressed
from mixer.server import Mixer, MixerOptions
from tests.integration.mesh import allocate_block, eventually
from tests.integration.test_mixer_api import Client, no_tasks_left
from tests.support.shared import ISTIO_1_4

POLICY = ISTIO_1_4 / "samples" / "bookinfo" / "policy"
MIXER = Path(__file__).resolve().parents[2] / "mixer"

REVIEWS_IP, RATINGS_IP, DETAILS_IP = "10.1.0.3", "10.1.0.9", "10.2.0.7"


def registry(reviews_version: str = "v3") -> str:
    pods = [
        (f"reviews-{reviews_version}-5b9bd44f4-2xk7p", REVIEWS_IP, "reviews", reviews_version),
        ("ratings-v1-7dc98c7588-x2xxl", RATINGS_IP, "ratings", "v1"),
    ]
    documents: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": "default",
                "labels": {"app": app, "version": version, "pod-template-hash": name.split("-")[2]},
            },
            "spec": {
                "serviceAccountName": f"bookinfo-{app}",
                "containers": [{"name": app, "ports": [{"containerPort": 9080}]}],
            },
            "status": {"podIP": ip},
        }
        for name, ip, app, version in pods
    ]
    documents.append(
        {
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "WorkloadEntry",
            "metadata": {"name": "details-vm", "namespace": "vms"},
            "spec": {"address": DETAILS_IP, "labels": {"app": "details", "version": "v1"}},
        }
    )
    return "\n---\n".join(json.dumps(document) for document in documents)


@pytest.fixture
async def mixer(tmp_path: Path) -> AsyncIterator[Mixer]:
    config = tmp_path / "config"
    config.mkdir()
    for file in (
        POLICY / "mixer-rule-kubernetesenv-telemetry.yaml",
        POLICY / "mixer-rule-deny-label.yaml",
        MIXER / "telemetry.yaml",
        MIXER / "kubernetesenv.yaml",
    ):
        shutil.copy(file, config / file.name)
    (config / "registry.yaml").write_text(registry())
    options = MixerOptions(
        config_dir=config,
        host=f"{allocate_block()}.1",
        port=0,
        monitoring_port=0,
        telemetry_port=0,
    )
    async with Mixer(options) as running:
        yield running
    await no_tasks_left()


def addresses(source: str, destination: str, **extra: Any) -> dict[str, Any]:
    return {
        "source.ip": ipaddress.ip_address(source),
        "destination.ip": ipaddress.ip_address(destination),
        **extra,
    }


async def metrics(mixer: Mixer, name: str) -> list[str]:
    url = f"http://{mixer.options.host}:{mixer.telemetry.port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    return [line for line in text.splitlines() if line.startswith(name + "{")]


async def test_report_metrics_get_workloads_from_the_registry(mixer: Mixer) -> None:
    sets = [
        addresses(REVIEWS_IP, RATINGS_IP),
        addresses(REVIEWS_IP, RATINGS_IP, **{"context.protocol": "http"}),
        addresses(DETAILS_IP, "10.9.9.9", **{"context.protocol": "http"}),
    ]
    async with grpc.aio.insecure_channel(mixer.address) as channel:
        await Client(channel).report_call(compressed.encode_report(sets), timeout=5)
    requests = await metrics(mixer, "istio_requests_total")
    (pods,) = [line for line in requests if 'source_workload="reviews-v3"' in line]
    assert 'destination_workload="ratings-v1"' in pods
    assert 'source_workload_namespace="default"' in pods
    assert 'source_app="reviews"' in pods and 'destination_version="v1"' in pods
    assert pods.endswith(" 1.0")
    (vm,) = [line for line in requests if 'source_workload="details-vm"' in line]
    assert 'source_workload_namespace="vms"' in vm and 'destination_workload="unknown"' in vm
    # Istio's sample metric: the pod, its workload and owner, for every report (match: true).
    (sample,) = [
        line
        for line in await metrics(mixer, "istio_kube_request_count_total")
        if 'source_pod="reviews-v3-5b9bd44f4-2xk7p"' in line
    ]
    assert 'source_workload="reviews-v3"' in sample and sample.endswith(" 2.0")
    assert 'destination_container="ratings"' in sample
    owner = "kubernetes://apis/apps/v1/namespaces/default/deployments/reviews-v3"
    assert f'source_owner="{owner}"' in sample


async def test_check_matches_on_generated_labels(mixer: Mixer) -> None:
    request = addresses(
        REVIEWS_IP,
        RATINGS_IP,
        **{"destination.service.host": "ratings.default.svc.cluster.local"},
    )
    async with grpc.aio.insecure_channel(mixer.address) as channel:
        client = Client(channel)
        denied = await client.check(request)
        other = await client.check({**request, "source.ip": ipaddress.ip_address(DETAILS_IP)})
        assert (denied.precondition.status.code, other.precondition.status.code) == (7, 0)

        # The pod is relabelled: the next Check sees it (Mixer's verdict cache is emptied).
        config = mixer.options.config_dir
        assert config is not None
        (config / "registry.yaml").write_text(registry("v2"))

        async def allowed() -> bool | None:
            response = await client.check(request)
            return True if response.precondition.status.code == 0 else None

        await eventually(allowed, "the relabelled pod's requests allowed")
