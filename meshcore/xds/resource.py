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
import itertools
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

from google.protobuf import any_pb2
from google.protobuf.message import Message

from meshcore.xds.wire import length_delimited

_SOTW_RESOURCES_FIELD = 2  # DiscoveryResponse.resources (repeated Any)
_DELTA_RESOURCES_FIELD = 2  # DeltaDiscoveryResponse.resources (repeated Resource)
_DELTA_NAME_FIELD = 3  # discovery.v3.Resource.name
_DELTA_VERSION_FIELD = 1  # discovery.v3.Resource.version
_DELTA_ANY_FIELD = 2  # discovery.v3.Resource.resource
_TYPE_PREFIX = "type.googleapis.com/"


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


class _Layered(Mapping[str, Resource]):
    """A shared mapping plus a few resources of one node's own, without copying the shared one
    (a thousand proxies each adding one inbound cluster to the same thousand outbound ones)."""

    __slots__ = ("_base", "_own")

    def __init__(self, base: Mapping[str, Resource], own: Mapping[str, Resource]) -> None:
        self._base = base
        self._own = own

    def __getitem__(self, name: str) -> Resource:
        found = self._own.get(name)
        return self._base[name] if found is None else found

    def __contains__(self, name: object) -> bool:
        return name in self._own or name in self._base

    def __iter__(self) -> Iterator[str]:
        return itertools.chain(self._base, self._own)

    def __len__(self) -> int:
        return len(self._base) + len(self._own)


Diff = tuple[tuple[Resource, ...], tuple[str, ...]]


@dataclass(frozen=True, slots=True, weakref_slot=True)
class TypeSnapshot:
    """All resources of one type for one node, with a version for the whole set.

    Streams ask two things of it many times over, so it remembers the answers: the encoded
    resources of a response carrying all of them (`sotw_parts`, `delta_parts`, shared by every
    stream of every node holding this snapshot), and what changed since an older snapshot
    (`diff`, computed once however many streams move between the same two). A snapshot
    `extend`ed with a node's own resources shares its base's answers.
    """

    resources: Mapping[str, Resource]
    version: str = field(default="")
    base: TypeSnapshot | None = field(default=None, compare=False, repr=False)
    own: tuple[Resource, ...] = field(default=(), compare=False, repr=False)
    _bodies: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)
    _diffs: dict[int, tuple[weakref.ref[TypeSnapshot], Diff]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def of(cls, resources: Iterable[Resource]) -> TypeSnapshot:
        by_name = {r.name: r for r in resources}
        return cls(MappingProxyType(by_name), _version(by_name.values()))

    def extend(self, own: Iterable[Resource]) -> TypeSnapshot:
        """This snapshot plus `own` resources (new names), sharing this one's mapping, encoded
        body and diffs; itself when `own` is empty. The version covers this version and `own`."""
        added = tuple(sorted(own, key=lambda r: r.name))
        if not added:
            return self
        if self.base is not None or any(r.name in self.resources for r in added):
            return TypeSnapshot.of((*self.resources.values(), *added))
        own_by_name = MappingProxyType({r.name: r for r in added})
        version = digest(f"{self.version}+{_version(added)}".encode())
        return TypeSnapshot(_Layered(self.resources, own_by_name), version, self, added)

    def items(self) -> Iterator[tuple[str, Resource]]:
        """The resources by name, iterated without the per-name lookups of `resources`."""
        if self.base is not None:
            return itertools.chain(self.base.items(), ((r.name, r) for r in self.own))
        return iter(self.resources.items())

    def sotw_parts(self) -> tuple[bytes, ...]:
        """Every resource as `DiscoveryResponse.resources` entries, in pieces to concatenate."""
        return self._parts("sotw_field")

    def delta_parts(self) -> tuple[bytes, ...]:
        """Every resource as `DeltaDiscoveryResponse.resources` entries, in pieces."""
        return self._parts("delta_field")

    def _parts(self, encoding: str) -> tuple[bytes, ...]:
        if self.base is not None:
            own = b"".join(getattr(r, encoding) for r in self.own)
            return (*self.base._parts(encoding), own)
        body = self._bodies.get(encoding)
        if body is None:
            body = self._bodies[encoding] = b"".join(
                getattr(r, encoding) for r in self.resources.values()
            )
        return (body,)

    def diff(self, old: TypeSnapshot) -> Diff:
        """The resources new or changed since `old` (by name), and the names gone since."""
        if old is self:
            return (), ()
        if self.base is not None and old.base is not None:
            shared_changed, shared_removed = self.base.diff(old.base)
            own_changed, own_removed = _diff(self.own, old.own)
            if not (own_changed or own_removed):
                return shared_changed, shared_removed
            changed = tuple(sorted(shared_changed + own_changed, key=lambda r: r.name))
            return changed, tuple(sorted(shared_removed + own_removed))
        found = self._diffs.get(id(old))
        if found is not None and found[0]() is old:
            return found[1]
        result = _diff(self.resources.values(), old.resources.values())
        for key in [k for k, (ref, _) in self._diffs.items() if ref() is None]:
            del self._diffs[key]
        self._diffs[id(old)] = (weakref.ref(old), result)
        return result


def _version(resources: Iterable[Resource]) -> str:
    ordered = sorted(resources, key=lambda r: r.name)
    return digest("\n".join(f"{r.name} {r.version}" for r in ordered).encode())


def _diff(new: Iterable[Resource], old: Iterable[Resource]) -> Diff:
    before = {r.name: r.version for r in old}
    changed = tuple(r for r in new if before.pop(r.name, None) != r.version)
    return tuple(sorted(changed, key=lambda r: r.name)), tuple(sorted(before))


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
