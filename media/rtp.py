"""RTP data packets (RFC 3550 §5.1, §5.3.1) and wrap-aware sequence/timestamp arithmetic.

The relay reads the fixed header with :data:`RTP_HEADER` and, only when the numbering must
change, copies the packet with :func:`rewrite_header`: it never builds an :class:`RtpPacket`.
:meth:`RtpPacket.parse` allocates nothing beyond the packet object, its CSRC list and the
payload slice.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

RTP_VERSION = 2
#: Fixed header length in octets (RFC 3550 §5.1).
RTP_HEADER_SIZE = 12

#: The fixed header: V/P/X/CC, M/PT, sequence number, timestamp, SSRC (RFC 3550 §5.1).
RTP_HEADER = struct.Struct("!BBHII")
# Octets 1-11 of the fixed header: M/PT, sequence number, timestamp, SSRC.
_REWRITTEN = struct.Struct("!BHII")
#: Second octets of RTCP packets (types 192-223) on a multiplexed port (RFC 5761 §4).
RTCP_TYPE_FIRST = 192
RTCP_TYPE_LAST = 223
# Header extension: profile-defined 16 bits, length in 32-bit words (RFC 3550 §5.3.1).
_EXTENSION = struct.Struct("!HH")
_CSRC = tuple(struct.Struct(f"!{count}I") for count in range(16))


class RtpError(ValueError):
    """A malformed RTP packet, or a packet that cannot be encoded."""


@dataclass(slots=True, frozen=True)
class RtpExtension:
    """RTP header extension (RFC 3550 §5.3.1): a 16-bit profile value and whole 32-bit words."""

    profile: int
    """The "defined by profile" field, e.g. 0xBEDE for RFC 8285 one-byte headers."""
    data: bytes
    """Extension body; its length is a multiple of 4."""


@dataclass(slots=True)
class RtpPacket:
    """One RTP data packet (RFC 3550 §5.1); version is always 2."""

    payload_type: int = 0
    """Payload type, 0-127."""
    sequence_number: int = 0
    """16-bit sequence number."""
    timestamp: int = 0
    """32-bit media timestamp."""
    ssrc: int = 0
    """Synchronisation source."""
    payload: bytes = b""
    """Payload without header, extension or padding."""
    marker: bool = False
    """Marker bit (start of talkspurt for audio, RFC 3551 §4.1)."""
    csrc: list[int] = field(default_factory=list)
    """Contributing sources, at most 15."""
    extension: RtpExtension | None = None
    """Header extension, if the X bit is set."""
    padding: int = 0
    """Padding octets after the payload, including the final count octet (0 = none)."""

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Decode one RTP packet, validating it per RFC 3550 §5.1 and Appendix A.1."""
        length = len(data)
        if length < RTP_HEADER_SIZE:
            raise RtpError(f"RTP packet too short: {length} octets, the header needs 12")
        first, second, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RtpError(f"RTP version must be 2, got {first >> 6}")
        offset = RTP_HEADER_SIZE
        count = first & 0x0F
        if count:
            offset += 4 * count
            if offset > length:
                raise RtpError(
                    f"RTP packet truncated: {count} CSRCs need {offset} octets, got {length}"
                )
            csrc = list(_CSRC[count].unpack_from(data, RTP_HEADER_SIZE))
        else:
            csrc = []
        extension = None
        if first & 0x10:
            if offset + 4 > length:
                raise RtpError("RTP packet truncated: header extension missing")
            profile, words = _EXTENSION.unpack_from(data, offset)
            start = offset + 4
            offset = start + 4 * words
            if offset > length:
                raise RtpError(
                    f"RTP packet truncated: header extension of {words} words "
                    f"needs {offset} octets, got {length}"
                )
            extension = RtpExtension(profile, data[start:offset])
        end = length
        padding = 0
        if first & 0x20:
            padding = data[-1]
            end -= padding
            if padding == 0 or end < offset:
                raise RtpError(
                    f"RTP padding length {padding} invalid for a packet of {length} octets "
                    f"with {offset} header octets"
                )
        return cls(
            second & 0x7F,
            seq,
            ts,
            ssrc,
            data[offset:end],
            bool(second & 0x80),
            csrc,
            extension,
            padding,
        )

    def __bytes__(self) -> bytes:
        """Encode the packet; padding is zeros ended by the padding count (RFC 3550 §5.1)."""
        count = len(self.csrc)
        if count > 15:
            raise RtpError(f"RTP packet can carry at most 15 CSRCs, got {count}")
        if not 0 <= self.payload_type <= 127:
            raise RtpError(f"RTP payload type must be 0-127, got {self.payload_type}")
        if not 0 <= self.padding <= 255:
            raise RtpError(f"RTP padding must be 0-255 octets, got {self.padding}")
        first = 0x80 | count
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        try:
            parts = [
                RTP_HEADER.pack(
                    first,
                    (0x80 if self.marker else 0) | self.payload_type,
                    self.sequence_number,
                    self.timestamp,
                    self.ssrc,
                )
            ]
            if count:
                parts.append(_CSRC[count].pack(*self.csrc))
            if self.extension is not None:
                words, rest = divmod(len(self.extension.data), 4)
                if rest:
                    raise RtpError(
                        "RTP header extension must be whole 32-bit words, "
                        f"got {len(self.extension.data)} octets"
                    )
                parts.append(_EXTENSION.pack(self.extension.profile, words))
                parts.append(self.extension.data)
        except struct.error as exc:
            raise RtpError(f"RTP header field out of range: {exc}") from exc
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between 16-bit sequence numbers, in [-32768, 32767]."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seq_lt(a: int, b: int) -> bool:
    """Whether sequence number ``a`` precedes ``b`` modulo 2**16."""
    return seq_diff(a, b) < 0


def uint16_add(a: int, delta: int) -> int:
    """``a + delta`` modulo 2**16 (``delta`` may be negative)."""
    return (a + delta) & 0xFFFF


def ts_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between 32-bit RTP timestamps."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def uint32_add(a: int, delta: int) -> int:
    """``a + delta`` modulo 2**32 (``delta`` may be negative)."""
    return (a + delta) & 0xFFFFFFFF


def is_rtcp(data: bytes) -> bool:
    """Whether a datagram on a muxed port is RTCP (RFC 5761 §4: second octet 192-223)."""
    return len(data) >= 2 and RTCP_TYPE_FIRST <= data[1] <= RTCP_TYPE_LAST


def rewrite_header(
    data: bytes,
    payload_type: int | None = None,
    sequence_number: int | None = None,
    timestamp: int | None = None,
    ssrc: int | None = None,
) -> bytearray:
    """Copy ``data`` with the given fixed-header fields replaced; the marker bit is kept.

    One copy of the packet, the new fields packed into it in place.
    """
    if len(data) < RTP_HEADER_SIZE:
        raise RtpError(f"RTP packet too short: {len(data)} octets, the header needs 12")
    packet = bytearray(data)
    _, second, seq, ts, old_ssrc = RTP_HEADER.unpack_from(packet)
    if payload_type is not None:
        if not 0 <= payload_type <= 127:
            raise RtpError(f"RTP payload type must be 0-127, got {payload_type}")
        second = (second & 0x80) | payload_type
    try:
        _REWRITTEN.pack_into(
            packet,
            1,
            second,
            seq if sequence_number is None else sequence_number,
            ts if timestamp is None else timestamp,
            old_ssrc if ssrc is None else ssrc,
        )
    except struct.error as exc:
        raise RtpError(f"RTP header field out of range: {exc}") from exc
    return packet
