"""A test RTP endpoint on a real UDP socket: sends tones, keeps what arrives.

It reads each datagram with ``recvmsg`` and ``IP_RECVTOS`` so tests can check
the DSCP marking of what the engine sent, as it was on the wire.
"""

from __future__ import annotations

import asyncio
import math
import random
import socket
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import numpy.typing as npt

from media import g711
from media.dtmf import DtmfEvent, DtmfReceiver, DtmfSender
from media.rtp import RtpPacket
from media.tones import ToneGenerator
from tests.audio import WINDOW, recorded_audio, until_heard

FRAME = 160


@dataclass
class Received:
    """One datagram as it arrived."""

    packet: RtpPacket
    tos: int | None
    source: tuple[str, int]


@dataclass
class RtpPhone:
    """Sends and receives RTP like a phone would, 20 ms at a time."""

    sock: socket.socket
    rtcp: socket.socket | None = None
    """Holds RTP port + 1, where the engine sends RTCP (RFC 3550 §11): nothing else
    of the test (a SIP client) may bind it and take RTCP for its own traffic."""
    received: list[Received] = field(default_factory=list)
    ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    seq: int = field(default_factory=lambda: random.getrandbits(16))
    timestamp: int = field(default_factory=lambda: random.getrandbits(32))

    @classmethod
    def open(cls, host: str = "127.0.0.1") -> RtpPhone:
        """A phone on a free even port whose odd neighbour is free too (kept for RTCP)."""
        while True:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((host, 0))
            port = sock.getsockname()[1]
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                if port % 2:
                    raise OSError("odd port")
                rtcp.bind((host, port + 1))
                break
            except OSError:
                sock.close()
                rtcp.close()
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
        sock.setblocking(False)
        phone = cls(sock, rtcp)
        asyncio.get_running_loop().add_reader(sock.fileno(), phone._readable)
        return phone

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()
        if self.rtcp is not None:
            self.rtcp.close()

    def _readable(self) -> None:
        while True:
            try:
                data, ancillary, _, source = self.sock.recvmsg(2048, socket.CMSG_SPACE(1))
            except BlockingIOError:
                return
            tos = None
            for level, kind, value in ancillary:
                if level == socket.IPPROTO_IP and kind == socket.IP_TOS:
                    tos = value[0]
            self.received.append(Received(RtpPacket.parse(data), tos, source))

    def send_packet(
        self,
        dest: tuple[str, int],
        payload: bytes,
        pt: int,
        *,
        marker: bool = False,
        timestamp: int | None = None,
    ) -> None:
        self.seq = (self.seq + 1) & 0xFFFF
        packet = RtpPacket(
            payload_type=pt,
            sequence_number=self.seq,
            timestamp=self.timestamp if timestamp is None else timestamp,
            ssrc=self.ssrc,
            payload=payload,
            marker=marker,
        )
        self.sock.sendto(bytes(packet), dest)

    async def send_tone(
        self, dest: tuple[str, int], freq: float, seconds: float = math.inf, pt: int = 0
    ) -> None:
        """Send ``seconds`` of a sine (until cancelled by default) as G.711 (PCMU=0, PCMA=8)
        in real time."""
        tone = ToneGenerator((freq,), 0.4)
        loop = asyncio.get_running_loop()
        start = loop.time()
        index = 0
        while index < seconds / 0.02 - 0.5:
            payload = g711.encode(pt, tone.next_frame()).tobytes()
            self.send_packet(dest, payload, pt, marker=index == 0)
            self.timestamp = (self.timestamp + FRAME) & 0xFFFFFFFF
            index += 1
            await asyncio.sleep(max(0.0, start + index * 0.02 - loop.time()))

    async def send_dtmf(self, dest: tuple[str, int], digit: str, pt: int = 101) -> None:
        """Send one RFC 4733 key press in real time."""
        for packet in DtmfSender(payload_type=pt).packets(digit, self.timestamp, 0.1):
            self.send_packet(
                dest, packet.payload, pt, marker=packet.marker, timestamp=packet.timestamp
            )
            await asyncio.sleep(0.02)
        self.timestamp = (self.timestamp + 800) & 0xFFFFFFFF

    def audio(self, pt: int) -> npt.NDArray[np.int16]:
        """Decoded audio of every ``pt`` packet received, each at its RTP timestamp."""
        return recorded_audio((r.packet for r in self.received), (pt,))

    def dtmf_events(self, pt: int = 101) -> list[DtmfEvent]:
        """RFC 4733 events among what was received."""
        receiver = DtmfReceiver()
        events: list[DtmfEvent] = []
        for received in self.received:
            packet = received.packet
            if packet.payload_type == pt:
                events += receiver.feed(packet.timestamp, packet.payload, packet.marker)
        return events + receiver.flush()


@dataclass(frozen=True, slots=True)
class AudioPath:
    """One direction of a call's audio: ``sender`` talks to ``dest``, ``receiver`` hears."""

    sender: RtpPhone
    dest: tuple[str, int]
    freq: float
    receiver: RtpPhone
    pt: int = 0
    """Payload type the sender sends."""
    heard_pt: int | None = None
    """Payload type the receiver gets, when the call transcodes; else ``pt``."""

    def heard(self, since: int = 0) -> npt.NDArray[np.int16]:
        """What the receiver got, from sample ``since`` on."""
        return self.receiver.audio(self.pt if self.heard_pt is None else self.heard_pt)[since:]


async def assert_heard(*paths: AudioPath, seconds: float = 1.0, timeout: float = 10.0) -> None:
    """Every path carries its tone as audio, all at once (a call's two directions).

    Each sender talks until its receiver hears the tone (so set-up delays, which a loaded
    machine stretches, do not count), then for ``seconds`` more: over that span each
    receiver must hold its own path's tone, loud and with nothing else (``assert_tone``).
    """
    starts = [path.heard().size for path in paths]
    talkers = [
        asyncio.create_task(path.sender.send_tone(path.dest, path.freq, pt=path.pt))
        for path in paths
    ]
    try:
        for path, start in zip(paths, starts, strict=True):
            await until_heard(partial(path.heard, start), path.freq, 2 * WINDOW, timeout=timeout)
        marks = [path.heard().size for path in paths]
    finally:
        for talker in talkers:
            talker.cancel()
        await asyncio.gather(*talkers, return_exceptions=True)
    await asyncio.gather(
        *(path.sender.send_tone(path.dest, path.freq, seconds, path.pt) for path in paths)
    )
    for path, mark in zip(paths, marks, strict=True):
        await until_heard(partial(path.heard, mark), path.freq, seconds, timeout=timeout)
