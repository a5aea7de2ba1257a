"""Galley end to end: a directory in, validated resources out over xDS, pilot and Envoy fed."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from galley.client import ConfigClient
from galley.server import Galley, GalleyOptions
from meshconfig import Kind, Resource
from meshconfig.kinds import kind_by_id
from tests.integration.mesh import Mesh, allocate_block, service_entry, workload_entry
from tests.support.kube_fake import KubeFake
from tests.support.shared import BOOKINFO_NETWORKING
from tests.support.xds_client import until

BOOKINFO = BOOKINFO_NETWORKING
VIRTUAL_SERVICE = "networking.istio.io/VirtualService"
DESTINATION_RULE = "networking.istio.io/DestinationRule"


@pytest.fixture
async def galley(tmp_path: Path) -> AsyncIterator[Galley]:
    config = tmp_path / "config"
    config.mkdir()
    shutil.copy(BOOKINFO / "virtual-service-all-v1.yaml", config / "vs.yaml")
    shutil.copy(BOOKINFO / "destination-rule-all.yaml", config / "dr.yaml")
    options = GalleyOptions(config_dir=config, host=f"{allocate_block()}.250", grpc_port=0)
    async with Galley(options) as running:
        yield running


def kinds(*ids: str) -> list[Kind]:
    found = [kind_by_id(kind_id) for kind_id in ids]
    assert all(found), ids
    return [k for k in found if k is not None]


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_subscribers_get_every_accepted_change_and_never_an_invalid_one(
    galley: Galley, delta: bool
) -> None:
    current: dict[str, list[Resource]] = {}
    client = ConfigClient(
        galley.address,
        kinds(VIRTUAL_SERVICE, DESTINATION_RULE),
        lambda kind, resources: current.__setitem__(kind.id, resources),
        node_id="test~subscriber",
        delta=delta,
    )
    task = asyncio.create_task(client.run())
    try:
        await until(lambda: len(current.get(VIRTUAL_SERVICE, ())) == 4)
        names = {r.metadata.name for r in current[VIRTUAL_SERVICE]}
        assert names == {"productpage", "reviews", "ratings", "details"}
        assert len(current[DESTINATION_RULE]) == 4

        vs_file = galley.options.config_dir / "vs.yaml"  # type: ignore[operator]
        vs_file.write_text((BOOKINFO / "virtual-service-reviews-v3.yaml").read_text())
        await until(lambda: len(current.get(VIRTUAL_SERVICE, ())) == 1)
        [reviews] = current[VIRTUAL_SERVICE]
        assert reviews.spec_dict()["http"][0]["route"][0]["destination"]["subset"] == "v3"

        vs_file.write_text(vs_file.read_text().replace("subset: v3", "subset: [v3]"))
        await until(lambda: bool(galley.directory and galley.directory.errors))
        assert "spec.http[0].route[0].destination.subset" in next(
            iter(galley.directory.errors.values())  # type: ignore[union-attr]
        )
        url = f"http://{galley.options.host}:{galley.monitoring.port}/debug/errors"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert str(vs_file) in await response.text()
        [still] = current[VIRTUAL_SERVICE]
        assert still == reviews  # the last accepted content stays in force
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.envoy
async def test_pilot_fed_by_galley_configures_envoy(mesh: Mesh, tmp_path: Path) -> None:
    config = tmp_path / "galley"
    config.mkdir()
    hello_ip, client_ip = mesh.next_ip(), mesh.next_ip()
    (config / "hello.yaml").write_text(
        "---\n".join(
            [
                service_entry("hello", 8080),
                workload_entry("hello-v1", hello_ip, "hello"),
                workload_entry("client", client_ip, "client"),
            ]
        )
    )
    options = GalleyOptions(config_dir=config, host=f"{mesh.block}.250", grpc_port=0)
    async with Galley(options) as galley:
        await mesh.start_pilot(galley=galley.address)
        await mesh.add_sidecar("hello-v1", hello_ip, app_port=8080, labels={"app": "hello"})
        await mesh.add_sidecar("client", client_ip)
        await mesh.synced({"hello-v1", "client"})
        status, body = await mesh.get_via(
            mesh.sidecars["client"], "http://hello.default.svc.cluster.local:8080/"
        )
        assert status == 200 and body.startswith("hello from hello-v1")
        await mesh.stop_pilot()


async def test_galley_on_kubernetes_distributes_istio_resources(tmp_path: Path) -> None:
    """Istio's own CRDs installed in the API fake; a ServiceEntry created there reaches a client."""
    crds = yaml.safe_load_all((BOOKINFO.parents[2] / "crds" / "crd-all.gen.yaml").read_text())
    async with KubeFake(bookmark_interval=0.2) as api:
        for crd in crds:
            if crd and crd.get("spec", {}).get("group") == "networking.istio.io":
                api.create(crd)
        options = GalleyOptions(
            kubernetes=api.url, host=f"{allocate_block()}.250", grpc_port=0, monitoring_port=0
        )
        async with Galley(options) as galley:
            seen: dict[str, list[Resource]] = {}
            client = ConfigClient(
                galley.address,
                kinds("networking.istio.io/ServiceEntry"),
                lambda kind, resources: seen.__setitem__(kind.id, resources),
                node_id="test~k8s",
            )
            task = asyncio.create_task(client.run())
            try:
                api.create(
                    {
                        "apiVersion": "networking.istio.io/v1",
                        "kind": "ServiceEntry",
                        "metadata": {"name": "google", "namespace": "web"},
                        "spec": {
                            "hosts": ["www.google.com"],
                            "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}],
                            "resolution": "DNS",
                        },
                    }
                )
                await until(lambda: bool(seen.get("networking.istio.io/ServiceEntry")))
                [entry] = seen["networking.istio.io/ServiceEntry"]
                assert entry.metadata.namespace == "web" and entry.source == "kubernetes"
                api.delete("networking.istio.io/v1", "ServiceEntry", "google", "web")
                await until(lambda: seen["networking.istio.io/ServiceEntry"] == [])
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
