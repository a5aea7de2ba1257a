"""Istio's typed attribute vocabulary and the bag of attribute values one request carries.

Mixer evaluates every expression against a bag of attributes (`source.ip`, `request.headers`,
...), each of a fixed type. `Vocabulary` says which names exist and their types: Istio 1.4's
`istioproxy` and `kubernetes` attribute manifests are built in (`ISTIO_VOCABULARY`), and an
`attributemanifest` can add more. `AttributeBag` holds one request's values, immutable and
cheap to read: expressions call `lookup` (a bound `dict.get`) and `lookup_key` on the hot
path. `bag.recording()` gives a view of the same values that remembers which attributes (and
which keys of map attributes) an evaluation looked at, present or absent: that is what a Check
response's "referenced attributes" are, which clients use to cache the verdict.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol


class ValueType(enum.Enum):
    """Istio's policy.v1beta1.ValueType (plus BYTES, which attributes can carry on the wire)."""

    STRING = "STRING"
    INT64 = "INT64"
    DOUBLE = "DOUBLE"
    BOOL = "BOOL"
    TIMESTAMP = "TIMESTAMP"
    DURATION = "DURATION"
    IP_ADDRESS = "IP_ADDRESS"
    EMAIL_ADDRESS = "EMAIL_ADDRESS"
    DNS_NAME = "DNS_NAME"
    URI = "URI"
    STRING_MAP = "STRING_MAP"
    BYTES = "BYTES"


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The Python type of each value type's values. EMAIL_ADDRESS, DNS_NAME and URI are text whose
# comparisons follow their own rules (case-insensitive host names, ...).
PYTHON_TYPES: Final[Mapping[ValueType, type | tuple[type, ...]]] = MappingProxyType(
    {
        ValueType.STRING: str,
        ValueType.INT64: int,
        ValueType.DOUBLE: float,
        ValueType.BOOL: bool,
        ValueType.TIMESTAMP: datetime,
        ValueType.DURATION: timedelta,
        ValueType.IP_ADDRESS: (ipaddress.IPv4Address, ipaddress.IPv6Address),
        ValueType.EMAIL_ADDRESS: str,
        ValueType.DNS_NAME: str,
        ValueType.URI: str,
        ValueType.STRING_MAP: Mapping,
        ValueType.BYTES: bytes,
    }
)


def has_type(value_type: ValueType, value: object) -> bool:
    """Whether `value` is a valid Python value of `value_type` (bool is not an INT64)."""
    if value_type is ValueType.INT64 and isinstance(value, bool):
        return False
    if value_type is ValueType.STRING_MAP:
        return isinstance(value, Mapping) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
    return isinstance(value, PYTHON_TYPES[value_type])


class Vocabulary(Mapping[str, ValueType]):
    """Attribute name -> type; immutable. `extended` adds an attributemanifest's attributes."""

    __slots__ = ("_types",)

    def __init__(self, types: Mapping[str, ValueType]) -> None:
        self._types: Mapping[str, ValueType] = MappingProxyType(dict(types))

    def __getitem__(self, name: str) -> ValueType:
        return self._types[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)

    def extended(self, extra: Mapping[str, ValueType]) -> Vocabulary:
        """This vocabulary plus `extra`; a name in both takes `extra`'s type."""
        return Vocabulary({**self._types, **extra}) if extra else self


def _types(kind: ValueType, *names: str) -> dict[str, ValueType]:
    return dict.fromkeys(names, kind)


# Istio 1.4's attribute manifests (`istioproxy` and `kubernetes`), plus the deprecated
# `source.user` that older rules (and the bookinfo deny-serviceaccount sample) still use.
ISTIO_VOCABULARY: Final = Vocabulary(
    {
        **_types(
            ValueType.STRING,
            "api.operation",
            "api.protocol",
            "api.service",
            "api.version",
            "check.error_message",
            "connection.event",
            "connection.id",
            "connection.requested_server_name",
            "context.protocol",
            "context.proxy_error_code",
            "context.proxy_version",
            "context.reporter.kind",
            "context.reporter.uid",
            "destination.container.name",
            "destination.name",
            "destination.namespace",
            "destination.owner",
            "destination.principal",
            "destination.service.host",
            "destination.service.name",
            "destination.service.namespace",
            "destination.service.uid",
            "destination.serviceAccount",
            "destination.uid",
            "destination.workload.name",
            "destination.workload.namespace",
            "destination.workload.uid",
            "origin.uid",
            "origin.user",
            "rbac.permissive.effective_policy_id",
            "rbac.permissive.response_code",
            "request.api_key",
            "request.auth.audiences",
            "request.auth.presenter",
            "request.auth.principal",
            "request.auth.raw_claims",
            "request.host",
            "request.id",
            "request.method",
            "request.path",
            "request.reason",
            "request.referer",
            "request.scheme",
            "request.url_path",
            "request.useragent",
            "response.grpc_message",
            "response.grpc_status",
            "source.name",
            "source.namespace",
            "source.owner",
            "source.principal",
            "source.serviceAccount",
            "source.services",
            "source.uid",
            "source.user",
            "source.workload.name",
            "source.workload.namespace",
            "source.workload.uid",
        ),
        **_types(
            ValueType.INT64,
            "check.error_code",
            "connection.received.bytes",
            "connection.received.bytes_total",
            "connection.sent.bytes",
            "connection.sent.bytes_total",
            "destination.port",
            "request.size",
            "request.total_size",
            "response.code",
            "response.size",
            "response.total_size",
        ),
        **_types(
            ValueType.BOOL,
            "check.cache_hit",
            "connection.mtls",
            "context.reporter.local",
            "quota.cache_hit",
        ),
        **_types(
            ValueType.TIMESTAMP,
            "context.time",
            "context.timestamp",
            "request.time",
            "response.time",
        ),
        **_types(ValueType.DURATION, "connection.duration", "response.duration"),
        **_types(ValueType.IP_ADDRESS, "destination.ip", "origin.ip", "source.ip"),
        **_types(
            ValueType.STRING_MAP,
            "destination.labels",
            "destination.metadata",
            "request.auth.claims",
            "request.headers",
            "request.query_params",
            "response.headers",
            "source.labels",
            "source.metadata",
        ),
    }
)


def manifest_attributes(spec: Mapping[str, Any]) -> dict[str, ValueType]:
    """The attributes an attributemanifest spec declares (`attributes: {name: {valueType}}`).

    Raises ValueError naming the attribute whose valueType is missing or unknown.
    """
    found: dict[str, ValueType] = {}
    for name, info in (spec.get("attributes") or {}).items():
        raw = info.get("valueType") if isinstance(info, Mapping) else None
        try:
            found[name] = ValueType(raw)
        except ValueError:
            known = ", ".join(t.value for t in ValueType)
            raise ValueError(
                f"attributes.{name}.valueType: {raw!r} is not one of {known}"
            ) from None
    return found


class _Absent(enum.Enum):
    MAP = "absent map"


# `lookup_key`'s answer when the map attribute itself is absent (None: the key is absent).
ABSENT_MAP: Final = _Absent.MAP
KeyLookup = str | None | Literal[_Absent.MAP]


class Attributes(Protocol):
    """What compiled expressions read: an `AttributeBag` or its recording view."""

    lookup: Callable[[str], Any]

    def lookup_key(self, name: str, key: str) -> KeyLookup: ...


class AttributeBag(Mapping[str, Any]):
    """One request's attribute values, immutable. Values are never None; absent means absent.

    `lookup(name)` is the value or None; `lookup_key(name, key)` a string map's value for a key,
    None when the key is absent and ABSENT_MAP when the map is. Dict values of string maps are
    frozen into read-only views; values are not type-checked here (see `checked`).
    """

    __slots__ = ("_values", "lookup")

    _values: Mapping[str, Any]
    lookup: Callable[[str], Any]

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        frozen = {
            name: MappingProxyType(value) if type(value) is dict else value
            for name, value in (values or {}).items()
        }
        object.__setattr__(self, "_values", frozen)
        object.__setattr__(self, "lookup", frozen.get)

    @classmethod
    def checked(
        cls, values: Mapping[str, Any], vocabulary: Mapping[str, ValueType] = ISTIO_VOCABULARY
    ) -> AttributeBag:
        """A bag of `values` after checking each against its type; raises TypeError if wrong."""
        wrong = [
            f"{name}: {type(value).__name__} is not a valid {vocabulary[name].value}"
            if name in vocabulary
            else f"{name}: not an attribute of the vocabulary"
            for name, value in values.items()
            if name not in vocabulary or not has_type(vocabulary[name], value)
        ]
        if wrong:
            raise TypeError("; ".join(wrong))
        return cls(values)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"AttributeBag({dict(self._values)!r})"

    def lookup_key(self, name: str, key: str) -> KeyLookup:
        found = self._values.get(name)
        if found is None:
            return ABSENT_MAP
        value: str | None = found.get(key)
        return value

    def recording(self) -> RecordingBag:
        """A view of these values that records every attribute read (see `RecordingBag`)."""
        return RecordingBag(self)


@dataclass(frozen=True, slots=True, order=True)
class Reference:
    """An attribute (or one `key` of a map attribute) an evaluation read, and whether it was there.

    `present` False is an absence reference: the verdict depends on the attribute being absent.
    """

    name: str
    key: str | None = None
    present: bool = True


class RecordingBag:
    """A bag view that records what evaluations read; for one request (not thread-safe)."""

    __slots__ = ("_bag", "_seen", "lookup")

    def __init__(self, bag: AttributeBag) -> None:
        self._bag = bag
        self._seen: dict[tuple[str, str | None], bool] = {}
        self.lookup: Callable[[str], Any] = self._lookup

    def _lookup(self, name: str) -> Any:
        value = self._bag.lookup(name)
        self._seen[name, None] = value is not None
        return value

    def lookup_key(self, name: str, key: str) -> KeyLookup:
        value = self._bag.lookup_key(name, key)
        if value is ABSENT_MAP:
            self._seen[name, None] = False
        else:
            self._seen[name, key] = value is not None
        return value

    @property
    def referenced(self) -> frozenset[Reference]:
        """Every attribute and map key read so far, with whether it was present."""
        return frozenset(
            Reference(name, key, present) for (name, key), present in self._seen.items()
        )
