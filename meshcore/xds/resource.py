"""Resources serialized once, and immutable snapshots of them.

A `Resource` holds the wire bytes of its `google.protobuf.Any` plus the ready-made field
encodings that state-of-the-world and delta responses need. Responses are assembled by
concatenating those cached pieces onto a small envelope (protobuf merges concatenated
messages and appends repeated fields), so a resource shared by a thousand streams is encoded
exactly once. The version of a resource is a digest of its bytes, so identical content has an
identical version across restarts of the control plane.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

from google.protobuf import any_pb2
from google.protobuf.message import Message

_SOTW_RESOURCES_FIELD = 2  # DiscoveryResponse.resources (repeated Any)
_DELTA_RESOURCES_FIELD = 2  # DeltaDiscoveryResponse.resources (repeated Resource)
_DELTA_NAME_FIELD = 3  # discovery.v3.Resource.name
_DELTA_VERSION_FIELD = 1  # discovery.v3.Resource.version
_DELTA_ANY_FIELD = 2  # discovery.v3.Resource.resource
_TYPE_PREFIX = "type.googleapis.com/"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def length_delimited(field_number: int, payload: bytes) -> bytes:
    """Encode one length-delimited protobuf field (wire type 2)."""
    return _varint((field_number << 3) | 2) + _varint(len(payload)) + payload


def digest(data: bytes) -> str:
    """A short, stable content version."""
    return hashlib.blake2b(data, digest_size=8).hexdigest()


class Resource:
    """One named xDS resource, encoded once and shared by every stream that sends it."""

    __slots__ = ("__dict__", "any_bytes", "name", "type_url", "version")

    def __init__(self, name: str, type_url: str, any_bytes: bytes) -> None:
        self.name = name
        self.type_url = type_url
        self.any_bytes = any_bytes
        self.version = digest(any_bytes)

    @classmethod
    def from_message(cls, name: str, message: Message) -> Resource:
        packed = any_pb2.Any(
            type_url=_TYPE_PREFIX + message.DESCRIPTOR.full_name,
            value=message.SerializeToString(deterministic=True),
        )
        return cls(name, packed.type_url, packed.SerializeToString(deterministic=True))

    @cached_property
    def sotw_field(self) -> bytes:
        """This resource as a `DiscoveryResponse.resources` entry, wire-encoded."""
        return length_delimited(_SOTW_RESOURCES_FIELD, self.any_bytes)

    @cached_property
    def delta_field(self) -> bytes:
        """This resource as a `DeltaDiscoveryResponse.resources` entry, wire-encoded."""
        body = (
            length_delimited(_DELTA_VERSION_FIELD, self.version.encode())
            + length_delimited(_DELTA_ANY_FIELD, self.any_bytes)
            + length_delimited(_DELTA_NAME_FIELD, self.name.encode())
        )
        return length_delimited(_DELTA_RESOURCES_FIELD, body)

    def __repr__(self) -> str:
        return f"Resource({self.name!r}, {self.type_url!r}, version={self.version})"


@dataclass(frozen=True, slots=True)
class TypeSnapshot:
    """All resources of one type for one node, with a version for the whole set."""

    resources: Mapping[str, Resource]
    version: str = field(default="")

    @classmethod
    def of(cls, resources: Iterable[Resource]) -> TypeSnapshot:
        by_name = {r.name: r for r in resources}
        version = digest(
            "\n".join(f"{name} {by_name[name].version}" for name in sorted(by_name)).encode()
        )
        return cls(MappingProxyType(by_name), version)


EMPTY_TYPE = TypeSnapshot.of(())


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one node should have, by type URL. Immutable; replace it to change it."""

    types: Mapping[str, TypeSnapshot]

    @classmethod
    def of(cls, by_type: Mapping[str, Iterable[Resource]]) -> Snapshot:
        return cls(MappingProxyType({t: TypeSnapshot.of(rs) for t, rs in by_type.items()}))

    def get(self, type_url: str) -> TypeSnapshot | None:
        return self.types.get(type_url)

    def replace(self, type_url: str, snapshot: TypeSnapshot) -> Snapshot:
        merged = dict(self.types)
        merged[type_url] = snapshot
        return Snapshot(MappingProxyType(merged))
