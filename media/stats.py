"""RTP reception/transmission statistics and RTCP timing (RFC 3550 §6.2-§6.4, Appendix A).

Sans-I/O: every method takes the arrival or send time explicitly. ``now``/``arrival`` values
that end up in NTP fields (SR timestamps, LSR/DLSR, RTT) must come from one wall clock in
Unix seconds; jitter only needs a clock that is consistent per stream.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from media.rtcp import ReportBlock, SenderReport, ntp_from_unix, ntp_middle32
from media.rtp import ts_diff

#: Packets in sequence before a new source is valid (RFC 3550 A.1).
MIN_SEQUENTIAL = 2
#: Largest forward jump still taken as loss rather than a restart (RFC 3550 A.1).
MAX_DROPOUT = 3000
#: Largest backward step still taken as reordering (RFC 3550 A.1).
MAX_MISORDER = 100
RTP_SEQ_MOD = 1 << 16
# Recently received sequence numbers tracked to tell duplicates from late packets;
# covers MAX_MISORDER.
_SEEN_WINDOW = 128
_SEEN_MASK = (1 << _SEEN_WINDOW) - 1

#: Minimum RTCP interval in seconds, halved before the first report (RFC 3550 §6.2).
RTCP_MIN_TIME = 5.0
#: Share of the session bandwidth given to RTCP (RFC 3550 §6.2).
RTCP_BANDWIDTH_FRACTION = 0.05
#: Share of the RTCP bandwidth given to senders when they are few (RFC 3550 §6.2).
RTCP_SENDER_BW_FRACTION = 0.25
#: Divisor that offsets timer reconsideration's bias towards short intervals (RFC 3550 §6.3.1).
COMPENSATION = math.e - 1.5


class ReceiverStats:
    """Reception statistics for one source (RFC 3550 A.1 validity, A.3 loss, A.8 jitter)."""

    __slots__ = (
        "clock_rate",
        "max_seq",
        "cycles",
        "base_seq",
        "bad_seq",
        "probation",
        "received",
        "duplicates",
        "jitter",
        "_started",
        "_expected_prior",
        "_received_prior",
        "_seen",
        "_last_arrival",
        "_last_timestamp",
        "_lsr",
        "_lsr_arrival",
    )

    def __init__(self, clock_rate: int) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock rate must be positive, got {clock_rate}")
        self.clock_rate = clock_rate
        """RTP timestamp units per second."""
        self.max_seq = 0
        """Highest sequence number seen (16-bit)."""
        self.cycles = 0
        """Sequence number wraps, counted in units of 65536."""
        self.base_seq = 0
        """First sequence number of the current validated run."""
        self.bad_seq = RTP_SEQ_MOD + 1
        """Sequence number after a large jump; a match there restarts the source."""
        self.probation = MIN_SEQUENTIAL
        """Sequential packets still needed before the source is valid."""
        self.received = 0
        """Packets received since validation, duplicates and late packets included (A.3)."""
        self.duplicates = 0
        """Packets seen twice within the last 128 sequence numbers."""
        self.jitter = 0.0
        """Interarrival jitter estimate in timestamp units (A.8)."""
        self._started = False
        self._expected_prior = 0
        self._received_prior = 0
        self._seen = 0
        self._last_arrival: float | None = None
        self._last_timestamp = 0
        self._lsr = 0
        self._lsr_arrival = 0.0

    @property
    def valid(self) -> bool:
        """Whether the source has passed probation (A.1)."""
        return self._started and self.probation == 0

    @property
    def extended_max_seq(self) -> int:
        """Highest sequence number received, extended with the wrap count (A.3)."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        """Packets expected since validation (A.3); 0 before."""
        return self.extended_max_seq - self.base_seq + 1 if self.valid else 0

    @property
    def lost(self) -> int:
        """Cumulative packets lost, unclamped; negative when duplicates outnumber losses."""
        return self.expected - self.received

    @property
    def jitter_seconds(self) -> float:
        """Interarrival jitter in seconds."""
        return self.jitter / self.clock_rate

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self._received_prior = 0
        self._expected_prior = 0
        self._seen = 1

    def on_packet(self, seq: int, rtp_ts: int, arrival: float) -> bool:
        """Account for one RTP packet (RFC 3550 A.1 ``update_seq`` plus A.8 jitter).

        Returns False when the packet should be discarded: the source is on probation, the
        sequence number jumped (a second packet right after the jump restarts the source),
        or the packet is a duplicate. Duplicates still count in :attr:`received`, per A.3.
        """
        if not self._started:
            self._started = True
            self._init_seq(seq)
            self.max_seq = (seq - 1) & 0xFFFF
            self.probation = MIN_SEQUENTIAL
        if self.probation:
            if seq != (self.max_seq + 1) & 0xFFFF:
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
                return False
            self.probation -= 1
            self.max_seq = seq
            if self.probation:
                return False
            self._init_seq(seq)
        else:
            udelta = (seq - self.max_seq) & 0xFFFF
            if 0 < udelta < MAX_DROPOUT:
                if seq < self.max_seq:
                    self.cycles += RTP_SEQ_MOD
                self.max_seq = seq
                self._seen = (self._seen << udelta | 1) & _SEEN_MASK
            elif udelta == 0 or udelta > RTP_SEQ_MOD - MAX_MISORDER:
                bit = 1 << ((RTP_SEQ_MOD - udelta) % RTP_SEQ_MOD)
                if self._seen & bit:
                    self.received += 1
                    self.duplicates += 1
                    return False
                self._seen |= bit
            elif seq == self.bad_seq:
                # Two sequential packets after a jump: the sender restarted (A.1).
                self._init_seq(seq)
                self._last_arrival = None
            else:
                self.bad_seq = (seq + 1) & 0xFFFF
                return False
        self.received += 1
        if self._last_arrival is not None:
            transit_delta = (arrival - self._last_arrival) * self.clock_rate - ts_diff(
                rtp_ts, self._last_timestamp
            )
            self.jitter += (abs(transit_delta) - self.jitter) / 16
        self._last_arrival = arrival
        self._last_timestamp = rtp_ts
        return True

    def on_sender_report(self, sr: SenderReport, arrival: float) -> None:
        """Remember the SR for the LSR/DLSR fields of the next report block (§6.4.1)."""
        self._lsr = ntp_middle32(sr.ntp_timestamp)
        self._lsr_arrival = arrival

    def report_block(self, ssrc: int, now: float) -> ReportBlock:
        """Build the report block on ``ssrc`` and start a new loss interval (A.3, §6.4.1)."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval and lost_interval > 0:
            fraction = (lost_interval << 8) // expected_interval
        dlsr = 0
        if self._lsr:
            dlsr = min(max(int((now - self._lsr_arrival) * 65536), 0), 0xFFFF_FFFF)
        return ReportBlock(
            ssrc=ssrc,
            fraction_lost=fraction,
            cumulative_lost=min(max(self.lost, -0x800000), 0x7FFFFF),
            highest_sequence=self.extended_max_seq & 0xFFFF_FFFF if self.valid else 0,
            jitter=min(int(self.jitter), 0xFFFF_FFFF),
            lsr=self._lsr,
            dlsr=dlsr,
        )


@dataclass(slots=True)
class SenderStats:
    """What a sender counts for its sender reports (RFC 3550 §6.4.1)."""

    packets: int = 0
    """RTP data packets sent."""
    octets: int = 0
    """Payload octets sent (no headers, no padding)."""
    last_timestamp: int = 0
    """RTP timestamp of the last packet sent."""

    def on_packet(self, payload_size: int, rtp_ts: int) -> None:
        """Account for one RTP packet sent with ``payload_size`` payload octets."""
        self.packets += 1
        self.octets += payload_size
        self.last_timestamp = rtp_ts

    def sender_report(
        self,
        ssrc: int,
        now: float,
        rtp_ts_now: int,
        reports: Sequence[ReportBlock] = (),
    ) -> SenderReport:
        """Build an SR at wall-clock ``now`` whose RTP time is ``rtp_ts_now``; counts wrap."""
        return SenderReport(
            ssrc=ssrc,
            ntp_timestamp=ntp_from_unix(now),
            rtp_timestamp=rtp_ts_now & 0xFFFF_FFFF,
            packet_count=self.packets & 0xFFFF_FFFF,
            octet_count=self.octets & 0xFFFF_FFFF,
            reports=list(reports),
        )


def rtt_from_report_block(block: ReportBlock, arrival_now: float) -> float | None:
    """Round-trip time in seconds from a block about our stream (RFC 3550 §6.4.1).

    ``arrival_now`` is the wall-clock arrival time of the report. None when the peer has
    not received an SR yet (LSR 0); small negative results from clock granularity are 0.
    """
    if not block.lsr:
        return None
    arrival = ntp_middle32(ntp_from_unix(arrival_now))
    delta = ((arrival - block.lsr - block.dlsr + 0x8000_0000) & 0xFFFF_FFFF) - 0x8000_0000
    return max(delta, 0) / 65536


@dataclass(slots=True)
class RtcpInterval:
    """RTCP transmission interval (RFC 3550 §6.2, §6.3.1, Appendix A.7).

    The caller keeps ``members``, ``senders`` and ``we_sent`` current and reports every
    compound RTCP packet sent or received, with lower-layer headers, so the average size
    follows §6.3.3.
    """

    session_bandwidth: float
    """Session bandwidth in bits per second (e.g. SDP ``b=AS`` × 1000)."""
    rng: random.Random
    """Source of the [0.5, 1.5] randomisation, injected for determinism."""
    avg_rtcp_size: float = 100.0
    """Running average compound size in octets; the default guesses a first IPv4 SR+SDES."""
    members: int = 1
    """Session members, ourselves included."""
    senders: int = 0
    """Members that sent RTP recently, ourselves included."""
    we_sent: bool = False
    """Whether we sent RTP in the last two intervals (§6.3.8)."""
    initial: bool = True
    """True until our first RTCP packet is sent (halves the minimum, §6.2)."""

    def on_rtcp_packet(self, size: int) -> None:
        """Fold a sent or received compound packet's size into the average (§6.3.3)."""
        self.avg_rtcp_size += (size - self.avg_rtcp_size) / 16

    def on_rtcp_sent(self, size: int) -> None:
        """Record that we sent a compound packet of ``size`` octets (§6.3.6)."""
        self.on_rtcp_packet(size)
        self.initial = False

    def interval(self) -> float:
        """Seconds until the next report, randomised and compensated (A.7)."""
        if self.session_bandwidth <= 0:
            raise ValueError(f"session bandwidth must be positive, got {self.session_bandwidth}")
        rtcp_bw = self.session_bandwidth * RTCP_BANDWIDTH_FRACTION / 8
        n = self.members
        if self.senders <= self.members * RTCP_SENDER_BW_FRACTION:
            if self.we_sent:
                rtcp_bw *= RTCP_SENDER_BW_FRACTION
                n = self.senders
            else:
                rtcp_bw *= 1 - RTCP_SENDER_BW_FRACTION
                n -= self.senders
        minimum = RTCP_MIN_TIME / 2 if self.initial else RTCP_MIN_TIME
        deterministic = max(self.avg_rtcp_size * n / rtcp_bw, minimum)
        return deterministic * (self.rng.random() + 0.5) / COMPENSATION
