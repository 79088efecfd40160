"""WebRTC media for a browser leg: ICE-lite, DTLS-SRTP and rtcp-mux on one RTP port.

A browser reaches us on one UDP port from ``[media] rtp_ports`` that carries
STUN, DTLS and SRTP/SRTCP, told apart by their first byte (RFC 7983 §7).
The engine is an ICE-lite agent (RFC 8445 §2.5): it has one host candidate,
the ``[media] advertise`` address, never sends connectivity checks and only
answers the browser's, sending media to the address the browser nominates
with USE-CANDIDATE (§7.3.1.5).  It is the DTLS server (``a=setup:passive``,
RFC 5763 §5), checks the browser's certificate against the fingerprint of its
SDP (RFC 8122 §5) and keys SRTP from the handshake (RFC 5764 §4.2).

This is aiortc's stack used at the packet level: STUN from aioice, SRTP from
pylibsrtp and DTLS from pyOpenSSL, as aiortc does; what is left out is the
per-track asyncio machinery of an ``RTCPeerConnection``, so a browser leg
costs about what a phone leg does and rides the engine's relay and audio path.

:class:`WebRtcTransport` is sans-I/O (bytes in, bytes out, events);
:class:`WebRtcStream` is the :class:`~media.stream.Stream` that owns the socket.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import secrets
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pylibsrtp
from aioice import stun
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

from media.stream import MAX_DATAGRAM, Addr, Stream

log = logging.getLogger(__name__)

#: SRTP protection profiles offered in the DTLS use_srtp extension, preferred first
#: (RFC 5764 §4.1.2, RFC 7714 §14.2): OpenSSL name, libsrtp profile, key and salt octets.
SRTP_PROFILES = (
    (b"SRTP_AEAD_AES_128_GCM", pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12),
    (b"SRTP_AES128_CM_SHA1_80", pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14),
)
#: Fingerprint hash functions we can check (RFC 8122 §5), by SDP name.
FINGERPRINT_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha-256": hashes.SHA256(),
    "sha-384": hashes.SHA384(),
    "sha-512": hashes.SHA512(),
}
#: What an RTCP packet's second octet is with rtcp-mux (RFC 5761 §4): types 192-223.
_RTCP_TYPES = range(192, 224)


class WebRtcError(ValueError):
    """Parameters from the browser's SDP that cannot be used."""


def fingerprint(certificate: x509.Certificate, algorithm: str = "sha-256") -> str:
    """The certificate's fingerprint as SDP writes it: upper-case hex pairs (RFC 8122 §5)."""
    return certificate.fingerprint(FINGERPRINT_HASHES[algorithm]).hex(":").upper()


def srtp_sessions(
    connection: SSL.Connection, *, server: bool
) -> tuple[pylibsrtp.Session, pylibsrtp.Session, str]:
    """Receive and send SRTP sessions keyed from a finished DTLS handshake, and the
    profile's name (RFC 5764 §4.2): the client writes with the first key and salt of
    the exported material, the server with the second.  WebRtcError if the peers
    agreed on no profile we know."""
    chosen = connection.get_selected_srtp_profile()
    found = next((p for p in SRTP_PROFILES if p[0] == chosen), None)
    if found is None:
        raise WebRtcError(f"no common SRTP profile (the peer chose {chosen!r})")
    name, profile, key_length, salt_length = found
    material = connection.export_keying_material(
        b"EXTRACTOR-dtls_srtp", 2 * (key_length + salt_length)
    )
    salts_at = 2 * key_length
    client = material[:key_length] + material[salts_at : salts_at + salt_length]
    ours = material[key_length:salts_at] + material[salts_at + salt_length :]
    if not server:
        client, ours = ours, client

    def session(key: bytes, ssrc_type: int) -> pylibsrtp.Session:
        return pylibsrtp.Session(
            pylibsrtp.Policy(key=key, ssrc_type=ssrc_type, srtp_profile=profile)
        )

    receive = session(client, pylibsrtp.Policy.SSRC_ANY_INBOUND)
    send = session(ours, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    return receive, send, name.decode()


def self_signed(
    common_name: str,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    extensions: Iterable[tuple[x509.ExtensionType, bool]] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A fresh P-256 key and a certificate it signs itself, with ``extensions``
    (each with its criticality): a DTLS identity (RFC 8827 §6.5) or an HTTPS server's."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    return builder.sign(key, hashes.SHA256()), key


class DtlsIdentity:
    """The engine's DTLS certificate and the one SSL context every browser leg shares.

    RFC 8827 §6.5 asks for a fresh self-signed certificate per session at least;
    one per engine start is what browsers and SFUs do, since the identity is the
    fingerprint signed into the SDP, not a name.
    """

    def __init__(self) -> None:
        now = datetime.datetime.now(datetime.UTC)
        day = datetime.timedelta(days=1)
        self.certificate, key = self_signed("voipcore", now - day, now + 30 * day)
        self.fingerprint = fingerprint(self.certificate)
        """SHA-256 fingerprint for ``a=fingerprint:sha-256`` (RFC 8122 §5)."""
        context = SSL.Context(SSL.DTLS_METHOD)
        context.set_options(SSL.OP_NO_TICKET)
        # Browsers' certificates are self-signed: accept any here and check its
        # fingerprint against the SDP once the handshake is done (RFC 5763 §5).
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *_: True)
        context.use_certificate(self.certificate)
        context.use_privatekey(key)
        context.set_tlsext_use_srtp(b":".join(profile[0] for profile in SRTP_PROFILES))
        self.context = context


@dataclass(frozen=True, slots=True)
class IceParameters:
    """One side's ICE credentials (RFC 8839 §5.4)."""

    ufrag: str
    pwd: str

    @classmethod
    def generate(cls) -> IceParameters:
        """Random credentials: 4+ characters of ufrag, 22+ of password (§5.4)."""
        return cls(secrets.token_hex(4), secrets.token_hex(16))


@dataclass(frozen=True, slots=True)
class Nominated:
    """The browser nominated the pair from ``address`` to us (RFC 8445 §7.3.1.5)."""

    address: Addr
    """Where media and RTCP now go."""


@dataclass(frozen=True, slots=True)
class Connected:
    """DTLS is up, the peer's certificate matched its fingerprint, SRTP is keyed."""

    profile: str
    """The SRTP protection profile agreed (RFC 5764 §4.1.2)."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The transport cannot carry media: handshake error or fingerprint mismatch."""

    reason: str


Event = Nominated | Connected | Failed


class WebRtcTransport:
    """ICE-lite responder, DTLS server and SRTP context of one browser leg (sans-I/O).

    Feed every datagram to :meth:`receive`; it returns plain RTP or RTCP once
    SRTP is keyed and ``None`` for everything it consumed itself.  Then send
    :meth:`datagrams_to_send` and handle :meth:`next_event`.
    """

    def __init__(
        self,
        identity: DtlsIdentity,
        local: IceParameters,
        remote_ufrag: str,
        remote_fingerprints: list[tuple[str, str]],
    ) -> None:
        usable = [(a.lower(), v.upper()) for a, v in remote_fingerprints]
        usable = [(a, v) for a, v in usable if a in FINGERPRINT_HASHES]
        if not usable:
            raise WebRtcError("the offer has no sha-256/384/512 fingerprint (RFC 8122 §5)")
        if not remote_ufrag:
            raise WebRtcError("the offer has no ice-ufrag (RFC 8839 §5.4)")
        self.local = local
        self.remote_ufrag = remote_ufrag
        self.remote_fingerprints = usable
        self.nominated: Addr | None = None
        self.connected = False
        self.failed = False
        self._username = f"{local.ufrag}:{remote_ufrag}"
        self._key = local.pwd.encode()
        self._ssl = SSL.Connection(identity.context)
        self._ssl.set_accept_state()
        self._rx: pylibsrtp.Session | None = None
        self._tx: pylibsrtp.Session | None = None
        self._out: list[tuple[bytes, Addr]] = []
        self._events: deque[Event] = deque()

    # -- output -----------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        """STUN responses and DTLS flights produced since the last call."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # -- input ------------------------------------------------------------------

    def receive(self, data: bytes, addr: Addr) -> bytes | None:
        """Demultiplex one datagram (RFC 7983 §7); plain RTP/RTCP comes back."""
        first = data[0] if data else 255
        if 128 <= first <= 191:
            return self._unprotect(data, addr)
        if first <= 3:
            self._stun(data, addr)
        elif 20 <= first <= 63:
            self._dtls(data, addr)
        return None

    def handle_timer(self) -> None:
        """Retransmit our last DTLS flight if it is overdue (RFC 6347 §4.2.4)."""
        if not self.connected and not self.failed and self.nominated is not None:
            try:
                self._ssl.DTLSv1_handle_timeout()
            except SSL.Error as exc:
                self._fail(f"DTLS timeout handling failed: {exc}")
            self._flush(self.nominated)

    def _stun(self, data: bytes, addr: Addr) -> None:
        """Answer a connectivity check (RFC 8445 §7.3); nominate on USE-CANDIDATE."""
        try:
            request = stun.parse_message(data)
        except (ValueError, struct.error):  # aioice lets a short attribute's struct.error out
            return
        if (
            request.message_method != stun.Method.BINDING
            or request.message_class != stun.Class.REQUEST
        ):
            return  # responses and indications need nothing from a lite agent
        if request.attributes.get("USERNAME") != self._username or not (
            request.check_message_integrity(self._key)
        ):
            # RFC 8489 §9.1.3: wrong credentials get 401; no integrity on the reply.
            self._reply(request, addr, error=(401, "Unauthenticated"))
            return
        self._reply(request, addr)
        if "USE-CANDIDATE" in request.attributes and addr != self.nominated:
            self.nominated = addr
            self._events.append(Nominated(addr))

    def _reply(
        self, request: stun.Message, addr: Addr, error: tuple[int, str] | None = None
    ) -> None:
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.ERROR if error else stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
        )
        if error:
            response.attributes["ERROR-CODE"] = error
            response.add_fingerprint()
        else:
            response.attributes["XOR-MAPPED-ADDRESS"] = addr
            response.add_message_integrity(self._key)
        self._out.append((bytes(response), addr))

    def _dtls(self, data: bytes, addr: Addr) -> None:
        if self.failed or addr != self.nominated:
            return  # DTLS runs on the nominated pair only (RFC 8842 §4)
        self._ssl.bio_write(data)
        try:
            if self.connected:
                self._ssl.recv(MAX_DATAGRAM)  # alerts; we carry no data channel
            else:
                self._ssl.do_handshake()
                self._handshake_done()
        except SSL.WantReadError:
            pass
        except SSL.ZeroReturnError:
            self._fail("the browser closed DTLS")
        except SSL.Error as exc:
            self._fail(f"DTLS handshake failed: {exc}")
        self._flush(addr)

    def _flush(self, addr: Addr) -> None:
        while True:
            try:
                flight = self._ssl.bio_read(MAX_DATAGRAM)
            except SSL.WantReadError:
                return
            self._out.append((flight, addr))

    def _handshake_done(self) -> None:
        """Check the peer's fingerprint, then key SRTP (RFC 5764 §4.2)."""
        certificate = self._ssl.get_peer_certificate(as_cryptography=True)
        if certificate is None or not any(
            fingerprint(certificate, algorithm) == value
            for algorithm, value in self.remote_fingerprints
        ):
            self._fail("the browser's certificate does not match its SDP fingerprint")
            return
        try:
            self._rx, self._tx, name = srtp_sessions(self._ssl, server=True)
        except WebRtcError as exc:
            self._fail(str(exc))
            return
        self.connected = True
        self._events.append(Connected(name))

    def _fail(self, reason: str) -> None:
        if not self.failed:
            self.failed = True
            self._events.append(Failed(reason))

    # -- SRTP -------------------------------------------------------------------

    def _unprotect(self, data: bytes, addr: Addr) -> bytes | None:
        rx = self._rx
        if rx is None or addr != self.nominated or len(data) < 12:
            return None
        try:
            if data[1] in _RTCP_TYPES:
                return rx.unprotect_rtcp(data)
            return rx.unprotect(data)
        except pylibsrtp.Error:
            return None  # forged, replayed or damaged (RFC 3711 §3.3)

    def protect(self, packet: bytes | bytearray) -> bytes | None:
        """SRTP or SRTCP for an outgoing packet; None until keyed (RFC 3711 §3.1)."""
        tx = self._tx
        if tx is None:
            return None
        try:
            if packet[1] in _RTCP_TYPES:
                return tx.protect_rtcp(bytes(packet))
            return tx.protect(bytes(packet))
        except pylibsrtp.Error:
            return None


class WebRtcStream(Stream):
    """A browser leg: a :class:`Stream` whose one socket speaks ICE, DTLS and SRTP.

    Everything above the transport (statistics, jitter buffer, relay, audio path,
    RTCP reports) is the phone leg's code; only reading and sending differ.
    """

    __slots__ = ("transport", "_spare", "_on_transport")

    def setup(
        self, transport: WebRtcTransport, on_transport: Callable[[WebRtcStream, Event], None]
    ) -> None:
        """Give the stream its transport and a callback for the transport's events."""
        self.transport = transport
        self._on_transport = on_transport
        self.latched = True  # the source is whoever ICE nominates, nobody else

    def attach(
        self, loop: asyncio.AbstractEventLoop, rtp: socket.socket, rtcp: socket.socket
    ) -> None:
        """Read the RTP socket only: RTCP is multiplexed on it (RFC 5761 §4)."""
        self._loop, self._rtp, self._rtcp, self._spare = loop, rtp, rtp, rtcp
        self._ipv6 = rtp.family == socket.AF_INET6
        loop.add_reader(rtp.fileno(), self._rtp_readable)

    def close(self) -> None:
        super().close()
        self._spare.close()

    def _rtp_readable(self) -> None:
        assert self._rtp is not None
        try:
            data, addr = self._rtp.recvfrom(MAX_DATAGRAM)
        except OSError:
            return
        if self._ipv6:
            addr = addr[:2]
        plain = self.transport.receive(data, addr)
        if plain is not None:
            self.rtp_datagram(plain, addr)
        else:
            self._drain()

    def _drain(self) -> None:
        """Send what the transport produced; act on its events."""
        transport = self.transport
        for datagram, to in transport.datagrams_to_send():
            if self._rtp is not None:
                super()._sendto(self._rtp, datagram, to)
        while (event := transport.next_event()) is not None:
            if isinstance(event, Nominated):
                self.remote = self.rtcp_remote = event.address
            self._on_transport(self, event)

    def _accept_source(self, addr: Addr) -> bool:
        """Only the nominated address sends media (checked by the transport too)."""
        return addr == self.remote

    def _sendto(self, sock: socket.socket, packet: bytes | bytearray, addr: Addr) -> bool:
        protected = self.transport.protect(packet)
        if protected is None:
            return False  # DTLS not up yet: nothing can be sent
        return super()._sendto(sock, protected, addr)

    def handle_timer(self) -> None:
        """Once a second: DTLS retransmission (see :meth:`WebRtcTransport.handle_timer`)."""
        self.transport.handle_timer()
        self._drain()
