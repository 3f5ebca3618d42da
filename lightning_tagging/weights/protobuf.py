"""The few protobuf wire-format rules needed to decode TF checkpoint metadata by hand.

A message is a sequence of (tag, value) pairs; ``tag = field_number << 3 | wire_type`` as a
varint. Wire types: 0 varint, 1 fixed 64-bit, 2 length-delimited bytes (strings, nested
messages, packed repeats), 5 fixed 32-bit. https://protobuf.dev/programming-guides/encoding/
"""

from __future__ import annotations

import struct
from typing import TypeVar

Value = int | bytes
T = TypeVar("T")


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode the base-128 varint at ``data[pos:]``; return (value, position after it)."""
    result, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def parse(message: bytes) -> dict[int, list[Value]]:
    """Field number → values in order of appearance (ints for wire types 0/1/5, bytes for 2)."""
    fields: dict[int, list[Value]] = {}
    pos = 0
    while pos < len(message):
        tag, pos = read_varint(message, pos)
        number, wire_type = tag >> 3, tag & 7
        value: Value
        if wire_type == 0:
            value, pos = read_varint(message, pos)
        elif wire_type == 1:
            (value,) = struct.unpack_from("<Q", message, pos)
            pos += 8
        elif wire_type == 2:
            length, pos = read_varint(message, pos)
            value = message[pos : pos + length]
            pos += length
        elif wire_type == 5:
            (value,) = struct.unpack_from("<I", message, pos)
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type} (field {number})")
        fields.setdefault(number, []).append(value)
    if pos != len(message):
        raise ValueError("truncated protobuf message")
    return fields


def last(fields: dict[int, list[Value]], number: int, default: T) -> Value | T:
    """The value of a singular field (protobuf's rule: the last occurrence wins), or ``default``."""
    values = fields.get(number)
    return values[-1] if values else default
