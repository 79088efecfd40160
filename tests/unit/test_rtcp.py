"""Tests for RTCP packets and compound validation (RFC 3550 §6, Appendix A.2; RFC 3611)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.rtcp import (
    NTP_UNIX_OFFSET,
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpApp,
    RtcpError,
    RtcpPacket,
    RtcpUnknown,
    RtcpXr,
    SdesChunk,
    SdesItem,
    SdesType,
    SenderReport,
    SourceDescription,
    XrBlock,
    build_compound,
    ntp_from_unix,
    ntp_middle32,
    parse_compound,
    unix_from_ntp,
)

# SR + SDES compound written by hand from the RFC 3550 §6.4.1 and §6.5 diagrams.
HAND_SR = bytes.fromhex(
    # V=2 P=0 RC=1, PT=200, length 12 (13 words)
    "81 C8 000C"
    "12345678"  # SSRC of sender
    "E1A2B3C4 80000000"  # NTP timestamp, .5 s
    "00001F40"  # RTP timestamp 8000
    "00000032"  # sender's packet count 50
    "00001F40"  # sender's octet count 8000
    # report block
    "9ABCDEF0"  # SSRC_1
    "40 000003"  # fraction lost 64/256, cumulative lost 3
    "00010005"  # extended highest sequence: 1 cycle, seq 5
    "00000010"  # interarrival jitter 16
    "B3C48000"  # LSR
    "00018000"  # DLSR 1.5 s
)
HAND_SDES = bytes.fromhex(
    # V=2 P=0 SC=1, PT=202, length 5 (6 words)
    "81 CA 00051234567801 0B" + b"alice@host1".hex() + "00 0000"  # CNAME, null item, pad to 32 bits
)
# RR with no blocks + BYE with a reason, the form sent when a receiver leaves.
HAND_RR_BYE = bytes.fromhex(
    "80 C9 0001 0BADCAFE"  # RR, RC=0, just the SSRC
    "81 CB 0003 0BADCAFE"  # BYE, SC=1, length 3
    "06" + b"hangup".hex() + "00"  # reason length 6, "hangup", pad to 32 bits
)

DERANDOMIZED = settings(derandomize=True, database=None, max_examples=300)


def test_parse_hand_written_sr_sdes_compound() -> None:
    sr, sdes = parse_compound(HAND_SR + HAND_SDES)
    assert sr == SenderReport(
        ssrc=0x12345678,
        ntp_timestamp=0xE1A2B3C4_80000000,
        rtp_timestamp=8000,
        packet_count=50,
        octet_count=8000,
        reports=[
            ReportBlock(
                ssrc=0x9ABCDEF0,
                fraction_lost=64,
                cumulative_lost=3,
                highest_sequence=0x00010005,
                jitter=16,
                lsr=0xB3C48000,
                dlsr=0x00018000,
            )
        ],
    )
    assert isinstance(sdes, SourceDescription)
    assert sdes.chunks == [SdesChunk(0x12345678, [SdesItem(SdesType.CNAME, "alice@host1")])]
    assert sdes.chunks[0].cname == "alice@host1"
    assert build_compound([sr, sdes]) == HAND_SR + HAND_SDES


def test_parse_hand_written_rr_bye_compound() -> None:
    rr, bye = parse_compound(HAND_RR_BYE)
    assert rr == ReceiverReport(0x0BADCAFE)
    assert bye == Bye([0x0BADCAFE], "hangup")
    assert build_compound([rr, bye]) == HAND_RR_BYE


@pytest.mark.parametrize(
    "packet",
    [
        SenderReport(1, 2, 3, 4, 5),
        SenderReport(
            0xFFFFFFFF,
            0xFFFFFFFF_FFFFFFFF,
            0xFFFFFFFF,
            0xFFFFFFFF,
            0xFFFFFFFF,
            [ReportBlock(i, 255, -0x800000, i, 0, 0, 0) for i in range(31)],
            extension=b"\x01\x02\x03\x04",
        ),
        ReceiverReport(7, [ReportBlock(8, 0, -1, 65536, 1, 2, 3)]),
        ReceiverReport(7, [ReportBlock(8, 1, 0x7FFFFF)], extension=bytes(8)),
        SourceDescription(),
        SourceDescription(
            [
                SdesChunk(1, [SdesItem(SdesType.CNAME, "a"), SdesItem(SdesType.TOOL, "vc")]),
                SdesChunk(2),
                SdesChunk(3, [SdesItem(SdesType.NAME, "é" * 127)]),
                SdesChunk(4, [SdesItem(SdesType.NOTE, "xy")]),
            ]
        ),
        Bye(),
        Bye([1, 2, 3]),
        Bye([1], ""),
        Bye([1], "abc"),
        Bye([1], "abcd"),
        RtcpApp(9, b"TEST"),
        RtcpApp(9, b"QOE!", b"12345678", subtype=31),
        RtcpXr(5),
        RtcpXr(5, [XrBlock(4, 0, bytes(8)), XrBlock(5, 0, bytes(12)), XrBlock(7, 3, b"")]),
        RtcpUnknown(205, 1, bytes(8)),
        RtcpUnknown(206, 15, b""),
    ],
    ids=lambda packet: type(packet).__name__,
)
def test_round_trip_each_packet_type(packet: RtcpPacket) -> None:
    data = bytes(packet)
    assert len(data) % 4 == 0
    assert type(packet).parse(data) == packet
    assert parse_compound(bytes(ReceiverReport(1)) + data)[1:] == [packet]


def test_negative_cumulative_lost_is_24_bit_twos_complement() -> None:
    data = bytes(ReportBlock(1, 0, -2))
    assert data[4:8] == bytes.fromhex("00FFFFFE")
    assert ReportBlock.parse(data).cumulative_lost == -2


def test_sdes_chunk_without_cname() -> None:
    assert SdesChunk(1, [SdesItem(SdesType.NAME, "x")]).cname is None


def test_sdes_item_with_invalid_utf8_is_decoded_with_replacement() -> None:
    data = bytes.fromhex("81 CA 0002 00000001 01 01 FF 00")
    assert SourceDescription.parse(data).chunks[0].cname == "\ufffd"


def test_padding_on_last_packet_is_stripped() -> None:
    # BYE with P=1, SC=1, one SSRC, then 4 octets of padding ending in the count.
    padded_bye = bytes.fromhex("A1 CB 0002 0BADCAFE 00000004")
    rr, bye = parse_compound(HAND_RR_BYE[:8] + padded_bye)
    assert bye == Bye([0x0BADCAFE])


def test_parse_single_packet_of_the_wrong_type_raises() -> None:
    with pytest.raises(RtcpError, match="expected SenderReport, got RTCP packet type 202"):
        SenderReport.parse(HAND_SDES)


def test_parse_single_packet_given_a_compound_raises() -> None:
    with pytest.raises(RtcpError, match="expected one RTCP packet, found 2"):
        SenderReport.parse(HAND_SR + HAND_SDES)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short: 0 octets"),
        (b"\x80\xc9\x00", "too short: 3 octets"),
        (HAND_SDES, "must start with SR or RR, got type 202"),
        (bytes.fromhex("80 CB 0000"), "must start with SR or RR, got type 203"),
        (b"\x40" + HAND_SR[1:], "version must be 2, got 1"),
        (HAND_SR + b"\x00" + HAND_SDES[1:], "version must be 2, got 0 at offset 52"),
        (HAND_SR[:-4], "claims 52 octets, only 48 left"),
        (HAND_SR + HAND_SDES[:-4], "at offset 52 claims 24 octets, only 20 left"),
        (HAND_SR + b"\x81\xca", "2 stray octets at the end"),
        (b"\xa0" + HAND_RR_BYE[1:], "padding on packet at offset 0, which is not the last"),
        (bytes.fromhex("A0 C9 0001 00000000"), "padding length 0 invalid"),
        (bytes.fromhex("A0 C9 0001 00000005"), "padding length 5 invalid"),
        (bytes.fromhex("80 C8 0001 00000001"), "sender info incomplete"),
        (bytes.fromhex("81 C9 0001 00000001"), "1 report blocks do not fit"),
        (bytes.fromhex("80 C9 0000"), "receiver report truncated: no SSRC"),
    ],
    ids=[
        "empty",
        "runt",
        "starts-with-sdes",
        "starts-with-bye",
        "bad-version-first",
        "bad-version-second",
        "length-overruns",
        "second-length-overruns",
        "stray-octets",
        "padding-not-last",
        "padding-zero",
        "padding-too-long",
        "sr-truncated",
        "rr-blocks-truncated",
        "rr-no-ssrc",
    ],
)
def test_malformed_compound_raises_rtcp_error(data: bytes, message: str) -> None:
    with pytest.raises(RtcpError, match=message):
        parse_compound(data)


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        ("81 CA 0000", "chunk SSRC missing"),
        ("81 CA 0001 00000001", "no terminating null item"),
        ("81 CA 0002 00000001 01 05 6162", "item truncated"),
        ("81 CA 0003 00000001 00000000 00000000", "4 octets after its 1 chunks"),
        ("82 CB 0001 00000001", "2 sources do not fit"),
        ("81 CB 0002 00000001 09616263", "reason truncated"),
        ("80 CC 0001 00000001", "SSRC or name missing"),
        ("80 CF 0000", "XR truncated: no SSRC"),
        ("A0 CF 0002 00000001 04000002", "block header truncated"),  # padding leaves 2 octets
        ("80 CF 0002 00000001 04000002", "XR block of 2 words overruns"),
    ],
    ids=[
        "sdes-no-ssrc",
        "sdes-unterminated",
        "sdes-item-overrun",
        "sdes-trailing-octets",
        "bye-sources-overrun",
        "bye-reason-overrun",
        "app-truncated",
        "xr-no-ssrc",
        "xr-ragged-block",
        "xr-block-overrun",
    ],
)
def test_malformed_packet_after_rr_raises_rtcp_error(packet: str, message: str) -> None:
    with pytest.raises(RtcpError, match=message):
        parse_compound(HAND_RR_BYE[:8] + bytes.fromhex(packet))


def test_sdes_chunk_padding_cut_off_by_rtcp_padding_raises() -> None:
    # One octet of RTCP padding leaves 7 body octets; the chunk's null item needs 8.
    sdes = bytes.fromhex("A1 CA 0002 00000001 01 00 00 01")
    with pytest.raises(RtcpError, match="chunk padding truncated"):
        parse_compound(HAND_RR_BYE[:8] + sdes)


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (ReportBlock(1, fraction_lost=256), "fraction lost must be 0-255"),
        (ReportBlock(1, cumulative_lost=0x800000), "24 signed bits"),
        (ReportBlock(1, jitter=1 << 32), "out of range"),
        (ReceiverReport(1, [ReportBlock(2)] * 32), "at most 31 report blocks"),
        (SenderReport(1, 1 << 64, 0, 0, 0), "out of range"),
        (ReceiverReport(1, extension=b"abc"), "whole 32-bit words, got 7"),
        (SourceDescription([SdesChunk(1, [SdesItem(1, "x" * 256)])]), "256 octets"),
        (SourceDescription([SdesChunk(1, [SdesItem(0, "x")])]), "type must be 1-255"),
        (Bye([1], "é" * 128), "BYE reason is 256 octets"),
        (Bye(list(range(32))), "count field must be 0-31, got 32"),
        (RtcpApp(1, b"ABC"), "name must be 4 octets"),
        (RtcpApp(1, b"ABCD", subtype=32), "count field must be 0-31"),
        (RtcpXr(1, [XrBlock(4, 0, b"abc")]), "whole 32-bit words, got 3"),
    ],
    ids=[
        "fraction-256",
        "cumulative-overflow",
        "jitter-overflow",
        "32-blocks",
        "ntp-overflow",
        "ragged-extension",
        "sdes-long-text",
        "sdes-type-0",
        "bye-long-reason",
        "bye-32-sources",
        "app-short-name",
        "app-subtype-32",
        "xr-ragged-block",
    ],
)
def test_unencodable_packet_raises_rtcp_error(
    packet: RtcpPacket | ReportBlock, message: str
) -> None:
    with pytest.raises(RtcpError, match=message):
        bytes(packet)


@DERANDOMIZED
@given(st.binary(max_size=120))
def test_arbitrary_bytes_parse_or_raise_rtcp_error(data: bytes) -> None:
    try:
        packets = parse_compound(b"\x80\xc9\x00\x01\x00\x00\x00\x01" + data)
    except RtcpError:
        return
    assert isinstance(packets[0], ReceiverReport)


def test_ntp_from_unix_epoch_and_fraction() -> None:
    assert ntp_from_unix(0.0) == NTP_UNIX_OFFSET << 32
    assert ntp_from_unix(1.5) == (NTP_UNIX_OFFSET + 1) << 32 | 0x80000000
    assert ntp_from_unix(-0.25) == (NTP_UNIX_OFFSET - 1) << 32 | 0xC0000000


def test_unix_from_ntp_inverts_ntp_from_unix() -> None:
    t = 1_700_000_000.123456
    assert unix_from_ntp(ntp_from_unix(t)) == pytest.approx(t, abs=1e-6)


def test_ntp_era_1_after_2036_round_trips() -> None:
    # 2036-02-07T06:28:16Z is NTP second 2**32, which wraps to 0 in the 64-bit format.
    t = 2**32 - NTP_UNIX_OFFSET + 10.0
    assert ntp_from_unix(t) == 10 << 32
    assert unix_from_ntp(10 << 32) == t


def test_ntp_middle32_takes_bits_16_to_47() -> None:
    assert ntp_middle32(0xE1A2B3C4_80000000) == 0xB3C48000
    assert ntp_middle32(0xFFFF0000_0000FFFF) == 0x00000000
