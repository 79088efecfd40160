"""In-memory surroundings for the call layer's tests (voipcore.calls), aioquic style.

No sockets and no sleeping: :class:`FakeRuntime` is a manual clock whose
``call_at`` callbacks run only when a test advances it, and whose spawned
coroutines run only when a test asks; :class:`FakeService` keeps what the call
layer sends; :class:`FakeMedia` answers media commands at once and keeps them;
:class:`Phone` is a SIP party that builds the messages a real phone would send,
each parsed from its wire form as the transport would.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from media.control import EventCallback
from voipcore.sip.dialog import Dialog, dialog_response
from voipcore.sip.digest import Challenge, answer_challenge
from voipcore.sip.message import Request, Response, parse_message
from voipcore.sip.transaction import Address, TransactionKey
from voipcore.sip.uri import SipUri

DOMAIN = "test.local"
#: Where the server under test is, as its Via and Contact say.
SERVER_HOST = "192.0.2.1"
#: The media engine's RTP address for every leg (ports differ).
ENGINE_HOST = "127.0.0.1"


def via(transport: str) -> str:
    return f"SIP/2.0/{transport} {SERVER_HOST}:5060"


def contact(transport: str) -> str:
    return f"sip:voipcore@{SERVER_HOST}:5060"


def wire_request(message: Request) -> Request:
    """``message`` as the other side reads it off the wire."""
    parsed = parse_message(bytes(message))
    assert isinstance(parsed, Request)
    return parsed


def wire_response(message: Response) -> Response:
    parsed = parse_message(bytes(message))
    assert isinstance(parsed, Response)
    return parsed


# -- time and tasks ------------------------------------------------------------------------


@dataclass(eq=False)
class Timer:
    """A ``call_at`` callback waiting for the fake clock."""

    when: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeRuntime:
    """A :class:`voipcore.calls.signalling.Runtime` with a clock the test turns.

    Spawned coroutines wait in :attr:`tasks` until :meth:`run` (or :meth:`advance`)
    runs them to completion on an event loop, in spawn order; anything they spawn
    runs in the same :meth:`run`.
    """

    def __init__(self, *, wall_offset: float = 1_700_000_000.0) -> None:
        self.clock = 1000.0
        self.wall_offset = wall_offset
        self.timers: list[Timer] = []
        self.tasks: list[Coroutine[Any, Any, None]] = []

    def now(self) -> float:
        return self.clock

    def wall(self) -> float:
        return self.clock + self.wall_offset

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(when, callback)
        self.timers.append(timer)
        return timer

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self.tasks.append(work)

    def flush(self) -> None:
        """Nothing to do: the fake service keeps each message as it is sent."""

    def run(self) -> None:
        """Run every spawned coroutine, and those they spawn, to completion."""
        while self.tasks:
            asyncio.run(self.tasks.pop(0))

    def advance(self, seconds: float) -> None:
        """Move the clock on by ``seconds``, running what falls due in time order
        (and the work each callback spawns) at the time it is due."""
        until = self.clock + seconds
        self.run()
        while True:
            due = [t for t in self.timers if not t.cancelled and t.when <= until]
            if not due:
                break
            timer = min(due, key=lambda t: t.when)
            self.timers.remove(timer)
            self.clock = max(self.clock, timer.when)
            timer.callback()
            self.run()
        self.clock = until

    def pending(self) -> list[float]:
        """When the callbacks still waiting are due."""
        return sorted(t.when for t in self.timers if not t.cancelled)


# -- the SIP service ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """A request the call layer sent through the service."""

    request: Request
    addr: Address


class FakeService:
    """Keeps what the call layer sends (:class:`voipcore.calls.signalling.ServiceApi`)."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.responses: list[Response] = []
        #: Every client transaction's key by branch and method (kept by :meth:`clear`):
        #: a CANCEL has its INVITE's branch (§9.1).
        self.keys: dict[tuple[str, str], TransactionKey] = {}
        #: When each of :attr:`responses` was sent, by the call layer's clock.
        self.response_times: list[float] = []

    def respond(self, response: Response, now: float) -> None:
        self.responses.append(wire_response(response))
        self.response_times.append(now)

    def send_request(self, request: Request, addr: Address, now: float) -> TransactionKey:
        branch = request.via.branch
        assert branch is not None
        key = TransactionKey(branch, "", request.method, False)
        self.keys[branch, request.method] = key
        self.sent.append(Sent(wire_request(request), addr))
        return key

    def requests(self, method: str, addr: Address | None = None) -> list[Request]:
        """The ``method`` requests sent so far (to ``addr`` only, if given)."""
        return [
            s.request
            for s in self.sent
            if s.request.method == method and (addr is None or s.addr == addr)
        ]

    def key_of(self, request: Request) -> TransactionKey:
        """The transaction of a request we sent."""
        branch = request.via.branch
        assert branch is not None
        return self.keys[branch, request.method]

    def clear(self) -> None:
        """Forget what was sent so far (not the transactions: responses still match)."""
        self.sent.clear()
        self.responses.clear()
        self.response_times.clear()


# -- the media engine ------------------------------------------------------------------------


class FakeMedia:
    """A :class:`media.control.MediaControl` that answers at once and keeps every command.

    ``offer`` and ``answer`` reply with the leg's RTP address (one port per leg,
    given out in order from 40000); ``delete`` with a summary for each leg it closes.
    """

    def __init__(self) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self.listeners: list[EventCallback] = []
        self._ports: dict[tuple[str, str], int] = {}
        self._next_port = itertools.count(40000, 2)

    async def request(self, command: str, args: dict[str, Any]) -> dict[str, Any]:
        self.commands.append((command, args))
        call_id = str(args.get("call_id"))
        if command in ("offer", "answer"):
            port = self.port(call_id, str(args["leg"]))
            return {"local": {"host": ENGINE_HOST, "port": port}}
        if command == "delete":
            legs = [str(args["leg"])] if "leg" in args else self.legs_of(call_id)
            return {"legs": {leg: {"packets_in": 50, "leg": leg} for leg in legs}}
        return {}

    def subscribe(self, callback: EventCallback) -> None:
        self.listeners.append(callback)

    def emit(self, event: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(event)

    def port(self, call_id: str, leg: str) -> int:
        key = (call_id, leg)
        if key not in self._ports:
            self._ports[key] = next(self._next_port)
        return self._ports[key]

    def legs_of(self, call_id: str) -> list[str]:
        return [leg for (call, leg) in self._ports if call == call_id]

    def of(self, command: str) -> list[dict[str, Any]]:
        """The arguments of every ``command`` received, in order."""
        return [args for name, args in self.commands if name == command]


# -- phones ----------------------------------------------------------------------------------


def sdp(host: str, port: int, payload_types: Sequence[int] = (0, 8, 101)) -> bytes:
    """A phone's audio offer or answer (RFC 4566): PCMU, PCMA, telephone-event by default."""
    names = {0: "PCMU/8000", 8: "PCMA/8000", 9: "G722/8000", 18: "G729/8000"}
    lines = [
        "v=0",
        f"o=phone 4242 1 IN IP4 {host}",
        "s=-",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(map(str, payload_types))}",
    ]
    for pt in payload_types:
        if pt == 101:
            lines += ["a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16"]
        else:
            lines.append(f"a=rtpmap:{pt} {names[pt]}")
    lines.append("a=sendrecv")
    return ("\r\n".join(lines) + "\r\n").encode()


@dataclass
class Phone:
    """A registered phone: builds what it would send, parsed from the wire."""

    user: str
    addr: Address
    password: str = ""
    tag: str = field(default_factory=lambda: secrets.token_hex(4))

    @property
    def host(self) -> str:
        return self.addr[1]

    @property
    def contact(self) -> str:
        return f"sip:{self.user}@{self.host}:{self.addr[2]}"

    @property
    def source(self) -> str:
        """Where its REGISTER came from, as a binding keeps it."""
        return f"{self.addr[0].lower()}:{self.host}:{self.addr[2]}"

    def sdp(self, port: int = 4000) -> bytes:
        """Its audio at ``port``: PCMU, PCMA and telephone-event."""
        return sdp(self.host, port)

    def invite(
        self,
        target: str,
        *,
        call_id: str | None = None,
        cseq: int = 1,
        body: bytes | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Request:
        """An out-of-dialog INVITE to ``target`` at our domain."""
        body = self.sdp() if body is None else body
        lines = [
            f"INVITE sip:{target}@{DOMAIN} SIP/2.0",
            f"Via: SIP/2.0/{self.addr[0]} {self.host}:{self.addr[2]};branch=z9hG4bK"
            f"{secrets.token_hex(6)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{DOMAIN}>;tag={self.tag}",
            f"To: <sip:{target}@{DOMAIN}>",
            f"Call-ID: {call_id or f'{secrets.token_hex(8)}@{self.host}'}",
            f"CSeq: {cseq} INVITE",
            f"Contact: <{self.contact}>",
            "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS",
        ]
        lines += [f"{name}: {value}" for name, value in headers]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        parsed = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        assert isinstance(parsed, Request)
        return parsed

    def authorized(self, invite: Request, challenge: Response) -> Request:
        """``invite`` again with credentials answering the 407 ``challenge`` (§22.3)."""
        offered = Challenge.parse(challenge.headers.get_all("Proxy-Authenticate")[0])
        credentials = answer_challenge(
            offered,
            method="INVITE",
            uri=invite.uri_text,
            username=self.user,
            password=self.password,
            cnonce=secrets.token_hex(4),
        )
        target = invite.uri
        assert isinstance(target, SipUri) and target.user is not None
        return self.invite(
            target.user,
            call_id=invite.call_id,
            cseq=invite.cseq.seq + 1,
            body=invite.body,
            headers=[("Proxy-Authorization", str(credentials))],
        )

    def reply(
        self,
        invite: Request,
        status: int,
        *,
        tag: str,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
    ) -> Response:
        """The phone's response to a request the server sent it: with its tag and
        Contact (§12.1.1), and ``body`` as SDP."""
        response = dialog_response(invite, status, contact=self.contact, to_tag=tag)
        for name, value in headers:
            response.headers.add(name, value)
        if body:
            response.headers.add("Content-Type", "application/sdp")
            response.body = body
        return wire_response(response)

    def caller_dialog(self, invite: Request, ok: Response) -> Dialog:
        """The dialog the server's 2xx to our ``invite`` set up (we are its UAC)."""
        return Dialog.from_uac(invite, ok)

    def callee_dialog(self, invite: Request, ok: Response) -> Dialog:
        """The dialog our 2xx to the server's ``invite`` set up (we are its UAS)."""
        return Dialog.from_uas(invite, ok)

    def ack(self, dialog: Dialog, invite: Request, body: bytes = b"") -> Request:
        """The ACK for the server's 2xx to our ``invite`` (§13.2.2.4)."""
        ack = dialog.create_ack(
            invite.cseq.seq,
            body,
            via=self._via(),
            content_type="application/sdp" if body else None,
        )
        return wire_request(ack)

    def request(self, dialog: Dialog, method: str) -> Request:
        """``method`` (BYE, ...) inside ``dialog`` (§12.2.1.1)."""
        return wire_request(dialog.create_request(method, via=self._via()))

    def _via(self) -> str:
        return f"SIP/2.0/{self.addr[0]} {self.host}:{self.addr[2]}"


# -- browsers ----------------------------------------------------------------------------------


class WebRtcMedia(FakeMedia):
    """:class:`FakeMedia` that also sets up WebRTC streams: an ``offer`` carrying
    ``webrtc`` (a browser leg) is answered with the engine's ICE credentials and
    DTLS fingerprint, as media.engine does."""

    #: The engine's ICE-lite credentials and certificate fingerprint for every leg.
    UFRAG, PWD = "e9f1c2d3", "0123456789abcdef0123456789abcdef"
    FINGERPRINT = ":".join(["AB"] * 32)

    async def request(self, command: str, args: dict[str, Any]) -> dict[str, Any]:
        reply = await super().request(command, args)
        if command == "offer" and "webrtc" in args:
            reply["webrtc"] = {
                "ufrag": self.UFRAG,
                "pwd": self.PWD,
                "fingerprint": {"algorithm": "sha-256", "value": self.FINGERPRINT},
            }
        return reply


@dataclass(eq=False)
class FakePage:
    """A signed-in dialer page (:class:`voipcore.calls.model.Page`): keeps what it is told."""

    user: str
    sent: list[dict[str, object]] = field(default_factory=list)

    def send(self, message: dict[str, object]) -> None:
        self.sent.append(message)

    def types(self) -> list[object]:
        """The ``type`` of each message so far, in order."""
        return [message["type"] for message in self.sent]

    def last(self, kind: str) -> dict[str, object]:
        """The latest message of type ``kind``."""
        return [message for message in self.sent if message["type"] == kind][-1]
