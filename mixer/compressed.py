"""Istio's CompressedAttributes on the wire <-> plain attribute dictionaries.

Every string of a compressed set (names, string values, string-map keys and values) is an
index: n >= 0 is word n of the global dictionary, -n is word n - 1 of the message's own words.
Decoding is on every Check and every reported request, so it is a straight loop over the
protobuf maps with no per-attribute objects. An index outside both dictionaries is the
client's error (`DecodeError`), answered as INVALID_ARGUMENT by the server.

A decoded set is a dict from attribute name to a Python value of the types of
`meshconfig.policy.attributes`: str, int, float, bool, bytes, datetime (UTC), timedelta,
dict[str, str] for string maps, and `ipaddress` addresses for IP_ADDRESS attributes (which
travel as their packed bytes, as in Istio). No state, no tasks.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2

from meshconfig.policy.attributes import ISTIO_VOCABULARY, IPAddress, ValueType
from mixer import global_dictionary
from protos.mixer.v1 import attributes_pb2, mixer_pb2

Value = (
    str
    | int
    | float
    | bool
    | bytes
    | datetime.datetime
    | datetime.timedelta
    | dict[str, str]
    | IPAddress
)
Attributes = dict[str, Value]


class DecodeError(ValueError):
    """The compressed attributes refer to a word neither dictionary has."""


class _Words:
    """Resolves indices against the global dictionary and one message's words."""

    __slots__ = ("_global", "_local")

    def __init__(self, local: Sequence[str], global_words: Sequence[str]) -> None:
        self._local = local
        self._global = global_words

    def __call__(self, index: int) -> str:
        try:
            if index >= 0:
                return self._global[index]
            return self._local[-index - 1]
        except IndexError:
            where = "global dictionary" if index >= 0 else "message dictionary"
            raise DecodeError(f"word index {index} is outside the {where}") from None


def decode(
    message: attributes_pb2.CompressedAttributes,
    *,
    default_words: Sequence[str] = (),
    global_words: Sequence[str] = global_dictionary.WORDS,
) -> Attributes:
    """One compressed set as a dict; `default_words` stand in when the set has no words."""
    word = _Words(message.words or default_words, global_words)
    result: Attributes = {}
    for name, index in message.strings.items():
        result[word(name)] = word(index)
    for name, number in message.int64s.items():
        result[word(name)] = number
    for name, real in message.doubles.items():
        result[word(name)] = real
    for name, flag in message.bools.items():
        result[word(name)] = flag
    for name, timestamp in message.timestamps.items():
        result[word(name)] = timestamp.ToDatetime(datetime.UTC)
    for name, duration in message.durations.items():
        result[word(name)] = duration.ToTimedelta()
    for name, data in message.bytes_values.items():
        attribute = word(name)
        if ISTIO_VOCABULARY.get(attribute) is ValueType.IP_ADDRESS:
            try:
                result[attribute] = ipaddress.ip_address(data)
            except ValueError:
                raise DecodeError(f"{attribute}: {len(data)} bytes are not an address") from None
        else:
            result[attribute] = data
    for name, string_map in message.string_maps.items():
        result[word(name)] = {word(k): word(v) for k, v in string_map.entries.items()}
    return result


def decode_report(request: mixer_pb2.ReportRequest) -> list[Attributes]:
    """Every attribute set of a Report, each complete (delta encoding applied if used)."""
    default_words = request.default_words
    sets = [decode(item, default_words=default_words) for item in request.attributes]
    if request.repeated_attributes_semantics == mixer_pb2.ReportRequest.DELTA_ENCODING:
        previous: Attributes = {}
        for i, changes in enumerate(sets):
            previous = sets[i] = {**previous, **changes}
    return sets


class Encoder:
    """Builds compressed sets; words missing from the global dictionary go into the message."""

    __slots__ = ("_index", "_local", "_words")

    def __init__(self, global_index: Mapping[str, int] = global_dictionary.INDEX) -> None:
        self._index = global_index
        self._local: dict[str, int] = {}
        self._words: list[str] = []

    def word(self, text: str) -> int:
        """The index of `text`, adding it to the message's words if needed."""
        found = self._index.get(text)
        if found is not None:
            return found
        local = self._local.get(text)
        if local is None:
            self._words.append(text)
            local = self._local[text] = -len(self._words)
        return local

    @property
    def words(self) -> list[str]:
        return self._words

    def encode(self, attributes: Mapping[str, Any]) -> attributes_pb2.CompressedAttributes:
        """`attributes` as a compressed set whose message words are this encoder's so far."""
        message = attributes_pb2.CompressedAttributes()
        for name, value in attributes.items():
            key = self.word(name)
            # bool before int: True is an int too.
            if isinstance(value, bool):
                message.bools[key] = value
            elif isinstance(value, int):
                message.int64s[key] = value
            elif isinstance(value, float):
                message.doubles[key] = value
            elif isinstance(value, str):
                message.strings[key] = self.word(value)
            elif isinstance(value, bytes):
                message.bytes_values[key] = value
            elif isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
                message.bytes_values[key] = value.packed
            elif isinstance(value, datetime.datetime):
                timestamp = timestamp_pb2.Timestamp()
                timestamp.FromDatetime(value)
                message.timestamps[key].CopyFrom(timestamp)
            elif isinstance(value, datetime.timedelta):
                duration = duration_pb2.Duration()
                duration.FromTimedelta(value)
                message.durations[key].CopyFrom(duration)
            elif isinstance(value, Mapping):
                entries = message.string_maps[key].entries
                for k, v in value.items():
                    entries[self.word(k)] = self.word(v)
            else:
                raise TypeError(f"attribute {name}: cannot encode a {type(value).__name__}")
        message.words.extend(self._words)
        return message


def encode(attributes: Mapping[str, Any]) -> attributes_pb2.CompressedAttributes:
    """One set, compressed with its own message dictionary (a Check's attributes)."""
    return Encoder().encode(attributes)


def encode_report(sets: Iterable[Mapping[str, Any]]) -> mixer_pb2.ReportRequest:
    """A Report of independent sets sharing one message dictionary (`default_words`)."""
    encoder = Encoder()
    compressed = []
    for attributes in sets:
        message = encoder.encode(attributes)
        del message.words[:]
        compressed.append(message)
    return mixer_pb2.ReportRequest(
        attributes=compressed,
        default_words=encoder.words,
        global_word_count=len(global_dictionary.WORDS),
        repeated_attributes_semantics=mixer_pb2.ReportRequest.INDEPENDENT_ENCODING,
    )
