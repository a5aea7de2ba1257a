"""The hand-written wire format pieces agree with protobuf's own encoding."""

from __future__ import annotations

import pytest
from envoy.service.discovery.v3 import discovery_pb2

from meshcore.xds.wire import field_end, leading_string, read_varint, string_field


@pytest.mark.parametrize("version", ["", "v1", "x" * 200, "ünïcode" * 40])
def test_string_fields_encode_and_read_back_as_protobuf_does(version: str) -> None:
    message = discovery_pb2.DiscoveryRequest(version_info=version, type_url="t")
    payload = message.SerializeToString()
    assert payload.startswith(string_field(1, version))
    assert leading_string(payload, 1) == version
    after_version = field_end(payload, 0, 1)
    assert payload[after_version:] == string_field(4, "t")
    assert field_end(payload, after_version, 1) == after_version  # not the field asked for


def test_varints_of_several_bytes() -> None:
    assert read_varint(bytes([0x96, 0x01, 0xFF]), 0) == (150, 2)
    assert read_varint(bytes([0x00, 0xAC, 0x02]), 1) == (300, 3)
