"""SIP transaction layer: RFC 3261 §17 with the RFC 6026 corrections.

Sans-I/O, like aioquic's ``QuicConnection``: :class:`TransactionLayer` never
touches a socket or a clock.  The transport adapter feeds it parsed messages
with :meth:`~TransactionLayer.receive`; the transaction user (TU) starts client
transactions with :meth:`~TransactionLayer.send_request` and answers server
transactions with :meth:`~TransactionLayer.send_response`.  After each call the
adapter drains :meth:`~TransactionLayer.messages_to_send` and
:meth:`~TransactionLayer.next_event`, and re-arms one timer at
:meth:`~TransactionLayer.get_timer` that calls
:meth:`~TransactionLayer.handle_timer`.

Everything that affects the four state machines (RFC 3261 figures 5-8, with
the "Accepted" state of RFC 6026 §7) lives in this file.  Each transaction
needs at most two timers at once: a retransmission timer (A, E, G, or the
200 ms "send 100 Trying" timer of §17.2.1) and a timeout (B, D, F, H, I, J,
K, L or M).  Deadlines sit in one heap; a superseded deadline stays in the heap
and is skipped when it surfaces.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from voipcore.sip.errors import SipError
from voipcore.sip.headers import Headers
from voipcore.sip.message import MAGIC_COOKIE, Message, Request, Response, Via, make_response

logger = logging.getLogger(__name__)

Address = tuple[str, str, int]
"""(transport, host, port); ``UDP`` is unreliable, ``TCP``/``TLS``/``WS``/``WSS`` reliable."""


class TransactionKey(NamedTuple):
    """Identifies one transaction (RFC 3261 §17.1.3, §17.2.3).

    Server keys hold the top Via branch, its sent-by and the request method
    (INVITE for an ACK).  When the branch lacks the magic cookie, ``branch`` is
    a synthetic RFC 2543 identifier built from Call-ID, From tag, CSeq number
    and the top Via.  Client keys leave ``sent_by`` empty: a response matches
    a client transaction by branch and CSeq method alone.
    """

    branch: str
    sent_by: str
    method: str
    server: bool


class TransactionState(Enum):
    """Transaction states of RFC 3261 §17 (figures 5-8) and RFC 6026 §7."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


_CALLING = TransactionState.CALLING
_TRYING = TransactionState.TRYING
_PROCEEDING = TransactionState.PROCEEDING
_COMPLETED = TransactionState.COMPLETED
_CONFIRMED = TransactionState.CONFIRMED
_ACCEPTED = TransactionState.ACCEPTED
_TERMINATED = TransactionState.TERMINATED


class TransactionStateError(SipError):
    """The TU tried a move its transaction's state forbids, e.g. a second final response."""


@dataclass(frozen=True, slots=True)
class Timers:
    """Timer values of RFC 3261 §17 (Table 4) and RFC 6026 §8.11, in seconds.

    The ``timer_*`` properties give the values for unreliable transports; on
    reliable ones the layer uses 0 for D, I, J and K and never arms A, E or G.
    """

    t1: float = 0.5
    "Round-trip time estimate (§17.1.1.1)."
    t2: float = 4.0
    "Maximum retransmission interval for non-INVITE requests and INVITE responses."
    t4: float = 5.0
    "Maximum time a message stays in the network."
    trying_delay: float = 0.2
    "Wait for the TU before an INVITE server transaction sends 100 Trying itself (§17.2.1)."

    @property
    def timer_a(self) -> float:
        """INVITE request retransmission interval, initial value (§17.1.1.2)."""
        return self.t1

    @property
    def timer_b(self) -> float:
        """INVITE client transaction timeout (§17.1.1.2)."""
        return 64 * self.t1

    @property
    def timer_c(self) -> float:
        """Proxy INVITE transaction timeout (§16.6); not used by this layer."""
        return 180.0

    @property
    def timer_d(self) -> float:
        """Wait for response retransmissions in INVITE client Completed (§17.1.1.2).

        At least 32 s, and never shorter than the server's timer H.
        """
        return max(32.0, 64 * self.t1)

    @property
    def timer_e(self) -> float:
        """Non-INVITE request retransmission interval, initial value (§17.1.2.2)."""
        return self.t1

    @property
    def timer_f(self) -> float:
        """Non-INVITE client transaction timeout (§17.1.2.2)."""
        return 64 * self.t1

    @property
    def timer_g(self) -> float:
        """INVITE final response retransmission interval, initial value (§17.2.1)."""
        return self.t1

    @property
    def timer_h(self) -> float:
        """Wait for the ACK in INVITE server Completed (§17.2.1)."""
        return 64 * self.t1

    @property
    def timer_i(self) -> float:
        """Wait for ACK retransmissions in INVITE server Confirmed (§17.2.1)."""
        return self.t4

    @property
    def timer_j(self) -> float:
        """Wait for request retransmissions in non-INVITE server Completed (§17.2.2)."""
        return 64 * self.t1

    @property
    def timer_k(self) -> float:
        """Wait for response retransmissions in non-INVITE client Completed (§17.1.2.2)."""
        return self.t4

    @property
    def timer_l(self) -> float:
        """Wait for INVITE retransmissions in INVITE server Accepted (RFC 6026 §7.1)."""
        return 64 * self.t1

    @property
    def timer_m(self) -> float:
        """Wait for 2xx retransmissions in INVITE client Accepted (RFC 6026 §7.2)."""
        return 64 * self.t1


@dataclass(frozen=True, slots=True)
class TransactionEvent:
    """Base class of what the transaction layer reports to the TU."""


@dataclass(frozen=True, slots=True)
class RequestReceived(TransactionEvent):
    """A request for the TU (RFC 3261 §17.2.1, §17.2.2).

    Either it created a server transaction, or it belongs to none: an ACK for
    a 2xx response (§13.2.2.4, RFC 6026 §7.1) or an ACK that matched no
    INVITE server transaction, which the dialog layer still needs to see.
    """

    request: Request
    "The request as parsed."
    addr: Address
    "Where it came from; responses go back there."
    key: TransactionKey | None
    "The new server transaction, or None for an ACK that has none."


@dataclass(frozen=True, slots=True)
class ResponseReceived(TransactionEvent):
    """A response passed up by a client transaction (§17.1.1.2, §17.1.2.2).

    Includes 2xx retransmissions to an INVITE, which the TU must see (RFC 6026 §7.2).
    """

    response: Response
    "The response as parsed."
    key: TransactionKey
    "The client transaction it belongs to."


@dataclass(frozen=True, slots=True)
class StrayResponse(TransactionEvent):
    """A response that matched no client transaction (§18.1.2)."""

    response: Response
    "The response as parsed."
    addr: Address
    "Where it came from."


@dataclass(frozen=True, slots=True)
class TransactionTimeout(TransactionEvent):
    """Timer B, F or H fired: no final response, or no ACK (§17.1.1.2, §17.1.2.2, §17.2.1)."""

    key: TransactionKey
    "The transaction that failed."


@dataclass(frozen=True, slots=True)
class TransportFailure(TransactionEvent):
    """The transport could not send a message of this transaction (§17.1.4, §17.2.4)."""

    key: TransactionKey
    "The transaction that failed."


@dataclass(frozen=True, slots=True)
class TransactionTerminated(TransactionEvent):
    """The transaction reached Terminated and was forgotten (§17)."""

    key: TransactionKey
    "The transaction that ended."


@dataclass(slots=True, eq=False)
class _Transaction:
    """The state of one client or server transaction."""

    key: TransactionKey
    request: Request
    addr: Address
    invite: bool
    reliable: bool
    state: TransactionState
    rfc2543: bool = False
    last_response: Response | None = None
    reply_to: Address | None = None
    ack: Request | None = None
    retransmit_at: float | None = None
    interval: float = 0.0
    timeout_at: float | None = None


def _is_reliable(addr: Address) -> bool:
    return addr[0].upper() != "UDP"


def reply_address(request: Request, addr: Address) -> Address:
    """Where responses to ``request`` go (RFC 3261 §18.2.2, RFC 3581 §4).

    Reliable transports answer on the connection the request came on.  On
    UDP: the ``received`` address (else the sent-by host) and the ``rport``
    port (else the sent-by port, default 5060); an ``rport`` left empty by the
    sender means the source port.
    """
    if _is_reliable(addr):
        return addr
    via = request.via
    params = via.params
    if "rport" in params:
        rport = params["rport"]
        return (addr[0], params.get("received") or addr[1], int(rport) if rport else addr[2])
    return _sent_by(via, addr)


def reopen_address(message: Request | Response | None, addr: Address) -> Address:
    """Where to open a connection when none to ``addr`` is open (RFC 3261 §18.2.2).

    A response on a reliable transport: the ``received`` address (else the sent-by
    host) at the sent-by port, default 5060, since the request's connection is gone;
    ``rport`` named that connection's port (RFC 3581 §4 uses it on UDP only).  Anything
    else: ``addr`` itself (§18.1.1).
    """
    if isinstance(message, Response) and _is_reliable(addr):
        return _sent_by(message.via, addr)
    return addr


def _sent_by(via: Via, addr: Address) -> Address:
    """The top Via's ``received`` address, else its sent-by host, at its sent-by port."""
    return (addr[0], via.params.get("received") or via.host.strip("[]"), via.port or 5060)


def _server_key(message: Message, method: str) -> TransactionKey:
    """The key of the server transaction a request or response belongs to (§17.2.3).

    ``method`` is the request method, INVITE for an ACK, or the response's
    CSeq method.
    """
    via = message.via
    host = via.host.lower()
    sent_by = host if via.port is None else f"{host}:{via.port}"
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return TransactionKey(branch, sent_by, method, True)
    # RFC 2543 peers: branch IDs are not unique, so match on the request's
    # identity instead.  Request-URI and To tag are absent from responses and
    # differ in the ACK, so they are checked after the lookup.
    synthetic = "|".join(
        (
            "rfc2543",
            message.call_id,
            message.from_.tag or "",
            str(message.cseq.seq),
            via.transport,
            branch or "",
        )
    )
    return TransactionKey(synthetic, sent_by, method, True)


def outgoing_key(message: Request | Response) -> TransactionKey:
    """The transaction a message from :meth:`TransactionLayer.messages_to_send` belongs to.

    Lets the adapter turn a failed send into :meth:`TransactionLayer.transport_error`
    (§17.1.4, §17.2.4).  A layer-built ACK maps to its INVITE client transaction;
    a TU's stateless ACK maps to a key no transaction has, which the layer ignores.
    """
    if isinstance(message, Response):
        return _server_key(message, message.cseq.method)
    branch = message.via.branch or ""
    method = "INVITE" if message.method == "ACK" else message.method
    return TransactionKey(branch, "", method, False)


def _same_2543_request(original: Request, request: Request) -> bool:
    """RFC 3261 §17.2.3: the checks on an RFC 2543 request that its key leaves out."""
    return request.uri_text == original.uri_text and request.to.tag == original.to.tag


def _header(message: Message, name: str) -> str:
    value = message.headers.get(name)
    if value is None:
        raise SipError(f"missing {name} header")
    return value


def _make_ack(request: Request, response: Response) -> Request:
    """The ACK for a non-2xx final response, built by the transaction (§17.1.1.3)."""
    headers = Headers()
    headers.add("Via", request.headers.get_all("Via")[0])
    for name, value in request.headers:
        if name == "Route":
            headers.add(name, value)
    headers.add("Max-Forwards", "70")
    headers.add("From", _header(request, "From"))
    headers.add("To", _header(response, "To"))
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq.seq} ACK")
    return Request("ACK", request.uri_text, headers)


def _make_trying(request: Request) -> Response:
    """100 Trying sent by an INVITE server transaction itself (§17.2.1, §8.2.6.1)."""
    response = make_response(request, 100)
    timestamp = request.headers.get("Timestamp")
    if timestamp is not None:
        response.headers.add("Timestamp", timestamp)
    return response


class TransactionLayer:
    """All client and server transactions of one SIP element (RFC 3261 §17).

    Messages to transmit and events for the TU queue up inside; the caller
    drains them after every call.  ``now`` is any monotonic clock in seconds.
    """

    __slots__ = (
        "timers",
        "_clients",
        "_servers",
        "_completed",
        "_completed_order",
        "_heap",
        "_counter",
        "_outbox",
        "_events",
    )

    def __init__(self, timers: Timers = Timers()) -> None:
        self.timers = timers
        self._clients: dict[TransactionKey, _Transaction] = {}
        self._servers: dict[TransactionKey, _Transaction] = {}
        # Non-INVITE server transactions in Completed on UDP, waiting out timer J
        # (32 s) only to answer retransmissions: kept as (wire bytes, destination,
        # deadline).  Tuples of bytes, strings and numbers are not tracked by the
        # cyclic garbage collector, so tens of thousands of them cost it nothing;
        # a parsed request and response would be dozens of objects each.  Timer J
        # is constant, so deadlines arrive in order and a FIFO replaces the heap.
        # Keys are stored as plain tuples: CPython stops tracking exact tuples of
        # atomic values, not NamedTuples (equal and same hash, so lookups work).
        self._completed: dict[tuple[str, str, str, bool], tuple[bytes, Address, float]] = {}
        self._completed_order: deque[tuple[float, tuple[str, str, str, bool]]] = deque()
        # (deadline, tie-breaker, transaction); stale entries are skipped lazily.
        self._heap: list[tuple[float, int, _Transaction]] = []
        self._counter = itertools.count()
        self._outbox: list[tuple[Request | Response | bytes, Address]] = []
        self._events: deque[TransactionEvent] = deque()

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers) + len(self._completed)

    # -- the adapter's side ------------------------------------------------

    def receive(self, message: Request | Response, addr: Address, now: float) -> None:
        """Take a message from the transport (§17.1.3, §17.2.3, §18.1.2, §18.2.1)."""
        if isinstance(message, Request):
            if message.method == "ACK":
                self._receive_ack(message, addr, now)
            else:
                self._receive_request(message, addr, now)
        else:
            self._receive_response(message, addr, now)

    def messages_to_send(self) -> list[tuple[Request | Response | bytes, Address]]:
        """Messages to transmit, in order, each with its destination.

        Retransmissions of completed non-INVITE responses come as the bytes
        first sent; everything else as message objects.
        """
        out = self._outbox
        self._outbox = []
        return out

    def next_event(self) -> TransactionEvent | None:
        """The next event for the TU, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest deadline of any transaction, or None when nothing waits."""
        heap = self._heap
        while heap:
            deadline, _, txn = heap[0]
            if txn.state is not _TERMINATED and (
                deadline == txn.timeout_at or deadline == txn.retransmit_at
            ):
                break
            heapq.heappop(heap)
        first = heap[0][0] if heap else None
        if self._completed_order:
            done = self._completed_order[0][0]
            first = done if first is None else min(first, done)
        return first

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        order = self._completed_order
        while order and order[0][0] <= now:
            plain = order.popleft()[1]
            if self._completed.pop(plain, None) is not None:  # timer J (§17.2.2)
                self._events.append(TransactionTerminated(TransactionKey(*plain)))
        heap = self._heap
        while heap and heap[0][0] <= now:
            txn = heapq.heappop(heap)[2]
            if txn.state is _TERMINATED:
                continue
            timeout_at = txn.timeout_at
            if timeout_at is not None and timeout_at <= now:
                # Once the transaction times out a due retransmission is moot.
                self._on_timeout(txn)
                continue
            retransmit_at = txn.retransmit_at
            if retransmit_at is not None and retransmit_at <= now:
                self._on_retransmit(txn, retransmit_at, now)

    def transport_error(self, key: TransactionKey, now: float) -> None:
        """The transport failed to send for ``key`` (§17.1.1.2, §17.1.4, §17.2.4).

        Unknown or ended transactions are ignored: the error may arrive late.
        """
        if self._completed.pop(key, None) is not None:
            self._events.append(TransportFailure(key))
            self._events.append(TransactionTerminated(key))
            return
        txn = (self._servers if key.server else self._clients).get(key)
        if txn is None:
            return
        self._events.append(TransportFailure(key))
        self._terminate(txn)

    # -- the TU's side -----------------------------------------------------

    def send_request(self, request: Request, addr: Address, now: float) -> TransactionKey:
        """Start a client transaction for ``request`` and send it (§17.1.1, §17.1.2).

        An ACK is sent statelessly (§17.1.1.3 builds ACKs for non-2xx itself;
        the TU's ACK for a 2xx is a transaction of its own, §13.2.2.4); its key
        is returned all the same.  The top Via must carry an RFC 3261 branch
        (§8.1.1.7), which must not belong to a live transaction of the same method.
        """
        branch = request.via.branch
        if branch is None or not branch.startswith(MAGIC_COOKIE):
            raise ValueError(f"top Via branch {branch!r} lacks the {MAGIC_COOKIE} cookie")
        method = request.method
        key = TransactionKey(branch, "", method, False)
        if method == "ACK":
            self._outbox.append((request, addr))
            return key
        if key in self._clients:
            raise ValueError(f"a client transaction {key} already exists")
        invite = method == "INVITE"
        reliable = _is_reliable(addr)
        txn = _Transaction(key, request, addr, invite, reliable, _CALLING if invite else _TRYING)
        self._clients[key] = txn
        self._outbox.append((request, addr))
        timers = self.timers
        if not reliable:
            # Timers A and E start at T1 (§17.1.1.2, §17.1.2.2).
            txn.interval = timers.t1
            self._arm_retransmit(txn, now + timers.t1)
        self._arm_timeout(txn, now, timers.timer_b if invite else timers.timer_f)
        return key

    def send_response(self, response: Response, now: float) -> None:
        """Send ``response`` through its server transaction (§17.2.1, §17.2.2).

        The transaction is found by top Via branch, sent-by and CSeq method, so
        a response to a CANCEL goes to the CANCEL's own transaction (§9.2).
        Raises KeyError when no transaction matches and
        :class:`TransactionStateError` when its state allows no such response.
        """
        key = _server_key(response, response.cseq.method)
        txn = self._servers.get(key)
        if txn is None:
            if key in self._completed:
                raise TransactionStateError(f"{key} has sent its final response")
            raise KeyError(key)
        status = response.status
        state = txn.state
        timers = self.timers
        if txn.invite:
            if state is _PROCEEDING:
                txn.retransmit_at = None  # the TU answered: no automatic 100 Trying
                txn.last_response = response
                self._outbox.append((response, txn.reply_to or txn.addr))
                if status < 200:
                    return
                if status < 300:
                    # RFC 6026 §7.1: the TU retransmits 2xx; stay to absorb INVITEs.
                    txn.state = _ACCEPTED
                    self._arm_timeout(txn, now, timers.timer_l)
                    return
                txn.state = _COMPLETED
                if not txn.reliable:
                    txn.interval = timers.timer_g
                    self._arm_retransmit(txn, now + timers.timer_g)
                self._arm_timeout(txn, now, timers.timer_h)
                return
            if state is _ACCEPTED and 200 <= status < 300:
                self._outbox.append((response, txn.reply_to or txn.addr))
                return
        elif state is _TRYING or state is _PROCEEDING:
            reply_to = txn.reply_to or txn.addr
            if status >= 200 and not txn.reliable and not txn.rfc2543:
                # Completed on UDP: keep only what retransmissions need.
                wire = bytes(response)
                deadline = now + timers.timer_j
                del self._servers[key]
                txn.state = _TERMINATED
                plain = (key.branch, key.sent_by, key.method, key.server)
                self._completed[plain] = (wire, reply_to, deadline)
                self._completed_order.append((deadline, plain))
                self._outbox.append((wire, reply_to))
                return
            txn.last_response = response
            self._outbox.append((response, reply_to))
            if status < 200:
                txn.state = _PROCEEDING
            else:
                txn.state = _COMPLETED
                # Only retransmissions matter for timer J's 32 s: let go of the parses.
                txn.request.invalidate()
                self._arm_timeout(txn, now, 0.0 if txn.reliable else timers.timer_j)
            return
        raise TransactionStateError(f"cannot send {status} in state {state.value} of {key}")

    def find_invite_server(self, cancel: Request) -> TransactionKey | None:
        """The INVITE server transaction a CANCEL targets, if it still exists (§9.2).

        Applies §17.2.3 matching as if the CANCEL's method were INVITE.
        """
        key = _server_key(cancel, "INVITE")
        txn = self._servers.get(key)
        if txn is None or (txn.rfc2543 and not _same_2543_request(txn.request, cancel)):
            return None
        return key

    def state(self, key: TransactionKey) -> TransactionState | None:
        """The state of a live transaction, or None once it has ended."""
        if key in self._completed:
            return _COMPLETED
        txn = (self._servers if key.server else self._clients).get(key)
        return None if txn is None else txn.state

    # -- state machines ----------------------------------------------------

    def _receive_request(self, request: Request, addr: Address, now: float) -> None:
        """A non-ACK request: new server transaction or retransmission (§17.2.3)."""
        key = _server_key(request, request.method)
        done = self._completed.get(key)
        if done is not None:
            self._outbox.append((done[0], done[1]))  # Completed: resend the final response
            return
        txn = self._servers.get(key)
        if txn is None:
            invite = request.method == "INVITE"
            txn = _Transaction(
                key,
                request,
                addr,
                invite,
                _is_reliable(addr),
                _PROCEEDING if invite else _TRYING,
                rfc2543=not key.branch.startswith(MAGIC_COOKIE),
                reply_to=reply_address(request, addr),
            )
            self._servers[key] = txn
            self._events.append(RequestReceived(request, addr, key))
            if invite:
                delay = self.timers.trying_delay
                if delay <= 0:
                    self._send_trying(txn)
                else:
                    self._arm_retransmit(txn, now + delay)
            return
        if txn.rfc2543 and not _same_2543_request(txn.request, request):
            # Same Call-ID, From tag, CSeq and Via but another Request-URI or
            # To tag: a broken peer; one key cannot hold two transactions.
            logger.warning("dropping %s that clashes with RFC 2543 transaction %s", request, key)
            return
        # A retransmission: Proceeding and Completed resend the last response;
        # Trying, Confirmed and Accepted absorb it (§17.2.1, §17.2.2, RFC 6026).
        state = txn.state
        if (state is _PROCEEDING or state is _COMPLETED) and txn.last_response is not None:
            self._outbox.append((txn.last_response, txn.reply_to or txn.addr))

    def _receive_ack(self, ack: Request, addr: Address, now: float) -> None:
        """An ACK: ends an INVITE server transaction's wait in Completed (§17.2.1)."""
        txn = self._servers.get(_server_key(ack, "INVITE"))
        if (
            txn is not None
            and txn.rfc2543
            and not (
                ack.uri_text == txn.request.uri_text
                and txn.last_response is not None
                and ack.to.tag == txn.last_response.to.tag
            )
        ):
            txn = None
        if txn is None or txn.state is _PROCEEDING or txn.state is _ACCEPTED:
            # ACK for a 2xx (RFC 6026 §7.1) or for nothing: the dialog layer decides.
            self._events.append(RequestReceived(ack, addr, None))
            return
        if txn.state is _COMPLETED:
            txn.state = _CONFIRMED
            txn.retransmit_at = None  # stop timer G
            self._arm_timeout(txn, now, 0.0 if txn.reliable else self.timers.timer_i)
        # Confirmed absorbs retransmitted ACKs.

    def _receive_response(self, response: Response, addr: Address, now: float) -> None:
        """Match a response to a client transaction and advance it (§17.1.3)."""
        branch = response.via.branch
        txn = None
        if branch is not None:
            txn = self._clients.get(TransactionKey(branch, "", response.cseq.method, False))
        if txn is None:
            self._events.append(StrayResponse(response, addr))
            return
        key = txn.key
        status = response.status
        state = txn.state
        events = self._events
        if txn.invite:
            if state is _CALLING or state is _PROCEEDING:
                txn.retransmit_at = None  # stop timer A
                if status < 200:
                    # Timer B guards Calling only; Proceeding waits for the TU (§17.1.1.2).
                    txn.state = _PROCEEDING
                    txn.timeout_at = None
                    events.append(ResponseReceived(response, key))
                elif status < 300:
                    events.append(ResponseReceived(response, key))
                    # RFC 6026 §7.2: keep matching 2xx retransmissions and forks.
                    txn.state = _ACCEPTED
                    self._arm_timeout(txn, now, self.timers.timer_m)
                else:
                    events.append(ResponseReceived(response, key))
                    txn.ack = _make_ack(txn.request, response)
                    self._outbox.append((txn.ack, txn.addr))
                    txn.state = _COMPLETED
                    self._arm_timeout(txn, now, 0.0 if txn.reliable else self.timers.timer_d)
            elif state is _COMPLETED:
                if status >= 300 and txn.ack is not None:
                    self._outbox.append((txn.ack, txn.addr))
            elif state is _ACCEPTED and 200 <= status < 300:
                events.append(ResponseReceived(response, key))
            return
        if state is _TRYING or state is _PROCEEDING:
            events.append(ResponseReceived(response, key))
            if status < 200:
                txn.state = _PROCEEDING
            else:
                txn.retransmit_at = None  # stop timer E
                txn.state = _COMPLETED
                self._arm_timeout(txn, now, 0.0 if txn.reliable else self.timers.timer_k)
        # Completed absorbs retransmitted responses (§17.1.2.2).

    def _on_retransmit(self, txn: _Transaction, deadline: float, now: float) -> None:
        """Timer A, E or G, or the INVITE server's 200 ms wait for the TU."""
        state = txn.state
        t2 = self.timers.t2
        if txn.key.server:
            if state is _PROCEEDING:
                txn.retransmit_at = None
                if txn.last_response is None:
                    self._send_trying(txn)
                return
            # Timer G: resend the final response, doubling up to T2 (§17.2.1).
            assert txn.last_response is not None
            self._outbox.append((txn.last_response, txn.addr))
            interval = min(2 * txn.interval, t2)
        else:
            self._outbox.append((txn.request, txn.addr))
            if txn.invite:
                interval = 2 * txn.interval  # timer A has no cap (§17.1.1.2)
            elif state is _PROCEEDING:
                interval = t2  # §17.1.2.2: every T2 once a provisional arrived
            else:
                interval = min(2 * txn.interval, t2)
        txn.interval = interval
        # Keep the RFC schedule, but after a stalled loop resend once, not in a burst.
        next_at = deadline + interval
        self._arm_retransmit(txn, next_at if next_at > now else now + interval)

    def _on_timeout(self, txn: _Transaction) -> None:
        """Timer B, D, F, H, I, J, K, L or M: the transaction ends."""
        state = txn.state
        if txn.key.server:
            failed = state is _COMPLETED and txn.invite  # H: the ACK never came
        else:
            # B (Calling) and F (Trying, Proceeding) mean no final response;
            # D, K and M only end the wait for retransmissions.
            failed = state is _CALLING or state is _TRYING or state is _PROCEEDING
        if failed:
            self._events.append(TransactionTimeout(txn.key))
        self._terminate(txn)

    def _send_trying(self, txn: _Transaction) -> None:
        trying = _make_trying(txn.request)
        txn.last_response = trying
        self._outbox.append((trying, txn.reply_to or txn.addr))

    def _arm_retransmit(self, txn: _Transaction, deadline: float) -> None:
        txn.retransmit_at = deadline
        heapq.heappush(self._heap, (deadline, next(self._counter), txn))

    def _arm_timeout(self, txn: _Transaction, now: float, delay: float) -> None:
        """Arm the transaction's one timeout; a zero delay ends it at once (reliable)."""
        if delay <= 0:
            self._terminate(txn)
            return
        deadline = now + delay
        txn.timeout_at = deadline
        heapq.heappush(self._heap, (deadline, next(self._counter), txn))

    def _terminate(self, txn: _Transaction) -> None:
        txn.state = _TERMINATED
        txn.retransmit_at = txn.timeout_at = None
        key = txn.key
        (self._servers if key.server else self._clients).pop(key, None)
        self._events.append(TransactionTerminated(key))
