"""The attribute vocabulary, the immutable bag, and the record of what evaluations read."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest

from meshconfig.policy.attributes import (
    ABSENT_MAP,
    ISTIO_VOCABULARY,
    AttributeBag,
    Reference,
    ValueType,
    Vocabulary,
    has_type,
    manifest_attributes,
)


@pytest.mark.parametrize(
    ("name", "value_type"),
    [
        ("source.ip", ValueType.IP_ADDRESS),
        ("source.labels", ValueType.STRING_MAP),
        ("source.uid", ValueType.STRING),
        ("source.principal", ValueType.STRING),
        ("source.namespace", ValueType.STRING),
        ("source.name", ValueType.STRING),
        ("source.user", ValueType.STRING),
        ("source.workload.name", ValueType.STRING),
        ("destination.service.host", ValueType.STRING),
        ("destination.service.name", ValueType.STRING),
        ("destination.service.namespace", ValueType.STRING),
        ("destination.service.uid", ValueType.STRING),
        ("destination.labels", ValueType.STRING_MAP),
        ("destination.port", ValueType.INT64),
        ("request.headers", ValueType.STRING_MAP),
        ("request.path", ValueType.STRING),
        ("request.method", ValueType.STRING),
        ("request.size", ValueType.INT64),
        ("request.total_size", ValueType.INT64),
        ("request.time", ValueType.TIMESTAMP),
        ("request.useragent", ValueType.STRING),
        ("request.host", ValueType.STRING),
        ("request.scheme", ValueType.STRING),
        ("request.auth.principal", ValueType.STRING),
        ("request.auth.claims", ValueType.STRING_MAP),
        ("response.code", ValueType.INT64),
        ("response.size", ValueType.INT64),
        ("response.duration", ValueType.DURATION),
        ("response.headers", ValueType.STRING_MAP),
        ("connection.mtls", ValueType.BOOL),
        ("connection.requested_server_name", ValueType.STRING),
        ("connection.sent.bytes", ValueType.INT64),
        ("context.protocol", ValueType.STRING),
        ("context.reporter.kind", ValueType.STRING),
        ("api.protocol", ValueType.STRING),
        ("check.error_code", ValueType.INT64),
        ("quota.cache_hit", ValueType.BOOL),
        ("rbac.permissive.response_code", ValueType.STRING),
    ],
)
def test_istio_vocabulary_types(name: str, value_type: ValueType) -> None:
    assert ISTIO_VOCABULARY[name] is value_type


def test_vocabulary_is_immutable_and_extends() -> None:
    extra = ISTIO_VOCABULARY.extended({"my.attr": ValueType.DOUBLE, "source.ip": ValueType.BYTES})
    assert extra["my.attr"] is ValueType.DOUBLE and extra["source.ip"] is ValueType.BYTES
    assert "my.attr" not in ISTIO_VOCABULARY
    assert ISTIO_VOCABULARY.extended({}) is ISTIO_VOCABULARY
    assert isinstance(extra, Vocabulary) and len(extra) == len(ISTIO_VOCABULARY) + 1


def test_manifest_attributes() -> None:
    spec = {"attributes": {"a.b": {"valueType": "INT64"}, "c": {"valueType": "STRING_MAP"}}}
    assert manifest_attributes(spec) == {"a.b": ValueType.INT64, "c": ValueType.STRING_MAP}
    with pytest.raises(ValueError, match=r"attributes\.a\.valueType: 'INT' is not one of"):
        manifest_attributes({"attributes": {"a": {"valueType": "INT"}}})


@pytest.mark.parametrize(
    ("value_type", "good", "bad"),
    [
        (ValueType.STRING, "x", b"x"),
        (ValueType.INT64, 3, True),
        (ValueType.DOUBLE, 1.5, 1),
        (ValueType.BOOL, False, 0),
        (ValueType.TIMESTAMP, datetime(2020, 1, 1, tzinfo=UTC), "2020"),
        (ValueType.DURATION, timedelta(seconds=1), 1.0),
        (ValueType.IP_ADDRESS, ipaddress.ip_address("::1"), "::1"),
        (ValueType.STRING_MAP, {"a": "b"}, {"a": 1}),
        (ValueType.BYTES, b"\x00", "x"),
    ],
)
def test_has_type(value_type: ValueType, good: object, bad: object) -> None:
    assert has_type(value_type, good)
    assert not has_type(value_type, bad)


def test_bag_reads_and_is_immutable() -> None:
    labels = {"app": "ratings"}
    bag = AttributeBag({"destination.labels": labels, "response.code": 200})
    labels["app"] = "changed"  # the bag froze its own view of the map
    assert bag["response.code"] == 200 and len(bag) == 2 and set(bag) == set(bag.keys())
    assert bag.lookup("response.code") == 200 and bag.lookup("source.ip") is None
    assert bag.lookup_key("destination.labels", "app") == "changed"
    assert bag.lookup_key("destination.labels", "version") is None
    assert bag.lookup_key("source.labels", "app") is ABSENT_MAP
    with pytest.raises(TypeError):
        bag["destination.labels"]["app"] = "x"
    with pytest.raises(AttributeError, match="immutable"):
        bag.lookup = lambda name: None
    assert "response.code" in bag and bag.get("nope") is None


def test_checked_bag_rejects_wrong_types_and_unknown_names() -> None:
    AttributeBag.checked({"response.code": 200, "source.labels": {"a": "b"}})
    with pytest.raises(TypeError) as caught:
        AttributeBag.checked({"response.code": "200", "nope": 1})
    assert "response.code: str is not a valid INT64" in str(caught.value)
    assert "nope: not an attribute of the vocabulary" in str(caught.value)


def test_recording_bag_records_presence_absence_and_map_keys() -> None:
    bag = AttributeBag({"request.headers": {"x-user": "john"}, "response.code": 200})
    recording = bag.recording()
    assert recording.lookup("response.code") == 200
    assert recording.lookup("source.ip") is None
    assert recording.lookup_key("request.headers", "x-user") == "john"
    assert recording.lookup_key("request.headers", "cookie") is None
    assert recording.lookup_key("source.labels", "app") is ABSENT_MAP
    assert recording.referenced == {
        Reference("response.code"),
        Reference("source.ip", present=False),
        Reference("request.headers", "x-user"),
        Reference("request.headers", "cookie", present=False),
        Reference("source.labels", present=False),
    }
    assert bag.recording().referenced == frozenset()
