"""A local stand-in for Twilio Elastic SIP Trunking, on real UDP sockets.

:class:`TwilioCarrier` plays both sides of a Twilio trunk on loopback:

* **Termination** (customer -> PSTN): it receives INVITEs on one UDP port per simulated
  edge and applies Twilio's documented rules, in this order:

  1. The Request-URI host must be the trunk's Termination SIP URI, ``{trunk}.pstn.twilio.com``
     or a localized ``{trunk}.pstn.{edge}.twilio.com``.  Twilio's troubleshooting guide says
     it treats other INVITEs as malicious and *drops* them, so no response is sent
     (``wrong_domain_status`` makes it answer instead).
  2. With a credential list, the INVITE is challenged: ``407`` with a Proxy-Authenticate of
     realm ``sip.twilio.com``, MD5, ``qop=auth`` (RFC 3261 §22.3); wrong credentials get 403.
  3. Calls per second: by default 1 new call per trunk per region; the call over the limit
     fails with ``503 Trunk CPS limit exceeded`` (Twilio support, "How fast can I place or
     receive phone calls"), here with a Retry-After (RFC 3261 §21.5.4, §20.33).  One
     sliding 1 s window counts authenticated INVITEs for the whole trunk: every edge routes
     to the default region.
  4. The called number must be E.164 (Twilio error 32101, "SIP: Invalid phone number");
     the SIP status Twilio sends is not documented, 404 here (``invalid_number_status``).
  5. The caller ID (From user) must be a Twilio number of the account or a verified caller
     ID (error 32204, "'From' phone number not verified"): 403, or with
     ``caller_id_policy="allow"`` the call goes through, marked unverified.

  Then the called number's :class:`Party` decides: answer (after optional ringing, 180 or
  183 with early media), busy (486), no answer (480 after a delay), or reject with a code.
  An answered call plays a tone or echoes the customer's audio, sends RFC 4733 digits, and
  records everything it receives (audio, DTMF) for the test to check.

* **Origination** (PSTN -> customer): :meth:`TwilioCarrier.call` sends an INVITE the way
  Twilio delivers a call to an Origination URI: ``sip:+DID@target``, the caller in From,
  ``X-Twilio-AccountSid``, an SDP offer of PCMU, PCMA and telephone-event.  Twilio does not
  answer digest challenges from customer endpoints, and neither does this.

Signalling runs through voipcore's sans-I/O :class:`TransactionLayer` (one per edge),
driven by the event loop's clock: retransmissions, timers and 100 Trying come from it.
The carrier is the dialog layer on top: ACK, BYE both ways, CANCEL (487), re-INVITE with
the mirrored direction for hold (RFC 3264 §8.4), OPTIONS pings, 481 for unknown dialogs,
and 2xx retransmission until the ACK (RFC 3261 §13.3.1.4).  In-dialog requests go back to
the address the dialog's INVITE came from (symmetric signalling, as with RFC 3581).

Run it in the test's event loop (``async with TwilioCarrier(...)``) or, from synchronous
code, in a thread with :class:`CarrierThread`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import re
import secrets
import socket
import threading
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, NamedTuple, TypeVar, cast

import numpy as np
import numpy.typing as npt

from media import g711
from media.dtmf import DtmfEnd, DtmfPacket, DtmfReceiver, DtmfSender, event_code
from media.rtp import RtpError, RtpPacket
from media.tones import CALL_PROGRESS, ToneGenerator
from tests.audio import recorded_audio
from voipcore.config import TWILIO_EDGES
from voipcore.sip.digest import AuthResult, Credentials, DigestAuthenticator, compute_ha1
from voipcore.sip.errors import SipError
from voipcore.sip.message import Request, Response, make_response, parse_message
from voipcore.sip.transaction import (
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    Timers,
    TransactionEvent,
    TransactionKey,
    TransactionLayer,
    TransactionStateError,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailure,
)
from voipcore.sip.uri import SipUri, TelUri, Uri

logger = logging.getLogger(__name__)

#: Twilio edge locations that take SIP (``{trunk}.pstn.{edge}.twilio.com``).
EDGES = TWILIO_EDGES
#: The digest realm of Twilio's termination challenges.
REALM = "sip.twilio.com"
#: ITU-T E.164 in the ``+CC...`` form Twilio requires: at most 15 digits, no leading 0.
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
#: Reason phrase of the 503 sent to a call over the trunk's CPS limit.
CPS_REASON = "Trunk CPS limit exceeded"
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"
#: Default telephone-event payload type offered (RFC 4733 §7.1.1; dynamic).
TELEPHONE_EVENT = 101

_FRAME = 160
_PTIME = 0.02
_TS_MASK = 0xFFFFFFFF
#: Quiet ticks between two RFC 4733 digits sent by the carrier.
_DIGIT_GAP = 3

Outcome = Literal["answer", "busy", "no_answer", "reject"]
MediaMode = Literal["tone", "echo", "silence"]
Address = tuple[str, int]

_T = TypeVar("_T")


class CarrierError(Exception):
    """The test asked the carrier for something the call's state does not allow."""


class SdpError(ValueError):
    """An SDP body the carrier cannot use (RFC 4566)."""


_USUAL_STATUS: dict[str, int] = {"answer": 200, "busy": 486, "no_answer": 480, "reject": 403}


@dataclass(frozen=True, slots=True)
class Party:
    """The PSTN party on the far side of the carrier.

    The callee of a termination call (all fields), or the caller of an origination call
    (only the media fields: ``media``, ``tone_hz``, ``dtmf``, ``dtmf_delay``, ``hangup_after``).
    """

    outcome: Outcome = "answer"
    "What the callee does with the call."
    status: int = 0
    "Final status for busy, no_answer and reject; 0 picks the usual 486, 480, 403."
    ring: float = 0.0
    "Seconds of ringing (180, or 183 with early media) before the final response."
    early_media: bool = False
    "Ring with 183 Session Progress and an SDP answer, playing US ringback (ANSI T1.401)."
    media: MediaMode = "tone"
    "Once answered: play a tone, echo what arrives, or stay silent."
    tone_hz: float = 1000.0
    "Frequency of the tone played in ``tone`` mode."
    dtmf: str = ""
    "RFC 4733 digits the party sends once the call is answered."
    dtmf_delay: float = 0.1
    "Seconds after the answer before the first digit."
    hangup_after: float | None = None
    "Seconds after the answer at which the carrier sends BYE; None waits for the customer."

    def __post_init__(self) -> None:
        if self.outcome not in _USUAL_STATUS:
            raise ValueError(f"outcome must be one of {sorted(_USUAL_STATUS)}: {self.outcome!r}")
        if self.media not in ("tone", "echo", "silence"):
            raise ValueError(f"media must be tone, echo or silence: {self.media!r}")
        if self.status == 0:
            object.__setattr__(self, "status", _USUAL_STATUS[self.outcome])
        elif self.outcome != "answer" and not 300 <= self.status <= 699:
            raise ValueError(f"a {self.outcome} party needs a 3xx-6xx status, got {self.status}")
        if self.ring < 0 or self.dtmf_delay < 0:
            raise ValueError("ring and dtmf_delay must not be negative")
        if not 0 < self.tone_hz < 4000:
            raise ValueError(f"tone_hz must be within 0-4000 Hz, got {self.tone_hz}")
        for digit in self.dtmf:
            event_code(digit)

    @classmethod
    def busy(cls) -> Party:
        """A callee that is busy: 486 Busy Here at once."""
        return cls(outcome="busy")

    @classmethod
    def no_answer(cls, after: float = 0.5, status: int = 480) -> Party:
        """A callee that rings for ``after`` seconds, then 480 (or e.g. 408)."""
        return cls(outcome="no_answer", ring=after, status=status)

    @classmethod
    def reject(cls, status: int) -> Party:
        """A callee the network refuses with ``status`` (403, 404, 486, 503, ...)."""
        return cls(outcome="reject", status=status)


class CallState(Enum):
    """Where a call stands (RFC 3261 §12: early and confirmed dialogs)."""

    INITIAL = "initial"
    "INVITE sent or received; no dialog yet."
    EARLY = "early"
    "A provisional response with a To tag: ringing."
    CONFIRMED = "confirmed"
    "Answered (2xx)."
    ENDED = "ended"
    "Failed, cancelled or hung up."


@dataclass(eq=False)
class Attempt:
    """One INVITE transaction of a call, with the status codes sent (or received)."""

    at: float
    "Loop time the INVITE arrived (or was sent)."
    request: Request
    "The INVITE."
    statuses: list[int] = field(default_factory=list)
    "Response codes in order, 100 Trying included."


class Dropped(NamedTuple):
    """A datagram the carrier dropped without answering."""

    at: float
    "Loop time it arrived."
    edge: str
    "The edge that received it."
    reason: str
    "``edge-down``, ``not-our-domain`` or ``unparseable``."
    source: Address
    "Where it came from."
    request: Request | None
    "The request, when it parsed."


class ReceivedPacket(NamedTuple):
    """One RTP packet the carrier received."""

    at: float
    "Loop time of arrival."
    packet: RtpPacket
    "The packet."
    source: Address
    "Where it came from."


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """The one audio stream of an SDP body (RFC 4566), as far as G.711 calls need it."""

    address: str
    "Connection address (c=)."
    port: int
    "Audio port (m=audio)."
    payload_types: tuple[int, ...]
    "Audio payload types in order of preference (telephone-event apart)."
    telephone_event: int | None = None
    "Payload type of ``telephone-event/8000`` (RFC 4733 §7.1.1), if offered."
    direction: str = "sendrecv"
    "sendrecv, sendonly, recvonly or inactive (RFC 3264 §5.1)."
    session_id: int = 0
    "o= session id."
    version: int = 0
    "o= session version; goes up with every change (RFC 3264 §8)."

    @classmethod
    def parse(cls, body: bytes) -> SessionDescription:
        """The first audio stream; the media-level c= overrides the session-level one."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpError("SDP is not UTF-8") from exc
        address: str | None = None
        media_address: str | None = None
        port: int | None = None
        pts: tuple[int, ...] = ()
        event: int | None = None
        direction = "sendrecv"
        in_audio = False
        for line in text.splitlines():
            kind, _, value = line.partition("=")
            if kind == "m":
                if port is not None:
                    break
                parts = value.split()
                in_audio = len(parts) >= 4 and parts[0] == "audio"
                if in_audio:
                    try:
                        port = int(parts[1])
                        pts = tuple(int(p) for p in parts[3:])
                    except ValueError as exc:
                        raise SdpError(f"bad m= line {line!r}") from exc
            elif kind == "c":
                parts = value.split()
                if len(parts) != 3 or parts[:2] != ["IN", "IP4"]:
                    raise SdpError(f"only IN IP4 c= lines are supported: {line!r}")
                if in_audio:
                    media_address = parts[2]
                elif port is None:
                    address = parts[2]
            elif kind == "a" and (in_audio or port is None):
                if value in ("sendrecv", "sendonly", "recvonly", "inactive"):
                    direction = value
                elif value.startswith("rtpmap:") and in_audio:
                    pt, _, encoding = value[7:].partition(" ")
                    if encoding.lower().startswith("telephone-event/8000") and pt.isdigit():
                        event = int(pt)
        if port is None:
            raise SdpError("SDP has no audio stream")
        host = media_address or address
        if host is None:
            raise SdpError("SDP has no c= line for its audio stream")
        codecs = tuple(pt for pt in pts if pt != event)
        return cls(host, port, codecs, event, direction)

    def __bytes__(self) -> bytes:
        names = {g711.PCMU: "PCMU/8000", g711.PCMA: "PCMA/8000"}
        pts = list(self.payload_types)
        if self.telephone_event is not None:
            pts.append(self.telephone_event)
        lines = [
            "v=0",
            f"o=- {self.session_id} {self.version} IN IP4 {self.address}",
            "s=Twilio Media Gateway",
            f"c=IN IP4 {self.address}",
            "t=0 0",
            f"m=audio {self.port} RTP/AVP {' '.join(map(str, pts))}",
        ]
        lines += [f"a=rtpmap:{pt} {names[pt]}" for pt in self.payload_types if pt in names]
        if self.telephone_event is not None:
            lines.append(f"a=rtpmap:{self.telephone_event} telephone-event/8000")
            lines.append(f"a=fmtp:{self.telephone_event} 0-16")
        lines += ["a=ptime:20", f"a={self.direction}"]
        return ("\r\n".join(lines) + "\r\n").encode()


_MIRROR = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly"}


def mirror_direction(offered: str) -> str:
    """The answer's direction for an offered one (RFC 3264 §6.1): hold is mirrored."""
    return _MIRROR.get(offered, "inactive")


class CpsWindow:
    """At most ``limit`` call setups in any sliding window of ``window`` seconds."""

    def __init__(self, limit: int, window: float = 1.0) -> None:
        if limit < 1:
            raise ValueError(f"the CPS limit must be at least 1, got {limit}")
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def admit(self, now: float) -> bool:
        """Count a setup at ``now`` and return True, or return False if over the limit."""
        times = self._times
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True


@functools.lru_cache(maxsize=64)
def _tone_payloads(
    freqs: tuple[float, ...], cadence: tuple[float, ...], payload_type: int
) -> tuple[bytes, ...]:
    """One period of a tone as G.711 payloads: 1 s when steady, one cadence cycle otherwise."""
    seconds = sum(cadence) if cadence else 1.0
    generator = ToneGenerator(freqs, 0.5, cadence=cadence)
    frames = round(seconds / _PTIME)
    return tuple(g711.encode(payload_type, generator.next_frame()).tobytes() for _ in range(frames))


class CarrierMedia:
    """One RTP endpoint of the carrier (RFC 3550): plays, echoes, sends digits, records.

    Paced by an asyncio task every 20 ms.  Audio is G.711 (RFC 3551); digits are RFC 4733
    telephone-events, sent instead of audio while they last.  Everything received is kept
    in :attr:`received`; :meth:`audio` decodes it and :attr:`dtmf_received` lists the digits.
    """

    def __init__(self, host: str) -> None:
        self._loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        sock.setblocking(False)
        self._sock = sock
        bound = sock.getsockname()
        self.local: Address = (str(bound[0]), int(bound[1]))
        "Where the carrier receives RTP."
        self.remote: Address | None = None
        "Where it sends RTP (from the peer's SDP)."
        self.payload_type = g711.PCMU
        "The negotiated G.711 payload type."
        self.telephone_event: int | None = TELEPHONE_EVENT
        "The negotiated telephone-event payload type, if any."
        self.mode: MediaMode | Literal["ringback"] = "silence"
        "What is played now."
        self.sending = True
        "False while the negotiated direction lets the carrier only receive (hold)."
        self.ssrc = random.getrandbits(32)
        self.received: list[ReceivedPacket] = []
        "Every RTP packet received, in arrival order."
        self.packets_sent = 0
        self.invalid = 0
        "Datagrams that were not RTP."
        self.dtmf_received = ""
        "RFC 4733 digits received, one per completed key press."
        self.dtmf_sent = ""
        "RFC 4733 digits sent."
        self._seq = random.getrandbits(16)
        self._timestamp = random.getrandbits(32)
        self._frames: tuple[bytes, ...] = ()
        self._frame_index = 0
        self._marker = True
        self._digits: deque[str] = deque()
        self._dtmf_packets: deque[DtmfPacket] = deque()
        self._gap = 0
        self._dtmf_rx = DtmfReceiver()
        self._echo_base: tuple[int, int] | None = None
        self._tone_hz = 1000.0
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._loop.add_reader(sock.fileno(), self._readable)

    @property
    def packets_received(self) -> int:
        """RTP packets received."""
        return len(self.received)

    def negotiate(self, sdp: SessionDescription) -> None:
        """Send to ``sdp``'s address with its first G.711 payload type (RFC 3264 §6.1)."""
        self.remote = (sdp.address, sdp.port)
        pt = next((pt for pt in sdp.payload_types if pt in (g711.PCMU, g711.PCMA)), None)
        if pt is None:
            raise SdpError(f"no G.711 payload type among {sdp.payload_types}")
        self.payload_type = pt
        self.telephone_event = sdp.telephone_event
        self._load_frames()

    def play(self, mode: MediaMode | Literal["ringback"], tone_hz: float = 1000.0) -> None:
        """Switch what is played and start the 20 ms clock if it is not running."""
        self.mode = mode
        self._tone_hz = tone_hz
        self._load_frames()
        if self._task is None and not self._closed:
            self._task = self._loop.create_task(self._run())

    def send_dtmf(self, digits: str) -> None:
        """Queue RFC 4733 key presses of 100 ms each, sent in order."""
        for digit in digits:
            event_code(digit)
        self._digits.extend(digits)

    def audio(self) -> npt.NDArray[np.int16]:
        """Decoded G.711 audio of every packet received, each at its RTP timestamp (a lost
        packet is 20 ms of silence)."""
        return recorded_audio((r.packet for r in self.received), (g711.PCMU, g711.PCMA))

    async def wait_closed(self) -> None:
        """Wait until the 20 ms task has finished after :meth:`close`."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def close(self) -> None:
        """Stop sending and close the socket."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    def _load_frames(self) -> None:
        if self.mode == "tone":
            self._frames = _tone_payloads((self._tone_hz,), (), self.payload_type)
        elif self.mode == "ringback":
            spec = CALL_PROGRESS["ringback"]
            self._frames = _tone_payloads(spec.freqs, spec.cadence, self.payload_type)
        else:
            self._frames = ()
        self._frame_index = 0
        self._marker = True

    async def _run(self) -> None:
        loop = self._loop
        next_at = loop.time()
        while True:
            self._tick()
            next_at += _PTIME
            now = loop.time()
            if next_at < now - 0.1:
                next_at = now  # a stalled loop: resume the clock, do not burst
            await asyncio.sleep(next_at - now)

    def _tick(self) -> None:
        """One 20 ms period: a digit packet, or an audio frame, or nothing."""
        if self.sending and self.remote is not None:
            event_pt = self.telephone_event
            if not self._dtmf_packets and self._digits and self._gap <= 0:
                digit = self._digits.popleft()
                if event_pt is None:
                    logger.warning("no telephone-event negotiated: digit %s not sent", digit)
                else:
                    packets = DtmfSender(event_pt).packets(digit, self._timestamp)
                    self._dtmf_packets.extend(packets)
                    self.dtmf_sent += digit
            if self._dtmf_packets and event_pt is not None:
                packet = self._dtmf_packets.popleft()
                self._send(event_pt, packet.payload, packet.timestamp, packet.marker)
                if not self._dtmf_packets:
                    self._gap = _DIGIT_GAP
                    self._marker = True  # audio resumes: a new talkspurt (RFC 3551 §4.1)
            elif self._frames:
                frame = self._frames[self._frame_index]
                self._send(self.payload_type, frame, self._timestamp, self._marker)
                self._marker = False
                self._frame_index = (self._frame_index + 1) % len(self._frames)
            self._gap -= 1
        self._timestamp = (self._timestamp + _FRAME) & _TS_MASK

    def _send(self, pt: int, payload: bytes, timestamp: int, marker: bool = False) -> None:
        dest = self.remote
        if dest is None:
            return
        self._seq = (self._seq + 1) & 0xFFFF
        packet = RtpPacket(pt, self._seq, timestamp, self.ssrc, payload, marker)
        try:
            self._sock.sendto(bytes(packet), dest)
        except OSError as exc:  # ICMP unreachable from an earlier send, or a full buffer
            logger.debug("RTP send to %s failed: %s", dest, exc)
            return
        self.packets_sent += 1

    def _readable(self) -> None:
        while True:
            try:
                data, source = self._sock.recvfrom(2048)
            except ConnectionRefusedError:
                continue  # ICMP port unreachable for an earlier send: read on
            except OSError:  # BlockingIOError: nothing more to read
                return
            try:
                packet = RtpPacket.parse(data)
            except RtpError:
                self.invalid += 1
                continue
            self._on_packet(packet, (str(source[0]), int(source[1])))

    def _on_packet(self, packet: RtpPacket, source: Address) -> None:
        self.received.append(ReceivedPacket(self._loop.time(), packet, source))
        pt = packet.payload_type
        if pt == (self.telephone_event or TELEPHONE_EVENT):
            for event in self._dtmf_rx.feed(packet.timestamp, packet.payload, packet.marker):
                if isinstance(event, DtmfEnd):
                    self.dtmf_received += event.digit
        elif self.mode == "echo" and self.sending and pt in (g711.PCMU, g711.PCMA):
            # Own SSRC, sequence and timestamp base; the peer's timing is kept.
            if self._echo_base is None:
                self._echo_base = (packet.timestamp, self._timestamp)
            timestamp = (self._echo_base[1] + packet.timestamp - self._echo_base[0]) & _TS_MASK
            self._send(pt, packet.payload, timestamp, packet.marker)


class CarrierCall:
    """One call through the carrier, as tests inspect it."""

    def __init__(
        self,
        direction: Literal["termination", "origination"],
        invite: Request,
        edge: str,
        peer: Address,
        now: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.direction = direction
        "``termination`` (customer to PSTN) or ``origination`` (PSTN to customer)."
        self.call_id = invite.call_id
        self.call_sid = "CA" + secrets.token_hex(16)
        "The call's Twilio CallSid."
        self.invite = invite
        "The first INVITE."
        self.request_uri = invite.uri_text
        self.from_number = _user(invite.from_.uri)
        "User part of From: the caller ID."
        self.to_number = _user(invite.uri)
        "User part of the Request-URI: the number called."
        self.uri_edge: str | None = None
        "The edge named in a localized termination URI, None for the global one."
        self.edge = edge
        "The simulated edge (port) that received or sent the INVITE."
        self.peer = peer
        "The customer's signalling address."
        self.created_at = now
        self.attempts: list[Attempt] = []
        "INVITE transactions before the dialog (a challenged one, then the real one)."
        self.reinvites: list[Attempt] = []
        "In-dialog INVITEs (hold, resume)."
        self.state = CallState.INITIAL
        self.final_status: int | None = None
        self.twilio_error: int | None = None
        "Twilio error code of a rejected call (32101, 32202, 32204, ...)."
        self.caller_id_verified: bool | None = None
        self.party: Party | None = None
        self.media: CarrierMedia | None = None
        self.answered_at: float | None = None
        self.acked_at: float | None = None
        self.ended_at: float | None = None
        self.ended_by: Literal["carrier", "customer"] | None = None
        self.on_hold = False
        "The last re-INVITE put the call on hold."
        # Dialog state (RFC 3261 §12).
        self.local_tag = secrets.token_hex(6)
        self.remote_tag: str | None = None
        self.remote_target = invite.uri_text
        self.local_party = ""
        self.remote_party = ""
        self.local_cseq = random.randint(1, 10_000)
        self._sdp_session = random.getrandbits(31)
        self._pending: Request | None = None
        self._unacked: dict[int, Response] = {}
        self._ack: Request | None = None
        self._cancel_wanted = False
        self._timers: list[asyncio.TimerHandle] = []
        self._final: asyncio.Future[int] = loop.create_future()
        self._ended = asyncio.Event()

    @property
    def statuses(self) -> list[int]:
        """Every response code of the call's INVITE attempts, in order."""
        return [status for attempt in self.attempts for status in attempt.statuses]

    async def final(self) -> int:
        """The final status of the INVITE (sent for termination, received for origination)."""
        return await asyncio.shield(self._final)

    async def ended(self) -> None:
        """Wait until the call has ended."""
        await self._ended.wait()

    def __repr__(self) -> str:
        return (
            f"<CarrierCall {self.direction} {self.from_number}->{self.to_number} "
            f"{self.state.value} {self.statuses}>"
        )


def _user(uri: Uri) -> str:
    if isinstance(uri, SipUri):
        return uri.user_unescaped or ""
    if isinstance(uri, TelUri):
        return uri.number
    return ""


def _branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


class _Edge(asyncio.DatagramProtocol):
    """One simulated Twilio edge: a UDP port and the transaction layer behind it."""

    def __init__(self, carrier: TwilioCarrier, name: str, timers: Timers) -> None:
        self.carrier = carrier
        self.name = name
        self.layer = TransactionLayer(timers)
        self.down = False
        self.latency = 0.0
        "Seconds each request waits before the edge sees it (distance, a congested path)."
        self.address: Address = ("", 0)
        self.transport: asyncio.DatagramTransport | None = None
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        host, port = transport.get_extra_info("sockname")[:2]
        self.address = (str(host), int(port))

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        source = (str(addr[0]), int(addr[1]))
        if self.down:
            self.carrier.dropped.append(
                Dropped(self._loop.time(), self.name, "edge-down", source, None)
            )
        elif self.latency > 0:
            self._loop.call_later(self.latency, self._handle, data, source)
        else:
            self._handle(data, source)

    def _handle(self, data: bytes, source: tuple[str, int]) -> None:
        now = self._loop.time()
        if not data.strip(b"\r\n"):
            return  # RFC 5626 keep-alive
        try:
            message = parse_message(data)
        except SipError as exc:
            logger.info("edge %s drops an unparseable datagram from %s: %s", self.name, source, exc)
            self.carrier.dropped.append(Dropped(now, self.name, "unparseable", source, None))
            return
        if self.carrier._drops(message):
            assert isinstance(message, Request)
            self.carrier.dropped.append(Dropped(now, self.name, "not-our-domain", source, message))
            return
        self.layer.receive(message, ("UDP", source[0], source[1]), now)
        self.pump()

    def error_received(self, exc: Exception) -> None:
        logger.debug("edge %s: %s", self.name, exc)

    def pump(self) -> None:
        """Hand events to the carrier, transmit what the layer queued, re-arm its timer."""
        layer = self.layer
        event: TransactionEvent | None
        while (event := layer.next_event()) is not None:
            self.carrier._on_event(self, event)
        for message, addr in layer.messages_to_send():
            if not self.down and self.transport is not None:
                self.transport.sendto(bytes(message), (addr[1], addr[2]))
        deadline = layer.get_timer()
        if deadline != self._deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._deadline = deadline
            self._timer = None if deadline is None else self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        deadline = self._deadline
        self._timer = self._deadline = None
        # call_at may fire up to one clock tick early; the layer must see the deadline as due.
        self.layer.handle_timer(max(self._loop.time(), deadline or 0.0))
        self.pump()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            self.transport.close()


class TwilioCarrier:
    """Twilio Elastic SIP Trunking, termination and origination, on loopback UDP.

    ``credentials`` is the trunk's credential list (username -> password); empty means
    IP-ACL authentication, i.e. no challenge.  ``caller_ids`` are the account's Twilio
    numbers and verified caller IDs.  ``parties`` say how each called number behaves,
    ``default`` the others.  ``timers`` sets RFC 3261 T1/T2/T4 for every edge.
    """

    def __init__(
        self,
        *,
        trunk: str = "voipcore",
        edges: Sequence[str] = ("ashburn",),
        host: str = "127.0.0.1",
        credentials: Mapping[str, str] | None = None,
        caller_ids: Iterable[str] = (),
        caller_id_policy: Literal["reject", "allow"] = "reject",
        cps: int = 1,
        parties: Mapping[str, Party] | None = None,
        default: Party = Party(),
        account_sid: str = "AC" + "0" * 32,
        wrong_domain_status: int | None = None,
        invalid_number_status: int = 404,
        timers: Timers | None = None,
    ) -> None:
        unknown = [edge for edge in edges if edge not in EDGES]
        if unknown or not edges or len(set(edges)) != len(edges):
            raise ValueError(f"edges must be distinct names among {EDGES}, got {list(edges)}")
        if not re.fullmatch(r"[a-z0-9-]+", trunk):
            raise ValueError(f"trunk names are lower-case letters, digits and '-': {trunk!r}")
        self.trunk = trunk
        self.domain = f"{trunk}.pstn.twilio.com"
        "The Termination SIP URI's host."
        self.host = host
        self.edge_names = tuple(edges)
        self.credentials = dict(credentials or {})
        self.caller_ids = set(caller_ids)
        self.caller_id_policy = caller_id_policy
        self.parties = dict(parties or {})
        self.default = default
        self.account_sid = account_sid
        self.wrong_domain_status = wrong_domain_status
        self.invalid_number_status = invalid_number_status
        self.timers = timers or Timers()
        self.cps = CpsWindow(cps)
        self.calls: list[CarrierCall] = []
        "Every call, oldest first."
        self.dropped: list[Dropped] = []
        "Datagrams dropped unanswered."
        self._auth = DigestAuthenticator(REALM, secrets.token_bytes(32), algorithms=("MD5",))
        self._edges: dict[str, _Edge] = {}
        self._by_call_id: dict[str, CarrierCall] = {}
        self._clients: dict[TransactionKey, tuple[CarrierCall, str]] = {}
        self._byes: dict[TransactionKey, asyncio.Future[int]] = {}
        self._returned: set[int] = set()
        self._call_added: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- life cycle ---------------------------------------------------------

    async def start(self) -> None:
        """Open one UDP port per edge (port 0: the system picks free ones)."""
        loop = self._loop = asyncio.get_running_loop()
        self._call_added = asyncio.Event()
        for name in self.edge_names:
            factory = functools.partial(_Edge, self, name, self.timers)
            _, edge = await loop.create_datagram_endpoint(factory, local_addr=(self.host, 0))
            self._edges[name] = edge
            logger.info("Twilio stand-in edge %s listens on %s:%d", name, *edge.address)

    async def stop(self) -> None:
        """Close every port and media socket; live calls end without BYE."""
        for call in self.calls:
            self._end(call, None)
            if call.media is not None:
                await call.media.wait_closed()
        for edge in self._edges.values():
            edge.close()
        self._edges.clear()

    async def __aenter__(self) -> TwilioCarrier:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- configuration and introspection -----------------------------------

    def address(self, edge: str | None = None) -> Address:
        """The (host, port) of an edge; the first edge by default."""
        return self._edge(edge).address

    def termination_uri(self, number: str, edge: str | None = None) -> str:
        """``sip:number@{trunk}.pstn[.edge].twilio.com``, what a customer dials."""
        host = self.domain if edge is None else f"{self.trunk}.pstn.{edge}.twilio.com"
        return f"sip:{number}@{host}"

    def set_party(self, number: str, party: Party) -> None:
        """Make calls to ``number`` behave as ``party``."""
        self.parties[number] = party

    def set_edge_down(self, edge: str, down: bool = True) -> None:
        """Make an edge drop everything it receives (and send nothing), or bring it back."""
        self._edge(edge).down = down

    def set_edge_latency(self, edge: str, seconds: float) -> None:
        """Make an edge see every datagram ``seconds`` late (a far or congested edge)."""
        self._edge(edge).latency = seconds

    def find_call(self, call_id: str) -> CarrierCall:
        """The call with this Call-ID; KeyError if none."""
        return self._by_call_id[call_id]

    async def wait_for_call(
        self, to_number: str | None = None, timeout: float = 15.0
    ) -> CarrierCall:
        """The oldest termination call (to ``to_number``) this method has not returned yet."""
        assert self._call_added is not None, "start() the carrier first"
        async with asyncio.timeout(timeout):
            while True:
                for call in self.calls:
                    if (
                        call.direction == "termination"
                        and id(call) not in self._returned
                        and (to_number is None or call.to_number == to_number)
                    ):
                        self._returned.add(id(call))
                        return call
                self._call_added.clear()
                await self._call_added.wait()

    # -- origination and hang-up -------------------------------------------

    async def call(
        self,
        from_number: str,
        to_did: str,
        target: Address,
        *,
        headers: Mapping[str, str] | None = None,
        edge: str | None = None,
        party: Party = Party(),
    ) -> CarrierCall:
        """Deliver a PSTN call to the customer as Twilio origination does; returns at once.

        ``await call.final()`` gives the final status; on a 2xx the carrier ACKs and starts
        ``party``'s media.  ``headers`` add to (or replace) X-Twilio-AccountSid etc.
        """
        source = self._edge(edge)
        loop = self._require_loop()
        now = loop.time()
        media = CarrierMedia(self.host)
        offer = SessionDescription(
            media.local[0],
            media.local[1],
            (g711.PCMU, g711.PCMA),
            TELEPHONE_EVENT,
            session_id=random.getrandbits(31),
        )
        host, port = target
        tag = secrets.token_hex(6)
        local_party = f"<sip:{from_number}@{source.address[0]}>;tag={tag}"
        extra = {"X-Twilio-AccountSid": self.account_sid}
        extra.update(headers or {})
        invite = Request("INVITE", f"sip:{to_did}@{host}:{port}")
        h = invite.headers
        h.add("Via", self._via(source))
        h.add("Max-Forwards", "70")
        h.add("From", local_party)
        h.add("To", f"<sip:{to_did}@{host}:{port}>")
        h.add("Call-ID", f"{uuid.uuid4().hex}@{source.address[0]}")
        h.add("CSeq", "1 INVITE")
        h.add("Contact", f"<sip:{from_number}@{source.address[0]}:{source.address[1]}>")
        h.add("Allow", ALLOW)
        h.add("User-Agent", "Twilio Gateway")
        call_sid = extra.setdefault("X-Twilio-CallSid", "CA" + secrets.token_hex(16))
        for name, value in extra.items():
            h.set(name, value)
        h.add("Content-Type", "application/sdp")
        invite.body = bytes(offer)
        call = CarrierCall("origination", invite, source.name, (host, port), now)
        call.call_sid = call_sid
        call.local_tag = tag
        call.local_party = local_party
        call.local_cseq = 1
        call.party = party
        call.media = media
        call.attempts.append(Attempt(now, invite))
        self._add(call)
        key = source.layer.send_request(invite, ("UDP", host, port), now)
        self._clients[key] = (call, "INVITE")
        source.pump()
        return call

    async def hangup(self, call: CarrierCall) -> int:
        """End ``call`` from the PSTN side: BYE once answered, CANCEL while an origination
        call rings.  Returns the status of the BYE (or of the cancelled INVITE)."""
        edge = self._edges[call.edge]
        if call.state is CallState.CONFIRMED:
            future = self._send_bye(edge, call)
            edge.pump()
            return await future
        if call.direction == "origination" and call.final_status is None:
            self._cancel(edge, call)
            edge.pump()
            return await call.final()
        raise CarrierError(f"call {call.call_id} is {call.state.value}: nothing to hang up")

    # -- the transaction user ----------------------------------------------

    def _on_event(self, edge: _Edge, event: TransactionEvent) -> None:
        if isinstance(event, RequestReceived):
            self._on_request(edge, event.request, (event.addr[1], event.addr[2]))
        elif isinstance(event, ResponseReceived):
            self._on_response(edge, event.response, event.key)
        elif isinstance(event, StrayResponse):
            self._on_stray(edge, event.response)
        elif isinstance(event, TransactionTimeout | TransportFailure):
            self._on_client_failure(event.key)
        elif isinstance(event, TransactionTerminated):
            self._clients.pop(event.key, None)

    def _on_request(self, edge: _Edge, request: Request, source: Address) -> None:
        method = request.method
        if method == "ACK":
            self._on_ack(request)
            return
        call = self._by_call_id.get(request.call_id)
        to_tag = request.to.tag
        if to_tag is not None:
            if call is None or to_tag != call.local_tag or call.state is CallState.ENDED:
                self._respond(edge, None, request, 481)
            elif method == "BYE":
                self._respond(edge, call, request, 200)
                self._end(call, "customer")
            elif method == "INVITE":
                self._on_reinvite(edge, call, request)
            elif method in ("OPTIONS", "INFO"):
                self._respond(edge, call, request, 200)
            else:
                self._respond(edge, call, request, 501)
        elif method == "INVITE":
            self._on_invite(edge, request, source)
        elif method == "CANCEL":
            self._on_cancel(edge, call, request)
        elif method == "OPTIONS":
            self._respond(
                edge, None, request, 200, headers=[("Allow", ALLOW), ("Accept", "application/sdp")]
            )
        elif method == "BYE":
            self._respond(edge, None, request, 481)
        else:
            self._respond(edge, None, request, 405, headers=[("Allow", ALLOW)])

    def _drops(self, message: Request | Response) -> bool:
        """Twilio drops INVITEs whose Request-URI is not the trunk's (troubleshooting guide)."""
        return (
            isinstance(message, Request)
            and message.method == "INVITE"
            and message.to.tag is None
            and self.wrong_domain_status is None
            and self._uri_edge(message.uri) is None
        )

    def _uri_edge(self, uri: Uri) -> str | None:
        """``""`` for the global termination domain, the edge for a localized one, else None."""
        if not isinstance(uri, SipUri):
            return None
        host = uri.host.lower()
        if host == self.domain:
            return ""
        prefix, suffix = f"{self.trunk}.pstn.", ".twilio.com"
        if host.startswith(prefix) and host.endswith(suffix):
            edge = host[len(prefix) : -len(suffix)]
            if edge in EDGES:
                return edge
        return None

    def _on_invite(self, edge: _Edge, request: Request, source: Address) -> None:
        """A new INVITE: the termination rules in the order of the module docstring."""
        now = self._require_loop().time()
        call = self._by_call_id.get(request.call_id)
        if call is not None and call.state is CallState.ENDED:
            call = None  # a new call that reuses an old Call-ID
        elif call is not None and (call.party is not None or call.direction == "origination"):
            self._respond(edge, None, request, 482)  # a second INVITE on a live call
            return
        if call is None:
            call = CarrierCall("termination", request, edge.name, source, now)
            self._add(call)
        attempt = Attempt(now, request)
        call.attempts.append(attempt)
        uri_edge = self._uri_edge(request.uri)
        if uri_edge is None:
            assert self.wrong_domain_status is not None
            self._reject(edge, call, request, self.wrong_domain_status, None)
            return
        call.uri_edge = uri_edge or None
        if self.credentials:
            challenge = self._authenticate(request, now)
            if challenge is not None:
                stale, twilio_error = challenge
                if twilio_error is not None:
                    self._reject(edge, call, request, 403, twilio_error)
                    return
                value = str(self._auth.challenges(now, stale=stale)[0])
                self._respond(edge, call, request, 407, headers=[("Proxy-Authenticate", value)])
                return
        if not self.cps.admit(now):
            self._reject(edge, call, request, 503, None, CPS_REASON, [("Retry-After", "1")])
            return
        if not E164.fullmatch(call.to_number):
            self._reject(edge, call, request, self.invalid_number_status, 32101)
            return
        call.caller_id_verified = call.from_number in self.caller_ids
        if not call.caller_id_verified and self.caller_id_policy == "reject":
            self._reject(edge, call, request, 403, 32204, "Caller ID is unauthorized")
            return
        self._admit(edge, call, request)

    def _authenticate(self, request: Request, now: float) -> tuple[bool, int | None] | None:
        """None when authenticated; else (stale, None) to challenge or (False, error) for 403."""
        value = request.headers.get("Proxy-Authorization")
        if value is None:
            return False, None
        try:
            creds = Credentials.parse(value)
        except SipError:
            return False, 32202
        password = self.credentials.get(creds.username)
        ha1 = None if password is None else compute_ha1(creds.username, REALM, password)
        result = self._auth.verify(creds, "INVITE", ha1, now, request_uri=request.uri_text)
        if result is AuthResult.OK:
            return None
        if result is AuthResult.STALE:
            return True, None
        return False, 32202

    def _admit(self, edge: _Edge, call: CarrierCall, request: Request) -> None:
        """The call reached the PSTN: the called party decides."""
        party = self.parties.get(call.to_number, self.default)
        call.party = party
        call._pending = request
        self._respond(edge, call, request, 100)
        if party.outcome in ("busy", "reject"):
            self._final_failure(edge, call, party.status)
            return
        offer: SessionDescription | None = None
        if request.body:
            try:
                offer = SessionDescription.parse(request.body)
            except SdpError as exc:
                logger.info("call %s: unusable SDP offer: %s", call.call_id, exc)
                self._final_failure(edge, call, 488)
                return
            if not any(pt in (g711.PCMU, g711.PCMA) for pt in offer.payload_types):
                self._final_failure(edge, call, 488)  # Twilio trunks speak G.711 only
                return
        media = call.media = CarrierMedia(self.host)
        if offer is not None:
            media.negotiate(offer)
            media.sending = mirror_direction(offer.direction) in ("sendrecv", "sendonly")
        call.remote_party = request.headers.get("From") or ""
        call.local_party = f"{request.headers.get('To')};tag={call.local_tag}"
        contact = next((c for c in request.contacts if not isinstance(c, str)), None)
        call.remote_target = str(contact.uri) if contact is not None else str(request.from_.uri)
        call.remote_tag = request.from_.tag
        if party.ring > 0 or party.outcome == "no_answer":
            call.state = CallState.EARLY
            if party.early_media:
                self._respond(edge, call, request, 183, body=self._answer_sdp(call, offer))
                media.play("ringback")
            else:
                self._respond(edge, call, request, 180)
            if party.outcome == "no_answer":
                self._later(edge, call, party.ring, self._final_failure, edge, call, party.status)
            else:
                self._later(edge, call, party.ring, self._answer, edge, call, offer)
        else:
            self._answer(edge, call, offer)

    def _answer(self, edge: _Edge, call: CarrierCall, offer: SessionDescription | None) -> None:
        request = call._pending
        assert request is not None and call.media is not None and call.party is not None
        loop = self._require_loop()
        response = self._respond(
            edge,
            call,
            request,
            200,
            body=self._answer_sdp(call, offer),
            headers=[("Contact", self._contact(edge, call))],
        )
        call._pending = None
        call.final_status = 200
        call.state = CallState.CONFIRMED
        call.answered_at = loop.time()
        call._final.set_result(200)
        self._send_2xx(edge, call, response)
        self._start_party(edge, call)

    def _start_party(self, edge: _Edge, call: CarrierCall) -> None:
        party, media = call.party, call.media
        assert party is not None and media is not None
        media.play(party.media, party.tone_hz)
        if party.dtmf:
            self._later(edge, call, party.dtmf_delay, media.send_dtmf, party.dtmf)
        if party.hangup_after is not None:
            self._later(edge, call, party.hangup_after, self._send_bye, edge, call)

    def _answer_sdp(self, call: CarrierCall, offer: SessionDescription | None) -> bytes:
        """Our SDP: the answer to ``offer`` (one codec), or an offer when there was none."""
        media = call.media
        assert media is not None
        if offer is None:
            pts: tuple[int, ...] = (g711.PCMU, g711.PCMA)
            event: int | None = TELEPHONE_EVENT
            direction = "sendrecv"
        else:
            pts, event = (media.payload_type,), offer.telephone_event
            direction = mirror_direction(offer.direction)
        return bytes(
            SessionDescription(
                media.local[0],
                media.local[1],
                pts,
                event,
                direction,
                call._sdp_session,
                len(call.reinvites),
            )
        )

    def _final_failure(self, edge: _Edge, call: CarrierCall, status: int) -> None:
        request = call._pending
        assert request is not None
        self._respond(edge, call, request, status)
        call._pending = None
        call.final_status = status
        if not call._final.done():
            call._final.set_result(status)
        self._end(call, "carrier" if status != 487 else "customer")

    def _reject(
        self,
        edge: _Edge,
        call: CarrierCall,
        request: Request,
        status: int,
        twilio_error: int | None,
        reason: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Refuse an attempt before it reaches the PSTN."""
        self._respond(edge, call, request, status, reason, headers=headers)
        call.final_status = status
        call.twilio_error = twilio_error
        if not call._final.done():
            call._final.set_result(status)
        self._end(call, "carrier")

    def _on_ack(self, ack: Request) -> None:
        call = self._by_call_id.get(ack.call_id)
        if call is None or ack.to.tag != call.local_tag:
            return
        if call._unacked.pop(ack.cseq.seq, None) is not None and call.acked_at is None:
            call.acked_at = self._require_loop().time()
        media = call.media
        if ack.body and media is not None and media.remote is None:
            # Delayed offer: our 200 carried the offer, the ACK the answer (RFC 3261 §13.2.1).
            try:
                media.negotiate(SessionDescription.parse(ack.body))
            except SdpError:
                logger.info("call %s: unusable SDP answer in ACK", call.call_id)

    def _on_cancel(self, edge: _Edge, call: CarrierCall | None, cancel: Request) -> None:
        """RFC 3261 §9.2: 200 to the CANCEL, then 487 to the INVITE if it is still pending."""
        if call is None or edge.layer.find_invite_server(cancel) is None:
            self._respond(edge, None, cancel, 481)
            return
        self._respond(edge, call, cancel, 200)
        if call._pending is not None and call._pending.cseq.seq == cancel.cseq.seq:
            self._final_failure(edge, call, 487)

    def _on_reinvite(self, edge: _Edge, call: CarrierCall, request: Request) -> None:
        """Hold and resume: answer with the mirrored direction (RFC 3264 §8.4)."""
        loop = self._require_loop()
        call.reinvites.append(Attempt(loop.time(), request))
        media = call.media
        assert media is not None
        offer: SessionDescription | None = None
        if request.body:
            try:
                offer = SessionDescription.parse(request.body)
                media.negotiate(offer)
            except SdpError:
                self._respond(edge, call, request, 488, attempt=call.reinvites[-1])
                return
        direction = "sendrecv" if offer is None else mirror_direction(offer.direction)
        media.sending = direction in ("sendrecv", "sendonly")
        call.on_hold = direction != "sendrecv"
        response = self._respond(
            edge,
            call,
            request,
            200,
            body=self._answer_sdp(call, offer),
            headers=[("Contact", self._contact(edge, call))],
            attempt=call.reinvites[-1],
        )
        self._send_2xx(edge, call, response)

    def _send_2xx(self, edge: _Edge, call: CarrierCall, response: Response) -> None:
        """Keep a sent 2xx for retransmission until its ACK (RFC 3261 §13.3.1.4)."""
        call._unacked[response.cseq.seq] = response
        t1 = self.timers.t1
        now = self._require_loop().time()
        self._later(edge, call, t1, self._retransmit_2xx, edge, call, response, now, t1)

    def _retransmit_2xx(
        self, edge: _Edge, call: CarrierCall, response: Response, started: float, interval: float
    ) -> None:
        """Resend the 2xx at T1, 2T1, ... capped at T2; without an ACK in 64*T1, hang up."""
        seq = response.cseq.seq
        if call._unacked.get(seq) is not response:
            return
        now = self._require_loop().time()
        if now - started >= 64 * self.timers.t1:
            logger.info("call %s: no ACK for the 2xx; hanging up", call.call_id)
            del call._unacked[seq]
            self._send_bye(edge, call)
            return
        try:
            edge.layer.send_response(response, now)
        except (KeyError, TransactionStateError):
            del call._unacked[seq]  # the transaction ended (timer L)
            return
        interval = min(2 * interval, self.timers.t2)
        self._later(
            edge, call, interval, self._retransmit_2xx, edge, call, response, started, interval
        )

    # -- origination: responses from the customer ---------------------------

    def _on_response(self, edge: _Edge, response: Response, key: TransactionKey) -> None:
        entry = self._clients.get(key)
        if entry is None:
            return
        call, method = entry
        status = response.status
        if method == "BYE":
            future = self._byes.pop(key, None)
            if future is not None and not future.done() and status >= 200:
                future.set_result(status)
            return
        if method != "INVITE":
            return
        if call.final_status is not None:
            if 200 <= status < 300 and call._ack is not None:
                self._send_ack(edge, call)  # a retransmitted 2xx: our ACK was lost
            return
        call.attempts[-1].statuses.append(status)
        if status < 200:
            if response.to.tag is not None and call.state is CallState.INITIAL:
                call.state = CallState.EARLY
                call.remote_tag = response.to.tag
            self._take_answer(call, response)
            if call._cancel_wanted:
                call._cancel_wanted = False
                self._cancel(edge, call)
            return
        call.final_status = status
        if not call._final.done():
            call._final.set_result(status)
        if status >= 300:
            self._end(call, "customer")  # the layer ACKs non-2xx itself (§17.1.1.3)
            return
        call.state = CallState.CONFIRMED
        call.answered_at = self._require_loop().time()
        call.remote_tag = response.to.tag
        call.remote_party = response.headers.get("To") or ""
        contact = next((c for c in response.contacts if not isinstance(c, str)), None)
        if contact is not None:
            call.remote_target = str(contact.uri)
        self._take_answer(call, response)
        self._send_ack(edge, call)
        if call._cancel_wanted:  # the 2xx crossed our CANCEL: hang up (§9.1)
            self._send_bye(edge, call)
            return
        self._start_party(edge, call)

    def _take_answer(self, call: CarrierCall, response: Response) -> None:
        if not response.body or call.media is None:
            return
        try:
            call.media.negotiate(SessionDescription.parse(response.body))
        except SdpError:
            logger.info("call %s: unusable SDP answer in %d", call.call_id, response.status)

    def _on_stray(self, edge: _Edge, response: Response) -> None:
        """A 2xx retransmission after the INVITE transaction ended still needs an ACK."""
        call = self._by_call_id.get(response.call_id)
        if (
            call is not None
            and call.direction == "origination"
            and response.cseq.method == "INVITE"
            and 200 <= response.status < 300
            and call._ack is not None
        ):
            self._send_ack(edge, call)

    def _on_client_failure(self, key: TransactionKey) -> None:
        """Timer B/F or a send failure on a request the carrier sent."""
        entry = self._clients.pop(key, None)
        future = self._byes.pop(key, None)
        if future is not None and not future.done():
            future.set_result(408)
        if entry is None:
            return
        call, method = entry
        if method == "INVITE" and call.final_status is None:
            call.final_status = 408
            call.attempts[-1].statuses.append(408)
            if not call._final.done():
                call._final.set_result(408)
            self._end(call, "customer")

    def _send_ack(self, edge: _Edge, call: CarrierCall) -> None:
        """The ACK for a 2xx: a new transaction, to the remote target (RFC 3261 §13.2.2.4)."""
        if call._ack is None:
            ack = Request("ACK", call.remote_target)
            ack.headers.add("Via", self._via(edge))
            ack.headers.add("Max-Forwards", "70")
            ack.headers.add("From", call.local_party)
            ack.headers.add("To", call.remote_party)
            ack.headers.add("Call-ID", call.call_id)
            ack.headers.add("CSeq", f"{call.invite.cseq.seq} ACK")
            call._ack = ack
        edge.layer.send_request(call._ack, ("UDP", *call.peer), self._require_loop().time())

    def _cancel(self, edge: _Edge, call: CarrierCall) -> None:
        """CANCEL our INVITE (§9.1): only once a provisional response arrived."""
        if call.state is CallState.INITIAL:
            call._cancel_wanted = True
            return
        invite = call.invite
        cancel = Request("CANCEL", invite.uri_text)
        cancel.headers.add("Via", invite.headers.get_all("Via")[0])
        cancel.headers.add("Max-Forwards", "70")
        for name in ("From", "To", "Call-ID"):
            cancel.headers.add(name, invite.headers.get(name) or "")
        cancel.headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
        key = edge.layer.send_request(cancel, ("UDP", *call.peer), self._require_loop().time())
        self._clients[key] = (call, "CANCEL")

    def _send_bye(self, edge: _Edge, call: CarrierCall) -> asyncio.Future[int]:
        """BYE from the carrier's side of the dialog (RFC 3261 §15.1.1)."""
        loop = self._require_loop()
        future: asyncio.Future[int] = loop.create_future()
        call.local_cseq += 1
        bye = Request("BYE", call.remote_target)
        bye.headers.add("Via", self._via(edge))
        bye.headers.add("Max-Forwards", "70")
        bye.headers.add("From", call.local_party)
        bye.headers.add("To", call.remote_party)
        bye.headers.add("Call-ID", call.call_id)
        bye.headers.add("CSeq", f"{call.local_cseq} BYE")
        key = edge.layer.send_request(bye, ("UDP", *call.peer), loop.time())
        self._clients[key] = (call, "BYE")
        self._byes[key] = future
        self._end(call, "carrier")
        return future

    # -- helpers ------------------------------------------------------------

    def _respond(
        self,
        edge: _Edge,
        call: CarrierCall | None,
        request: Request,
        status: int,
        reason: str | None = None,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        attempt: Attempt | None = None,
    ) -> Response:
        """Send a response through the request's server transaction and record it."""
        response = make_response(
            request, status, reason, to_tag=None if call is None else call.local_tag
        )
        for name, value in headers:
            response.headers.add(name, value)
        if request.method == "INVITE" and call is not None:
            response.headers.add("X-Twilio-CallSid", call.call_sid)
            if attempt is None:
                attempt = call.attempts[-1]
        if body:
            response.headers.add("Content-Type", "application/sdp")
            response.body = body
        edge.layer.send_response(response, self._require_loop().time())
        if attempt is not None:
            attempt.statuses.append(status)
        return response

    def _later(
        self,
        edge: _Edge,
        call: CarrierCall,
        delay: float,
        action: Callable[..., object],
        *args: Any,
    ) -> None:
        """Run ``action`` in ``delay`` seconds unless the call ends first, then pump ``edge``."""

        def run() -> None:
            action(*args)
            edge.pump()

        call._timers.append(self._require_loop().call_later(delay, run))

    def _end(self, call: CarrierCall, by: Literal["carrier", "customer"] | None) -> None:
        if call.state is CallState.ENDED:
            return
        call.state = CallState.ENDED
        call.ended_at = self._require_loop().time()
        call.ended_by = by
        for timer in call._timers:
            timer.cancel()
        call._timers.clear()
        call._unacked.clear()
        if call.media is not None:
            call.media.close()
        call._ended.set()

    def _add(self, call: CarrierCall) -> None:
        self.calls.append(call)
        self._by_call_id[call.call_id] = call
        assert self._call_added is not None
        self._call_added.set()

    def _via(self, edge: _Edge) -> str:
        host, port = edge.address
        return f"SIP/2.0/UDP {host}:{port};branch={_branch()};rport"

    def _contact(self, edge: _Edge, call: CarrierCall) -> str:
        """Our Contact: the PSTN party's number at the edge's address."""
        user = call.to_number if call.direction == "termination" else call.from_number
        host, port = edge.address
        return f"<sip:{user}@{host}:{port}>"

    def _edge(self, name: str | None) -> _Edge:
        if not self._edges:
            raise CarrierError("the carrier is not started")
        if name is None:
            return self._edges[self.edge_names[0]]
        try:
            return self._edges[name]
        except KeyError:
            raise CarrierError(f"no edge {name!r}; edges: {list(self._edges)}") from None

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise CarrierError("the carrier is not started")
        return self._loop


class CarrierThread:
    """Runs a :class:`TwilioCarrier` on an event loop of its own thread, for sync tests.

    ``with CarrierThread(TwilioCarrier(...)) as thread:`` starts it; :meth:`run` executes
    a coroutine of the carrier (``thread.run(carrier.hangup(call))``) and returns its result.
    """

    def __init__(self, carrier: TwilioCarrier) -> None:
        self.carrier = carrier
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="twilio-carrier", daemon=True
        )

    def start(self) -> TwilioCarrier:
        """Start the thread and the carrier's ports."""
        self._thread.start()
        self.run(self.carrier.start())
        return self.carrier

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 10.0) -> _T:
        """Run ``coro`` on the carrier's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        """Stop the carrier, the loop and the thread."""
        if self._thread.is_alive():
            self.run(self.carrier.stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()

    def __enter__(self) -> CarrierThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
