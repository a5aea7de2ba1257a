"""Small builders for the Envoy API pieces every generator repeats.

Packing with deterministic serialization matters: map fields (such as a cluster's
`typed_extension_protocol_options`) would otherwise encode in arbitrary order, and identical
config must encode to identical bytes for the serialize-once cache to share it.
"""

from __future__ import annotations

from typing import Final

from envoy.config.core.v3 import address_pb2, config_source_pb2
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

from meshconfig.base import duration_seconds

# xDS v3. Read once: a top-level enum's values are looked up in Python on every access
# (`EnumTypeWrapper.__getattr__`), which showed in per-proxy generation.
API_V3: Final = config_source_pb2.ApiVersion.V3


def pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message, deterministic=True)
    return packed


def socket_address(address: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=address, port_value=port)
    )


def ads() -> config_source_pb2.ConfigSource:
    """Fetch over the stream the proxy already has open with pilot (ADS), xDS v3."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=API_V3,
    )


def seconds(value: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=value)


def duration(text: str) -> duration_pb2.Duration:
    """A validated Istio duration ("1.5s", "100ms", "1h30m") as a protobuf Duration."""
    value = duration_pb2.Duration()
    value.FromNanoseconds(round(duration_seconds(text) * 1e9))
    return value
