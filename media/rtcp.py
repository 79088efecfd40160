"""RTCP packets (RFC 3550 §6.4-§6.6, APP §6.7, XR RFC 3611 §3) and compound packets (§6.1).

Every packet type is a dataclass with ``parse(cls, data)`` for one packet and ``__bytes__``;
:func:`parse_compound` validates a whole datagram per RFC 3550 Appendix A.2. Types this
module does not model (e.g. RFC 4585 feedback) come back as :class:`RtcpUnknown`.
"""

from __future__ import annotations

import math
import struct
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, Self

PT_SR = 200
PT_RR = 201
PT_SDES = 202
PT_BYE = 203
PT_APP = 204
PT_XR = 207

# V/P/count, packet type, length in 32-bit words minus one (RFC 3550 §6.4.1).
_HEADER = struct.Struct("!BBH")
_SSRC = struct.Struct("!I")
# SSRC, NTP timestamp, RTP timestamp, sender's packet count, sender's octet count.
_SENDER_INFO = struct.Struct("!IQIII")
# SSRC, fraction lost + cumulative lost (24-bit), ext. highest seq, jitter, LSR, DLSR.
_REPORT_BLOCK = struct.Struct("!IIIIII")
# SSRC, four ASCII octets of name (RFC 3550 §6.7).
_APP = struct.Struct("!I4s")
# XR block type, type-specific, block length in words minus one (RFC 3611 §3).
_XR_BLOCK = struct.Struct("!BBH")

#: Seconds between the NTP epoch (1900) and the Unix epoch (1970).
NTP_UNIX_OFFSET = 2_208_988_800


class RtcpError(ValueError):
    """A malformed RTCP packet or compound packet, or one that cannot be encoded."""


class SdesType(IntEnum):
    """SDES item types (RFC 3550 §6.5)."""

    END = 0
    CNAME = 1
    NAME = 2
    EMAIL = 3
    PHONE = 4
    LOC = 5
    TOOL = 6
    NOTE = 7
    PRIV = 8


def _text(value: str, what: str) -> bytes:
    raw = value.encode()
    if len(raw) > 255:
        raise RtcpError(f"{what} is {len(raw)} octets in UTF-8, at most 255 fit")
    return raw


def _pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


class RtcpPacket(ABC):
    """Base of every RTCP packet type; ``bytes(packet)`` gives the packet with its header."""

    __slots__ = ()

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Decode exactly one RTCP packet of this class's type."""
        packets = list(_split(data))
        if len(packets) != 1:
            raise RtcpError(f"expected one RTCP packet, found {len(packets)}")
        pt, count, body = packets[0]
        parsed = _decode(pt, count, body)
        if not isinstance(parsed, cls):
            raise RtcpError(f"expected {cls.__name__}, got RTCP packet type {pt}")
        return parsed

    @classmethod
    @abstractmethod
    def _from_body(cls, pt: int, count: int, body: bytes) -> Self:
        """Decode the body (header and padding removed) of a packet of type ``pt``."""

    @abstractmethod
    def _encode(self) -> tuple[int, int, bytes]:
        """Return ``(packet type, count field, body)``; the body is whole 32-bit words."""

    def __bytes__(self) -> bytes:
        pt, count, body = self._encode()
        if not 0 <= count <= 31:
            raise RtcpError(f"RTCP count field must be 0-31, got {count}")
        if len(body) % 4:
            raise RtcpError(f"RTCP packet body must be whole 32-bit words, got {len(body)}")
        return _HEADER.pack(0x80 | count, pt, len(body) // 4) + body


@dataclass(slots=True)
class ReportBlock:
    """Reception report block (RFC 3550 §6.4.1)."""

    ssrc: int
    """Source this block reports on."""
    fraction_lost: int = 0
    """Fraction lost since the previous report, in 1/256 units (0-255)."""
    cumulative_lost: int = 0
    """Packets lost since reception began; signed 24-bit, negative when duplicates arrive."""
    highest_sequence: int = 0
    """Extended highest sequence number received (cycles << 16 | max seq)."""
    jitter: int = 0
    """Interarrival jitter in timestamp units."""
    lsr: int = 0
    """Middle 32 bits of the NTP timestamp of the last SR received, 0 if none."""
    dlsr: int = 0
    """Delay since that SR was received, in 1/65536 seconds."""

    SIZE: ClassVar[int] = _REPORT_BLOCK.size

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> ReportBlock:
        """Decode the 24-octet block at ``offset``."""
        if len(data) - offset < cls.SIZE:
            raise RtcpError("RTCP report block truncated")
        ssrc, lost, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, offset)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        return cls(ssrc, lost >> 24, cumulative, highest, jitter, lsr, dlsr)

    def __bytes__(self) -> bytes:
        if not 0 <= self.fraction_lost <= 255:
            raise RtcpError(f"fraction lost must be 0-255, got {self.fraction_lost}")
        if not -0x800000 <= self.cumulative_lost <= 0x7FFFFF:
            raise RtcpError(f"cumulative lost must fit 24 signed bits, got {self.cumulative_lost}")
        lost = self.fraction_lost << 24 | (self.cumulative_lost & 0xFFFFFF)
        try:
            return _REPORT_BLOCK.pack(
                self.ssrc, lost, self.highest_sequence, self.jitter, self.lsr, self.dlsr
            )
        except struct.error as exc:
            raise RtcpError(f"report block field out of range: {exc}") from exc


def _parse_blocks(body: bytes, offset: int, count: int) -> tuple[list[ReportBlock], bytes]:
    end = offset + count * ReportBlock.SIZE
    if end > len(body):
        raise RtcpError(f"RTCP packet truncated: {count} report blocks do not fit")
    blocks = [ReportBlock.parse(body, offset + i * ReportBlock.SIZE) for i in range(count)]
    return blocks, body[end:]


def _check_report_count(reports: list[ReportBlock]) -> None:
    if len(reports) > 31:
        raise RtcpError(f"an SR/RR carries at most 31 report blocks, got {len(reports)}")


@dataclass(slots=True)
class SenderReport(RtcpPacket):
    """Sender report, PT 200 (RFC 3550 §6.4.1)."""

    ssrc: int
    """Sender's SSRC."""
    ntp_timestamp: int
    """64-bit NTP timestamp of the wallclock time the report was sent."""
    rtp_timestamp: int
    """RTP timestamp matching ``ntp_timestamp``."""
    packet_count: int
    """RTP data packets sent since starting transmission."""
    octet_count: int
    """Payload octets sent since starting transmission."""
    reports: list[ReportBlock] = field(default_factory=list)
    """Reception report blocks."""
    extension: bytes = b""
    """Profile-specific extension after the report blocks."""

    @classmethod
    def _from_body(cls, pt: int, count: int, body: bytes) -> SenderReport:
        if len(body) < _SENDER_INFO.size:
            raise RtcpError("RTCP sender report truncated: sender info incomplete")
        ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(body)
        reports, extension = _parse_blocks(body, _SENDER_INFO.size, count)
        return cls(ssrc, ntp, rtp_ts, packets, octets, reports, extension)

    def _encode(self) -> tuple[int, int, bytes]:
        _check_report_count(self.reports)
        try:
            info = _SENDER_INFO.pack(
                self.ssrc,
                self.ntp_timestamp,
                self.rtp_timestamp,
                self.packet_count,
                self.octet_count,
            )
        except struct.error as exc:
            raise RtcpError(f"sender report field out of range: {exc}") from exc
        blocks = b"".join(bytes(block) for block in self.reports)
        return PT_SR, len(self.reports), info + blocks + self.extension


@dataclass(slots=True)
class ReceiverReport(RtcpPacket):
    """Receiver report, PT 201 (RFC 3550 §6.4.2)."""

    ssrc: int
    """Reporter's SSRC."""
    reports: list[ReportBlock] = field(default_factory=list)
    """Reception report blocks."""
    extension: bytes = b""
    """Profile-specific extension after the report blocks."""

    @classmethod
    def _from_body(cls, pt: int, count: int, body: bytes) -> ReceiverReport:
        if len(body) < 4:
            raise RtcpError("RTCP receiver report truncated: no SSRC")
        reports, extension = _parse_blocks(body, 4, count)
        return cls(_SSRC.unpack_from(body)[0], reports, extension)

    def _encode(self) -> tuple[int, int, bytes]:
        _check_report_count(self.reports)
        blocks = b"".join(bytes(block) for block in self.reports)
        return PT_RR, len(self.reports), _SSRC.pack(self.ssrc) + blocks + self.extension


@dataclass(slots=True)
class SdesItem:
    """One SDES item (RFC 3550 §6.5); PRIV items keep prefix and value together in ``value``."""

    type: int
    """Item type, see :class:`SdesType`."""
    value: str
    """UTF-8 text, at most 255 octets."""


@dataclass(slots=True)
class SdesChunk:
    """The SDES items of one source (RFC 3550 §6.5)."""

    ssrc: int
    """SSRC or CSRC described."""
    items: list[SdesItem] = field(default_factory=list)
    """Items in the order sent."""

    @property
    def cname(self) -> str | None:
        """The CNAME item's value, if present."""
        return next((i.value for i in self.items if i.type == SdesType.CNAME), None)


@dataclass(slots=True)
class SourceDescription(RtcpPacket):
    """Source description, PT 202 (RFC 3550 §6.5)."""

    chunks: list[SdesChunk] = field(default_factory=list)
    """One chunk per source."""

    @classmethod
    def _from_body(cls, pt: int, count: int, body: bytes) -> SourceDescription:
        chunks = []
        pos = 0
        end = len(body)
        for _ in range(count):
            if pos + 4 > end:
                raise RtcpError("RTCP SDES truncated: chunk SSRC missing")
            chunk = SdesChunk(_SSRC.unpack_from(body, pos)[0])
            pos += 4
            while True:
                if pos >= end:
                    raise RtcpError("RTCP SDES chunk has no terminating null item")
                item_type = body[pos]
                if item_type == SdesType.END:
                    # The item list ends with a null octet, then pads to a 32-bit boundary.
                    pos += 4 - pos % 4
                    if pos > end:
                        raise RtcpError("RTCP SDES chunk padding truncated")
                    break
                if pos + 2 > end or pos + 2 + body[pos + 1] > end:
                    raise RtcpError("RTCP SDES item truncated")
                length = body[pos + 1]
                value = body[pos + 2 : pos + 2 + length].decode(errors="replace")
                chunk.items.append(SdesItem(item_type, value))
                pos += 2 + length
            chunks.append(chunk)
        if pos != end:
            raise RtcpError(f"RTCP SDES has {end - pos} octets after its {count} chunks")
        return cls(chunks)

    def _encode(self) -> tuple[int, int, bytes]:
        parts = []
        for chunk in self.chunks:
            raw = bytearray(_SSRC.pack(chunk.ssrc))
            for item in chunk.items:
                if not 1 <= item.type <= 255:
                    raise RtcpError(f"SDES item type must be 1-255, got {item.type}")
                value = _text(item.value, "SDES item")
                raw += bytes((item.type, len(value))) + value
            # At least one null octet terminates the list, then pad to a 32-bit boundary.
            raw += bytes(4 - len(raw) % 4)
            parts.append(bytes(raw))
        return PT_SDES, len(self.chunks), b"".join(parts)


@dataclass(slots=True)
class Bye(RtcpPacket):
    """Goodbye, PT 203 (RFC 3550 §6.6)."""

    sources: list[int] = field(default_factory=list)
    """SSRC/CSRCs leaving."""
    reason: str | None = None
    """Optional reason for leaving."""

    @classmethod
    def _from_body(cls, pt: int, count: int, body: bytes) -> Bye:
        end = 4 * count
        if end > len(body):
            raise RtcpError(f"RTCP BYE truncated: {count} sources do not fit")
        sources = [_SSRC.unpack_from(body, 4 * i)[0] for i in range(count)]
        reason = None
        if end < len(body):
            length = body[end]
            if end + 1 + length > len(body):
                raise RtcpError("RTCP BYE reason truncated")
            reason = body[end + 1 : end + 1 + length].decode(errors="replace")
        return cls(sources, reason)

    def _encode(self) -> tuple[int, int, bytes]:
        body = b"".join(_SSRC.pack(source) for source in self.sources)
        if self.reason is not None:
            reason = _text(self.reason, "BYE reason")
            body += _pad4(bytes((len(reason),)) + reason)
        return PT_BYE, len(self.sources), body


@dataclass(slots=True)
class RtcpApp(RtcpPacket):
    """Application-defined packet, PT 204 (RFC 3550 §6.7), kept opaque."""

    ssrc: int
    """Sender's SSRC/CSRC."""
    name: bytes
    """Four ASCII octets naming the application."""
    data: bytes = b""
    """Application data, whole 32-bit words."""
    subtype: int = 0
    """Five-bit subtype carried in the count field."""

    @classmethod
    def _from_body(cls, pt: int, count: int, body: bytes) -> RtcpApp:
        if len(body) < _APP.size:
            raise RtcpError("RTCP APP truncated: SSRC or name missing")
        ssrc, name = _APP.unpack_from(body)
        return cls(ssrc, name, body[_APP.size :], count)

    def _encode(self) -> tuple[int, int, bytes]:
        if len(self.name) != 4:
            raise RtcpError(f"APP name must be 4 octets, got {self.name!r}")
        return PT_APP, self.subtype, _APP.pack(self.ssrc, self.name) + self.data


@dataclass(slots=True)
class XrBlock:
    """One XR report block (RFC 3611 §3), kept opaque."""

    block_type: int
    """Block type (e.g. 4 receiver reference time, 5 DLRR, 7 VoIP metrics)."""
    type_specific: int
    """The type-specific octet of the block header."""
    data: bytes
    """Block contents after the header, whole 32-bit words."""


@dataclass(slots=True)
class RtcpXr(RtcpPacket):
    """Extended report, PT 207 (RFC 3611 §2), blocks kept opaque."""

    ssrc: int
    """Originator's SSRC."""
    blocks: list[XrBlock] = field(default_factory=list)
    """Report blocks in the order sent."""

    @classmethod
    def _from_body(cls, pt: int, count: int, body: bytes) -> RtcpXr:
        if len(body) < 4:
            raise RtcpError("RTCP XR truncated: no SSRC")
        blocks = []
        pos = 4
        while pos < len(body):
            if pos + _XR_BLOCK.size > len(body):
                raise RtcpError("RTCP XR block header truncated")
            block_type, specific, words = _XR_BLOCK.unpack_from(body, pos)
            start = pos + _XR_BLOCK.size
            pos = start + 4 * words
            if pos > len(body):
                raise RtcpError(f"RTCP XR block of {words} words overruns the packet")
            blocks.append(XrBlock(block_type, specific, body[start:pos]))
        return cls(_SSRC.unpack_from(body)[0], blocks)

    def _encode(self) -> tuple[int, int, bytes]:
        parts = [_SSRC.pack(self.ssrc)]
        for block in self.blocks:
            if len(block.data) % 4:
                raise RtcpError(f"XR block must be whole 32-bit words, got {len(block.data)}")
            parts.append(
                _XR_BLOCK.pack(block.block_type, block.type_specific, len(block.data) // 4)
            )
            parts.append(block.data)
        return PT_XR, 0, b"".join(parts)


@dataclass(slots=True)
class RtcpUnknown(RtcpPacket):
    """Any other RTCP packet type (e.g. RFC 4585 RTPFB/PSFB), kept opaque."""

    packet_type: int
    """Packet type, 192-223 outside those modelled above."""
    count: int
    """The five-bit count/format field."""
    body: bytes
    """Everything after the four-octet header, without padding."""

    @classmethod
    def _from_body(cls, pt: int, count: int, body: bytes) -> RtcpUnknown:
        return cls(pt, count, body)

    def _encode(self) -> tuple[int, int, bytes]:
        return self.packet_type, self.count, self.body


_TYPES: dict[int, type[RtcpPacket]] = {
    PT_SR: SenderReport,
    PT_RR: ReceiverReport,
    PT_SDES: SourceDescription,
    PT_BYE: Bye,
    PT_APP: RtcpApp,
    PT_XR: RtcpXr,
}


def _decode(pt: int, count: int, body: bytes) -> RtcpPacket:
    return _TYPES.get(pt, RtcpUnknown)._from_body(pt, count, body)


def _split(data: bytes) -> Iterable[tuple[int, int, bytes]]:
    """Yield ``(packet type, count, body without padding)`` per packet (RFC 3550 A.2)."""
    total = len(data)
    if total < 4:
        raise RtcpError(f"RTCP packet too short: {total} octets, the header needs 4")
    pos = 0
    while pos < total:
        if pos + 4 > total:
            raise RtcpError(f"RTCP compound packet has {total - pos} stray octets at the end")
        first, pt, words = _HEADER.unpack_from(data, pos)
        if first >> 6 != 2:
            raise RtcpError(f"RTCP version must be 2, got {first >> 6} at offset {pos}")
        end = pos + 4 * (words + 1)
        if end > total:
            raise RtcpError(
                f"RTCP packet at offset {pos} claims {end - pos} octets, only {total - pos} left"
            )
        body_end = end
        if first & 0x20:
            if end != total:
                raise RtcpError(f"RTCP padding on packet at offset {pos}, which is not the last")
            padding = data[end - 1]
            body_end -= padding
            if padding == 0 or body_end < pos + 4:
                raise RtcpError(f"RTCP padding length {padding} invalid at offset {pos}")
        yield pt, first & 0x1F, data[pos + 4 : body_end]
        pos = end


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Decode and validate a compound RTCP packet (RFC 3550 §6.1, Appendix A.2).

    The first packet must be an SR or RR; every length field must be consistent with the
    datagram size; only the last packet may be padded.
    """
    packets: list[RtcpPacket] = []
    for pt, count, body in _split(data):
        if not packets and pt not in (PT_SR, PT_RR):
            raise RtcpError(f"RTCP compound packet must start with SR or RR, got type {pt}")
        packets.append(_decode(pt, count, body))
    return packets


def build_compound(packets: Iterable[RtcpPacket]) -> bytes:
    """Concatenate packets into one compound packet (RFC 3550 §6.1)."""
    return b"".join(bytes(packet) for packet in packets)


def ntp_from_unix(t: float) -> int:
    """64-bit NTP timestamp (RFC 5905 §6) for a Unix time in seconds."""
    whole = math.floor(t)
    fraction = int((t - whole) * 0x1_0000_0000)
    return ((whole + NTP_UNIX_OFFSET) << 32 | fraction) & 0xFFFF_FFFF_FFFF_FFFF


def unix_from_ntp(ntp: int) -> float:
    """Unix time for a 64-bit NTP timestamp, taking MSB 0 as era 1 (RFC 4330 §3)."""
    seconds = ntp >> 32
    if not seconds & 0x8000_0000:
        seconds += 0x1_0000_0000
    return seconds - NTP_UNIX_OFFSET + (ntp & 0xFFFF_FFFF) / 0x1_0000_0000


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp, as used for LSR/DLSR (RFC 3550 §6.4.1)."""
    return (ntp >> 16) & 0xFFFF_FFFF
