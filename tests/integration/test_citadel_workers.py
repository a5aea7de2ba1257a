"""`citadel --workers N`: several processes answer CreateCertificate on the same ports, count
into one set of metrics, are restarted when they die and never outlive citadel."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from citadel.metrics import CitadelCounter
from citadel.server import Citadel, CitadelOptions
from meshcore.identity import (
    CONTROL_PLANE_HOST,
    SpiffeId,
    create_certificate_call,
)
from protos.citadel.v1 import ca_pb2
from tests.integration.mesh import eventually
from tests.support.csr import make_csr, new_key

REVIEWS = SpiffeId("default", "reviews")
CALLERS = 24


@pytest.fixture
async def citadel(tmp_path: Path) -> AsyncIterator[Citadel]:
    options = CitadelOptions(
        ca_dir=tmp_path / "ca", port=0, mtls_port=0, monitoring_port=0, workers=2
    )
    async with Citadel(options) as running:
        yield running


async def _certificates_from_separate_connections(citadel: Citadel, callers: int) -> list[str]:
    """One leaf per caller, each caller on a connection of its own (the kernel spreads
    connections, not calls, over the processes)."""
    credentials = grpc.ssl_channel_credentials(citadel.ca.root_pem)
    options = [
        ("grpc.ssl_target_name_override", CONTROL_PLANE_HOST),
        ("grpc.use_local_subchannel_pool", 1),
    ]
    metadata = (("authorization", f"Bearer {citadel.tokens.mint(REVIEWS)}"),)
    channels = [
        grpc.aio.secure_channel(citadel.address, credentials, options=options)
        for _ in range(callers)
    ]
    try:
        calls = [create_certificate_call(channel) for channel in channels]
        responses = await asyncio.gather(
            *(
                call(
                    ca_pb2.IstioCertificateRequest(csr=make_csr(new_key(), REVIEWS.uri).decode()),
                    metadata=metadata,
                    timeout=10,
                )
                for call in calls
            )
        )
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
    return [response.cert_chain[0] for response in responses]


async def test_every_process_signs_and_metrics_count_them_all(citadel: Citadel) -> None:
    assert len(citadel.worker_pids) == 1
    leaves = await _certificates_from_separate_connections(citadel, CALLERS)

    issuer = citadel.ca.signing_cert
    for pem in leaves:
        x509.load_pem_x509_certificate(pem.encode()).verify_directly_issued_by(issuer)
    per_process = citadel.metrics.counters.per_process(CitadelCounter.ISSUED)
    assert sum(per_process) == CALLERS
    assert all(count > 0 for count in per_process), per_process
    registry = citadel.metrics.registry
    assert registry.get_sample_value("citadel_server_success_cert_issuance_count_total") == CALLERS


async def test_a_dead_worker_is_started_again(citadel: Citadel) -> None:
    [dead] = citadel.worker_pids
    os.kill(dead, signal.SIGKILL)

    async def replaced() -> int | None:
        pids = citadel.worker_pids
        return pids[0] if pids and pids != [dead] else None

    restarted = await eventually(replaced, "a new worker", attempts=600, interval=0.1)
    await _certificates_from_separate_connections(citadel, CALLERS)
    per_process = citadel.metrics.counters.per_process(CitadelCounter.ISSUED)
    assert per_process[1] > 0, f"the restarted worker {restarted} served nothing: {per_process}"


async def test_workers_end_with_citadel(tmp_path: Path) -> None:
    options = CitadelOptions(
        ca_dir=tmp_path / "ca", port=0, mtls_port=0, monitoring_port=0, workers=3
    )
    async with Citadel(options) as running:
        pids = running.worker_pids
        assert len(pids) == 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
