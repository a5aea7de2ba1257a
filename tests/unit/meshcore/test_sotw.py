"""State-of-the-world protocol rules, one test per rule of Envoy's xDS document."""

from __future__ import annotations

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from meshcore.xds import types
from meshcore.xds.sotw import SotwProtocol, _names_key, wire_names
from meshcore.xds.status import StreamError, StreamInfo, SyncState
from tests.unit.meshcore.conftest import names_in, snapshot

SERVED = frozenset(types.PUSH_ORDER)


def request(type_url: str, names=(), nonce: str = "", version: str = "", error: str | None = None):
    req = discovery_pb2.DiscoveryRequest(
        type_url=type_url, resource_names=list(names), response_nonce=nonce, version_info=version
    )
    if error is not None:
        req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return req


def ack(out, names=()) -> discovery_pb2.DiscoveryRequest:
    """An ACK; like Envoy, it repeats the subscribed names (none for a wildcard type)."""
    return request(out.type_url, names, nonce=out.nonce, version=out.version)


@pytest.fixture
def proto(info: StreamInfo) -> SotwProtocol:
    return SotwProtocol(info, SERVED)


def test_first_request_is_answered_with_full_set(proto: SotwProtocol) -> None:
    proto.on_request(request(types.CLUSTER))
    [out] = proto.responses(snapshot(cds=["a", "b"]))
    assert out.type_url == types.CLUSTER
    assert sorted(names_in(out.payload)) == ["a", "b"]
    assert discovery_pb2.DiscoveryResponse.FromString(out.payload).nonce == out.nonce


def test_empty_wildcard_type_is_still_answered(proto: SotwProtocol) -> None:
    proto.on_request(request(types.LISTENER))
    [out] = proto.responses(snapshot())
    assert out.resource_count == 0


def test_every_response_has_a_fresh_nonce(proto: SotwProtocol) -> None:
    proto.on_request(request(types.CLUSTER))
    first = proto.responses(snapshot(cds=["a"]))[0]
    proto.on_request(ack(first))
    second = proto.responses(snapshot(cds=["a", "b"]))[0]
    assert first.nonce != second.nonce


def test_per_type_versions_are_independent(proto: SotwProtocol) -> None:
    proto.on_request(request(types.CLUSTER))
    proto.on_request(request(types.LISTENER))
    outs = proto.responses(snapshot(cds=["a"], lds=["l"]))
    for out in outs:
        proto.on_request(ack(out))
    [out] = proto.responses(snapshot(cds=["a"], lds={"l": "v2"}))
    assert out.type_url == types.LISTENER
    assert outs[0].version == snapshot(cds=["a"]).types[types.CLUSTER].version


def test_ack_is_never_answered(proto: SotwProtocol) -> None:
    proto.on_request(request(types.CLUSTER))
    snap = snapshot(cds=["a"])
    [out] = proto.responses(snap)
    reply = proto.on_request(ack(out))
    assert reply is not None and not reply.is_nack
    assert proto.responses(snap) == []
    assert proto.info.status(types.CLUSTER).state is SyncState.SYNCED


def test_nack_records_error_and_is_not_resent(proto: SotwProtocol) -> None:
    proto.on_request(request(types.CLUSTER))
    good = snapshot(cds=["a"])
    [first] = proto.responses(good)
    proto.on_request(ack(first))
    bad = snapshot(cds={"a": "bad"})
    [second] = proto.responses(bad)
    nack = request(types.CLUSTER, nonce=second.nonce, version=first.version, error="no way")
    reply = proto.on_request(nack)
    assert reply is not None and reply.error == "no way" and reply.version == first.version
    status = proto.info.status(types.CLUSTER)
    assert status.state is SyncState.NACK and status.nack_error == "no way"
    assert status.acked_version == first.version
    assert proto.responses(bad) == []  # the same bad version is not sent again
    [fixed] = proto.responses(snapshot(cds={"a": "fixed"}))
    proto.on_request(ack(fixed))
    assert status.state is SyncState.SYNCED and status.nack_error == ""


def test_stale_nonce_is_ignored_even_with_new_names(proto: SotwProtocol) -> None:
    proto.on_request(request(types.ENDPOINT, ["a"]))
    [first] = proto.responses(snapshot(eds=["a", "b"]))
    proto.on_request(request(types.ENDPOINT, ["a"], nonce=first.nonce, version=first.version))
    [second] = proto.responses(snapshot(eds={"a": "v2", "b": "v1"}))
    assert proto.on_request(request(types.ENDPOINT, ["a", "b"], nonce=first.nonce)) is None
    assert proto.responses(snapshot(eds={"a": "v2", "b": "v1"})) == []
    assert proto.info.status(types.ENDPOINT).state is SyncState.STALE
    assert second.nonce != first.nonce


def test_garbage_nonce_is_a_clear_error(proto: SotwProtocol) -> None:
    proto.on_request(request(types.CLUSTER))
    proto.responses(snapshot(cds=["a"]))
    with pytest.raises(StreamError) as caught:
        proto.on_request(request(types.CLUSTER, nonce="not-ours"))
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "never sent" in caught.value.message


def test_unknown_type_url_is_rejected(proto: SotwProtocol) -> None:
    with pytest.raises(StreamError) as caught:
        proto.on_request(request("type.googleapis.com/no.Such"))
    assert "unknown type URL" in caught.value.message


def test_per_type_service_refuses_other_types(info: StreamInfo) -> None:
    proto = SotwProtocol(info, SERVED, fixed_type=types.CLUSTER)
    with pytest.raises(StreamError):
        proto.on_request(request(types.LISTENER))
    proto.on_request(request(""))  # the service's own type may be left implicit
    assert proto.responses(snapshot(cds=["a"]))[0].type_url == types.CLUSTER


def test_legacy_empty_list_is_wildcard_only_for_lds_cds(proto: SotwProtocol) -> None:
    proto.on_request(request(types.ROUTE))
    assert proto.responses(snapshot(rds=["r"])) == []
    proto.on_request(request(types.LISTENER))
    assert names_in(proto.responses(snapshot(lds=["l1", "l2"], rds=["r"]))[0].payload) == [
        "l1",
        "l2",
    ]


def test_legacy_wildcard_ends_once_a_name_was_subscribed(proto: SotwProtocol) -> None:
    proto.on_request(request(types.CLUSTER, ["a"]))
    [out] = proto.responses(snapshot(cds=["a", "b"]))
    assert names_in(out.payload) == ["a"]
    proto.on_request(request(types.CLUSTER, [], nonce=out.nonce, version=out.version))
    [empty] = proto.responses(snapshot(cds=["a", "b"]))
    assert names_in(empty.payload) == []  # an empty list now unsubscribes, it is no wildcard


def test_explicit_star_is_wildcard_for_any_type(proto: SotwProtocol) -> None:
    proto.on_request(request(types.ROUTE, ["*"]))
    assert sorted(names_in(proto.responses(snapshot(rds=["x", "y"]))[0].payload)) == ["x", "y"]


def test_names_that_do_not_exist_yet_are_sent_when_they_appear(proto: SotwProtocol) -> None:
    proto.on_request(request(types.ROUTE, ["9080"]))
    assert proto.responses(snapshot(rds=["other"])) == []
    [out] = proto.responses(snapshot(rds=["other", "9080"]))
    assert names_in(out.payload) == ["9080"]


def test_named_types_may_be_partial(proto: SotwProtocol) -> None:
    proto.on_request(request(types.ENDPOINT, ["a"]))
    [out] = proto.responses(snapshot(eds=["a", "b", "c"]))
    assert names_in(out.payload) == ["a"]


def test_new_subscription_in_an_ack_is_answered(proto: SotwProtocol) -> None:
    proto.on_request(request(types.ENDPOINT, ["a"]))
    snap = snapshot(eds=["a", "b"])
    [out] = proto.responses(snap)
    proto.on_request(request(types.ENDPOINT, ["a", "b"], nonce=out.nonce, version=out.version))
    [grown] = proto.responses(snap)
    assert names_in(grown.payload) == ["b"]  # the client holds "a" at this version


def test_push_order_and_eds_after_every_cds_change(proto: SotwProtocol) -> None:
    for type_url in (types.ROUTE, types.LISTENER, types.ENDPOINT, types.CLUSTER):
        proto.on_request(request(type_url, ["r"] if type_url == types.ROUTE else ["a"]))
    outs = proto.responses(snapshot(cds=["a"], eds=["a"], lds=["a"], rds=["r"]))
    assert [o.type_url for o in outs] == [
        types.CLUSTER,
        types.ENDPOINT,
        types.LISTENER,
        types.ROUTE,
    ]
    for out in outs:
        names = ["r"] if out.type_url == types.ROUTE else ["a"]
        proto.on_request(request(out.type_url, names, nonce=out.nonce, version=out.version))
    # Only CDS changed, yet EDS goes out again right after it, unchanged.
    again = proto.responses(snapshot(cds={"a": "v2"}, eds=["a"], lds=["a"], rds=["r"]))
    assert [o.type_url for o in again] == [types.CLUSTER, types.ENDPOINT]
    assert again[1].version == outs[1].version


def test_reconnect_request_with_old_nonce_is_treated_as_initial(info: StreamInfo) -> None:
    proto = SotwProtocol(info, SERVED)
    proto.on_request(request(types.CLUSTER, nonce="1f-3", version="old"))
    assert len(proto.responses(snapshot(cds=["a"]))) == 1


def test_response_bytes_are_shared_between_streams(info: StreamInfo) -> None:
    snap = snapshot(cds=["a"])
    resource = snap.types[types.CLUSTER].resources["a"]
    one = SotwProtocol(info, SERVED)
    two = SotwProtocol(StreamInfo(stream_id=8, peer="p", delta=False), SERVED)
    for proto in (one, two):
        proto.on_request(request(types.CLUSTER))
        [out] = proto.responses(snap)
        assert out.payload.endswith(resource.sotw_field)
    assert resource.sotw_field is resource.sotw_field  # encoded once, cached


_MANY_NAMES = [f"outbound|{9000 + i}||svc-{i}.ns-{i % 7}.svc.cluster.local" for i in range(300)]


@pytest.mark.parametrize(
    "message",
    [
        request(types.ENDPOINT, _MANY_NAMES),
        request(types.ENDPOINT, _MANY_NAMES, nonce="3f-27", version="v" * 200),
        request(types.ENDPOINT, ["ünïcode", "x" * 300], nonce="n" * 150),
        request(types.ENDPOINT, ["a"], nonce="1-1", error="rejected"),
        request(types.ENDPOINT),
    ],
    ids=["first", "ack", "long-lengths", "nack", "no-names"],
)
def test_wire_names_are_the_encoded_names(message: discovery_pb2.DiscoveryRequest) -> None:
    message.node.id = "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local"
    payload = message.SerializeToString()
    assert wire_names(payload, message).key() == _names_key(message)


def test_wire_names_of_an_unusual_layout_are_re_encoded() -> None:
    """Fields written out of number order (the nonce before the names) still give the key."""
    names = request(types.ENDPOINT, ["a", "b"]).SerializeToString()
    tail = request(types.ENDPOINT, nonce="2-5").SerializeToString()
    payload = tail + names
    message = discovery_pb2.DiscoveryRequest.FromString(payload)
    assert list(message.resource_names) == ["a", "b"]
    assert wire_names(payload, message).key() == _names_key(message)


def test_names_from_the_wire_drive_the_same_answers(proto: SotwProtocol) -> None:
    first = request(types.ENDPOINT, ["a"])
    proto.on_request(first, wire_names(first.SerializeToString(), first))
    snap = snapshot(eds=["a", "b"])
    [out] = proto.responses(snap)
    same = request(types.ENDPOINT, ["a"], nonce=out.nonce, version=out.version)
    proto.on_request(same, wire_names(same.SerializeToString(), same))
    assert proto.responses(snap) == []
    grown = request(types.ENDPOINT, ["a", "b"], nonce=out.nonce, version=out.version)
    proto.on_request(grown, wire_names(grown.SerializeToString(), grown))
    [again] = proto.responses(snap)
    assert names_in(again.payload) == ["b"]


def _acked_stream(proto: SotwProtocol, names: list[str]):
    """A stream that asked for EDS `names` and was answered: (the response, its snapshot)."""
    first = request(types.ENDPOINT, names)
    proto.on_request(first, wire_names(first.SerializeToString(), first))
    snap = snapshot(eds=["a", "b", "c"])
    [out] = proto.responses(snap)
    return out, snap


def test_a_plain_ack_is_recognised_from_its_bytes(proto: SotwProtocol, info: StreamInfo) -> None:
    out, snap = _acked_stream(proto, ["a", "b"])
    ack_request = request(types.ENDPOINT, ["a", "b"], nonce=out.nonce, version=out.version)
    ack_request.node.id = "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local"  # Envoy may repeat it
    reply = proto.plain_ack(ack_request.SerializeToString())
    assert reply is not None
    assert (reply.type_url, reply.version, reply.is_nack) == (types.ENDPOINT, out.version, False)
    status = info.status(types.ENDPOINT)
    assert (status.acked_version, status.acked_nonce) == (out.version, out.nonce)
    assert proto.responses(snap) == []


@pytest.mark.parametrize(
    "change",
    ["names", "fewer names", "stale nonce", "nack", "other type"],
)
def test_anything_more_than_a_plain_ack_is_left_to_parsing(
    proto: SotwProtocol, change: str
) -> None:
    out, _ = _acked_stream(proto, ["a", "b"])
    names, nonce, error, type_url = ["a", "b"], out.nonce, None, types.ENDPOINT
    if change == "names":
        names = ["a", "b", "c"]
    elif change == "fewer names":
        names = ["a"]
    elif change == "stale nonce":
        nonce = "1-0"
    elif change == "nack":
        error = "rejected"
    else:
        type_url = types.CLUSTER
    message = request(type_url, names, nonce=nonce, version=out.version, error=error)
    assert proto.plain_ack(message.SerializeToString()) is None
