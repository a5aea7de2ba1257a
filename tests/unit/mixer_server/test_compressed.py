"""Compressed attributes: the global and message dictionaries, every value type, Reports."""

from __future__ import annotations

import datetime
import ipaddress

import pytest

from mixer import compressed, global_dictionary
from protos.mixer.v1 import attributes_pb2, mixer_pb2

ATTRIBUTES = {
    "source.ip": ipaddress.ip_address("10.0.0.7"),
    "request.headers": {":path": "/ratings/0", "x-user": "john"},
    "response.code": 200,
    "connection.mtls": True,
    "request.time": datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC),
    "response.duration": datetime.timedelta(milliseconds=3),
    "custom.ratio": 0.25,
    "custom.blob": b"\x00\x01",
    "destination.service.host": "ratings.default.svc.cluster.local",
}


def test_round_trip_keeps_every_type() -> None:
    message = compressed.encode(ATTRIBUTES)
    assert compressed.decode(message) == ATTRIBUTES


def test_known_words_use_the_global_dictionary_and_others_the_message() -> None:
    message = compressed.encode({"request.path": "/reviews", "response.code": 200})
    index = global_dictionary.INDEX
    assert message.strings == {index["request.path"]: -1}
    assert list(message.words) == ["/reviews"]
    assert message.int64s == {index["response.code"]: 200}


def test_istio_dictionary_positions() -> None:
    # Istio's YAML lists "200" twice; the encoder uses the first, decoding accepts both.
    assert global_dictionary.WORDS[0] == "source.ip"
    assert global_dictionary.INDEX["200"] == global_dictionary.WORDS.index("200")
    assert global_dictionary.WORDS[-2:] == ("inbound", "outbound")


def test_unknown_word_index_is_a_decode_error() -> None:
    message = attributes_pb2.CompressedAttributes(strings={-3: 0}, words=["only-one"])
    with pytest.raises(compressed.DecodeError, match="message dictionary"):
        compressed.decode(message)
    beyond = attributes_pb2.CompressedAttributes(strings={len(global_dictionary.WORDS): 0})
    with pytest.raises(compressed.DecodeError, match="global dictionary"):
        compressed.decode(beyond)


def test_ip_attribute_of_wrong_length_is_refused() -> None:
    index = global_dictionary.INDEX["source.ip"]
    message = attributes_pb2.CompressedAttributes(bytes_values={index: b"\x01\x02\x03"})
    with pytest.raises(compressed.DecodeError, match=r"source\.ip"):
        compressed.decode(message)


def test_report_of_independent_sets_shares_default_words() -> None:
    sets = [{"request.path": "/a", "response.code": 200}, {"request.path": "/b"}]
    request = compressed.encode_report(sets)
    assert list(request.default_words) == ["/a", "/b"]
    assert all(not item.words for item in request.attributes)
    assert compressed.decode_report(request) == sets


def test_delta_encoded_report_builds_each_set_on_the_previous() -> None:
    request = compressed.encode_report([{"request.path": "/a", "response.code": 200}, {}])
    request.repeated_attributes_semantics = mixer_pb2.ReportRequest.DELTA_ENCODING
    second = request.attributes[1]
    second.int64s[global_dictionary.INDEX["response.code"]] = 503
    decoded = compressed.decode_report(request)
    assert decoded[1] == {"request.path": "/a", "response.code": 503}
