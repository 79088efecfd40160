"""The benchmark's bencoding for rtpengine's ng protocol (BEP 3)."""

from __future__ import annotations

import pytest

from benchmarks.bencode import Encodable, decode, encode


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (0, b"i0e"),
        (-42, b"i-42e"),
        ("spam", b"4:spam"),
        (b"", b"0:"),
        (["a", 1, []], b"l1:ai1elee"),
        # Keys sorted as raw bytes, whatever order they were given in.
        ({"result": "ok", "command": "ping"}, b"d7:command4:ping6:result2:oke"),
        (
            {"flags": ["trust-address"], "sdp": "v=0\r\n"},
            b"d5:flagsl13:trust-addresse3:sdp5:v=0\r\ne",
        ),
    ],
)
def test_encode(value: Encodable, wire: bytes) -> None:
    assert encode(value) == wire


def test_round_trip_gives_bytes() -> None:
    media: dict[str, Encodable] = {"port": 30000, "index": -1}
    value: dict[str, Encodable] = {"call-id": "c1", "media": [media], "utf8": "é"}
    assert decode(encode(value)) == {
        b"call-id": b"c1",
        b"media": [{b"index": -1, b"port": 30000}],
        b"utf8": "é".encode(),
    }


def test_string_with_colons_and_digits() -> None:
    assert decode(b"12:a=rtpmap:0 P") == b"a=rtpmap:0 P"


def test_booleans_refused() -> None:
    with pytest.raises(TypeError):
        encode({"x": True})


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"i12",
        b"i012e",
        b"i-0e",
        b"ie",
        b"i 1e",
        b"5:abc",
        b"l1:a",
        b"di1e1:ae",
        b"d1:ae",
        b"i1ei2e",
        b"x",
    ],
)
def test_malformed(wire: bytes) -> None:
    with pytest.raises(ValueError):
        decode(wire)
