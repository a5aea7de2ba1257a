"""Partial pushes: what a version change sends, EDS after CDS, unsubscribes, ACKs as bytes.

State of the world may send only the changed resources for EDS and RDS (Envoy keeps the ones
a response leaves out), never for CDS and LDS (a missing resource is deleted); delta sends only
changes for every type. Each test drives one protocol object, no I/O, and asserts on the
responses themselves: type URL, resource names, version, nonce.
"""

from __future__ import annotations

import pytest
from envoy.service.discovery.v3 import discovery_pb2

from meshcore.xds import types
from meshcore.xds.delta import DeltaProtocol
from meshcore.xds.protocol import Outgoing
from meshcore.xds.resource import Snapshot
from meshcore.xds.sotw import SotwProtocol
from meshcore.xds.status import StreamInfo, SyncState
from tests.unit.meshcore.conftest import names_in, snapshot

SERVED = frozenset(types.PUSH_ORDER)
SHORT = {types.CLUSTER: "cds", types.ENDPOINT: "eds", types.LISTENER: "lds", types.ROUTE: "rds"}


def sotw_request(type_url: str, names=(), nonce: str = "", version: str = ""):
    return discovery_pb2.DiscoveryRequest(
        type_url=type_url, resource_names=list(names), response_nonce=nonce, version_info=version
    )


def sotw_ack(out: Outgoing, names=()) -> discovery_pb2.DiscoveryRequest:
    """An ACK repeating the subscribed names, as Envoy sends it."""
    return sotw_request(out.type_url, names, nonce=out.nonce, version=out.version)


def delta_request(type_url: str, subscribe=(), unsubscribe=(), nonce: str = ""):
    return discovery_pb2.DeltaDiscoveryRequest(
        type_url=type_url,
        resource_names_subscribe=list(subscribe),
        resource_names_unsubscribe=list(unsubscribe),
        response_nonce=nonce,
    )


def decoded(out: Outgoing) -> discovery_pb2.DiscoveryResponse:
    response = discovery_pb2.DiscoveryResponse.FromString(out.payload)
    # The envelope agrees with what the transport is told.
    assert (response.type_url, response.version_info, response.nonce) == (
        out.type_url,
        out.version,
        out.nonce,
    )
    assert len(response.resources) == out.resource_count
    return response


def delta_decoded(out: Outgoing) -> tuple[list[str], list[str]]:
    response = discovery_pb2.DeltaDiscoveryResponse.FromString(out.payload)
    assert (response.type_url, response.system_version_info, response.nonce) == (
        out.type_url,
        out.version,
        out.nonce,
    )
    assert len(response.resources) == out.resource_count
    return [r.name for r in response.resources], list(response.removed_resources)


def version_of(snap: Snapshot, type_url: str) -> str:
    return snap.types[type_url].version


@pytest.fixture
def sotw(info: StreamInfo) -> SotwProtocol:
    return SotwProtocol(info, SERVED)


@pytest.fixture
def delta() -> DeltaProtocol:
    return DeltaProtocol(StreamInfo(stream_id=9, peer="p", delta=True, node_id="n"), SERVED)


def subscribed_and_acked(proto: SotwProtocol, type_url: str, names, snap: Snapshot) -> Outgoing:
    """Subscribe `names`, take the first response, ACK it repeating the names."""
    proto.on_request(sotw_request(type_url, names))
    [first] = proto.responses(snap)
    proto.on_request(sotw_ack(first, names))
    return first


# State of the world: a version change


@pytest.mark.parametrize("type_url", [types.ENDPOINT, types.ROUTE])
def test_sotw_partial_types_send_only_the_changed_resources(
    sotw: SotwProtocol, type_url: str
) -> None:
    key = SHORT[type_url]
    names = ["a", "b", "c"]
    first = subscribed_and_acked(sotw, type_url, names, snapshot(**{key: names}))
    assert sorted(names_in(first.payload)) == ["a", "b", "c"]
    changed = snapshot(**{key: {"a": "v1", "b": "v2", "c": "v1"}})
    [out] = sotw.responses(changed)
    assert out.type_url == type_url
    assert names_in(out.payload) == ["b"]
    assert out.version == version_of(changed, type_url) != first.version
    assert out.nonce != first.nonce
    decoded(out)
    assert sotw.info.status(type_url).sent_version == out.version


@pytest.mark.parametrize("type_url", [types.ENDPOINT, types.ROUTE])
def test_sotw_partial_push_carries_several_changes_in_name_order(
    sotw: SotwProtocol, type_url: str
) -> None:
    key = SHORT[type_url]
    subscribed_and_acked(sotw, type_url, ["c", "a", "b"], snapshot(**{key: ["a", "b", "c"]}))
    [out] = sotw.responses(snapshot(**{key: {"a": "v2", "b": "v1", "c": "v2"}}))
    assert names_in(out.payload) == ["a", "c"]


def test_sotw_partial_push_is_measured_from_the_last_one_sent(sotw: SotwProtocol) -> None:
    first = subscribed_and_acked(sotw, types.ENDPOINT, ["a", "b"], snapshot(eds=["a", "b"]))
    [second] = sotw.responses(snapshot(eds={"a": "v2", "b": "v1"}))
    sotw.on_request(sotw_ack(second, ["a", "b"]))
    [third] = sotw.responses(snapshot(eds={"a": "v2", "b": "v2"}))
    assert names_in(third.payload) == ["b"]  # a was already sent at v2
    assert len({first.nonce, second.nonce, third.nonce}) == 3


def test_sotw_change_outside_the_subscription_sends_nothing(sotw: SotwProtocol) -> None:
    subscribed_and_acked(sotw, types.ENDPOINT, ["a"], snapshot(eds=["a", "b"]))
    assert sotw.responses(snapshot(eds={"a": "v1", "b": "v2"})) == []
    assert sotw.responses(snapshot(eds={"a": "v1", "b": "v2", "c": "v1"})) == []
    [out] = sotw.responses(snapshot(eds={"a": "v3", "b": "v2", "c": "v1"}))
    assert names_in(out.payload) == ["a"]


def test_sotw_named_resource_appearing_later_is_sent_alone(sotw: SotwProtocol) -> None:
    subscribed_and_acked(sotw, types.ROUTE, ["80", "9080"], snapshot(rds=["80"]))
    [out] = sotw.responses(snapshot(rds=["80", "9080"]))
    assert names_in(out.payload) == ["9080"]


@pytest.mark.parametrize("type_url", [types.CLUSTER, types.LISTENER])
@pytest.mark.parametrize("names", [[], ["a", "b", "c"]], ids=["wildcard", "named"])
def test_sotw_full_state_types_send_the_whole_set(
    sotw: SotwProtocol, type_url: str, names: list[str]
) -> None:
    key = SHORT[type_url]
    first = subscribed_and_acked(sotw, type_url, names, snapshot(**{key: ["a", "b", "c"]}))
    changed = snapshot(**{key: {"a": "v1", "b": "v2", "c": "v1"}})
    [out] = sotw.responses(changed)
    assert out.type_url == type_url
    assert sorted(names_in(out.payload)) == ["a", "b", "c"]
    assert out.version == version_of(changed, type_url) != first.version
    assert out.nonce != first.nonce
    decoded(out)


def test_sotw_explicit_wildcard_on_a_partial_type_sends_the_whole_set(sotw: SotwProtocol) -> None:
    subscribed_and_acked(sotw, types.ENDPOINT, ["*"], snapshot(eds=["a", "b"]))
    [out] = sotw.responses(snapshot(eds={"a": "v1", "b": "v2"}))
    assert sorted(names_in(out.payload)) == ["a", "b"]


@pytest.mark.parametrize("type_url", [types.ENDPOINT, types.ROUTE])
def test_sotw_new_name_gets_only_what_the_client_lacks(sotw: SotwProtocol, type_url: str) -> None:
    snap = snapshot(**{SHORT[type_url]: ["a", "b", "c"]})
    first = subscribed_and_acked(sotw, type_url, ["a"], snap)
    sotw.on_request(sotw_ack(first, ["a", "c"]))  # grows the subscription
    [out] = sotw.responses(snap)
    assert out.type_url == type_url
    assert names_in(out.payload) == ["c"]
    assert out.version == first.version and out.nonce != first.nonce


def test_sotw_new_name_comes_with_what_changed(sotw: SotwProtocol) -> None:
    first = subscribed_and_acked(sotw, types.ENDPOINT, ["a", "b"], snapshot(eds=["a", "b", "c"]))
    sotw.on_request(sotw_ack(first, ["a", "b", "c"]))
    changed = snapshot(eds={"a": "v2", "b": "v1", "c": "v1"})
    [out] = sotw.responses(changed)
    assert names_in(out.payload) == ["a", "c"]
    assert out.version == version_of(changed, types.ENDPOINT)


# State of the world: EDS after CDS


def cds_and_eds(proto: SotwProtocol, snap: Snapshot, eds_names: list[str]) -> list[Outgoing]:
    proto.on_request(sotw_request(types.CLUSTER))
    proto.on_request(sotw_request(types.ENDPOINT, eds_names))
    outs = proto.responses(snap)
    for out in outs:
        proto.on_request(sotw_ack(out, eds_names if out.type_url == types.ENDPOINT else ()))
    return outs


def test_sotw_first_cds_response_is_followed_by_all_endpoints(sotw: SotwProtocol) -> None:
    outs = cds_and_eds(sotw, snapshot(cds=["a", "b"], eds=["a", "b"]), ["a", "b"])
    assert [o.type_url for o in outs] == [types.CLUSTER, types.ENDPOINT]
    assert sorted(names_in(outs[1].payload)) == ["a", "b"]


def test_sotw_eds_is_resent_only_for_the_changed_clusters(sotw: SotwProtocol) -> None:
    eds = ["a", "b", "c"]
    first = cds_and_eds(sotw, snapshot(cds=eds, eds=eds), eds)
    changed = snapshot(cds={"a": "v1", "b": "v2", "c": "v1"}, eds=eds)
    outs = sotw.responses(changed)
    assert [o.type_url for o in outs] == [types.CLUSTER, types.ENDPOINT]
    assert sorted(names_in(outs[0].payload)) == ["a", "b", "c"]  # CDS: the whole set
    assert names_in(outs[1].payload) == ["b"]  # EDS: only the changed cluster's
    assert outs[1].version == first[1].version  # endpoints themselves did not change
    assert outs[1].nonce != first[1].nonce


def test_sotw_rewarm_merges_with_endpoint_changes(sotw: SotwProtocol) -> None:
    eds = ["a", "b", "c"]
    cds_and_eds(sotw, snapshot(cds=eds, eds=eds), eds)
    changed = snapshot(cds={"a": "v2", "b": "v1", "c": "v1"}, eds={"a": "v1", "b": "v1", "c": "v2"})
    outs = sotw.responses(changed)
    assert [o.type_url for o in outs] == [types.CLUSTER, types.ENDPOINT]
    assert names_in(outs[1].payload) == ["a", "c"]
    assert outs[1].version == version_of(changed, types.ENDPOINT)


def test_sotw_cluster_added_gets_only_its_endpoints(sotw: SotwProtocol) -> None:
    """A service added: the whole CDS set, then, when Envoy names the new cluster's endpoints
    along with the others it holds, those endpoints alone."""
    _, first_endpoints = cds_and_eds(sotw, snapshot(cds=["a", "b"], eds=["a", "b"]), ["a", "b"])
    grown = snapshot(cds=["a", "b", "c"], eds=["a", "b", "c"])
    [clusters] = sotw.responses(grown)
    assert names_in(clusters.payload) == ["a", "b", "c"]
    sotw.on_request(sotw_ack(clusters))
    sotw.on_request(sotw_ack(first_endpoints, ["a", "b", "c"]))
    [endpoints] = sotw.responses(grown)
    assert names_in(endpoints.payload) == ["c"]
    assert endpoints.version == version_of(grown, types.ENDPOINT)


def test_sotw_cds_change_of_an_unsubscribed_endpoint_name_resends_none(
    sotw: SotwProtocol,
) -> None:
    cds_and_eds(sotw, snapshot(cds=["a", "b"], eds=["a", "b"]), ["a"])
    outs = sotw.responses(snapshot(cds={"a": "v1", "b": "v2"}, eds=["a", "b"]))
    assert [o.type_url for o in outs] == [types.CLUSTER]


def test_sotw_cds_removal_alone_resends_no_endpoints(sotw: SotwProtocol) -> None:
    cds_and_eds(sotw, snapshot(cds=["a", "b"], eds=["a", "b"]), ["a", "b"])
    outs = sotw.responses(snapshot(cds=["a"], eds=["a", "b"]))
    assert [o.type_url for o in outs] == [types.CLUSTER]
    assert names_in(outs[0].payload) == ["a"]


# State of the world: requests that only drop names


@pytest.mark.parametrize("type_url", [types.ENDPOINT, types.ROUTE])
def test_sotw_request_that_only_removes_names_is_not_answered(
    sotw: SotwProtocol, type_url: str
) -> None:
    key = SHORT[type_url]
    snap = snapshot(**{key: ["a", "b"]})
    first = subscribed_and_acked(sotw, type_url, ["a", "b"], snap)
    reply = sotw.on_request(sotw_ack(first, ["a"]))
    assert reply is not None and not reply.is_nack
    assert not sotw.needs_evaluation()
    assert sotw.responses(snap) == []
    assert sotw.info.status(type_url).state is SyncState.SYNCED
    # The smaller subscription is what later pushes are filtered by.
    assert sotw.responses(snapshot(**{key: {"a": "v1", "b": "v2"}})) == []
    [out] = sotw.responses(snapshot(**{key: {"a": "v2", "b": "v2"}}))
    assert names_in(out.payload) == ["a"]


def test_sotw_named_cds_removal_is_answered_with_the_smaller_set(sotw: SotwProtocol) -> None:
    snap = snapshot(cds=["a", "b"])
    first = subscribed_and_acked(sotw, types.CLUSTER, ["a", "b"], snap)
    sotw.on_request(sotw_ack(first, ["a"]))
    assert sotw.needs_evaluation()
    [out] = sotw.responses(snap)
    assert out.type_url == types.CLUSTER and names_in(out.payload) == ["a"]


def test_sotw_resubscribing_a_dropped_name_is_answered(sotw: SotwProtocol) -> None:
    snap = snapshot(eds=["a", "b"])
    first = subscribed_and_acked(sotw, types.ENDPOINT, ["a", "b"], snap)
    sotw.on_request(sotw_ack(first, ["a"]))  # drops b: no response
    assert sotw.responses(snap) == []
    sotw.on_request(sotw_ack(first, ["a", "b"]))  # wants b again
    assert sotw.needs_evaluation()
    [out] = sotw.responses(snap)
    assert names_in(out.payload) == ["b"]


def test_sotw_resubscribing_a_dropped_name_after_a_change_is_answered(
    sotw: SotwProtocol,
) -> None:
    first = subscribed_and_acked(sotw, types.ENDPOINT, ["a", "b"], snapshot(eds=["a", "b"]))
    sotw.on_request(sotw_ack(first, ["a"]))
    changed = snapshot(eds={"a": "v2", "b": "v1"})
    [partial] = sotw.responses(changed)
    assert names_in(partial.payload) == ["a"]
    sotw.on_request(sotw_ack(partial, ["a", "b"]))
    [out] = sotw.responses(changed)
    assert names_in(out.payload) == ["b"]


# State of the world: ACKs compared as encoded name lists


def test_sotw_ack_repeating_the_names_is_not_answered(sotw: SotwProtocol) -> None:
    snap = snapshot(eds=["a", "b"])
    first = subscribed_and_acked(sotw, types.ENDPOINT, ["a", "b"], snap)
    assert not sotw.needs_evaluation()
    assert sotw.responses(snap) == []
    for _ in range(3):
        reply = sotw.on_request(sotw_ack(first, ["a", "b"]))
        assert reply is not None and reply.version == first.version
        assert not sotw.needs_evaluation()
    assert sotw.responses(snap) == []


def test_sotw_ack_with_the_names_reordered_is_not_answered(sotw: SotwProtocol) -> None:
    snap = snapshot(eds=["a", "b"])
    first = subscribed_and_acked(sotw, types.ENDPOINT, ["a", "b"], snap)
    sotw.on_request(sotw_ack(first, ["b", "a"]))  # other bytes, same set
    assert not sotw.needs_evaluation()
    assert sotw.responses(snap) == []


@pytest.mark.parametrize(
    ("names", "expected"),
    [(["a", "b", "c"], ["c"]), (["a", "c"], ["c"])],
    ids=["grown", "swapped"],
)
def test_sotw_ack_with_a_changed_name_list_is_answered(
    sotw: SotwProtocol, names: list[str], expected: list[str]
) -> None:
    snap = snapshot(eds=["a", "b", "c"])
    first = subscribed_and_acked(sotw, types.ENDPOINT, ["a", "b"], snap)
    sotw.on_request(sotw_ack(first, names))
    assert sotw.needs_evaluation()
    [out] = sotw.responses(snap)
    assert out.type_url == types.ENDPOINT
    assert names_in(out.payload) == expected
    assert out.version == first.version and out.nonce != first.nonce


def test_sotw_equal_name_lists_on_two_streams_are_independent(info: StreamInfo) -> None:
    """Streams with equal name lists share the decoded set; their subscriptions stay apart."""
    one = SotwProtocol(info, SERVED)
    two = SotwProtocol(StreamInfo(stream_id=8, peer="p", delta=False), SERVED)
    snap = snapshot(eds=["a", "b"])
    first_one = subscribed_and_acked(one, types.ENDPOINT, ["a"], snap)
    subscribed_and_acked(two, types.ENDPOINT, ["a"], snap)
    one.on_request(sotw_ack(first_one, ["a", "b"]))
    assert one.needs_evaluation() and not two.needs_evaluation()
    [grown] = one.responses(snap)
    assert names_in(grown.payload) == ["b"]
    assert two.responses(snap) == []
    changed = snapshot(eds={"a": "v1", "b": "v2"})
    one.on_request(sotw_ack(grown, ["a", "b"]))
    [out] = one.responses(changed)
    assert names_in(out.payload) == ["b"]
    assert two.responses(changed) == []


# Delta: only changes, for every type


@pytest.mark.parametrize("type_url", [types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE])
@pytest.mark.parametrize("subscribe", [["*"], ["a", "b", "c"]], ids=["wildcard", "named"])
def test_delta_sends_only_changes_for_every_type(
    delta: DeltaProtocol, type_url: str, subscribe: list[str]
) -> None:
    key = SHORT[type_url]
    delta.on_request(delta_request(type_url, subscribe))
    [first] = delta.responses(snapshot(**{key: ["a", "b", "c"]}))
    assert delta_decoded(first) == (["a", "b", "c"], [])
    delta.on_request(delta_request(type_url, nonce=first.nonce))
    assert not delta.needs_evaluation()
    changed = snapshot(**{key: {"a": "v1", "b": "v2", "c": "v1"}})
    [out] = delta.responses(changed)
    assert out.type_url == type_url
    assert delta_decoded(out) == (["b"], [])
    assert out.version == version_of(changed, type_url) and out.nonce != first.nonce
    delta.on_request(delta_request(type_url, nonce=out.nonce))
    removed = snapshot(**{key: {"a": "v1", "b": "v2"}})
    [gone] = delta.responses(removed)
    assert delta_decoded(gone) == ([], ["c"])


def test_delta_subscribing_after_a_push_sends_just_the_new_name(delta: DeltaProtocol) -> None:
    snap = snapshot(eds=["a", "b", "c"])
    delta.on_request(delta_request(types.ENDPOINT, ["a"]))
    [first] = delta.responses(snap)
    delta.on_request(delta_request(types.ENDPOINT, nonce=first.nonce))
    delta.on_request(delta_request(types.ENDPOINT, ["c"], nonce=first.nonce))
    [out] = delta.responses(snap)
    assert delta_decoded(out) == (["c"], [])
    delta.on_request(delta_request(types.ENDPOINT, nonce=out.nonce))
    [later] = delta.responses(snapshot(eds={"a": "v1", "b": "v2", "c": "v2"}))
    assert delta_decoded(later) == (["c"], [])  # b is not subscribed


def test_delta_unsubscribed_name_is_not_sent_again(delta: DeltaProtocol) -> None:
    delta.on_request(delta_request(types.ROUTE, ["a", "b"]))
    [first] = delta.responses(snapshot(rds=["a", "b"]))
    delta.on_request(delta_request(types.ROUTE, unsubscribe=["b"], nonce=first.nonce))
    assert delta.responses(snapshot(rds={"a": "v1", "b": "v2"})) == []
    [out] = delta.responses(snapshot(rds={"a": "v2", "b": "v3"}))
    assert delta_decoded(out) == (["a"], [])


def test_delta_eds_is_resent_only_for_the_changed_clusters(delta: DeltaProtocol) -> None:
    delta.on_request(delta_request(types.CLUSTER, ["*"]))
    delta.on_request(delta_request(types.ENDPOINT, ["a", "b", "c"]))
    first = delta.responses(snapshot(cds=["a", "b", "c"], eds=["a", "b", "c"]))
    assert [o.type_url for o in first] == [types.CLUSTER, types.ENDPOINT]
    for out in first:
        delta.on_request(delta_request(out.type_url, nonce=out.nonce))
    changed = snapshot(cds={"a": "v1", "b": "v2", "c": "v1"}, eds=["a", "b", "c"])
    outs = delta.responses(changed)
    assert [o.type_url for o in outs] == [types.CLUSTER, types.ENDPOINT]
    assert delta_decoded(outs[0]) == (["b"], [])
    assert delta_decoded(outs[1]) == (["b"], [])
    assert outs[1].version == first[1].version


def test_delta_cds_removal_alone_resends_no_endpoints(delta: DeltaProtocol) -> None:
    delta.on_request(delta_request(types.CLUSTER, ["*"]))
    delta.on_request(delta_request(types.ENDPOINT, ["a", "b"]))
    for out in delta.responses(snapshot(cds=["a", "b"], eds=["a", "b"])):
        delta.on_request(delta_request(out.type_url, nonce=out.nonce))
    outs = delta.responses(snapshot(cds=["a"], eds=["a", "b"]))
    assert [o.type_url for o in outs] == [types.CLUSTER]
    assert delta_decoded(outs[0]) == ([], ["b"])
