"""RFC 4733 telephone-events for DTMF: payload, sender and receiver, sans-I/O.

:class:`DtmfSender` turns one key press into the RTP packets that report it (§2.5.1);
:class:`DtmfReceiver` turns received packets back into one start and one end per key press
(§2.5.2), whatever the network duplicated, reordered or lost.  Neither touches a socket or
a clock: the caller puts the packets into RTP (:mod:`media.rtp`) and paces them.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

#: DTMF event codes 0-15 in order (RFC 4733 §3.2).
DIGITS = "0123456789*#ABCD"
#: Largest value of the 16-bit duration field (§2.3.5).
MAX_DURATION = 0xFFFF
#: Copies of the final packet of an event or segment (§2.5.1.4).
END_REPEATS = 3

_PAYLOAD = struct.Struct("!BBH")
_TS_MOD = 1 << 32
#: Start timestamps of recent events and segments remembered to spot late packets.
_HISTORY = 16


class DtmfError(ValueError):
    """A malformed telephone-event payload or an invalid DTMF request."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One telephone-event payload (RFC 4733 §2.3)."""

    event: int
    """Event code (§2.3.1); 0-15 are the DTMF digits in :data:`DIGITS`."""
    end: bool = False
    """E bit: this packet reports the end of the event (§2.3.2)."""
    volume: int = 0
    """Power level of the tone in -dBm0, 0-63 (§2.3.4)."""
    duration: int = 0
    """Duration so far, in RTP timestamp units from the event's timestamp (§2.3.5)."""

    def __post_init__(self) -> None:
        if not 0 <= self.event <= 0xFF:
            raise DtmfError(f"event code must be 0-255, got {self.event}")
        if not 0 <= self.volume <= 63:
            raise DtmfError(f"volume must be 0-63, got {self.volume}")
        if not 0 <= self.duration <= MAX_DURATION:
            raise DtmfError(f"duration must be 0-{MAX_DURATION}, got {self.duration}")

    @classmethod
    def parse(cls, data: bytes) -> TelephoneEvent:
        """Parse a 4-byte payload; the R bit is ignored as §2.3.3 requires."""
        if len(data) != _PAYLOAD.size:
            raise DtmfError(f"telephone-event payload must be 4 bytes, got {len(data)}")
        event, flags, duration = _PAYLOAD.unpack(data)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def __bytes__(self) -> bytes:
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)

    @property
    def digit(self) -> str | None:
        """The DTMF digit this event reports, or ``None`` for other events (flash, ...)."""
        return DIGITS[self.event] if self.event < len(DIGITS) else None


def event_code(digit: str) -> int:
    """Event code of a DTMF digit (``a``-``d`` accepted for ``A``-``D``)."""
    code = DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise DtmfError(f"not a DTMF digit: {digit!r} (expected one of {DIGITS})")
    return code


class DtmfPacket(NamedTuple):
    """One RTP packet to send: the caller fills in SSRC, sequence number and payload type."""

    marker: bool
    timestamp: int
    payload: bytes


class DtmfSender:
    """Packetise key presses as RFC 4733 telephone-events (§2.5.1).

    :meth:`packets` returns every packet of one press in sending order; the caller sends
    one every ``ptime`` seconds, the first when the tone starts.
    """

    def __init__(self, payload_type: int = 101, clock_rate: int = 8000, ptime: float = 0.02):
        if not 96 <= payload_type <= 127:
            raise DtmfError(f"telephone-event needs a dynamic payload type, got {payload_type}")
        step = round(ptime * clock_rate)
        if clock_rate <= 0 or not 0 < step <= MAX_DURATION:
            raise DtmfError(f"bad clock rate {clock_rate} or ptime {ptime}")
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.ptime = ptime
        self._step = step

    def packets(
        self, digit: str, timestamp: int, duration: float = 0.1, volume: int = 10
    ) -> list[DtmfPacket]:
        """All packets reporting ``digit`` pressed for ``duration`` seconds from ``timestamp``.

        The first packet carries the marker bit (§2.5.1.2); updates follow every ptime with
        the same timestamp and a growing duration; the final packet, with the E bit, is sent
        three times (§2.5.1.4).  An event longer than 0xFFFF timestamp units is split into
        segments (§2.5.1.3): each segment but the last ends at duration 0xFFFF without the E
        bit (also sent three times), and the next starts 0xFFFF later, without the marker.
        """
        code = event_code(digit)
        total = round(duration * self.clock_rate)
        if total <= 0:
            raise DtmfError(f"duration must be positive, got {duration} s")
        out: list[DtmfPacket] = []
        segment_start = 0
        while True:
            length = min(total - segment_start, MAX_DURATION)
            last = segment_start + length == total
            ts = (timestamp + segment_start) % _TS_MOD
            # Reports fall every ptime from the event start, so the cadence runs on across
            # segments; a report at the segment boundary is the segment's final packet.
            elapsed = (segment_start // self._step + 1) * self._step
            while elapsed < segment_start + length:
                out.append(self._packet(not out, ts, code, False, volume, elapsed - segment_start))
                elapsed += self._step
            for _ in range(END_REPEATS):
                out.append(self._packet(not out, ts, code, last, volume, length))
            if last:
                return out
            segment_start += length

    @staticmethod
    def _packet(
        marker: bool, ts: int, code: int, end: bool, volume: int, duration: int
    ) -> DtmfPacket:
        return DtmfPacket(marker, ts, bytes(TelephoneEvent(code, end, volume, duration)))


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """Base class of what :class:`DtmfReceiver` reports."""

    digit: str
    """The key: one of :data:`DIGITS`."""
    timestamp: int
    """RTP timestamp at which the key press started."""


@dataclass(frozen=True, slots=True)
class DtmfStart(DtmfEvent):
    """A key press began (first packet seen of a new event)."""


@dataclass(frozen=True, slots=True)
class DtmfEnd(DtmfEvent):
    """A key press ended: E bit received, or a later event began first (end packets lost)."""

    duration: int
    """Total duration in RTP timestamp units, summed over long-event segments."""


def _newer(a: int, b: int) -> bool:
    """RTP timestamp ``a`` is after ``b``, modulo 2**32 (RFC 3550 §5.1)."""
    return 0 < (a - b) % _TS_MOD < _TS_MOD // 2


class DtmfReceiver:
    """Recover key presses from received telephone-event packets (RFC 4733 §2.5.2).

    Events are told apart by their RTP timestamp (§2.5.2.2), which every packet of an event
    repeats, end retransmissions included (§2.5.1.4); the marker bit may be lost.
    Each event yields exactly one :class:`DtmfStart` and one :class:`DtmfEnd`: duplicates
    and packets of an event already reported are dropped; a packet with a newer timestamp
    ends the current event if its end packets were lost.  Non-DTMF events (codes above 15)
    are ignored; malformed payloads are counted in :attr:`invalid` and ignored.
    """

    def __init__(self) -> None:
        self.invalid = 0
        """Payloads dropped as malformed."""
        self._code = -1
        self._origin = 0  # timestamp of the event's first segment
        self._segment = 0  # timestamp of the segment being received
        self._base = 0  # duration of the completed segments
        self._duration = 0  # longest duration seen in the current segment
        self._active = False  # started and not yet ended
        self._seen: deque[int] = deque(maxlen=_HISTORY)

    def feed(self, timestamp: int, payload: bytes, marker: bool = False) -> list[DtmfEvent]:
        """Process one received packet and return the events it completes or begins.

        A packet whose timestamp is older than the current event's is a late packet of an
        earlier event and is dropped, unless it has the marker bit and a timestamp never
        seen: then the sender's timestamps went backwards and a new event begins.
        """
        try:
            report = TelephoneEvent.parse(payload)
        except DtmfError:
            self.invalid += 1
            return []
        if report.digit is None:
            return []
        if timestamp == self._segment and report.event == self._code:
            return self._update(report)
        if timestamp in self._seen:
            return []  # a segment or event already reported, arriving late
        if self._seen and not (_newer(timestamp, self._segment) or marker):
            return []
        if (
            self._active
            and report.event == self._code
            and (timestamp - self._segment) % _TS_MOD == MAX_DURATION
        ):
            # Next segment of a long event (§2.5.2.3): same press, no new start.
            self._base += MAX_DURATION
            self._segment = timestamp
            self._duration = 0
            self._seen.append(timestamp)
            return self._update(report)
        events = self.flush()
        self._code = report.event
        self._origin = self._segment = timestamp
        self._base = self._duration = 0
        self._active = True
        self._seen.append(timestamp)
        events.append(DtmfStart(DIGITS[self._code], timestamp))
        events.extend(self._update(report))
        return events

    def flush(self) -> list[DtmfEvent]:
        """End the current event if its end never came, e.g. when the stream stops (§2.5.2.5)."""
        if not self._active:
            return []
        self._active = False
        return [DtmfEnd(DIGITS[self._code], self._origin, self._base + self._duration)]

    def _update(self, report: TelephoneEvent) -> list[DtmfEvent]:
        self._duration = max(self._duration, report.duration)
        return self.flush() if report.end else []
