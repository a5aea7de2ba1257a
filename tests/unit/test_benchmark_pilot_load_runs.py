"""The load generator's runs: resources recognised by their bytes give what parsing gives."""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from benchmarks.pilot_load_runs import MIN_SHARED, RunIndex, body_start

TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


def response(values: list[bytes], nonce: str = "1-1") -> bytes:
    """A response as pilot writes it: version, type and nonce first, then the resources."""
    envelope = discovery_pb2.DiscoveryResponse(version_info="v", type_url=TYPE, nonce=nonce)
    body = discovery_pb2.DiscoveryResponse(
        resources=[any_pb2.Any(type_url=TYPE, value=v) for v in values]
    )
    return envelope.SerializeToString() + body.SerializeToString()


def learn(index: RunIndex[bytes], payload: bytes) -> None:
    """What the load generator does after a full parse: the decoded records are the values."""
    parsed = discovery_pb2.DiscoveryResponse.FromString(payload)
    start = body_start(payload)
    assert start is not None
    decoded = [index_value(r.value) for r in parsed.resources]
    index.learn(payload, start, decoded)


_RECORDS: dict[bytes, bytes] = {}


def index_value(value: bytes) -> bytes:
    """One record object per distinct value, as the load generator's Library keeps them."""
    return _RECORDS.setdefault(value, value)


SHARED = [f"cluster-{i}".encode() * 3 for i in range(20)]


def test_body_starts_at_the_first_resource() -> None:
    payload = response(SHARED)
    start = body_start(payload)
    assert start is not None
    envelope = discovery_pb2.DiscoveryResponse.FromString(payload[:start])
    assert (envelope.version_info, envelope.nonce, list(envelope.resources)) == ("v", "1-1", [])
    assert body_start(response([])) == len(response([]))


def test_a_repeated_body_matches_whole_with_another_envelope() -> None:
    index: RunIndex[bytes] = RunIndex()
    learn(index, response(SHARED, nonce="1-1"))
    again = response(SHARED, nonce="9-42")
    start = body_start(again)
    assert start is not None
    run = index.match(again, start)
    assert run is not None
    assert start + len(run.encoded) == len(again)
    assert list(run.decoded) == SHARED


def test_bodies_sharing_their_leading_resources_leave_that_part_as_the_run() -> None:
    index: RunIndex[bytes] = RunIndex()
    learn(index, response([*SHARED, b"own-of-proxy-a"]))
    learn(index, response([*SHARED, b"own-of-proxy-b"]))
    third = response([*SHARED, b"own-of-proxy-c", b"and-more"], nonce="3-3")
    start = body_start(third)
    assert start is not None
    run = index.match(third, start)
    assert run is not None
    assert list(run.decoded) == SHARED
    rest = discovery_pb2.DiscoveryResponse.FromString(third[:start])
    rest.MergeFromString(third[start + len(run.encoded) :])
    assert rest.nonce == "3-3"
    assert [r.value for r in rest.resources] == [b"own-of-proxy-c", b"and-more"]


def test_short_shared_parts_and_other_bodies_do_not_match() -> None:
    index: RunIndex[bytes] = RunIndex()
    few = SHARED[: MIN_SHARED - 1]
    learn(index, response([*few, b"a"]))
    learn(index, response([*few, b"b"]))
    other = response([*few, b"c"])
    start = body_start(other)
    assert start is not None
    assert index.match(other, start) is None
    changed = response([b"changed", *SHARED[1:]])
    changed_start = body_start(changed)
    assert changed_start is not None
    assert index.match(changed, changed_start) is None


def test_a_body_with_other_fields_after_its_resources_is_not_learned() -> None:
    index: RunIndex[bytes] = RunIndex()
    trailing = response(SHARED) + discovery_pb2.DiscoveryResponse(nonce="x").SerializeToString()
    learn(index, trailing)
    start = body_start(trailing)
    assert start is not None
    assert index.match(trailing, start) is None
