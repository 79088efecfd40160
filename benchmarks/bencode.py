"""Bencoding (BEP 3, "The BitTorrent Protocol Specification", section "bencoding").

rtpengine's ng control protocol carries one bencoded dictionary per datagram
after a cookie and a space; this is the subset it needs: integers, byte strings
(``str`` is sent as UTF-8), lists and dictionaries with byte-string keys sorted
as raw bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

Value = int | bytes | list["Value"] | dict[bytes, "Value"]
Encodable = (
    int
    | str
    | bytes
    | Sequence["Encodable"]
    | Mapping[str, "Encodable"]
    | Mapping[bytes, "Encodable"]
)
#: No leading zeros, no "-0" (BEP 3).
_INTEGER = re.compile(rb"0|-?[1-9][0-9]*")


def encode(value: Encodable) -> bytes:
    """``value`` bencoded; ``str`` is UTF-8 and dictionary keys are sorted as bytes."""
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def _encode(value: Encodable, out: bytearray) -> None:
    if isinstance(value, bool):
        raise TypeError("bencoding has no booleans")
    if isinstance(value, int):
        out += b"i%de" % value
    elif isinstance(value, str | bytes):
        raw = value.encode() if isinstance(value, str) else value
        out += b"%d:" % len(raw) + raw
    elif isinstance(value, Mapping):
        items = sorted(
            (key.encode() if isinstance(key, str) else key, item) for key, item in value.items()
        )
        out += b"d"
        for key, item in items:
            _encode(key, out)
            _encode(item, out)
        out += b"e"
    else:
        out += b"l"
        for item in value:
            _encode(item, out)
        out += b"e"


def decode(data: bytes) -> Value:
    """The one value ``data`` holds; ``ValueError`` on malformed or trailing input."""
    value, end = _decode(data, 0)
    if end != len(data):
        raise ValueError(f"bencode: {len(data) - end} bytes after the value")
    return value


def _decode(data: bytes, at: int) -> tuple[Value, int]:
    if at >= len(data):
        raise ValueError("bencode: truncated")
    lead = data[at : at + 1]
    if lead == b"i":
        end = data.find(b"e", at)
        if end < 0:
            raise ValueError("bencode: unterminated integer")
        digits = data[at + 1 : end]
        if not _INTEGER.fullmatch(digits):
            raise ValueError(f"bencode: bad integer {digits!r}")
        return int(digits), end + 1
    if lead in (b"l", b"d"):
        items: list[Value] = []
        at += 1
        while data[at : at + 1] != b"e":
            item, at = _decode(data, at)
            items.append(item)
        if lead == b"l":
            return items, at + 1
        if len(items) % 2:
            raise ValueError("bencode: dictionary key without a value")
        pairs: dict[bytes, Value] = {}
        for key, item in zip(items[::2], items[1::2], strict=True):
            if not isinstance(key, bytes):
                raise ValueError("bencode: dictionary keys must be byte strings")
            pairs[key] = item
        return pairs, at + 1
    colon = data.find(b":", at)
    if colon < 0 or not data[at:colon].isdigit():
        raise ValueError(f"bencode: unexpected {lead!r} at {at}")
    end = colon + 1 + int(data[at:colon])
    if end > len(data):
        raise ValueError("bencode: truncated string")
    return data[colon + 1 : end], end
