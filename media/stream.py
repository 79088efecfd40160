"""One leg's media endpoint: RTP/RTCP sockets, latching, relay and statistics.

A :class:`Stream` faces one remote party.  Packets it receives are counted
(RFC 3550 A.1/A.3/A.8), checked against the latched source (symmetric RTP,
RFC 4961: after the first valid packet we send to where packets come from and
drop packets from anywhere else), and then either forwarded to the peer
stream untouched (relay fast path) or queued for the batched audio path.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from media.dtmf import DtmfEnd, DtmfReceiver, DtmfStart
from media.jitter import JitterBuffer
from media.rtcp import (
    Bye,
    ReceiverReport,
    RtcpError,
    SdesChunk,
    SdesItem,
    SdesType,
    SenderReport,
    SourceDescription,
    build_compound,
    parse_compound,
)
from media.rtp import (
    RTCP_TYPE_FIRST,
    RTCP_TYPE_LAST,
    RTP_HEADER,
    RTP_HEADER_SIZE,
    RTP_VERSION,
    RtpError,
    RtpPacket,
    is_rtcp,
    rewrite_header,
    uint16_add,
    uint32_add,
)
from media.stats import ReceiverStats, RtcpInterval, SenderStats, rtt_from_report_block

if TYPE_CHECKING:
    from media.opus import OpusDecoder, OpusEncoder
    from media.plc import Plc

log = logging.getLogger(__name__)

Addr = tuple[str, int]
#: Session bandwidth for the RTCP interval (RFC 3550 §6.2), bits per second.
SESSION_BANDWIDTH = 80_000
#: IPv4 + UDP header octets, counted in the RTCP average size (§6.3.3).
UDP_OVERHEAD = 28
#: A packet to file: the buffer, then :meth:`JitterBuffer.push`'s arguments.
Filed = tuple[JitterBuffer, int, int, int, bytes, float, bool]
#: Read size: the largest UDP payload, so no datagram is ever cut short.
MAX_DATAGRAM = 65535


#: Randomises every stream's RTCP interval (RFC 3550 §6.3.1); one generator for all,
#: as seeding one per stream from the OS costs more than the rest of the set-up.
_RTCP_RANDOM = random.Random()


@dataclass(frozen=True, slots=True)
class Codec:
    """A negotiated RTP payload format (RFC 3551 §6, RFC 4733 §7.1.1)."""

    payload_type: int
    name: str
    clock_rate: int = 8000

    @property
    def key(self) -> tuple[str, int]:
        """What two legs must share to relay without transcoding."""
        return self.name.upper(), self.clock_rate


@dataclass(slots=True)
class StreamCounters:
    """Per-stream packet counters beyond RFC 3550's."""

    packets_in: int = 0
    bytes_in: int = 0
    dropped_source: int = 0
    dropped_invalid: int = 0
    send_errors: int = 0
    """Packets the socket refused (send buffer full, unreachable): dropped, not queued."""
    rtcp_in: int = 0
    rtcp_out: int = 0
    rtt: float | None = None


@dataclass(slots=True)
class OutputState:
    """Sequence/timestamp/SSRC continuity of what we send on this leg (RFC 3550 §5.1).

    When the source of the forwarded stream changes (new SSRC after a
    re-INVITE, or a switch between relay and audio path), offsets keep the
    outgoing sequence and timestamp running without jumps the far jitter
    buffer would choke on.
    """

    ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    seq: int = field(default_factory=lambda: random.getrandbits(16))
    timestamp: int = field(default_factory=lambda: random.getrandbits(32))
    started: bool = False
    source_ssrc: int | None = None
    seq_offset: int = 0
    ts_offset: int = 0
    rewrite: bool = False
    """Whether relayed headers need new numbering or SSRC (offsets or SSRC differ)."""


class Stream:
    """The media of one call leg: what it receives and what we send to it.

    It reads its own sockets from the loop's readiness callbacks (one
    ``recvfrom`` per wake-up) and sends without a transport's write buffer:
    a datagram costs one Python call, two system calls and no objects beyond
    the packet and its address.  Media is never queued for sending: a packet
    the socket cannot take now would be late anyway.
    """

    # Slots keep every attribute read on the per-packet path a fixed-offset load:
    # CPython stops sharing instance dict keys past 30 attributes, and then each
    # read is a dictionary lookup.
    __slots__ = (
        "call_id",
        "leg",
        "local",
        "remote",
        "rtcp_remote",
        "latched",
        "peer",
        "relaying",
        "counters",
        "recv_stats",
        "send_stats",
        "rtcp_interval",
        "out",
        "jitter",
        "inbox",
        "plc",
        "dtmf",
        "last_packet_at",
        "in_ssrc",
        "audio_codec",
        "dtmf_payload_type",
        "opus",
        "_codecs",
        "_direction",
        "_listening",
        "_sending",
        "_on_event",
        "_clock",
        "_loop",
        "_rtp",
        "_rtcp",
        "_ipv6",
    )

    def __init__(
        self,
        call_id: str,
        leg: str,
        codecs: list[Codec],
        *,
        local: Addr,
        remote: Addr | None,
        rtcp_remote: Addr | None = None,
        on_event: Callable[[str, str, object], None],
        clock: Callable[[], float],
        jitter_min: float = 0.02,
        jitter_max: float = 0.5,
        inbox: list[Filed] | None = None,
    ) -> None:
        self.call_id = call_id
        self.leg = leg
        self.local = local
        self.remote = remote
        self.rtcp_remote = rtcp_remote
        self.latched = False
        self.codecs = codecs
        self.peer: Stream | None = None
        self.relaying = True
        self.direction = "sendrecv"
        self.counters = StreamCounters()
        self.recv_stats = ReceiverStats(self.audio_codec.clock_rate)
        self.send_stats = SenderStats()
        #: Two members, us and the party; 80 kb/s is G.711 with IP/UDP/RTP headers.
        self.rtcp_interval = RtcpInterval(SESSION_BANDWIDTH, _RTCP_RANDOM, members=2)
        self.out = OutputState()
        rate = self.audio_codec.clock_rate
        self.jitter = JitterBuffer(
            clock_rate=rate,
            frame_samples=rate // 50,  # 20 ms packets (RFC 3551 §4.5, RFC 7587 §4.1)
            min_delay=jitter_min,
            max_delay=jitter_max,
        )
        self.inbox: list[Filed] = [] if inbox is None else inbox
        """Audio-path packets for :meth:`JitterBuffer.push`, filed by whoever drains the
        list: the engine files a whole tick's packets at once, in arrival order."""
        self.plc: Plc | None = None
        self.opus: tuple[OpusDecoder, OpusEncoder] | None = None
        """An Opus leg's codec state, while it is on the audio path."""
        self.dtmf = DtmfReceiver()
        self.last_packet_at: float | None = None
        self._on_event = on_event
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rtp: socket.socket | None = None
        self._rtcp: socket.socket | None = None
        self._ipv6 = False
        self.in_ssrc: int | None = None

    # -- negotiated formats ---------------------------------------------------

    @property
    def codecs(self) -> list[Codec]:
        """Negotiated formats, preferred first (RFC 3264 §6.1)."""
        return self._codecs

    @codecs.setter
    def codecs(self, codecs: list[Codec]) -> None:
        # Derived once here, not per packet: the relay reads them 100 times a second.
        audio = [c for c in codecs if c.name.lower() != "telephone-event"]
        if not audio:
            raise ValueError(f"leg {self.leg} of {self.call_id} has no audio codec")
        self._codecs = codecs
        self.audio_codec: Codec = audio[0]
        """The first non-DTMF codec: what this leg sends and expects."""
        self.dtmf_payload_type: int | None = next(
            (c.payload_type for c in codecs if c.name.lower() == "telephone-event"), None
        )
        """The telephone-event payload type, if negotiated (RFC 4733 §7.1.1)."""

    @property
    def direction(self) -> str:
        """What the remote party declared in its SDP (RFC 3264 §6.1).

        A "sendonly" party is not sent media, a "recvonly" one is not listened to.
        """
        return self._direction

    @direction.setter
    def direction(self, direction: str) -> None:
        self._direction = direction
        self._listening = direction not in ("recvonly", "inactive")
        self._sending = direction in ("sendrecv", "recvonly")

    @property
    def listening(self) -> bool:
        """Whether the party is heard: not when it said it would not send (recvonly,
        inactive), which is also how a muted browser is set."""
        return self._listening

    @property
    def sending(self) -> bool:
        """Whether the party is sent media: not when it said it would not receive."""
        return self._sending

    @property
    def packets_out(self) -> int:
        """RTP packets sent (the sender report's count, RFC 3550 §6.4.1)."""
        return self.send_stats.packets

    @property
    def bytes_out(self) -> int:
        """RTP octets sent, headers included."""
        return self.send_stats.octets + RTP_HEADER_SIZE * self.send_stats.packets

    # -- sockets --------------------------------------------------------------

    @property
    def rtp_socket(self) -> socket.socket | None:
        """The RTP socket (RTCP and, for a browser, ICE and DTLS too when multiplexed)."""
        return self._rtp

    def attach(
        self, loop: asyncio.AbstractEventLoop, rtp: socket.socket, rtcp: socket.socket
    ) -> None:
        """Start reading the stream's bound, non-blocking RTP and RTCP sockets."""
        self._loop, self._rtp, self._rtcp = loop, rtp, rtcp
        self._ipv6 = rtp.family == socket.AF_INET6
        loop.add_reader(rtp.fileno(), self._rtp_readable)
        loop.add_reader(rtcp.fileno(), self._rtcp_readable)

    def close(self) -> None:
        """Stop reading, close both sockets and let go of the peer.

        Dropping the peer breaks the call's only reference cycle, so an ended
        call is freed by reference counting alone (the worker freezes
        long-lived objects out of the collector's reach; see media.worker).
        """
        self.peer = None
        for sock in (self._rtp, self._rtcp):
            if sock is not None and sock.fileno() >= 0:
                if self._loop is not None and not self._loop.is_closed():
                    self._loop.remove_reader(sock.fileno())
                sock.close()

    def _sendto(self, sock: socket.socket, packet: bytes | bytearray, addr: Addr) -> bool:
        try:
            sock.sendto(packet, addr)
        except OSError as exc:  # a full send buffer included: the packet would be late
            self.counters.send_errors += 1
            log.debug("send on %s/%s to %s failed: %s", self.call_id, self.leg, addr, exc)
            return False
        return True

    # -- receive path -----------------------------------------------------------

    def _rtp_readable(self) -> None:
        """One datagram on the RTP port (RTCP too when multiplexed, RFC 5761 §4)."""
        assert self._rtp is not None
        try:
            data, addr = self._rtp.recvfrom(MAX_DATAGRAM)
        except OSError:  # woken for nothing, or an ICMP error queued on the socket
            return
        if self._ipv6:
            addr = addr[:2]  # drop flow info and scope id
        self.rtp_datagram(data, addr)

    def rtp_datagram(self, data: bytes, addr: Addr) -> None:
        """Count, check and relay or queue one RTP (or multiplexed RTCP) datagram.

        Only the fixed header is read (RFC 3550 §5.1): relaying builds no packet
        object, and the audio path slices the payload out without one unless the
        packet carries CSRCs, an extension or padding.
        """
        if len(data) < RTP_HEADER_SIZE:
            if is_rtcp(data):
                self.rtcp_received(data, addr)
            else:
                self.counters.dropped_invalid += 1
            return
        first, second, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
        if RTCP_TYPE_FIRST <= second <= RTCP_TYPE_LAST:
            self.rtcp_received(data, addr)
            return
        if first >> 6 != RTP_VERSION:
            self.counters.dropped_invalid += 1
            return
        pt = second & 0x7F
        is_dtmf = pt == self.dtmf_payload_type
        payload = b""
        if is_dtmf or not self.relaying:
            # The relay forwards what it got; everything else needs the payload, which
            # follows the fixed header unless there is padding, an extension or a CSRC.
            try:
                payload = data[RTP_HEADER_SIZE:] if first == 0x80 else RtpPacket.parse(data).payload
            except RtpError:  # a sound fixed header, but CSRCs/extension/padding are not
                self.counters.dropped_invalid += 1
                return
        if (not self.latched or addr != self.remote) and not self._accept_source(addr):
            return
        now = self._clock()
        counters = self.counters
        counters.packets_in += 1
        counters.bytes_in += len(data)
        self.last_packet_at = now
        if ssrc != self.in_ssrc:
            self.in_ssrc = ssrc
            self.recv_stats = ReceiverStats(self.audio_codec.clock_rate)
        self.recv_stats.on_packet(seq, ts, now)
        marker = second > 0x7F
        if is_dtmf:
            self._dtmf_received(ts, payload, marker)
        if not self._listening:
            return  # the party said it would not send: it is not part of the call
        if self.relaying:
            if self.peer is not None:
                self.peer.forward(data, pt, seq, ts, ssrc, is_dtmf)
        elif not is_dtmf:
            self.inbox.append((self.jitter, seq, ts, ssrc, payload, now, marker))

    def _rtcp_readable(self) -> None:
        assert self._rtcp is not None
        try:
            data, addr = self._rtcp.recvfrom(MAX_DATAGRAM)
        except OSError:
            return
        self.rtcp_received(data, addr[:2])

    def _accept_source(self, addr: Addr) -> bool:
        """Latch onto the first source; afterwards drop packets from others (RFC 4961)."""
        if not self.latched:
            self.remote = addr
            if self.rtcp_remote is None or self.rtcp_remote[0] != addr[0]:
                self.rtcp_remote = (addr[0], addr[1] + 1)
            self.latched = True
            return True
        if addr != self.remote:
            self.counters.dropped_source += 1
            return False
        return True

    def _dtmf_received(self, timestamp: int, payload: bytes, marker: bool) -> None:
        for event in self.dtmf.feed(timestamp, payload, marker):
            if isinstance(event, DtmfStart | DtmfEnd):
                self._on_event(self.call_id, self.leg, event)

    def rtcp_received(self, data: bytes, addr: Addr) -> None:
        """Terminate RTCP: learn LSR from SRs and RTT from report blocks (§6.4)."""
        if self.latched and addr[0] != (self.remote or ("", 0))[0]:
            self.counters.dropped_source += 1
            return
        try:
            packets = parse_compound(data)
        except RtcpError:
            self.counters.dropped_invalid += 1
            return
        now = time.time()
        self.counters.rtcp_in += 1
        self.rtcp_interval.on_rtcp_packet(len(data) + UDP_OVERHEAD)
        for packet in packets:
            if isinstance(packet, SenderReport):
                self.recv_stats.on_sender_report(packet, now)
            if isinstance(packet, SenderReport | ReceiverReport):
                for block in packet.reports:
                    if block.ssrc == self.out.ssrc:
                        rtt = rtt_from_report_block(block, now)
                        if rtt is not None:
                            self.counters.rtt = rtt

    # -- send path --------------------------------------------------------------

    def forward(self, data: bytes, pt: int, seq: int, ts: int, ssrc: int, dtmf: bool) -> None:
        """Relay fast path: send a packet from the peer, rewriting only what must change.

        ``dtmf`` says ``pt`` is the peer's telephone-event type; payload types are
        translated between the legs' numbering (RFC 3264 §5.1).
        """
        rtp, remote = self._rtp, self.remote
        if rtp is None or remote is None or not self._sending:
            return
        out = self.out
        if ssrc != out.source_ssrc:
            # New source: continue our numbering from where we were (§5.1).
            if out.started:
                out.seq_offset = (uint16_add(out.seq, 1) - seq) & 0xFFFF
                out.ts_offset = (uint32_add(out.timestamp, 160) - ts) & 0xFFFFFFFF
            else:
                out.seq_offset = out.ts_offset = 0
                out.ssrc = ssrc
            out.source_ssrc = ssrc
            out.rewrite = bool(out.seq_offset or out.ts_offset or ssrc != out.ssrc)
        if not dtmf:
            new_pt = self.audio_codec.payload_type
        elif self.dtmf_payload_type is not None:
            new_pt = self.dtmf_payload_type
        else:
            new_pt = pt
        packet: bytes | bytearray = data
        if out.rewrite or new_pt != pt:
            seq = (seq + out.seq_offset) & 0xFFFF
            ts = (ts + out.ts_offset) & 0xFFFFFFFF
            packet = rewrite_header(data, new_pt, seq, ts, out.ssrc)
        out.seq = seq
        out.timestamp = ts
        out.started = True
        if self._sendto(rtp, packet, remote):
            self.send_stats.on_packet(len(packet) - RTP_HEADER_SIZE, ts)

    def next_timestamp(self, samples: int) -> int:
        """The RTP timestamp the next packet sent by :meth:`send_payload` will carry."""
        out = self.out
        return uint32_add(out.timestamp, samples) if out.started else out.timestamp

    def send_payload(
        self,
        payload: bytes,
        *,
        samples: int,
        marker: bool = False,
        payload_type: int | None = None,
        timestamp: int | None = None,
    ) -> None:
        """Audio path: send a payload we produced, continuing our own numbering.

        Our media clock advances ``samples`` per packet whatever is sent, so audio
        after a DTMF event (whose packets all carry the event's start
        ``timestamp``, RFC 4733 §2.5.1.2) continues without a jump.
        """
        out = self.out
        out.timestamp = self.next_timestamp(samples)
        out.started = True
        out.source_ssrc = None
        rtp, remote = self._rtp, self.remote
        if rtp is None or remote is None or not self._sending:
            return
        out.seq = seq = (out.seq + 1) & 0xFFFF
        header = RTP_HEADER.pack(
            0x80,  # version 2, no padding, extension or CSRC
            (0x80 if marker else 0)
            | (self.audio_codec.payload_type if payload_type is None else payload_type),
            seq,
            out.timestamp if timestamp is None else timestamp,
            out.ssrc,
        )
        if self._sendto(rtp, header + payload, remote):
            self.send_stats.on_packet(len(payload), out.timestamp)

    def send_rtcp(self, cname: str) -> float:
        """Send our SR (or RR when we have sent nothing) with SDES CNAME (§6.1).

        Returns the seconds until the next report is due (§6.2, §6.3.1).
        """
        interval = self.rtcp_interval
        interval.we_sent = bool(self.send_stats.packets)
        interval.senders = int(interval.we_sent) + int(self.recv_stats.received > 0)
        if self.rtcp_remote is None or self._rtcp is None:
            return interval.interval()
        now = time.time()
        blocks = []
        if self.in_ssrc is not None and self.recv_stats.received:
            blocks.append(self.recv_stats.report_block(self.in_ssrc, now))
        report: SenderReport | ReceiverReport
        if self.send_stats.packets:
            report = self.send_stats.sender_report(self.out.ssrc, now, self.out.timestamp, blocks)
        else:
            report = ReceiverReport(ssrc=self.out.ssrc, reports=blocks)
        sdes = SourceDescription([SdesChunk(self.out.ssrc, [SdesItem(SdesType.CNAME, cname)])])
        data = build_compound([report, sdes])
        if self._sendto(self._rtcp, data, self.rtcp_remote):
            self.counters.rtcp_out += 1
            interval.on_rtcp_sent(len(data) + UDP_OVERHEAD)
        return interval.interval()

    def send_bye(self) -> None:
        """RTCP BYE when the stream ends (§6.6)."""
        if self.rtcp_remote is None or self._rtcp is None or not self.send_stats.packets:
            return
        report = self.send_stats.sender_report(self.out.ssrc, time.time(), self.out.timestamp)
        self._sendto(self._rtcp, build_compound([report, Bye([self.out.ssrc])]), self.rtcp_remote)
