"""The same-run baseline of the pilot load benchmark: a bare grpc.aio server and its clients,
and the same server on asyncio's transports (`xds_baseline_h2`).

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
    "server", [xds_baseline.server_main, xds_baseline_h2.server_main], ids=["grpc.aio", "asyncio"]
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


def test_the_asyncio_server_frames_a_response_in_the_clients_frame_size() -> None:
    """A response larger than the client's largest frame goes out in several DATA frames,
    whose payloads make up the gRPC-framed message."""
    written: list[bytes] = []

    class Transport:
        def write(self, data: bytes) -> None:
            written.append(data)

    connection = xds_baseline_h2._Connection(xds_baseline_h2.PushServer())
    connection._transport = Transport()  # type: ignore[assignment]
    connection._stream_id, connection._peer_frame = 1, 16_384
    connection.send(bytes(40_000))
    (data,) = written
    payloads, position = [], 0
    while position < len(data):
        length = int.from_bytes(data[position : position + 3], "big")
        assert data[position + 3] == 0 and int.from_bytes(data[position + 5 : position + 9]) == 1
        payloads.append(data[position + 9 : position + 9 + length])
        position += 9 + length
    assert [len(p) for p in payloads] == [16_384, 16_384, 40_005 - 2 * 16_384]
    assert b"".join(payloads) == b"\x00" + (40_000).to_bytes(4, "big") + bytes(40_000)


def test_the_asyncio_server_stops_rather_than_overrun_the_clients_window() -> None:
    connection = xds_baseline_h2._Connection(xds_baseline_h2.PushServer())
    connection._transport = object()  # type: ignore[assignment]  # never written to
    connection._send_window = 1000
    with pytest.raises(xds_baseline_h2.WindowClosed, match="1005 bytes to send, 1000 of window"):
        connection.send(bytes(1000))
