"""Tests for RTP packets (RFC 3550 §5.1, §5.3.1), wrap-aware arithmetic and RTP/RTCP demux."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.rtp import (
    RTP_HEADER,
    RtpError,
    RtpExtension,
    RtpPacket,
    is_rtcp,
    rewrite_header,
    seq_diff,
    seq_lt,
    ts_diff,
    uint16_add,
    uint32_add,
)

# V=2, no P/X/CC; M=1, PT=8 (PCMA); seq 0x1234; ts 0x00000140; SSRC 0xDEADBEEF; 4 octets.
HAND_WRITTEN = bytes.fromhex("80 88 1234 00000140 DEADBEEF 01020304")
# V=2, P, X, CC=2; M=0, PT=96; seq 1; ts 2; SSRC 3; CSRCs 10, 11;
# extension 0xBEDE with one word; payload "ab"; 2 octets of padding (00 02).
HAND_WRITTEN_FULL = bytes.fromhex(
    "B2 60 0001 00000002 00000003 0000000A 0000000B BEDE 0001 10FF0000 6162 0002"
)

DERANDOMIZED = settings(derandomize=True, database=None, max_examples=300)


def test_parse_hand_written_packet_reads_every_header_field() -> None:
    packet = RtpPacket.parse(HAND_WRITTEN)
    assert packet == RtpPacket(
        payload_type=8,
        sequence_number=0x1234,
        timestamp=0x140,
        ssrc=0xDEADBEEF,
        payload=b"\x01\x02\x03\x04",
        marker=True,
    )
    assert bytes(packet) == HAND_WRITTEN


def test_parse_packet_with_csrc_extension_and_padding() -> None:
    packet = RtpPacket.parse(HAND_WRITTEN_FULL)
    assert packet.payload_type == 96
    assert not packet.marker
    assert packet.csrc == [10, 11]
    assert packet.extension == RtpExtension(0xBEDE, bytes.fromhex("10FF0000"))
    assert packet.payload == b"ab"
    assert packet.padding == 2
    assert bytes(packet) == HAND_WRITTEN_FULL


@pytest.mark.parametrize(
    "packet",
    [
        RtpPacket(),
        RtpPacket(0, 65535, 0xFFFFFFFF, 0xFFFFFFFF, b"\xd5" * 160, marker=True),
        RtpPacket(111, 7, 960, 42, b"opus", csrc=list(range(15))),
        RtpPacket(96, 1, 2, 3, b"", extension=RtpExtension(0x1000, b"")),
        RtpPacket(96, 1, 2, 3, b"x", padding=1),
        RtpPacket(96, 1, 2, 3, b"x" * 3, padding=255),
    ],
    ids=["empty", "max-fields-marker", "15-csrc", "empty-extension", "pad-1", "pad-255"],
)
def test_round_trip(packet: RtpPacket) -> None:
    assert RtpPacket.parse(bytes(packet)) == packet


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short: 0 octets"),
        (HAND_WRITTEN[:11], "too short: 11 octets"),
        (b"\x40" + HAND_WRITTEN[1:], "version must be 2, got 1"),
        (b"\x00" * 12, "version must be 2, got 0"),
        (b"\x83" + HAND_WRITTEN[1:12] + bytes(8), "3 CSRCs need 24 octets, got 20"),
        (b"\x90" + HAND_WRITTEN[1:12] + b"\xbe\xde", "header extension missing"),
        (b"\x90" + HAND_WRITTEN[1:12] + bytes.fromhex("BEDE0002") + bytes(4), "of 2 words"),
        (b"\xa0" + HAND_WRITTEN[1:12] + b"\x00", "padding length 0 invalid"),
        (b"\xa0" + HAND_WRITTEN[1:12] + b"xy\x04", "padding length 4 invalid"),
    ],
    ids=[
        "empty",
        "11-octets",
        "version-1",
        "version-0",
        "truncated-csrc",
        "truncated-extension-header",
        "truncated-extension-body",
        "zero-padding",
        "padding-into-header",
    ],
)
def test_malformed_packet_raises_rtp_error(data: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        RtpPacket.parse(data)


def test_rtp_error_is_a_value_error() -> None:
    assert issubclass(RtpError, ValueError)


def test_padding_may_consume_the_whole_payload() -> None:
    packet = RtpPacket.parse(b"\xa0" + HAND_WRITTEN[1:12] + b"\x00\x00\x03")
    assert packet.payload == b""
    assert packet.padding == 3


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (RtpPacket(csrc=list(range(16))), "at most 15 CSRCs"),
        (RtpPacket(payload_type=128), "payload type must be 0-127, got 128"),
        (RtpPacket(padding=256), "padding must be 0-255"),
        (RtpPacket(extension=RtpExtension(1, b"abc")), "whole 32-bit words, got 3"),
        (RtpPacket(sequence_number=65536), "out of range"),
        (RtpPacket(ssrc=-1), "out of range"),
    ],
    ids=["16-csrc", "pt-128", "padding-256", "ragged-extension", "seq-65536", "negative-ssrc"],
)
def test_unencodable_packet_raises_rtp_error(packet: RtpPacket, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        bytes(packet)


_uint32 = st.integers(0, 0xFFFFFFFF)
_packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=_uint32,
    ssrc=_uint32,
    payload=st.binary(max_size=64),
    marker=st.booleans(),
    csrc=st.lists(_uint32, max_size=15),
    extension=st.none()
    | st.builds(
        RtpExtension,
        profile=st.integers(0, 0xFFFF),
        data=st.integers(0, 8).flatmap(
            lambda words: st.binary(min_size=4 * words, max_size=4 * words)
        ),
    ),
    padding=st.integers(0, 255),
)


@DERANDOMIZED
@given(_packets)
def test_round_trip_property(packet: RtpPacket) -> None:
    assert RtpPacket.parse(bytes(packet)) == packet


@DERANDOMIZED
@given(st.binary(max_size=80))
def test_arbitrary_bytes_parse_or_raise_rtp_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    assert len(bytes(packet)) == len(data)


def test_seq_diff_across_wrap() -> None:
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert seq_diff(5, 65530) == 11
    assert seq_diff(100, 100) == 0
    assert seq_diff(32767, 0) == 32767
    assert seq_diff(32768, 0) == -32768


def test_seq_lt_across_wrap() -> None:
    assert seq_lt(65535, 0)
    assert not seq_lt(0, 65535)
    assert seq_lt(1, 2)
    assert not seq_lt(2, 2)


def test_uint16_add_wraps_both_ways() -> None:
    assert uint16_add(65535, 1) == 0
    assert uint16_add(0, -1) == 65535
    assert uint16_add(65000, 1000) == 464


@DERANDOMIZED
@given(st.integers(0, 0xFFFF), st.integers(-0x8000, 0x7FFF))
def test_seq_diff_inverts_uint16_add(a: int, delta: int) -> None:
    assert seq_diff(uint16_add(a, delta), a) == delta


def test_ts_diff_and_uint32_add_across_wrap() -> None:
    assert ts_diff(0, 0xFFFFFFFF) == 1
    assert ts_diff(0xFFFFFF60, 0x100) == -0x1A0
    assert ts_diff(160, 0) == 160
    assert uint32_add(0xFFFFFF60, 0x1A0) == 0x100
    assert uint32_add(0, -160) == 0xFFFFFF60


@pytest.mark.parametrize(
    ("second_octet", "rtcp"),
    [
        (0x00, False),  # PCMU
        (0x88, False),  # PCMA with marker
        (0x60, False),  # PT 96
        (0xE0, False),  # PT 96 with marker: 224, just above the RTCP range
        (0xBF, False),  # PT 63 with marker: 191, just below
        (0xC0, True),  # 192 (FIR, historic)
        (0xC8, True),  # SR
        (0xC9, True),  # RR
        (0xCF, True),  # XR
        (0xDF, True),  # 223, top of the range
    ],
)
def test_is_rtcp_demultiplexes_by_second_octet(second_octet: int, rtcp: bool) -> None:
    assert is_rtcp(bytes((0x80, second_octet)) + bytes(10)) is rtcp


def test_is_rtcp_rejects_runt_datagram() -> None:
    assert not is_rtcp(b"\x80")


def test_fixed_header_struct_reads_what_the_full_parse_reads() -> None:
    for data in (HAND_WRITTEN, HAND_WRITTEN_FULL):
        first, second, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
        packet = RtpPacket.parse(data)
        assert first >> 6 == 2
        assert (second & 0x7F, second > 0x7F, seq, ts, ssrc) == (
            packet.payload_type,
            packet.marker,
            packet.sequence_number,
            packet.timestamp,
            packet.ssrc,
        )


def test_rewrite_header_replaces_fields_and_keeps_marker_and_body() -> None:
    rewritten = rewrite_header(
        HAND_WRITTEN_FULL, payload_type=0, sequence_number=9, timestamp=0xFFFFFFFF, ssrc=7
    )
    original = RtpPacket.parse(HAND_WRITTEN_FULL)
    packet = RtpPacket.parse(bytes(rewritten))
    assert packet.payload_type == 0
    assert packet.sequence_number == 9
    assert packet.timestamp == 0xFFFFFFFF
    assert packet.ssrc == 7
    assert (packet.marker, packet.csrc, packet.extension, packet.payload, packet.padding) == (
        original.marker,
        original.csrc,
        original.extension,
        original.payload,
        original.padding,
    )


def test_rewrite_header_payload_type_keeps_marker_bit() -> None:
    rewritten = rewrite_header(HAND_WRITTEN, payload_type=0)
    assert rewritten[1] == 0x80
    assert rewritten[2:] == HAND_WRITTEN[2:]


def test_rewrite_header_without_changes_copies_packet() -> None:
    assert rewrite_header(HAND_WRITTEN) == HAND_WRITTEN


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"payload_type": 128}, "payload type must be 0-127"),
        ({"sequence_number": 65536}, "out of range"),
        ({"timestamp": 1 << 32}, "out of range"),
    ],
)
def test_rewrite_header_rejects_out_of_range_values(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(RtpError, match=message):
        rewrite_header(HAND_WRITTEN, **kwargs)


def test_rewrite_header_rejects_runt() -> None:
    with pytest.raises(RtpError, match="too short"):
        rewrite_header(b"\x80\x00")
