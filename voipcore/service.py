"""The SIP service core: bytes in, bytes and events out, no I/O (sans-I/O).

:class:`SipService` parses what a transport received, answers requests aimed
at this server (REGISTER, OPTIONS, errors) through the transaction layer, and
says where each outgoing message goes.  Store writes are requested as
:class:`StoreBindings` events; the adapter persists them and then calls
:meth:`SipService.respond`, so no 200 OK is sent for a binding that a restart
would lose.  Timers are driven by an explicit monotonic ``now``; the
registrar's wall clock is ``now + wall_offset``.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from voipcore.registrar import Registrar
from voipcore.sip.errors import SipParseError
from voipcore.sip.headers import COMPACT_FORMS, split_list
from voipcore.sip.message import (
    Request,
    Response,
    make_response,
    parse_call_id,
    parse_cseq,
    parse_message,
    parse_via,
    stable_tag,
)
from voipcore.sip.transaction import (
    Address,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    Timers,
    TransactionKey,
    TransactionLayer,
    TransactionStateError,
    TransactionTimeout,
    TransportFailure,
    outgoing_key,
    reply_address,
)
from voipcore.sip.uri import parse_name_addr
from voipcore.store import BindingChange

log = logging.getLogger(__name__)

#: Methods this server implements today (RFC 3261 §20.5 Allow).
ALLOWED = ("REGISTER", "OPTIONS", "ACK", "CANCEL")
#: Added to Allow when call control is on (UPDATE: RFC 3311).
CALL_METHODS = ("INVITE", "BYE", "UPDATE", "REFER")
#: Option tags we support when call control is on (RFC 4028 session timers).
CALL_EXTENSIONS = frozenset({"timer"})
#: Methods we know but do not accept here: 405; anything else is 501 (§21.5.2).
KNOWN_METHODS = frozenset(
    {
        "INVITE",
        "BYE",
        "PRACK",
        "UPDATE",
        "INFO",
        "SUBSCRIBE",
        "NOTIFY",
        "REFER",
        "MESSAGE",
        "PUBLISH",
    }
)
SERVER_NAME = "voipcore/0.1"


class Outgoing(NamedTuple):
    """A serialized message, where it goes, and the message for error reporting."""

    data: bytes
    addr: Address
    message: Request | Response | None


class CallHandler(Protocol):
    """Call control the service hands dialog traffic to (the B2BUA)."""

    def on_request(self, request: Request, addr: Address, now: float) -> None:
        """A new INVITE, BYE or CANCEL (its server transaction exists)."""

    def on_ack(self, ack: Request) -> None:
        """An ACK that matched no transaction: the ACK for a 2xx (§13.3.1.4)."""

    def on_response(self, response: Response, key: TransactionKey, now: float) -> None:
        """A response to a request the handler sent."""

    def on_failure(self, key: TransactionKey, status: int, now: float) -> None:
        """One of the handler's client transactions ended with no response: as if with
        ``status``, 408 when it timed out, 503 when it could not be sent (§8.1.3.1)."""

    def has_dialog(self, call_id: str) -> bool:
        """Whether a call in progress has a leg with this Call-ID."""


class ServiceEvent:
    """Base class of what the service asks its adapter to do."""


@dataclass(frozen=True, slots=True)
class StoreBindings(ServiceEvent):
    """Persist registration changes, then send ``response`` (if any)."""

    changes: list[BindingChange]
    """Binding upserts and removals, in order."""
    response: Response | None
    """The REGISTER's reply, to send once the changes are committed."""


@dataclass(slots=True)
class Counters:
    """What the service has seen, for logs and /metrics."""

    received: int = 0
    sent: int = 0
    parse_errors: int = 0
    bad_requests_answered: int = 0
    dropped: int = 0
    transaction_timeouts: int = 0
    transport_failures: int = 0
    by_method: dict[str, int] = field(default_factory=dict)


class SipService:
    """Registrar and UAS core for requests addressed to this server."""

    def __init__(
        self,
        registrar: Registrar,
        *,
        timers: Timers | None = None,
        wall_offset: float = 0.0,
    ) -> None:
        self.registrar = registrar
        #: Call control (INVITE, BYE, CANCEL, ACK, responses to our requests), if any.
        self.calls: CallHandler | None = None
        self.layer = TransactionLayer(timers or Timers())
        self.wall_offset = wall_offset
        self.counters = Counters()
        self._out: list[Outgoing] = []
        self._events: deque[ServiceEvent] = deque()

    # -- input ---------------------------------------------------------------

    def receive(self, data: bytes, addr: Address, now: float) -> None:
        """Handle one framed message from ``addr``."""
        self.counters.received += 1
        try:
            message = parse_message(data, stream=addr[0] != "UDP")
        except SipParseError as exc:
            self._reject_unparsable(data, addr, exc)
            return
        if isinstance(message, Request):
            self.counters.by_method[message.method] = (
                self.counters.by_method.get(message.method, 0) + 1
            )
            if addr[0] == "UDP":
                _stamp_via(message, addr)
            if message.method == "REGISTER" and "Authorization" not in message.headers:
                self._answer_statelessly(message, addr, now)
                return
        self.layer.receive(message, addr, now)
        self._drain_layer(now)

    def respond(self, response: Response, now: float) -> None:
        """Send a response whose request was handed out in an event."""
        try:
            self.layer.send_response(response, now)
        except KeyError:
            # The transaction ended (timer H/J) while the store was writing.
            log.debug("no transaction left for %r", response)
        except TransactionStateError as exc:
            log.warning("response %r not sent: %s", response, exc)
        self._collect_outgoing()

    def send_request(self, request: Request, addr: Address, now: float) -> TransactionKey:
        """Send a request of ours through a client transaction (ACK: statelessly)."""
        key = self.layer.send_request(request, addr, now)
        self._collect_outgoing()
        return key

    def store_failed(self, event: StoreBindings, now: float) -> None:
        """Answer 500 when persisting ``event`` failed: every request gets a reply."""
        if event.response is None:
            return
        headers = event.response.headers.copy()
        for name in ("Contact", "Date", "Allow"):
            headers.remove(name)
        failed = Response(500, "Server Internal Error (store unavailable)", headers)
        failed.headers.add("Retry-After", "5")
        self.respond(failed, now)

    def handle_timer(self, now: float) -> None:
        """Fire due transaction timers and expire registrations."""
        self.layer.handle_timer(now)
        self._drain_layer(now)
        expired = self.registrar.expire(now + self.wall_offset)
        if expired:
            self._events.append(StoreBindings(expired, None))

    # -- output --------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The next monotonic time :meth:`handle_timer` must run, if any."""
        deadline = self.layer.get_timer()
        expiry = self.registrar.next_expiry()
        if expiry is not None:
            expiry -= self.wall_offset
            if deadline is None or expiry < deadline:
                return expiry
        return deadline

    def send_failed(self, outgoing: Outgoing, now: float) -> None:
        """The adapter could not send ``outgoing``: tell its transaction (§17.1.4, §17.2.4)."""
        if outgoing.message is not None:
            self.layer.transport_error(outgoing_key(outgoing.message), now)
            self._drain_layer(now)

    def datagrams_to_send(self) -> list[Outgoing]:
        """Serialized messages and their destinations, oldest first."""
        out, self._out = self._out, []
        self.counters.sent += len(out)
        return out

    def next_event(self) -> ServiceEvent | None:
        """The next thing the adapter must do, if any."""
        return self._events.popleft() if self._events else None

    # -- internals -----------------------------------------------------------

    def _drain_layer(self, now: float) -> None:
        while (event := self.layer.next_event()) is not None:
            if isinstance(event, RequestReceived):
                if event.key is not None:
                    self._dispatch(event.request, event.addr, now)
                elif event.request.method == "ACK" and self.calls is not None:
                    self.calls.on_ack(event.request)
            elif isinstance(event, ResponseReceived):
                if self.calls is not None:
                    self.calls.on_response(event.response, event.key, now)
            elif isinstance(event, StrayResponse):
                log.debug("ignoring stray response %r", event.response)
            elif isinstance(event, TransactionTimeout):
                self.counters.transaction_timeouts += 1
                if self.calls is not None:
                    self.calls.on_failure(event.key, 408, now)
            elif isinstance(event, TransportFailure):
                self.counters.transport_failures += 1
                if self.calls is not None:
                    self.calls.on_failure(event.key, 503, now)
        self._collect_outgoing()

    def _answer_statelessly(self, request: Request, addr: Address, now: float) -> None:
        """Answer a REGISTER without credentials with no transaction (RFC 3261 §8.2.7).

        The registrar authenticates every REGISTER (§10.3 step 3), so one that
        carries no Authorization changes nothing: it gets a 401 challenge (or
        an error) and nothing is remembered.  Unauthenticated traffic, a flood
        included, then costs no memory; a retransmission is answered afresh.
        """
        response = self._unsupported(request)
        if response is None:
            result = self.registrar.register(request, _source(addr), now + self.wall_offset)
            assert not result.changes, "an unauthenticated REGISTER changed bindings"
            response = result.response
        self._decorate(response)
        self._out.append(Outgoing(bytes(response), reply_address(request, addr), None))

    def _unsupported(self, request: Request) -> Response | None:
        """420 when Require names an extension we lack (§8.2.2.3), else None."""
        unsupported = _unsupported_extensions(
            request, CALL_EXTENSIONS if self.calls is not None else frozenset()
        )
        if not unsupported:
            return None
        response = make_response(request, 420)
        response.headers.add("Unsupported", ", ".join(unsupported))
        return response

    def _dispatch(self, request: Request, addr: Address, now: float) -> None:
        method = request.method
        if method == "CANCEL":
            if self.calls is not None:
                self.calls.on_request(request, addr, now)
            else:
                # No INVITE is accepted, so nothing can be cancelled (§9.2).
                self._reply(make_response(request, 481), now)
            return
        unsupported = self._unsupported(request)
        if unsupported is not None:
            self._reply(unsupported, now)
            return
        if method == "REGISTER":
            result = self.registrar.register(request, _source(addr), now + self.wall_offset)
            self._decorate(result.response)
            if result.changes:
                self._events.append(StoreBindings(result.changes, result.response))
            else:
                self.respond(result.response, now)
        elif method in CALL_METHODS and self.calls is not None:
            self.calls.on_request(request, addr, now)
        elif method == "OPTIONS":
            if request.to.tag is not None and (
                self.calls is None or not self.calls.has_dialog(request.call_id)
            ):
                # In-dialog OPTIONS (a phone's keep-alive) for a call we do not
                # have: 481 tells the phone its call is gone (§12.2.2).
                self._reply(make_response(request, 481), now)
                return
            response = make_response(request, 200)
            response.headers.add("Accept", "application/sdp")
            if self.calls is not None:
                response.headers.add("Supported", ", ".join(sorted(CALL_EXTENSIONS)))
            self._reply(response, now)
        elif method in KNOWN_METHODS:
            self._reply(make_response(request, 405), now)
        else:
            self._reply(make_response(request, 501), now)

    def _reply(self, response: Response, now: float) -> None:
        self._decorate(response)
        self.respond(response, now)

    def _decorate(self, response: Response) -> None:
        if response.status in (200, 405, 501):
            allowed = ALLOWED + (CALL_METHODS if self.calls is not None else ())
            response.headers.add("Allow", ", ".join(allowed))
        response.headers.add("Server", SERVER_NAME)

    def _collect_outgoing(self) -> None:
        for message, addr in self.layer.messages_to_send():
            if isinstance(message, bytes):
                self._out.append(Outgoing(message, addr, None))
            else:
                self._out.append(Outgoing(bytes(message), addr, message))
                message.invalidate()

    def _reject_unparsable(self, data: bytes, addr: Address, exc: SipParseError) -> None:
        """400 (or the error's code) when the request can be answered, else drop (§21.4.1)."""
        self.counters.parse_errors += 1
        reply = _salvage_error_response(data, exc)
        if reply is None:
            self.counters.dropped += 1
            log.info("dropped unparsable message from %s:%s: %s", addr[1], addr[2], exc.reason)
            return
        self.counters.bad_requests_answered += 1
        log.info("rejected message from %s:%s: %s", addr[1], addr[2], exc.reason)
        self._out.append(Outgoing(reply, addr, None))


def _source(addr: Address) -> str:
    host = f"[{addr[1]}]" if ":" in addr[1] else addr[1]
    return f"{addr[0].lower()}:{host}:{addr[2]}"


def _stamp_via(request: Request, addr: Address) -> None:
    """Add received/rport to the top Via (RFC 3261 §18.2.1, RFC 3581 §4)."""
    top = request.via
    wants_rport = "rport" in top.params and top.params["rport"] is None
    if not wants_rport and top.host.strip("[]") == addr[1]:
        return
    top.params["received"] = addr[1]
    if wants_rport:
        top.params["rport"] = str(addr[2])
    request.headers.replace_first("Via", str(top))


def _unsupported_extensions(request: Request, supported: frozenset[str]) -> list[str]:
    """Option tags in Require that are not in ``supported`` (§8.2.2.3)."""
    if request.method in ("ACK", "CANCEL"):
        return []
    return [tag for tag in request.headers.get_all("Require") if tag.lower() not in supported]


_SALVAGE = ("via", "from", "to", "call-id", "cseq")


def _salvage_error_response(data: bytes, exc: SipParseError) -> bytes | None:
    """Build an error response from the raw lines of a request that failed to parse.

    Only possible when the start line is a request line and each header a
    response must echo (Via, From, To, Call-ID, CSeq) has a value that parses:
    the first such value is used, so a garbled duplicate cannot make our reply
    malformed too.  Responses and hopeless input return None and are dropped.
    """
    text = data[:8192].decode("utf-8", "replace")
    head = text.split("\r\n\r\n", 1)[0].split("\n\n", 1)[0]
    lines = [line.rstrip("\r") for line in head.split("\n")]
    first = lines[0].split(" ")
    if lines[0].startswith("SIP/") or len(first) < 3 or not first[-1].upper().startswith("SIP/"):
        return None
    found: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        key = name.strip().lower()
        key = COMPACT_FORMS.get(key, key).lower() if len(key) == 1 else key
        if colon and key in _SALVAGE:
            found.setdefault(key, []).append(value.strip())
    vias = _valid_vias(found.get("via", []))
    picked = {key: _first_valid(key, found.get(key, [])) for key in _SALVAGE if key != "via"}
    if not vias or any(value is None for value in picked.values()):
        return None
    from_, to, call_id, cseq = (str(picked[k]) for k in ("from", "to", "call-id", "cseq"))
    if parse_name_addr(to).tag is None:
        to = f"{to};tag={stable_tag(call_id, from_, vias[0])}"
    reason = " ".join(exc.reason.split())[:120]
    out = [f"SIP/2.0 {exc.status} {reason}"]
    out += [f"Via: {v}" for v in vias]
    out += [
        f"From: {from_}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq}",
        f"Server: {SERVER_NAME}",
        "Content-Length: 0",
    ]
    return ("\r\n".join(out) + "\r\n\r\n").encode()


def _valid_vias(lines: list[str]) -> list[str]:
    """Via values in order, up to the first that does not parse (the top one must)."""
    out: list[str] = []
    for line in lines:
        try:
            values = split_list(line)
            for value in values:
                parse_via(value)
                out.append(value)
        except SipParseError:
            break
    return out


def _first_valid(key: str, values: list[str]) -> str | None:
    """The first value of a From/To/Call-ID/CSeq header that parses."""
    for value in values:
        try:
            if key in ("from", "to"):
                parse_name_addr(value)
            elif key == "cseq":
                parse_cseq(value)
            else:
                parse_call_id(value)
            return value
        except SipParseError:
            continue
    return None
