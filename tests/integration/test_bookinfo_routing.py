"""Istio's bookinfo traffic-management samples, applied unchanged, observed through real Envoys.

Bookinfo's services (productpage, details, reviews v1/v2/v3, ratings) run as demo backends
behind sidecars; each answer names the workload that served it. A client sidecar sends the
requests. Each test applies bookinfo's DestinationRules and one of its VirtualService files from
../shared/istio (read there, never copied) and checks the behaviour the file promises.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter

import aiohttp
import pytest

from agent.bootstrap import XdsApi
from tests.integration.mesh import Mesh, eventually, service_entry, workload_entry
from tests.support.shared import BOOKINFO_NETWORKING

pytestmark = pytest.mark.envoy

WORKLOADS = {
    "productpage-v1": ("productpage", "v1"),
    "details-v1": ("details", "v1"),
    "details-v2": ("details", "v2"),
    "reviews-v1": ("reviews", "v1"),
    "reviews-v2": ("reviews", "v2"),
    "reviews-v3": ("reviews", "v3"),
    "ratings-v1": ("ratings", "v1"),
}


@pytest.fixture
def xds_api() -> XdsApi:
    return XdsApi.GRPC  # delta is covered by the pilot tests; this file is about routing


@pytest.fixture
async def bookinfo(mesh: Mesh) -> Mesh:
    """Bookinfo's registry, destination-rule-all.yaml, every workload and a client running."""
    ips = {name: mesh.next_ip() for name in [*WORKLOADS, "client"]}
    documents = [service_entry(app, 9080) for app in sorted({a for a, _ in WORKLOADS.values()})]
    for name, (app, version) in WORKLOADS.items():
        documents.append(
            workload_entry(name, ips[name], app).replace(
                f"labels: {{app: {app}}}", f"labels: {{app: {app}, version: {version}}}"
            )
        )
    documents.append(workload_entry("client", ips["client"], "client"))
    mesh.write("registry", *documents)
    mesh.write("destination-rules", (BOOKINFO_NETWORKING / "destination-rule-all.yaml").read_text())
    await mesh.start_pilot()
    await asyncio.gather(
        *(
            mesh.add_sidecar(
                name, ips[name], app_port=9080, labels={"app": app, "version": version}
            )
            for name, (app, version) in WORKLOADS.items()
        ),
        mesh.add_sidecar("client", ips["client"]),
    )
    await mesh.synced({*WORKLOADS, "client"})
    return mesh


def apply(mesh: Mesh, sample: str) -> None:
    mesh.write("virtual-service", (BOOKINFO_NETWORKING / sample).read_text())


async def ask(
    mesh: Mesh, service: str, headers: dict[str, str] | None = None, patience: float = 3
) -> tuple[int, str]:
    """One request from the client; the answering workload's name, or the status if not 200."""
    client = mesh.sidecars["client"]
    url = f"http://{service}.default.svc.cluster.local:9080/"
    async with mesh.http().get(
        url, proxy=client.http_proxy, headers=headers, timeout=aiohttp.ClientTimeout(total=patience)
    ) as response:
        body = await response.text()
        if response.status != 200:
            return response.status, ""
        return 200, json.loads(body.splitlines()[1])["workload"]


async def tally(mesh: Mesh, service: str, count: int, **headers: str) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(count):
        status, workload = await ask(mesh, service, headers or None)
        seen[workload if status == 200 else str(status)] += 1
    return seen


async def settled(mesh: Mesh, service: str, expected: set[str], **headers: str) -> None:
    """Wait until 20 requests in a row are answered only by `expected` workloads."""

    async def probe() -> bool | None:
        seen = await tally(mesh, service, 20, **headers)
        return True if set(seen) <= expected else None

    await eventually(probe, f"{service} answered only by {sorted(expected)}", attempts=100)


def within(observed: int, total: int, share: float) -> bool:
    """Binomial tolerance: within 4.5 standard deviations of the expected count."""
    mean = total * share
    return abs(observed - mean) <= 4.5 * math.sqrt(total * share * (1 - share)) + 1


async def test_all_v1(bookinfo: Mesh) -> None:
    apply(bookinfo, "virtual-service-all-v1.yaml")
    await settled(bookinfo, "reviews", {"reviews-v1"})
    assert await tally(bookinfo, "reviews", 50) == Counter({"reviews-v1": 50})
    assert await tally(bookinfo, "details", 20) == Counter({"details-v1": 20})
    assert await tally(bookinfo, "ratings", 20) == Counter({"ratings-v1": 20})


@pytest.mark.parametrize(
    ("sample", "shares"),
    [
        ("virtual-service-reviews-90-10.yaml", {"reviews-v1": 0.9, "reviews-v2": 0.1}),
        ("virtual-service-reviews-80-20.yaml", {"reviews-v1": 0.8, "reviews-v2": 0.2}),
        ("virtual-service-reviews-50-v3.yaml", {"reviews-v1": 0.5, "reviews-v3": 0.5}),
    ],
)
async def test_weighted_splits(bookinfo: Mesh, sample: str, shares: dict[str, float]) -> None:
    apply(bookinfo, sample)
    await settled(bookinfo, "reviews", set(shares))
    total = 400
    seen = await tally(bookinfo, "reviews", total)
    assert set(seen) <= set(shares), seen
    for workload, share in shares.items():
        assert within(seen[workload], total, share), (workload, seen)


async def test_jason_is_routed_to_v2(bookinfo: Mesh) -> None:
    apply(bookinfo, "virtual-service-reviews-test-v2.yaml")
    await settled(bookinfo, "reviews", {"reviews-v2"}, **{"end-user": "jason"})
    assert await tally(bookinfo, "reviews", 20, **{"end-user": "jason"}) == Counter(
        {"reviews-v2": 20}
    )
    assert await tally(bookinfo, "reviews", 20, **{"end-user": "someone"}) == Counter(
        {"reviews-v1": 20}
    )


async def test_ratings_delay_for_jason(bookinfo: Mesh) -> None:
    apply(bookinfo, "virtual-service-ratings-test-delay.yaml")
    await settled(bookinfo, "ratings", {"ratings-v1"})

    async def delayed() -> float | None:
        started = time.monotonic()
        status, _ = await ask(bookinfo, "ratings", {"end-user": "jason"}, patience=15)
        elapsed = time.monotonic() - started
        return elapsed if status == 200 and elapsed >= 6.5 else None

    assert await eventually(delayed, "a 7 s delay for jason", attempts=3) >= 6.5
    started = time.monotonic()
    assert (await ask(bookinfo, "ratings"))[0] == 200
    assert time.monotonic() - started < 2


async def test_ratings_abort_for_jason(bookinfo: Mesh) -> None:
    apply(bookinfo, "virtual-service-ratings-test-abort.yaml")

    async def aborted() -> bool | None:
        status, _ = await ask(bookinfo, "ratings", {"end-user": "jason"})
        return True if status == 500 else None

    await eventually(aborted, "HTTP 500 for jason")
    assert await tally(bookinfo, "ratings", 20, **{"end-user": "jason"}) == Counter({"500": 20})
    assert await tally(bookinfo, "ratings", 20) == Counter({"ratings-v1": 20})


async def test_details_v2(bookinfo: Mesh) -> None:
    apply(bookinfo, "virtual-service-details-v2.yaml")
    await settled(bookinfo, "details", {"details-v2"})
    assert await tally(bookinfo, "details", 30) == Counter({"details-v2": 30})


SOURCE_LABELS_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match:
    - sourceLabels: {app: client}
    route:
    - destination: {host: reviews, subset: v3}
  - route:
    - destination: {host: reviews, subset: v1}
"""


async def test_source_labels_pick_the_route_per_calling_workload(bookinfo: Mesh) -> None:
    bookinfo.write("virtual-service", SOURCE_LABELS_VS)
    await settled(bookinfo, "reviews", {"reviews-v3"})
    assert await tally(bookinfo, "reviews", 20) == Counter({"reviews-v3": 20})
    productpage = bookinfo.sidecars["productpage-v1"]
    url = "http://reviews.default.svc.cluster.local:9080/"
    for _ in range(10):
        status, body = await bookinfo.get_via(productpage, url)
        assert status == 200 and json.loads(body.splitlines()[1])["workload"] == "reviews-v1"
