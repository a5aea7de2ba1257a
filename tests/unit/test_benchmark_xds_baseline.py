"""The same-run baseline of the pilot load benchmark: a bare grpc.aio server and its clients,
and the same server on pilot's own HTTP/2 server (`xds_baseline_h2`).

Timings are never asserted (they are what the benchmark reports); what is checked is that a
push reaches every stream and is ACKed, and how two measured points become a cost per message
and per MiB.
"""

from __future__ import annotations

import contextlib

import pytest
from envoy.service.discovery.v3 import discovery_pb2

from benchmarks import xds_baseline, xds_baseline_h2
from benchmarks.xds_baseline import Baseline, MessageCost
from meshcore.xds import types
from tests.integration.mesh import allocate_block


def test_the_cost_is_the_line_through_the_small_and_the_large_push() -> None:
    cost = MessageCost.fit((0.001, 60.1), (0.5, 160.0))
    assert cost.per_mib_us == pytest.approx(99.9 / 0.499)
    assert cost.of(1, 0.001) == pytest.approx(60.1)
    assert cost.of(3, 1.0) == pytest.approx(3 * cost.per_message_us + cost.per_mib_us)


def test_two_points_of_one_size_fit_nothing() -> None:
    with pytest.raises(ValueError, match="larger"):
        MessageCost.fit((0.5, 100.0), (0.5, 120.0))


@pytest.mark.parametrize(
    "server", [xds_baseline.server_main, xds_baseline_h2.server_main], ids=["grpc.aio", "h2_server"]
)
def test_every_stream_is_pushed_to_and_acks(server: xds_baseline.ServerMain) -> None:
    host = f"{allocate_block()}.250"
    with contextlib.closing(Baseline(host, 7, processes=2, timeout=30, server=server)) as baseline:
        for count, size in ((1, xds_baseline.SMALL_BYTES), (3, 200_000)):
            wall_s, cpu_s = baseline.push(count, size)  # returns once all 7 x count are ACKed
            assert wall_s > 0 and cpu_s > 0


def test_the_response_is_an_eds_response_carrying_one_resource_of_the_size() -> None:
    parsed = discovery_pb2.DiscoveryResponse.FromString(xds_baseline.response(100_000))
    assert parsed.type_url == types.ENDPOINT
    assert [len(resource.value) for resource in parsed.resources] == [100_000]
