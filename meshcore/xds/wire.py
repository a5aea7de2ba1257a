"""The few pieces of the protobuf wire format the xDS server handles by hand.

Why: responses are assembled from pre-encoded fields instead of being built as messages (see
`resource.py`), and the requests a stream sees most (state-of-the-world ACKs repeating a
thousand names) are recognised from their bytes instead of being parsed (see `sotw.py`). Both
need to write or skip a length-delimited field; nothing here knows what the fields mean.
"""

from __future__ import annotations


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


def string_field(field_number: int, value: str) -> bytes:
    """Encode a proto3 string field: nothing at all for the empty string, as protobuf does."""
    return length_delimited(field_number, value.encode()) if value else b""


def read_varint(payload: bytes, position: int) -> tuple[int, int]:
    """The varint at `position` and the position after it."""
    value, shift = 0, 0
    while True:
        byte = payload[position]
        value |= (byte & 0x7F) << shift
        position += 1
        if byte < 0x80:
            return value, position
        shift += 7


def tag(field_number: int) -> int:
    """The one-byte tag of a length-delimited field numbered below 16."""
    return (field_number << 3) | 2


def field_end(payload: bytes, position: int, field_number: int) -> int:
    """Where the length-delimited field `field_number` found at `position` ends; `position`
    itself if another field (or the end) is there."""
    if position >= len(payload) or payload[position] != tag(field_number):
        return position
    length, position = read_varint(payload, position + 1)
    return position + length


def leading_string(payload: bytes, field_number: int) -> str:
    """The string field `field_number` when the payload starts with it; "" otherwise."""
    end = field_end(payload, 0, field_number)
    if not end:
        return ""
    _, start = read_varint(payload, 1)
    return payload[start:end].decode()
