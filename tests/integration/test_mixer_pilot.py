"""Mixer policy and telemetry configured by pilot: real sidecars, a real Mixer, Istio 1.4's rules.

Pilot's mesh config turns policy checks and telemetry reports on; it then gives each sidecar's
inbound HTTP listener Envoy's ext_authz (Mixer's Check) and gRPC access log (Mixer's Report),
and each client's HTTP proxy listener the `x-istio-attributes` header with its identity.
Mixer reads Istio 1.4's own bookinfo deny-label rule (from ../shared/istio-1.4, unchanged):
reviews v3 may not call ratings. Two clients labelled as reviews v2 and v3 call ratings.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.bootstrap import XdsApi
from mixer.server import Mixer, MixerOptions
from pilot.mesh_config import MeshConfig
from tests.integration.mesh import Mesh, eventually, service_entry, workload_entry
from tests.support.shared import ISTIO_1_4

pytestmark = pytest.mark.envoy

RATINGS = "http://ratings.default.svc.cluster.local:9080/ratings/0"
TELEMETRY = Path(__file__).resolve().parents[2] / "mixer" / "telemetry.yaml"
DENY_SERVICEACCOUNT = (
    ISTIO_1_4 / "samples" / "bookinfo" / "policy" / "mixer-rule-deny-serviceaccount.yaml"
)
DENY_LABEL = ISTIO_1_4 / "samples" / "bookinfo" / "policy" / "mixer-rule-deny-label.yaml"


@pytest.fixture
def xds_api() -> XdsApi:
    return XdsApi.GRPC


@pytest.fixture
async def policy_mesh(mesh: Mesh, tmp_path: Any) -> AsyncIterator[tuple[Mesh, Mixer]]:
    mixer_ip = f"{mesh.block}.250"
    rules = tmp_path / "mixer-config"
    rules.mkdir()
    shutil.copy(TELEMETRY, rules / TELEMETRY.name)  # Istio's standard metrics
    mixer = Mixer(
        MixerOptions(config_dir=rules, host=mixer_ip, monitoring_port=0, telemetry_port=42422)
    )
    await mixer.start()
    ratings_ip, v2_ip, v3_ip = mesh.next_ip(), mesh.next_ip(), mesh.next_ip()
    mesh.write(
        "registry",
        service_entry("ratings", 9080),
        workload_entry("ratings-v1", ratings_ip, "ratings"),
        workload_entry("reviews-v2", v2_ip, "reviews"),
        workload_entry("reviews-v3", v3_ip, "reviews"),
    )
    server = f"{mixer_ip}:9091"
    settings = MeshConfig(
        disable_policy_checks=False,
        mixer_check_server=server,
        mixer_report_server=server,
    )
    await mesh.start_pilot(mesh_config=settings)
    await asyncio.gather(
        mesh.add_sidecar(
            "ratings-v1", ratings_ip, app_port=9080, labels={"app": "ratings", "version": "v1"}
        ),
        mesh.add_sidecar("reviews-v2", v2_ip, labels={"app": "reviews", "version": "v2"}),
        mesh.add_sidecar("reviews-v3", v3_ip, labels={"app": "reviews", "version": "v3"}),
    )
    await mesh.synced({"ratings-v1", "reviews-v2", "reviews-v3"})
    try:
        yield mesh, mixer
    finally:
        await mixer.stop()


async def status_from(mesh: Mesh, caller: str) -> int:
    status, _ = await mesh.get_via(mesh.sidecars[caller], RATINGS)
    return status


async def test_deny_label_rule_denies_reviews_v3_only(policy_mesh: tuple[Mesh, Mixer]) -> None:
    mesh, mixer = policy_mesh
    assert await status_from(mesh, "reviews-v3") == 200  # no rule yet: Check says OK
    rules = mixer.options.config_dir
    assert rules is not None
    shutil.copy(DENY_LABEL, rules / DENY_LABEL.name)

    async def v3_denied() -> bool | None:
        return True if await status_from(mesh, "reviews-v3") == 403 else None

    await eventually(v3_denied, "Mixer's denier refusing reviews v3")
    assert await status_from(mesh, "reviews-v2") == 200
    stats = await mesh.stats(mesh.sidecars["ratings-v1"], r"ext_authz\.(ok|denied)$")
    assert stats["http.inbound_0.0.0.0_9080.ext_authz.denied"] >= 1
    assert stats["http.inbound_0.0.0.0_9080.ext_authz.ok"] >= 2
    assert await mesh.nack_errors() == {}

    # The ratings service exempt from policy checks: the same rule no longer applies to it.
    ratings = service_entry("ratings", 9080).replace(
        "metadata: {name: ratings, namespace: default}",
        "metadata: {name: ratings, namespace: default, "
        "annotations: {policy.pymesh.dev/check: disable}}",
    )
    assert ratings != service_entry("ratings", 9080)
    mesh.write(
        "registry",
        ratings,
        *(
            workload_entry(name, mesh.sidecars[name].ip, app)
            for name, app in (
                ("ratings-v1", "ratings"),
                ("reviews-v2", "reviews"),
                ("reviews-v3", "reviews"),
            )
        ),
    )

    async def v3_exempt() -> bool | None:
        return True if await status_from(mesh, "reviews-v3") == 200 else None

    await eventually(v3_exempt, "ratings exempt from Mixer's checks")
    assert await mesh.nack_errors() == {}


async def test_every_request_is_reported_to_mixer(policy_mesh: tuple[Mesh, Mixer]) -> None:
    mesh, mixer = policy_mesh
    for _ in range(5):
        assert await status_from(mesh, "reviews-v2") == 200
    url = f"http://{mixer.options.host}:42422/metrics"

    async def counted() -> str | None:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            text = await response.text()
        for line in text.splitlines():
            series = line.startswith("istio_requests_total{") and 'source_version="v2"' in line
            if series and float(line.rsplit(" ", 1)[1]) == 5:
                return line
        return None

    line = await eventually(counted, "five requests from reviews v2 in istio_requests_total")
    assert 'destination_service="ratings.default.svc.cluster.local"' in line
    assert 'response_code="200"' in line and 'reporter="destination"' in line


async def test_deny_serviceaccount_rule_uses_the_mtls_peer(mesh: Mesh, tmp_path: Path) -> None:
    """Istio 1.4's deny-serviceaccount sample, unchanged: productpage's service account may not
    call details. `source.user` comes only from the caller's mutual TLS certificate."""
    mixer_ip = f"{mesh.block}.250"
    rules = tmp_path / "mixer-config"
    rules.mkdir()
    shutil.copy(DENY_SERVICEACCOUNT, rules / DENY_SERVICEACCOUNT.name)
    mixer = Mixer(MixerOptions(config_dir=rules, host=mixer_ip, monitoring_port=0))
    await mixer.start()
    try:
        details_ip, productpage_ip, reviews_ip = mesh.next_ip(), mesh.next_ip(), mesh.next_ip()
        entries = [
            workload_entry(name, ip, app).replace(
                f"serviceAccount: {app}", f"serviceAccount: bookinfo-{app}"
            )
            for name, ip, app in (
                ("details-v1", details_ip, "details"),
                ("productpage-v1", productpage_ip, "productpage"),
                ("reviews-v1", reviews_ip, "reviews"),
            )
        ]
        mesh.write("registry", service_entry("details", 9080), *entries)
        server = f"{mixer_ip}:9091"
        await mesh.start_citadel()
        await mesh.start_pilot(
            mtls=True,
            mesh_config=MeshConfig(disable_policy_checks=False, mixer_check_server=server),
        )
        await asyncio.gather(
            mesh.add_sidecar(
                "details-v1",
                details_ip,
                app_port=9080,
                labels={"app": "details"},
                certificates=True,
                service_account="bookinfo-details",
            ),
            mesh.add_sidecar(
                "productpage-v1",
                productpage_ip,
                labels={"app": "productpage"},
                certificates=True,
                service_account="bookinfo-productpage",
            ),
            mesh.add_sidecar(
                "reviews-v1",
                reviews_ip,
                labels={"app": "reviews"},
                certificates=True,
                service_account="bookinfo-reviews",
            ),
        )
        await mesh.synced({"details-v1", "productpage-v1", "reviews-v1"})
        details = "http://details.default.svc.cluster.local:9080/"

        async def productpage_denied() -> bool | None:
            status, _ = await mesh.get_via(mesh.sidecars["productpage-v1"], details)
            return True if status == 403 else None

        await eventually(productpage_denied, "productpage's service account denied")
        status, _ = await mesh.get_via(mesh.sidecars["reviews-v1"], details)
        assert status == 200
        assert await mesh.nack_errors() == {}
    finally:
        await mixer.stop()
