"""Mixer's own API over real gRPC: compressed Check and Report, quotas, mTLS, config from galley.

Mixer reads Istio 1.4's bookinfo samples unchanged (deny-label, the ratings rate limit) and the
standard telemetry config; clients speak istio.mixer.v1 with compressed attributes, as Istio's
Mixer clients did. Each test binds its own loopback block.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from citadel.ca import CertificateAuthority
from galley.server import Galley, GalleyOptions
from meshcore.identity import CONTROL_PLANE_HOST, SpiffeId
from mixer import compressed
from mixer.global_dictionary import WORDS
from mixer.server import Mixer, MixerOptions
from protos.mixer.v1 import mixer_pb2
from tests.integration.mesh import allocate_block, eventually
from tests.support.csr import make_csr, new_key, private_pem
from tests.support.shared import ISTIO_1_4

POLICY = ISTIO_1_4 / "samples" / "bookinfo" / "policy"
TELEMETRY = Path(__file__).resolve().parents[2] / "mixer" / "telemetry.yaml"
CHECK = "/istio.mixer.v1.Mixer/Check"
REPORT = "/istio.mixer.v1.Mixer/Report"


def request_attributes(app: str, version: str, **extra: Any) -> dict[str, Any]:
    """A request from bookinfo's app-version to ratings-v1."""
    return {
        "source.labels": {"app": app, "version": version},
        "source.workload.name": f"{app}-{version}",
        "destination.labels": {"app": "ratings", "version": "v1"},
        "destination.workload.name": "ratings-v1",
        "destination.service.host": "ratings.default.svc.cluster.local",
        "destination.service.name": "ratings",
        "destination.service.namespace": "default",
        "request.path": "/ratings/0",
        "context.protocol": "http",
        "context.reporter.kind": "inbound",
        **extra,
    }


class Client:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.check_call = channel.unary_unary(
            CHECK,
            request_serializer=mixer_pb2.CheckRequest.SerializeToString,
            response_deserializer=mixer_pb2.CheckResponse.FromString,
        )
        self.report_call = channel.unary_unary(
            REPORT,
            request_serializer=mixer_pb2.ReportRequest.SerializeToString,
            response_deserializer=mixer_pb2.ReportResponse.FromString,
        )

    async def check(
        self, attributes: dict[str, Any], quotas: dict[str, int] | None = None, dedup: str = ""
    ) -> mixer_pb2.CheckResponse:
        request = mixer_pb2.CheckRequest(
            attributes=compressed.encode(attributes), deduplication_id=dedup
        )
        for name, amount in (quotas or {}).items():
            request.quotas[name].amount = amount
        response: mixer_pb2.CheckResponse = await self.check_call(request, timeout=5)
        return response


async def no_tasks_left() -> None:
    """Every task has ended; grpc's own call tasks may take a few loop turns after stop()."""
    current = asyncio.current_task()
    leftover: list[asyncio.Task[object]] = []
    for _ in range(100):
        leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if not leftover:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"tasks left pending after mixer stopped: {leftover}")


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path / "ca")


@pytest.fixture
async def mixer(tmp_path: Path, ca: CertificateAuthority) -> AsyncIterator[Mixer]:
    config = tmp_path / "config"
    config.mkdir()
    for file in (
        POLICY / "mixer-rule-deny-label.yaml",
        POLICY / "mixer-rule-ratings-ratelimit.yaml",
        TELEMETRY,
    ):
        shutil.copy(file, config / file.name)
    host = f"{allocate_block()}.1"
    serving = ca.server_credentials(CONTROL_PLANE_HOST, host)
    options = MixerOptions(
        config_dir=config,
        host=host,
        port=0,
        mtls_port=0,
        tls_cert_chain=serving.chain_pem,
        tls_key=serving.key_pem,
        tls_roots=ca.root_pem,
        monitoring_port=0,
        telemetry_port=0,
    )
    async with Mixer(options) as running:
        yield running
    await no_tasks_left()


async def test_check_denies_by_rule_and_names_what_it_referenced(mixer: Mixer) -> None:
    async with grpc.aio.insecure_channel(mixer.address) as channel:
        client = Client(channel)
        denied = await client.check(request_attributes("reviews", "v3"))
        allowed = await client.check(request_attributes("reviews", "v2"))
        again = await client.check(request_attributes("reviews", "v3", **{"request.id": "2"}))
    assert (denied.precondition.status.code, denied.precondition.status.message) == (
        7,
        "Not allowed",
    )
    assert allowed.precondition.status.code == 0
    assert again.precondition.status.code == 7
    assert mixer.checks.cache.hits == 1  # the second v3 request differs only in request.id
    referenced = denied.precondition.referenced_attributes
    names = {
        (
            _word(referenced, match.name),
            _word(referenced, match.map_key) if match.map_key else None,
        )
        for match in referenced.attribute_matches
    }
    assert ("destination.labels", "app") in names
    assert ("source.labels", "version") in names
    assert denied.precondition.valid_use_count > 0
    assert denied.precondition.valid_duration.ToTimedelta().total_seconds() > 0


def _word(referenced: mixer_pb2.ReferencedAttributes, index: int) -> str:
    """A dictionary index resolved the way a client does."""
    return WORDS[index] if index >= 0 else referenced.words[-index - 1]


async def test_quota_through_the_api_is_deduplicated(mixer: Mixer) -> None:
    async with grpc.aio.insecure_channel(mixer.address) as channel:
        client = Client(channel)
        attributes = request_attributes("reviews", "v2")
        first = await client.check(attributes, {"requestcountquota": 1}, dedup="call-1")
        retry = await client.check(attributes, {"requestcountquota": 1}, dedup="call-1")
        second = await client.check(attributes, {"requestcountquota": 1}, dedup="call-2")
    assert first.quotas["requestcountquota"].granted_amount == 1
    assert retry.quotas["requestcountquota"].granted_amount == 1
    # ratings from reviews: one request a second (the sample's override).
    assert second.quotas["requestcountquota"].granted_amount == 0


async def test_report_becomes_istio_metrics_on_the_telemetry_port(mixer: Mixer) -> None:
    sets = [
        request_attributes("reviews", "v2", **{"response.code": 200}),
        request_attributes("reviews", "v2", **{"response.code": 200}),
        request_attributes("reviews", "v3", **{"response.code": 403}),
    ]
    async with grpc.aio.insecure_channel(mixer.address) as channel:
        await Client(channel).report_call(compressed.encode_report(sets), timeout=5)
    url = f"http://{mixer.options.host}:{mixer.telemetry.port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    ok = [line for line in text.splitlines() if line.startswith("istio_requests_total{")]
    assert any('response_code="200"' in line and line.endswith(" 2.0") for line in ok)
    assert any('response_code="403"' in line and line.endswith(" 1.0") for line in ok)


async def test_mutual_tls_port_needs_a_mesh_certificate(
    mixer: Mixer, ca: CertificateAuthority
) -> None:
    assert mixer.mtls_address is not None
    identity = SpiffeId("default", "ratings")
    key = new_key()
    chain = ca.sign(make_csr(key, identity.uri), identity)
    credentials = grpc.ssl_channel_credentials(ca.root_pem, private_pem(key), b"".join(chain))
    async with grpc.aio.secure_channel(mixer.mtls_address, credentials) as channel:
        response = await Client(channel).check(request_attributes("reviews", "v3"))
    assert response.precondition.status.code == 7
    anonymous = grpc.ssl_channel_credentials(ca.root_pem)
    async with grpc.aio.secure_channel(mixer.mtls_address, anonymous) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await Client(channel).check(request_attributes("reviews", "v3"))


async def test_config_from_galley_and_its_changes(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    shutil.copy(POLICY / "mixer-rule-deny-label.yaml", config / "deny.yaml")
    block = allocate_block()
    galley_options = GalleyOptions(
        config_dir=config, host=f"{block}.1", grpc_port=0, monitoring_port=0
    )
    async with Galley(galley_options) as galley:
        options = MixerOptions(
            galley=galley.address,
            host=f"{block}.2",
            port=0,
            monitoring_port=0,
            telemetry_port=0,
        )
        async with Mixer(options) as mixer, grpc.aio.insecure_channel(mixer.address) as channel:
            client = Client(channel)

            async def status() -> int | None:
                response = await client.check(request_attributes("reviews", "v3"))
                code = response.precondition.status.code
                return code if code == expected else None

            expected = 7
            await eventually(status, "mixer to enforce the rule from galley")
            (config / "deny.yaml").unlink()
            expected = 0
            await eventually(status, "mixer to drop the rule galley removed")
