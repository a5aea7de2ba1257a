"""Delta (incremental) xDS protocol rules."""

from __future__ import annotations

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from meshcore.xds import types
from meshcore.xds.delta import DeltaProtocol, subscribed_names
from meshcore.xds.status import StreamError, StreamInfo, SyncState
from tests.unit.meshcore.conftest import snapshot

SERVED = frozenset(types.PUSH_ORDER)


def request(
    type_url: str,
    subscribe=(),
    unsubscribe=(),
    nonce: str = "",
    initial: dict[str, str] | None = None,
    error: str | None = None,
):
    req = discovery_pb2.DeltaDiscoveryRequest(
        type_url=type_url,
        resource_names_subscribe=list(subscribe),
        resource_names_unsubscribe=list(unsubscribe),
        response_nonce=nonce,
        initial_resource_versions=initial or {},
    )
    if error is not None:
        req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return req


def decode(out) -> tuple[list[str], list[str]]:
    response = discovery_pb2.DeltaDiscoveryResponse.FromString(out.payload)
    return [r.name for r in response.resources], list(response.removed_resources)


@pytest.fixture
def proto(info: StreamInfo) -> DeltaProtocol:
    return DeltaProtocol(info, SERVED)


def test_wildcard_first_request_gets_everything_with_versions(proto: DeltaProtocol) -> None:
    proto.on_request(request(types.CLUSTER))
    snap = snapshot(cds=["a", "b"])
    [out] = proto.responses(snap)
    response = discovery_pb2.DeltaDiscoveryResponse.FromString(out.payload)
    assert {r.name: r.version for r in response.resources} == {
        n: r.version for n, r in snap.types[types.CLUSTER].resources.items()
    }
    assert response.system_version_info == snap.types[types.CLUSTER].version


def test_only_changes_are_sent_and_removals_are_named(proto: DeltaProtocol) -> None:
    proto.on_request(request(types.CLUSTER))
    [first] = proto.responses(snapshot(cds=["a", "b"]))
    proto.on_request(request(types.CLUSTER, nonce=first.nonce))
    [second] = proto.responses(snapshot(cds={"a": "v2", "c": "v1"}))
    assert decode(second) == (["a", "c"], ["b"])


def test_ack_is_never_answered(proto: DeltaProtocol) -> None:
    proto.on_request(request(types.CLUSTER))
    snap = snapshot(cds=["a"])
    [out] = proto.responses(snap)
    reply = proto.on_request(request(types.CLUSTER, nonce=out.nonce))
    assert reply is not None and not reply.is_nack
    assert proto.responses(snap) == []
    assert proto.info.status(types.CLUSTER).state is SyncState.SYNCED


def test_initial_resource_versions_skip_what_the_client_has(proto: DeltaProtocol) -> None:
    snap = snapshot(cds=["a", "b"])
    have = {"a": snap.types[types.CLUSTER].resources["a"].version, "gone": "x"}
    proto.on_request(request(types.CLUSTER, initial=have))
    [out] = proto.responses(snap)
    assert decode(out) == (["b"], ["gone"])


def test_reconnect_with_everything_current_still_gets_one_answer(proto: DeltaProtocol) -> None:
    snap = snapshot(cds=["a"])
    have = {"a": snap.types[types.CLUSTER].resources["a"].version}
    proto.on_request(request(types.CLUSTER, initial=have))
    [out] = proto.responses(snap)
    assert decode(out) == ([], [])
    assert proto.responses(snap) == []


def test_subscribe_and_unsubscribe_apply_even_with_a_stale_nonce(proto: DeltaProtocol) -> None:
    proto.on_request(request(types.ENDPOINT, ["a"]))
    [first] = proto.responses(snapshot(eds=["a", "b"]))
    proto.on_request(request(types.ENDPOINT, nonce=first.nonce))
    [second] = proto.responses(snapshot(eds={"a": "v2", "b": "v1"}))
    stale = request(types.ENDPOINT, ["b"], ["a"], nonce=first.nonce)
    assert proto.on_request(stale) is None  # the ACK part is ignored ...
    [third] = proto.responses(snapshot(eds={"a": "v2", "b": "v1"}))
    assert decode(third) == (["b"], [])  # ... the subscription change is not
    assert second.nonce != third.nonce


def test_unknown_subscribed_name_is_announced_removed_once(proto: DeltaProtocol) -> None:
    proto.on_request(request(types.ENDPOINT, ["missing"]))
    [out] = proto.responses(snapshot(eds=["a"]))
    assert decode(out) == ([], ["missing"])
    assert proto.responses(snapshot(eds=["a", "b"])) == []
    [later] = proto.responses(snapshot(eds=["a", "missing"]))
    assert decode(later) == (["missing"], [])


def test_nack_is_recorded_and_not_resent(proto: DeltaProtocol) -> None:
    proto.on_request(request(types.LISTENER))
    [good] = proto.responses(snapshot(lds=["l"]))
    proto.on_request(request(types.LISTENER, nonce=good.nonce))
    bad = snapshot(lds={"l": "bad"})
    [rejected] = proto.responses(bad)
    reply = proto.on_request(request(types.LISTENER, nonce=rejected.nonce, error="bad listener"))
    assert reply is not None and reply.error == "bad listener" and reply.version == good.version
    assert proto.info.status(types.LISTENER).state is SyncState.NACK
    assert proto.responses(bad) == []
    [fixed] = proto.responses(snapshot(lds={"l": "fixed"}))
    proto.on_request(request(types.LISTENER, nonce=fixed.nonce))
    assert proto.info.status(types.LISTENER).state is SyncState.SYNCED


def test_garbage_nonce_is_a_clear_error(proto: DeltaProtocol) -> None:
    proto.on_request(request(types.CLUSTER))
    proto.responses(snapshot(cds=["a"]))
    with pytest.raises(StreamError) as caught:
        proto.on_request(request(types.CLUSTER, nonce="7-ff"))
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT


def test_eds_resent_after_cds_change(proto: DeltaProtocol) -> None:
    proto.on_request(request(types.CLUSTER))
    proto.on_request(request(types.ENDPOINT, ["a"]))
    outs = proto.responses(snapshot(cds=["a"], eds=["a"]))
    assert [o.type_url for o in outs] == [types.CLUSTER, types.ENDPOINT]
    for out in outs:
        proto.on_request(request(out.type_url, nonce=out.nonce))
    again = proto.responses(snapshot(cds={"a": "v2"}, eds=["a"]))
    assert [o.type_url for o in again] == [types.CLUSTER, types.ENDPOINT]
    assert decode(again[1]) == (["a"], [])


def test_wildcard_can_be_dropped_for_named(proto: DeltaProtocol) -> None:
    proto.on_request(request(types.CLUSTER))
    [out] = proto.responses(snapshot(cds=["a", "b"]))
    proto.on_request(request(types.CLUSTER, ["a"], ["*"], nonce=out.nonce))
    assert proto.responses(snapshot(cds={"a": "v1", "b": "v2"})) == []
    [changed] = proto.responses(snapshot(cds={"a": "v3", "b": "v2"}))
    assert decode(changed) == (["a"], [])


_EDS_NAMES = [f"outbound|{9000 + i}||svc-{i}.ns-{i % 7}.svc.cluster.local" for i in range(300)]


def _as_sent(message: discovery_pb2.DeltaDiscoveryRequest) -> tuple[bytes, object]:
    message.node.id = "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local"
    payload = message.SerializeToString()
    return payload, discovery_pb2.DeltaDiscoveryRequest.FromString(payload)


@pytest.mark.parametrize(
    "message",
    [
        request(types.ENDPOINT, _EDS_NAMES),
        request(types.ENDPOINT, _EDS_NAMES, nonce="n" * 200),
        request(types.ENDPOINT, ["a", "*"], ["b"]),
        request(types.ENDPOINT, ["a"], initial={"a": "1"}),
        request(types.ENDPOINT, ["a"], nonce="3-1", error="rejected"),
        request(types.ENDPOINT, unsubscribe=["a"]),
    ],
    ids=["connect", "ack-with-long-nonce", "unsubscribes-too", "reconnect", "nack", "none"],
)
def test_subscribed_names_are_the_requests(message) -> None:
    payload, parsed = _as_sent(message)
    assert sorted(subscribed_names(payload, parsed)) == sorted(message.resource_names_subscribe)


def test_streams_subscribing_to_the_same_names_share_one_set() -> None:
    first = subscribed_names(*_as_sent(request(types.ENDPOINT, _EDS_NAMES)))
    second = subscribed_names(*_as_sent(request(types.ENDPOINT, _EDS_NAMES)))
    other = subscribed_names(*_as_sent(request(types.ENDPOINT, _EDS_NAMES[:-1])))
    assert first is second
    assert other is not first and len(other) == len(_EDS_NAMES) - 1


def test_fields_out_of_order_still_give_the_names() -> None:
    """The nonce written before the names: not one run, so the names are read one by one."""
    names = request(types.ENDPOINT, ["a", "b"]).SerializeToString()
    head = request(types.ENDPOINT, nonce="2-5").SerializeToString()
    payload = head + names
    parsed = discovery_pb2.DeltaDiscoveryRequest.FromString(payload)
    assert list(subscribed_names(payload, parsed)) == ["a", "b"]


def test_names_from_the_wire_drive_the_same_answers(proto: DeltaProtocol) -> None:
    payload, parsed = _as_sent(request(types.ENDPOINT, ["a", "c"]))
    proto.on_request(parsed, subscribed_names(payload, parsed))
    [out] = proto.responses(snapshot(eds=["a", "b"]))
    assert decode(out) == (["a"], ["c"])


def test_streams_editing_their_names_alike_go_on_sharing_one_set(info: StreamInfo) -> None:
    """A service added (and later removed) makes every delta stream subscribe to its EDS name
    (and unsubscribe): the streams keep one set between them instead of a copy each."""
    streams = [DeltaProtocol(info, SERVED) for _ in range(3)]
    for proto in streams:
        payload, parsed = _as_sent(request(types.ENDPOINT, _EDS_NAMES))
        proto.on_request(parsed, subscribed_names(payload, parsed))
    held = {id(proto._subs[types.ENDPOINT].names) for proto in streams}
    assert len(held) == 1
    for proto in streams:
        proto.on_request(request(types.ENDPOINT, ["added"]))
    grown = {id(proto._subs[types.ENDPOINT].names) for proto in streams}
    assert len(grown) == 1 and grown != held
    assert streams[0]._subs[types.ENDPOINT].names == {*_EDS_NAMES, "added"}
    for proto in streams[:2]:
        proto.on_request(request(types.ENDPOINT, unsubscribe=["added", _EDS_NAMES[0]]))
    assert streams[0]._subs[types.ENDPOINT].names is streams[1]._subs[types.ENDPOINT].names
    assert streams[0]._subs[types.ENDPOINT].names == set(_EDS_NAMES[1:])
    assert streams[2]._subs[types.ENDPOINT].names == {*_EDS_NAMES, "added"}


def test_unsubscribing_a_name_then_the_wildcard_forgets_that_the_client_held_it(
    proto: DeltaProtocol,
) -> None:
    """A reconnecting client that held a and b, subscribed to everything and to a by name,
    drops a, then the wildcard, in one request: it holds nothing wanted, so nothing is
    announced removed."""
    proto.on_request(request(types.CLUSTER, ["*", "a"], initial={"a": "1", "b": "1"}))
    proto.on_request(request(types.CLUSTER, unsubscribe=["a", "*"]))
    [out] = proto.responses(snapshot(cds=["a", "b"]))
    assert decode(out) == ([], [])
