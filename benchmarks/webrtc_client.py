"""Light WebRTC peers for :mod:`benchmarks.webrtc_load`: a browser leg at the packet level.

An ``RTCPeerConnection`` costs about a tenth of a core per leg (an asyncio task
per track, a decoder and an encoder per frame), so one core of them cannot
load a media engine with hundreds of legs.  :class:`BrowserLeg` does what a
browser does on the wire and nothing more: ICE as the controlling agent with
aggressive nomination (one Binding request with USE-CANDIDATE to the ICE-lite
engine's one candidate, RFC 8445 §7.2.4, §8.1.1), answering the checks of a
full ICE peer (aiortc), DTLS as the client (``a=setup:active``, RFC 5763 §5)
and SRTP keyed from the handshake (RFC 5764 §4.2), then one pre-built RTP
packet per 20 ms, protected with libsrtp.  Received SRTP is authenticated and
counted, RTCP (rtcp-mux, RFC 5761 §4) is ignored.  :class:`PhoneLeg` is the
plain RTP peer of a browser leg bridged to a phone.

Both are driven by :meth:`ClientLeg.readable` (from the event loop's reader)
and :meth:`ClientLeg.send_frame` (from the sender's clock).  A process's legs share
one :class:`~media.webrtc.DtlsIdentity` (the engine's own certificate and
context class: a DTLS context serves either role).  The server's DTLS
fingerprint is not checked: the load does not need it, and the engine checks
ours.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import struct

import numpy as np
import pylibsrtp
from aioice import stun
from OpenSSL import SSL

from media import g711
from media.opus import OpusEncoder
from media.webrtc import DtlsIdentity, WebRtcError, srtp_sessions

RTP_HEADER = struct.Struct("!BBHII")
#: What an RTCP packet's second octet is with rtcp-mux (RFC 5761 §4).
RTCP_TYPES = range(192, 224)
MAX_DATAGRAM = 2048
#: Host candidate priority for component 1 (RFC 8445 §5.1.2.1: type preference 126).
PRIORITY = (126 << 24) | (65535 << 8) | 255
Address = tuple[str, int]


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


class ClientLeg:
    """One leg's socket, its RTP sender state and its counters."""

    def __init__(self, payload_type: int, payloads: list[bytes], samples: int) -> None:
        self.sock = udp_socket()
        self.remote: Address | None = None
        self.payload_type = payload_type
        self.payloads = payloads
        self.samples = samples
        self.ssrc = secrets.randbits(32)
        self.seq = secrets.randbits(16)
        self.timestamp = secrets.randbits(32)
        self.sent = 0
        self.received = 0
        self.connected = False
        self.failed: str | None = None

    @property
    def address(self) -> Address:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def packet(self) -> bytes:
        """The next RTP packet (RFC 3550 §5.1), its payload cycling through ``payloads``."""
        header = RTP_HEADER.pack(0x80, self.payload_type, self.seq, self.timestamp, self.ssrc)
        payload = self.payloads[self.sent % len(self.payloads)]
        self.seq = (self.seq + 1) & 0xFFFF
        self.timestamp = (self.timestamp + self.samples) & 0xFFFFFFFF
        return header + payload

    def send_frame(self) -> None:
        if not self.connected or self.remote is None:
            return
        data = self.protect(self.packet())
        try:
            self.sock.sendto(data, self.remote)
        except OSError:
            return
        self.sent += 1

    def protect(self, packet: bytes) -> bytes:
        return packet

    def readable(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.datagram(data, addr[:2])

    def datagram(self, data: bytes, addr: Address) -> None:
        if len(data) >= 12 and 128 <= data[0] <= 191 and data[1] not in RTCP_TYPES:
            self.received += 1

    def retransmit(self) -> None:
        """Called every few hundred ms until connected."""

    def close(self) -> None:
        self.sock.close()


class PhoneLeg(ClientLeg):
    """A plain RTP phone: sends to ``remote`` at once, counts every RTP packet."""

    def __init__(
        self, payload_type: int, payloads: list[bytes], samples: int, remote: Address | None = None
    ) -> None:
        super().__init__(payload_type, payloads, samples)
        self.remote = remote

    def start(self, remote: Address) -> None:
        self.remote = remote
        self.connected = True


class BrowserLeg(ClientLeg):
    """ICE (controlling), DTLS client and SRTP of one browser leg."""

    def __init__(
        self, identity: DtlsIdentity, payload_type: int, payloads: list[bytes], samples: int
    ) -> None:
        super().__init__(payload_type, payloads, samples)
        self.ufrag = secrets.token_hex(4)
        self.pwd = secrets.token_hex(16)
        self._identity = identity
        self._tie_breaker = secrets.randbits(64)
        self._remote_ufrag = ""
        self._remote_key = b""
        self._checked = False
        self._ssl: SSL.Connection | None = None
        self._rx: pylibsrtp.Session | None = None
        self._tx: pylibsrtp.Session | None = None

    def start(self, remote: Address, ufrag: str, pwd: str) -> None:
        """Begin ICE towards the server's candidate ``remote`` with its credentials."""
        self.remote = remote
        self._remote_ufrag = ufrag
        self._remote_key = pwd.encode()
        self._check()

    def _check(self) -> None:
        """A connectivity check with USE-CANDIDATE (RFC 8445 §7.2.2, §8.1.1)."""
        assert self.remote is not None
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        request.attributes["USERNAME"] = f"{self._remote_ufrag}:{self.ufrag}"
        request.attributes["PRIORITY"] = PRIORITY
        request.attributes["ICE-CONTROLLING"] = self._tie_breaker
        request.attributes["USE-CANDIDATE"] = None
        request.add_message_integrity(self._remote_key)
        request.add_fingerprint()
        self._send(bytes(request))

    def retransmit(self) -> None:
        if self.connected or self.failed or self.remote is None:
            return
        if not self._checked:
            self._check()
        elif self._ssl is not None:
            try:
                self._ssl.DTLSv1_handle_timeout()
            except SSL.Error as exc:
                self.failed = f"DTLS timeout: {exc}"
            self._flush()

    def _send(self, data: bytes) -> None:
        assert self.remote is not None
        with contextlib.suppress(OSError):
            self.sock.sendto(data, self.remote)

    def datagram(self, data: bytes, addr: Address) -> None:
        first = data[0] if data else 255
        if 128 <= first <= 191:
            if self._rx is None or len(data) < 12 or data[1] in RTCP_TYPES:
                return
            try:
                self._rx.unprotect(data)
            except pylibsrtp.Error:
                return
            self.received += 1
        elif first <= 3:
            self._stun(data, addr)
        elif 20 <= first <= 63 and self._ssl is not None:
            self._ssl.bio_write(data)
            self._handshake()

    def _stun(self, data: bytes, addr: Address) -> None:
        try:
            message = stun.parse_message(data)
        except ValueError:
            return
        if message.message_method != stun.Method.BINDING:
            return
        if message.message_class == stun.Class.REQUEST:
            # A full ICE peer's check, or its consent freshness (RFC 7675): answer it.
            response = stun.Message(
                message_method=stun.Method.BINDING,
                message_class=stun.Class.RESPONSE,
                transaction_id=message.transaction_id,
            )
            response.attributes["XOR-MAPPED-ADDRESS"] = addr
            response.add_message_integrity(self.pwd.encode())
            response.add_fingerprint()
            with contextlib.suppress(OSError):
                self.sock.sendto(bytes(response), addr)
        elif message.message_class == stun.Class.RESPONSE and not self._checked:
            self._checked = True
            self._ssl = SSL.Connection(self._identity.context)
            self._ssl.set_connect_state()
            self._handshake()

    def _handshake(self) -> None:
        assert self._ssl is not None
        try:
            if self.connected:
                self._ssl.recv(MAX_DATAGRAM)
            else:
                self._ssl.do_handshake()
                self._keys()
        except SSL.WantReadError:
            pass
        except SSL.Error as exc:
            self.failed = f"DTLS: {exc}"
        self._flush()

    def _flush(self) -> None:
        assert self._ssl is not None
        while True:
            try:
                self._send(self._ssl.bio_read(MAX_DATAGRAM))
            except SSL.WantReadError:
                return

    def _keys(self) -> None:
        """Key SRTP from the handshake (RFC 5764 §4.2): the client writes with the first key."""
        assert self._ssl is not None
        try:
            self._rx, self._tx, _ = srtp_sessions(self._ssl, server=False)
        except WebRtcError as exc:
            self.failed = str(exc)
            return
        self.connected = True

    def protect(self, packet: bytes) -> bytes:
        assert self._tx is not None
        protected: bytes = self._tx.protect(packet)
        return protected


def tone_payloads(codec: str, frames: int = 50) -> list[bytes]:
    """One second of a 440 Hz tone as ``codec`` (PCMU, PCMA or opus) payloads, cycled by the sender.

    A tone rather than silence so Opus does not fall into its cheap silent frames.
    """
    t = np.arange(frames * 160) / 8000
    pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16).reshape(frames, 160)
    if codec.upper() == "OPUS":
        encoder = OpusEncoder()
        return [encoder.encode(frame) for frame in pcm]
    payload_type = g711.PCMU if codec.upper() == "PCMU" else g711.PCMA
    return [bytes(g711.encode(payload_type, frame)) for frame in pcm]
