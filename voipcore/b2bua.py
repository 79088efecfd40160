"""Back-to-back user agent: calls between registered users, media anchored.

Each call is two dialogs (RFC 3261 §12-§15): the caller's INVITE is answered
by us (leg A), and we send our own INVITE to every registered contact of the
callee at once (leg B, forking §16.7-style: the first 2xx wins, the other
branches are cancelled).  Media always flows through the engine: the caller
gets our address for leg A, the callee ours for leg B, so QoS marking,
statistics and recording apply to every call.

The protocol state lives in the sans-I/O pieces (transactions, dialogs, SDP);
this module orchestrates them, awaiting the media engine in between.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import secrets
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from media.control import ControlError, MediaControl
from voipcore.config import RingGroupConfig
from voipcore.dialer.numbers import (
    CountryPolicy,
    ForbiddenDestination,
    InvalidNumber,
    is_extension_like,
    normalize,
)
from voipcore.registrar import Registrar
from voipcore.sdp import (
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    Format,
    SdpError,
    SessionDescription,
    build_answer,
    build_offer,
    negotiate,
    to_engine_codecs,
)
from voipcore.service import ALLOWED, CALL_EXTENSIONS, CALL_METHODS
from voipcore.sip.dialog import (
    Dialog,
    Expire,
    Negotiated,
    Refresh,
    SessionTimer,
    TooSmall,
    create_cancel,
    dialog_response,
    negotiate_uas,
    new_branch,
    supports_timer,
)
from voipcore.sip.errors import SipParseError
from voipcore.sip.headers import Headers, split_list
from voipcore.sip.message import Request, Response, make_response
from voipcore.sip.transaction import Address, TransactionKey
from voipcore.sip.uri import SipUri, Uri, parse_uri
from voipcore.store import Binding, User
from voipcore.store.calls import CallRecord, Direction, HungUpBy, LegRecord, LegRole
from voipcore.trunks.twilio import TwilioTrunk

log = logging.getLogger(__name__)

#: What the engine's audio path can take (RFC 3551 static types, RFC 4733 events), in
#: the order the trunk is offered them (Twilio: PCMU first, PCMA second, RFC 4733 DTMF).
SUPPORTED = [PCMU, PCMA, TELEPHONE_EVENT]
SDP = "application/sdp"
#: What we accept in a dialog (RFC 3261 §20.5) and the extensions we support (§20.37).
ALLOW = ", ".join(ALLOWED + CALL_METHODS)
SUPPORTED_TAGS = ", ".join(sorted(CALL_EXTENSIONS))
#: Seconds an ended call's Call-IDs are remembered: a BYE crossing ours gets 200,
#: not 481 (64*T1, the longest a non-INVITE transaction lives, RFC 3261 §17.1.2.2).
ENDED_MEMORY = 32.0
#: Final statuses to the caller, as call-log hangup causes.
_CAUSES = {
    486: "busy",
    600: "busy",
    480: "no_answer",
    408: "no_answer",
    487: "cancelled",
    603: "rejected",
    403: "rejected",
    404: "failed",
    488: "failed",
    503: "failed",
}


class ServiceApi(Protocol):
    """What the B2BUA needs from :class:`voipcore.service.SipService` (its transport)."""

    def respond(self, response: Response, now: float) -> None:
        """Send a response through its server transaction."""

    def send_request(self, request: Request, addr: Address, now: float) -> TransactionKey:
        """Send a request through a new client transaction (ACK: statelessly)."""


@dataclass
class Fork:
    """Our INVITE to one contact of the callee, or to one trunk edge."""

    invite: Request
    addr: Address
    final: int = 0
    edge: str | None = None
    alive: bool = False
    authenticated: bool = False
    retried: bool = False
    """Already resent after a 422 (RFC 4028 §7.3)."""
    user: str | None = None
    """The user whose phone this is (ring groups ring several)."""


@dataclass
class Call:
    """One call: the caller's leg A and our leg B towards the callee."""

    call_id: str
    invite: Request
    addr: Address
    caller: str
    callee: str
    dialled: str
    offer: SessionDescription | None
    """The caller's offer; None for a delayed offer (INVITE without SDP, §13.2.1)."""
    formats: list[Format]
    a_tag: str = field(default_factory=lambda: secrets.token_hex(6))
    b_call_id: str = field(default_factory=lambda: f"b-{secrets.token_hex(10)}")
    b_tag: str = field(default_factory=lambda: secrets.token_hex(6))
    e164: str | None = None
    edges: list[str] = field(default_factory=list)
    inbound: bool = False
    # Our SDP towards each side (RFC 3264 §8: same session id, version + 1 per change).
    a_session: int = field(default_factory=lambda: secrets.randbelow(2**31))
    b_session: int = field(default_factory=lambda: secrets.randbelow(2**31))
    versions: dict[str, int] = field(default_factory=lambda: {"a": 1, "b": 1})
    local_a: tuple[str, int] = ("", 0)
    local_b: tuple[str, int] = ("", 0)
    forks: dict[TransactionKey, Fork] = field(default_factory=dict)
    a_dialog: Dialog | None = None
    b_dialog: Dialog | None = None
    b_fork: Fork | None = None
    answer_sdp: bytes = b""
    last_sdp: dict[str, bytes] = field(default_factory=dict)
    """The SDP we last sent each side, by leg: a session refresh repeats it (RFC 3264 §8)."""
    leg_formats: dict[str, list[Format]] = field(default_factory=dict)
    """Formats a later offer on one leg settled on (a codec change), by leg."""
    offered: set[str] = field(default_factory=set)
    """Legs whose offerless re-INVITE got our offer in a 200: the answer is in the ACK."""
    directions: dict[str, str] = field(default_factory=dict)
    """The direction each phone last offered (its hold state), by leg."""
    timers: dict[str, SessionTimer] = field(default_factory=dict)
    """Each leg's RFC 4028 session timer."""
    a_negotiated: Negotiated | None = None
    """Session interval and refresher for the caller's leg, sent in our 2xx."""
    allows_update: dict[str, bool] = field(default_factory=dict)
    """Whether each side listed UPDATE in Allow: we refresh with it then (RFC 4028 §7.4)."""
    timer_handle: asyncio.TimerHandle | None = None
    """The ring timeout until the call is answered, then the next session-timer deadline."""
    ringing: bool = False
    answered: bool = False
    acked: bool = False
    ended: bool = False
    # For the call log (wall-clock seconds):
    started_at: float = 0.0
    ringing_at: float | None = None
    answered_at: float | None = None
    status: int | None = None
    cause: str | None = None
    hung_up_by: HungUpBy | None = None


@dataclass
class _Update:
    """A re-INVITE or UPDATE of ours in flight on one leg of a call."""

    call: Call
    dialog: Dialog
    addr: Address
    leg: str
    request: Request
    refresh: bool
    """A session refresh (RFC 4028 §10), not a change of the session."""


class B2BUA:
    """Places calls between registered users by extension or username."""

    def __init__(
        self,
        service: ServiceApi,
        media: MediaControl,
        registrar: Registrar,
        users: Callable[[], dict[str, User]],
        *,
        via: Callable[[str], str],
        contact: Callable[[str], str],
        wall_offset: Callable[[], float],
        flush: Callable[[], None],
        record: Callable[[CallRecord], None] = lambda call: None,
        trunk: TwilioTrunk | None = None,
        default_region: str = "US",
        policy: CountryPolicy | None = None,
        ring_timeout: float = 60.0,
        max_calls_per_user: int = 4,
        session_expires: int = 1800,
        min_se: int = 90,
        session_timers: str = "always",
        ring_groups: Sequence[RingGroupConfig] = (),
    ) -> None:
        self.service = service
        self.media = media
        self.registrar = registrar
        self.users = users
        self.via = via
        self.contact = contact
        self.wall_offset = wall_offset
        self.flush = flush
        self.record = record
        self.trunk = trunk
        #: How long the callee's phones may ring before the caller gets 480 (no answer).
        self.ring_timeout = ring_timeout
        #: Calls one user may have up at once: a stolen password cannot fan out.
        self.max_calls_per_user = max_calls_per_user
        #: RFC 4028: the session interval we ask of both legs, and our Min-SE.
        self.session_expires = session_expires
        self.min_se = min_se
        self.session_timers = session_timers
        self.ring_groups = ring_groups
        self.default_region = default_region
        self.policy = policy or CountryPolicy(frozenset({default_region}))
        self.calls: dict[str, Call] = {}
        #: Users by extension, built from the users dict it was made from (the
        #: server swaps in a new dict when users change).
        self._extensions: tuple[dict[str, User] | None, dict[str, User]] = (None, {})
        #: INVITEs claiming to come from the trunk that did not (403).
        self.origination_refused = 0
        self._by_b: dict[str, Call] = {}
        #: Call-IDs of both legs of calls that ended lately, with when (crossing BYEs).
        self._ended: dict[str, float] = {}
        #: Calls each caller has up (the per-user limit), kept as calls start and end.
        self._active: Counter[str] = Counter()
        self._forks: dict[TransactionKey, Call] = {}
        #: Our re-INVITEs and UPDATEs in flight.
        self._updates: dict[TransactionKey, _Update] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        media.subscribe(self._media_event)
        #: Our OPTIONS pings to trunk edges in flight: edge and when it was sent.
        self._pings: dict[TransactionKey, tuple[str, float]] = {}
        self._pinger: asyncio.Task[None] | None = None
        if trunk is not None and trunk.config.ping_interval > 0:
            self._pinger = asyncio.get_running_loop().create_task(self._ping_edges())

    # -- from the service ---------------------------------------------------

    def on_request(self, request: Request, addr: Address, now: float) -> None:
        """INVITE, BYE or CANCEL from a phone (§13, §15, §9)."""
        method = request.method
        if method == "INVITE" and request.to.tag is None:
            self._new_invite(request, addr, now)
        elif method in ("INVITE", "UPDATE"):
            self._modify(request, now)
        elif method == "BYE":
            self._bye(request, now)
        elif method == "CANCEL":
            self._cancel(request, now)

    def has_dialog(self, call_id: str) -> bool:
        """Whether ``call_id`` is either leg of a call in progress."""
        return call_id in self.calls or call_id in self._by_b

    def on_ack(self, ack: Request) -> None:
        """An ACK for a 2xx of ours (§13.3.1.4): the caller's first one stops our 200's
        retransmissions; one answering the offer we made in a 200 carries that answer."""
        call = self.calls.get(ack.call_id) or self._by_b.get(ack.call_id)
        if call is None:
            return
        leg = "a" if ack.call_id == call.call_id else "b"
        if leg == "a" and not call.acked:
            call.acked = True
            if call.offer is None and ack.body:
                self._spawn(self._ack_answer(call, ack))
        elif leg in call.offered and ack.body:
            # The answer to the offer in our 200 to an offerless re-INVITE (§14.2).
            call.offered.discard(leg)
            self._spawn(self._apply_answer(call, leg, ack.body))

    def on_response(self, response: Response, key: TransactionKey, now: float) -> None:
        """A response to one of our INVITEs towards the callee."""
        if key in self._updates:
            if response.status >= 200:
                self._update_answered(self._updates.pop(key), response, now)
            return
        ping = self._pings.pop(key, None)
        if ping is not None and self.trunk is not None:
            # Any answer, even 4xx, shows the edge is up (RFC 3261 §11).
            self.trunk.health[ping[0]] = (True, now - ping[1])
            return
        call = self._forks.get(key)
        if call is None or call.ended:
            return
        fork = call.forks[key]
        fork.alive = True
        status = response.status
        if status < 200:
            if status > 100 and response.body and call.offer is not None and not call.answered:
                self._spawn(self._early_media(call, response))
            elif status > 100 and not call.ringing and not call.answered:
                call.ringing = True
                call.ringing_at = self._wall()
                self._reply(call, 180, now)
        elif status < 300:
            self._spawn(self._answered(call, fork, response))
        elif status in (401, 407) and fork.edge is not None and not fork.authenticated:
            fork.final = status
            self._trunk_authenticate(call, fork, response, now)
        elif status == 422 and not fork.retried:
            # Session interval too small for the callee: ask again at its Min-SE (RFC 4028 §7.3).
            fork.final = status
            call.timers["b"].apply_response(response, now)
            retry = _retry(fork.invite, self.via(fork.addr[0]), call.timers["b"].request_headers())
            again = self._send_fork(call, retry, fork.addr, fork.edge)
            again.alive = again.retried = True
            again.authenticated = fork.authenticated
        elif fork.edge is not None and (status >= 500 or status == 408) and call.edges:
            fork.final = status  # this edge is in trouble: try the next one
            self._spawn(self._trunk_attempt(call))
        else:
            fork.final = status
            self._branch_failed(call, now)

    def on_failure(self, key: TransactionKey, status: int, now: float) -> None:
        """No response on a branch (Timer B: 408; unsendable: 503, RFC 3261 §8.1.3.1):
        treat it as that response from the branch."""
        self._pings.pop(key, None)
        update = self._updates.pop(key, None)
        if update is not None:
            self._update_failed(update, status)
            return
        call = self._forks.get(key)
        if call is not None and not call.ended:
            fork = call.forks[key]
            fork.final = status
            if fork.edge is not None and call.edges:
                self._spawn(self._trunk_attempt(call))
            else:
                self._branch_failed(call, now)

    def _media_event(self, event: dict[str, Any]) -> None:
        """Dead calls end: no RTP for the media timeout, or their media worker died."""
        if event.get("event") not in ("media_timeout", "call_ended"):
            return
        call = self.calls.get(str(event.get("call_id")))
        if call is None or call.ended or not call.answered:
            return
        log.warning("call %s: %s, hanging up", call.call_id, event["event"])
        call.hung_up_by, call.cause = "system", "media_timeout"
        self._hang_up(call, "ab")

    async def _ping_edges(self) -> None:
        """OPTIONS every trunk edge now and then: reachability and round-trip time."""
        trunk = self.trunk
        assert trunk is not None
        loop = asyncio.get_running_loop()
        while True:
            for edge in trunk.config.edges:
                try:
                    addr = await trunk.address(edge)
                except OSError:
                    trunk.health[edge] = (False, None)
                    continue
                ping = self._options(f"sip:{trunk.edge_domain(edge)}", addr)
                key = self.service.send_request(ping, addr, loop.time())
                self._pings[key] = (edge, loop.time())
            self.flush()
            await asyncio.sleep(trunk.config.ping_timeout)
            for key, (edge, _) in list(self._pings.items()):
                # No answer within the ping timeout: treat the edge as down for now.
                trunk.health[edge] = (False, None)
                del self._pings[key]
            await asyncio.sleep(max(0.0, trunk.config.ping_interval - trunk.config.ping_timeout))

    def _options(self, uri: str, addr: Address) -> Request:
        headers = Headers()
        headers.add("Via", f"{self.via(addr[0])};branch={new_branch()};rport")
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:voipcore@{self.registrar.domain}>;tag={secrets.token_hex(6)}")
        headers.add("To", f"<{uri}>")
        headers.add("Call-ID", secrets.token_hex(12))
        headers.add("CSeq", "1 OPTIONS")
        return Request("OPTIONS", uri, headers)

    # -- new calls ------------------------------------------------------------

    def _new_invite(self, request: Request, addr: Address, now: float) -> None:
        if request.call_id in self.calls:
            return  # a retransmission the transaction layer already absorbed
        if request.max_forwards == 0:
            self.service.respond(make_response(request, 483), now)  # §16.3 loop guard
            return
        if self.trunk is not None and (
            self.trunk.from_twilio(addr[1]) or "X-Twilio-AccountSid" in request.headers
        ):
            self._origination(request, addr, now)
            return
        caller = self.registrar.authorize(request, now + self.wall_offset(), proxy=True)
        if isinstance(caller, Response):
            self.service.respond(caller, now)
            return
        negotiated = self._session_interval(request, now)
        if negotiated is None:
            return
        dialled = _user_of(request.uri, "")
        if self._active[caller] >= self.max_calls_per_user:
            reason = f"Busy Here (limit of {self.max_calls_per_user} calls per user)"
            self._refuse(request, caller, dialled, 486, reason, now, "busy")
            return
        offer: SessionDescription | None = None
        formats = list(SUPPORTED)  # a delayed offer: we offer all we have, twice
        if request.body:
            try:
                offer = SessionDescription.parse(request.body)
                audio = offer.audio
                if audio is None:
                    raise SdpError("no audio stream offered")
            except SdpError as exc:
                reason = f"Not Acceptable Here ({exc})"[:100]
                self._refuse(request, caller, dialled, 488, reason, now)
                return
            formats = negotiate(audio, SUPPORTED)
        if not formats:
            self._refuse(request, caller, dialled, 488, "Not Acceptable Here (codecs)", now)
            return
        target = self._target(dialled)
        if target is not None:
            self._ring(request, addr, caller, target, dialled, offer, formats, negotiated, now)
            return
        if self.trunk is None or is_extension_like(dialled):
            self._refuse(request, caller, dialled, 404, f"Not Found ({dialled})", now)
            return
        try:
            number = normalize(dialled, self.default_region)
            self.policy.check(number)
        except InvalidNumber as exc:
            self._refuse(
                request,
                caller,
                dialled,
                exc.sip_status,
                _short(str(exc)),
                now,
                "invalid_number",
                "outbound",
            )
            return
        except ForbiddenDestination as exc:
            self._refuse(
                request, caller, dialled, 403, _short(str(exc)), now, "rejected", "outbound"
            )
            return
        call = self._start(request, addr, caller, number.e164, dialled, offer, formats, negotiated)
        call.e164 = number.e164
        call.edges = self.trunk.ordered_edges()
        # Twilio's order whatever the phone prefers: the anchor transcodes if they differ.
        call.leg_formats["b"] = list(SUPPORTED)
        self._spawn(self._place_outbound(call))

    def _origination(self, request: Request, addr: Address, now: float) -> None:
        """An inbound call from the trunk: ring the user its DID belongs to."""
        assert self.trunk is not None
        refusal = self.trunk.origination_refusal(request, addr[1])
        if refusal is not None:
            self.origination_refused += 1
            log.warning("refused inbound INVITE from %s: %s", addr[1], refusal)
            reason = _short(f"Forbidden ({refusal})")
            self._refuse(
                request,
                _user_of(request.from_.uri),
                _user_of(request.uri),
                403,
                reason,
                now,
                direction="inbound",
            )
            return
        negotiated = self._session_interval(request, now)
        if negotiated is None:
            return
        did, caller = _user_of(request.uri, ""), _user_of(request.from_.uri)
        owner = self.trunk.config.dids.get(did)
        target = self._target(owner) if owner is not None else None
        try:
            offer = SessionDescription.parse(request.body)
            audio = offer.audio
            formats = negotiate(audio, SUPPORTED) if audio is not None else []
        except SdpError:
            formats = []
        if target is None or not formats:
            status, reason = (
                (404, f"Not Found (no user for {did})")
                if target is None
                else (488, "Not Acceptable Here (codecs)")
            )
            self._refuse(request, caller, did, status, reason, now, direction="inbound")
            return
        self._ring(request, addr, caller, target, did, offer, formats, negotiated, now, True)

    def _target(self, name: str) -> tuple[str, list[str]] | None:
        """The user (by name or extension) or ring group called ``name``: its name
        and the usernames to ring."""
        user = self._find_user(name)
        if user is not None:
            return user.username, [user.username]
        group = next((g for g in self.ring_groups if name in (g.name, g.extension)), None)
        return None if group is None else (group.name, list(group.members))

    def _ring(
        self,
        request: Request,
        addr: Address,
        caller: str,
        target: tuple[str, list[str]],
        dialled: str,
        offer: SessionDescription | None,
        formats: list[Format],
        negotiated: Negotiated,
        now: float,
        inbound: bool = False,
    ) -> None:
        """Ring every registered phone of the target's users at once (480 if none is)."""
        name, members = target
        if len(members) > 1:
            members = [m for m in members if m != caller]  # a member calling the group
        wall = now + self.wall_offset()
        contacts = [(m, b) for m in members for b in self.registrar.lookup(m, wall)]
        if not contacts:
            direction: Direction = "inbound" if inbound else "internal"
            self._refuse(request, caller, dialled, 480, None, now, "unavailable", direction)
            return
        call = self._start(request, addr, caller, name, dialled, offer, formats, negotiated)
        call.inbound = inbound
        targets = [(m, b.contact, contact_address(b)) for m, b in contacts]
        self._spawn(self._place(call, targets))

    def _start(
        self,
        request: Request,
        addr: Address,
        caller: str,
        callee: str,
        dialled: str,
        offer: SessionDescription | None,
        formats: list[Format],
        negotiated: Negotiated,
    ) -> Call:
        call = Call(request.call_id, request, addr, caller, callee, dialled, offer, formats)
        call.started_at = self._wall()
        call.a_negotiated = negotiated
        call.timers = {
            leg: SessionTimer(interval=self.session_expires, min_se=self.min_se) for leg in "ab"
        }
        call.allows_update["a"] = _allows_update(request)
        self.calls[call.call_id] = call
        self._active[caller] += 1
        self.record(self._call_record(call))
        self._by_b[call.b_call_id] = call
        self.service.respond(make_response(request, 100), self._now())
        return call

    def _refuse(
        self,
        request: Request,
        caller: str,
        dialled: str,
        status: int,
        reason: str | None,
        now: float,
        cause: str | None = None,
        direction: Direction = "internal",
    ) -> None:
        """Turn an authenticated INVITE away, and log the attempt."""
        self.service.respond(make_response(request, status, reason), now)
        wall = now + self.wall_offset()
        self.record(
            CallRecord(
                call_id=request.call_id,
                direction=direction,
                caller=caller,
                callee_dialled=dialled,
                user=caller,
                started_at=wall,
                ended_at=wall,
                hangup_cause=cause or _CAUSES.get(status, "failed"),
                sip_status=status,
                hung_up_by="system",
            )
        )

    def _find_user(self, target: str) -> User | None:
        """The user whose name or extension is ``target``."""
        users = self.users()
        user = users.get(target)
        if user is not None:
            return user
        indexed, by_extension = self._extensions
        if indexed is not users:
            by_extension = {u.extension: u for u in users.values() if u.extension is not None}
            self._extensions = (users, by_extension)
        return by_extension.get(target)

    async def _anchor(self, call: Call) -> bool:
        """Open the call's two media legs; False (and the caller told) if that fails."""
        audio = call.offer.audio if call.offer is not None else None
        leg_a: dict[str, Any] = {
            "call_id": call.call_id,
            "leg": "a",
            "codecs": to_engine_codecs(call.formats),
        }
        if audio is not None:
            leg_a["remote"] = {"host": audio.connection_address, "port": audio.port}
        try:
            reply_a = await self.media.request("offer", leg_a)
            b_formats = call.leg_formats.get("b", call.formats)
            reply_b = await self.media.request(
                "offer",
                {"call_id": call.call_id, "leg": "b", "codecs": to_engine_codecs(b_formats)},
            )
        except ControlError as exc:
            log.error("media for call %s failed: %s", call.call_id, exc)
            self._finish_a(call, 503, "Service Unavailable (media)")
            return False
        call.local_a = (reply_a["local"]["host"], reply_a["local"]["port"])
        call.local_b = (reply_b["local"]["host"], reply_b["local"]["port"])
        self._sdp(call, "b")  # our offer to the callee, kept as its leg's current session
        return True

    async def _place(self, call: Call, targets: list[tuple[str, str, Address]]) -> None:
        """Anchor the media, then INVITE every (user, contact) target at once."""
        if not await self._anchor(call):
            return
        domain = self.registrar.domain
        for user, contact, addr in targets:
            invite = self._b_invite(
                call, contact, addr, f"sip:{call.caller}@{domain}", f"sip:{user}@{domain}"
            )
            self._send_fork(call, invite, addr).user = user
        self._ring_until_timeout(call)

    async def _place_outbound(self, call: Call) -> None:
        """Anchor the media, then try the trunk's edges in order."""
        if not await self._anchor(call):
            return
        self._ring_until_timeout(call)
        await self._trunk_attempt(call)

    async def _trunk_attempt(self, call: Call) -> None:
        """INVITE the next edge; move on if it stays silent (edge down) or fails."""
        trunk = self.trunk
        assert trunk is not None and call.e164 is not None
        while call.edges and not call.ended and not call.answered:
            edge = call.edges.pop(0)
            try:
                addr = await trunk.address(edge)
            except OSError as exc:
                log.warning("trunk edge %s cannot be resolved: %s", edge, exc)
                continue
            await trunk.pace()
            if call.ended or call.answered:
                return
            fork = self._send_fork(call, self._trunk_invite(call, edge, addr), addr, edge)
            await asyncio.sleep(trunk.config.failover_timeout)
            if fork.alive or call.ended or call.answered:
                return
            log.warning(
                "trunk edge %s silent for %.1f s: failing over", edge, trunk.config.failover_timeout
            )
            fork.final = 408
        if not call.ended and not call.answered and all(f.final for f in call.forks.values()):
            self._finish_a(call, 503, "Service Unavailable (no trunk edge answered)")

    def _trunk_invite(self, call: Call, edge: str, addr: Address) -> Request:
        trunk = self.trunk
        assert trunk is not None and call.e164 is not None
        user = self.users().get(call.caller)
        caller_id = (user and user.caller_id) or trunk.config.caller_id or call.caller
        return self._b_invite(
            call,
            trunk.request_uri(call.e164, edge),
            addr,
            f"sip:{caller_id}@{trunk.domain}",
            f"sip:{call.e164}@{trunk.domain}",
            tag=call.b_tag,
        )

    def _trunk_authenticate(self, call: Call, fork: Fork, challenge: Response, now: float) -> None:
        """Meet the trunk's digest challenge from the credential list (§22.3)."""
        assert self.trunk is not None and fork.edge is not None
        header = self.trunk.authorization(fork.invite, challenge)
        if header is None:
            self._branch_failed(call, now)
            return
        invite = _retry(fork.invite, self.via(fork.addr[0]), [header])
        self._spawn(self._send_authenticated(call, invite, fork))

    async def _send_authenticated(self, call: Call, invite: Request, fork: Fork) -> None:
        assert self.trunk is not None
        await self.trunk.pace("authenticated")
        if call.ended or call.answered:
            return
        retry = self._send_fork(call, invite, fork.addr, fork.edge)
        retry.alive = retry.authenticated = True
        retry.retried = fork.retried

    def _send_fork(
        self, call: Call, invite: Request, addr: Address, edge: str | None = None
    ) -> Fork:
        key = self.service.send_request(invite, addr, self._now())
        fork = call.forks[key] = Fork(invite, addr, edge=edge)
        self._forks[key] = call
        self.flush()
        return fork

    def _b_invite(
        self,
        call: Call,
        uri: str,
        addr: Address,
        from_uri: str,
        to_uri: str,
        *,
        tag: str | None = None,
    ) -> Request:
        headers = Headers()
        headers.add("Via", f"{self.via(addr[0])};branch={new_branch()};rport")
        hops = call.invite.max_forwards
        headers.add("Max-Forwards", str(69 if hops is None else hops - 1))
        headers.add("From", f"<{from_uri}>;tag={tag or secrets.token_hex(6)}")
        headers.add("To", f"<{to_uri}>")
        headers.add("Call-ID", call.b_call_id)
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", f"<{self.contact(addr[0])}>")
        headers.add("Allow", ALLOW)
        for name, value in call.timers["b"].request_headers():
            headers.add(name, value)
        headers.add("Content-Type", SDP)
        return Request("INVITE", uri, headers, call.last_sdp["b"])

    def _ring_until_timeout(self, call: Call) -> None:
        """Give up on an unanswered call after the ring timeout (the answer re-arms
        ``timer_handle`` for the session timers)."""
        call.timer_handle = asyncio.get_running_loop().call_later(
            self.ring_timeout, self._no_answer, call
        )

    def _no_answer(self, call: Call) -> None:
        call.timer_handle = None
        if not call.answered and not call.ended:
            self._cancel_forks(call, self._now())
            self._finish_a(call, 480, "Temporarily Unavailable (no answer)")

    # -- answers and failures --------------------------------------------------

    def _sdp(
        self,
        call: Call,
        side: str,
        *,
        answering: SessionDescription | None = None,
        direction: str = "sendrecv",
    ) -> bytes:
        """Our SDP towards one side: an answer to ``answering``, else an offer.

        Each side keeps its own session id, and its version goes up whenever
        the session described changes (RFC 3264 §8); the result is kept as the
        side's current session.
        """
        host, port = call.local_a if side == "a" else call.local_b
        session = call.a_session if side == "a" else call.b_session
        formats = call.leg_formats.get(side, call.formats)

        def build(version: int) -> bytes:
            if answering is not None:
                sdp = build_answer(
                    answering,
                    address=host,
                    port=port,
                    formats=formats,
                    session_id=session,
                    version=version,
                )
            else:
                sdp = build_offer(
                    address=host,
                    port=port,
                    formats=formats,
                    session_id=session,
                    version=version,
                    direction=direction,
                )
            return sdp.to_bytes()

        version = call.versions[side]
        body = build(version)
        last = call.last_sdp.get(side)
        if last is not None and body != last:
            call.versions[side] = version + 1
            body = build(version + 1)
        call.last_sdp[side] = body
        return body

    async def _apply_sdp(
        self, call: Call, leg: str, body: bytes, *, command: str = "answer"
    ) -> list[Format]:
        """Point ``leg``'s media at the audio stream in ``body`` (address, codecs, direction).

        Returns the formats both sides support; SdpError if there are none.
        """
        audio = SessionDescription.parse(body).audio
        if audio is None:
            raise SdpError("no audio stream")
        formats = negotiate(audio, SUPPORTED)
        if not formats:
            raise SdpError("no codec in common")
        await self.media.request(
            command,
            {
                "call_id": call.call_id,
                "leg": leg,
                "codecs": to_engine_codecs(formats),
                "remote": {"host": audio.connection_address, "port": audio.port},
                "direction": audio.direction,
            },
        )
        return formats

    async def _connect_b(self, call: Call, response: Response) -> None:
        """Point leg B's media at the callee's answer (from a 183 or the 2xx)."""
        formats = await self._apply_sdp(call, "b", response.body)
        call.leg_formats["b"] = formats
        if call.answer_sdp:
            return
        if call.offer is None:
            # Delayed offer: the caller gets an offer of what the callee chose;
            # its answer comes in the ACK (§13.2.1).
            call.formats = formats
            call.answer_sdp = self._sdp(call, "a")
            return
        call.answer_sdp = self._sdp(call, "a", answering=call.offer)

    async def _early_media(self, call: Call, response: Response) -> None:
        """183 with SDP: the callee (or the network) plays ringback or announcements.

        The caller gets a 183 with our answer; the 2xx repeats the same answer
        (RFC 3261 §13.3.1.4 with RFC 3264: one offer, one answer).
        """
        try:
            await self._connect_b(call, response)
        except (SdpError, ControlError) as exc:
            log.info("call %s: early media unusable: %s", call.call_id, exc)
            return
        if call.answered or call.ended:
            return
        call.ringing, call.ringing_at = True, call.ringing_at or self._wall()
        progress = self._a_response(call, 183)
        progress.body = call.answer_sdp
        progress.headers.add("Content-Type", SDP)
        self.service.respond(progress, self._now())
        self.flush()

    async def _answered(self, call: Call, fork: Fork, response: Response) -> None:
        """A branch answered: ACK it, connect media, answer the caller (§13.2.2.4)."""
        loop = asyncio.get_running_loop()
        dialog = Dialog.from_uac(fork.invite, response)
        ack = dialog.create_ack(fork.invite.cseq.seq, via=self.via(fork.addr[0]))
        self.service.send_request(ack, fork.addr, loop.time())
        if call.answered or call.ended:
            # Another branch won (or the caller gave up): this one hangs up.
            self.service.send_request(
                dialog.create_request("BYE", via=self.via(fork.addr[0])), fork.addr, loop.time()
            )
            self.flush()
            return
        call.answered = True
        call.answered_at = self._wall()
        call.status = 200
        self.record(self._call_record(call))
        call.cause = "normal"
        call.b_dialog, call.b_fork = dialog, fork
        self._cancel_forks(call, loop.time(), keep=fork)
        try:
            await self._connect_b(call, response)
        except (SdpError, ControlError) as exc:
            log.warning("call %s: callee's answer unusable: %s", call.call_id, exc)
            self.service.send_request(
                dialog.create_request("BYE", via=self.via(fork.addr[0])), fork.addr, loop.time()
            )
            self._finish_a(call, 488, "Not Acceptable Here (callee's answer)")
            return
        ok = self._a_response(call, 200)
        ok.headers.add("Allow", ALLOW)
        ok.headers.add("Supported", SUPPORTED_TAGS)
        assert call.a_negotiated is not None
        timed_a = self._timed(call.invite)
        if timed_a:
            for name, value in call.a_negotiated.response_headers(call.invite):
                ok.headers.add(name, value)
        ok.body = call.answer_sdp
        ok.headers.add("Content-Type", SDP)
        call.a_dialog = Dialog.from_uas(call.invite, ok)
        now = loop.time()
        self.service.respond(ok, now)
        # Both legs' session timers start with the call (RFC 4028 §7.2, §9).
        if timed_a:
            call.timers["a"].apply_negotiated(call.a_negotiated, now)
        if self._timed(response):
            call.timers["b"].apply_response(response, now)
        call.allows_update["b"] = _allows_update(response)
        self._arm(call)
        self.flush()
        await self._retransmit_ok(call, ok)

    async def _ack_answer(self, call: Call, ack: Request) -> None:
        """The caller's answer to our offer, in its ACK: now its media can flow."""
        try:
            await self._apply_sdp(call, "a", ack.body)
        except (SdpError, ControlError) as exc:
            log.warning("call %s: answer in ACK unusable: %s; hanging up", call.call_id, exc)
            call.hung_up_by, call.cause = "system", "failed"
            self._hang_up(call, "ab")

    async def _retransmit_ok(self, call: Call, ok: Response) -> None:
        """The UAS core resends its 2xx until the ACK comes (§13.3.1.4)."""
        interval, waited = 0.5, 0.0
        while not call.acked and not call.ended and waited < 32.0:
            await asyncio.sleep(interval)
            waited += interval
            if not call.acked and not call.ended:
                self.service.respond(ok, self._now())
                self.flush()
            interval = min(interval * 2, 4.0)
        if not call.acked and not call.ended:
            log.warning("call %s: no ACK for our 200 in 32 s, hanging up", call.call_id)
            call.hung_up_by, call.cause = "system", "failed"
            self._hang_up(call, "ab")

    def _branch_failed(self, call: Call, now: float) -> None:
        if call.answered or any(fork.final == 0 for fork in call.forks.values()):
            return
        # A trunk's challenge is ours to answer (§22.2), never the caller's: once answered
        # the retry's final counts; one we could not meet means we may not call (403).
        finals = [f.final for f in call.forks.values() if f.final not in (401, 407)] or [403]
        # §16.7: 6xx beat everything; then prefer a busy over a vague failure.
        status = next((s for s in finals if s >= 600), None)
        status = status or (486 if 486 in finals else 480 if 408 in finals else min(finals))
        self._finish_a(call, status, None)

    def _a_response(self, call: Call, status: int, reason: str | None = None) -> Response:
        return dialog_response(
            call.invite,
            status,
            contact=self.contact(call.addr[0]),
            to_tag=call.a_tag,
            reason=reason,
        )

    def _reply(self, call: Call, status: int, now: float) -> None:
        self.service.respond(self._a_response(call, status), now)

    def _finish_a(self, call: Call, status: int, reason: str | None) -> None:
        """A final non-2xx to the caller, and the call is over."""
        now = self._now()
        call.status = status
        call.cause = _CAUSES.get(status, "failed")
        call.hung_up_by = "system"
        response = make_response(call.invite, status, reason, to_tag=call.a_tag)
        if status == 503:
            response.headers.add("Retry-After", "5")  # our trouble is passing (§21.5.4)
        self.service.respond(response, now)
        self._end(call)
        self.flush()

    def _cancel_forks(self, call: Call, now: float, keep: Fork | None = None) -> None:
        for fork in call.forks.values():
            if fork is not keep and fork.final == 0:
                fork.final = 487
                cancel = create_cancel(fork.invite)
                self.service.send_request(cancel, fork.addr, now)

    # -- in-dialog requests ------------------------------------------------------

    def _modify(self, request: Request, now: float) -> None:
        """A re-INVITE (§14.2) or UPDATE (RFC 3311) from either phone.

        The media anchor absorbs what concerns one leg: a new address or codec
        changes only that leg's stream (the engine transcodes if the legs now
        differ), and a session refresh only restarts that leg's timer
        (RFC 4028 §10).  A new direction (hold, resume) is relayed to the other
        phone in our own re-INVITE, so both show the call as held.
        """
        call = self.calls.get(request.call_id) or self._by_b.get(request.call_id)
        early_update = request.method == "UPDATE" and call is not None and bool(call.answer_sdp)
        if call is None or call.ended or not (call.answered or early_update):
            self.service.respond(make_response(request, 481), now)
            return
        leg = "a" if request.call_id == call.call_id else "b"
        negotiated = self._session_interval(request, now) if call.answered else None
        if call.answered and negotiated is None:
            return  # 422 sent
        offer: SessionDescription | None = None
        try:
            if request.body:
                offer = SessionDescription.parse(request.body)
                if offer.audio is None:
                    raise SdpError("no audio stream")
        except SdpError as exc:
            reason = _short(f"Not Acceptable Here ({exc})")
            self.service.respond(make_response(request, 488, reason), now)
            return
        if offer is None:
            self._accept_modify(call, request, leg, negotiated, None)
        else:
            self._spawn(self._renegotiate(call, request, leg, offer, negotiated))

    async def _renegotiate(
        self,
        call: Call,
        request: Request,
        leg: str,
        offer: SessionDescription,
        negotiated: Negotiated | None,
    ) -> None:
        """Apply a phone's new offer to its leg and answer it."""
        try:
            formats = await self._apply_sdp(call, leg, request.body, command="offer")
        except SdpError as exc:
            # The old session stays as it was (§14.2).
            reason = _short(f"Not Acceptable Here ({exc})")
            self.service.respond(make_response(request, 488, reason), self._now())
            self.flush()
            return
        except ControlError as exc:
            log.warning("call %s: media update failed: %s", call.call_id, exc)
            failed = make_response(request, 500)
            failed.headers.add("Retry-After", "2")  # §14.2: try again later
            self.service.respond(failed, self._now())
            self.flush()
            return
        if call.ended:
            return
        call.leg_formats[leg] = formats
        assert offer.audio is not None
        direction = offer.audio.direction
        turned = call.directions.get(leg, "sendrecv") != direction  # held or resumed
        call.directions[leg] = direction
        self._accept_modify(call, request, leg, negotiated, offer)
        if turned and call.answered:
            self._relay_direction(call, to_a=leg == "b", direction=direction)
        self.flush()

    def _accept_modify(
        self,
        call: Call,
        request: Request,
        leg: str,
        negotiated: Negotiated | None,
        offer: SessionDescription | None,
    ) -> None:
        """200 to a re-INVITE or UPDATE: our answer (or, to a re-INVITE without
        one, our current session as the offer, §14.2), the session interval."""
        ok = make_response(request, 200)
        ok.headers.add("Contact", f"<{self.contact(request.via.transport)}>")
        ok.headers.add("Allow", ALLOW)
        ok.headers.add("Supported", SUPPORTED_TAGS)
        if negotiated is not None and not self._timed(request):
            negotiated = None
        if negotiated is not None:
            for name, value in negotiated.response_headers(request):
                ok.headers.add(name, value)
        body = b""
        if offer is not None:
            body = self._sdp(call, leg, answering=offer)
        elif request.method == "INVITE":
            body = call.last_sdp[leg]
            call.offered.add(leg)
        if body:
            ok.body = body
            ok.headers.add("Content-Type", SDP)
        now = self._now()
        self.service.respond(ok, now)
        if negotiated is not None:
            call.timers[leg].apply_negotiated(negotiated, now)
            self._arm(call)

    def _timed(self, message: Request | Response) -> bool:
        """Whether the phone that sent ``message`` gets a session timer on its leg:
        always, or with ``session_timers = "accept"`` only if it supports them (RFC 4028 §7.1)."""
        return self.session_timers == "always" or supports_timer(message)

    def _session_interval(self, request: Request, now: float) -> Negotiated | None:
        """The session interval for an INVITE or UPDATE we answer (RFC 4028 §9);
        None once a 422 has told the sender to ask for more."""
        negotiated = negotiate_uas(request, min_se=self.min_se, default=self.session_expires)
        if isinstance(negotiated, TooSmall):
            self.service.respond(negotiated.response(request), now)
            return None
        return negotiated

    def _relay_direction(self, call: Call, *, to_a: bool, direction: str) -> None:
        """Our own re-INVITE to the other phone, carrying the new direction."""
        leg = "a" if to_a else "b"
        body = self._sdp(call, leg, direction=direction)
        self._send_update(call, leg, "INVITE", body, refresh=False)

    def _send_update(
        self, call: Call, leg: str, method: str, body: bytes = b"", *, refresh: bool = True
    ) -> None:
        """A re-INVITE or UPDATE of ours on ``leg``, with our session-timer headers."""
        dialog, addr = self._leg(call, leg)
        if dialog is None or addr is None:
            return
        request = dialog.create_request(
            method,
            via=self.via(addr[0]),
            body=body,
            content_type=SDP if body else None,
            extra_headers=call.timers[leg].request_headers(),
        )
        key = self.service.send_request(request, addr, self._now())
        self._updates[key] = _Update(call, dialog, addr, leg, request, refresh)

    def _update_answered(self, update: _Update, response: Response, now: float) -> None:
        """The final answer to our re-INVITE or UPDATE (§14.1, RFC 4028 §7.2)."""
        call, request = update.call, update.request
        if 200 <= response.status < 300 and request.method == "INVITE":
            ack = update.dialog.create_ack(request.cseq.seq, via=self.via(update.addr[0]))
            self.service.send_request(ack, update.addr, now)
        if call.ended:
            return
        if response.status in (408, 481):
            self._update_failed(update, response.status)
            return
        timer = call.timers[update.leg]
        interval = timer.interval
        if timer.active or self._timed(response):
            timer.apply_response(response, now)
        if response.status == 422 and timer.interval > interval:
            self._refresh(call, update.leg)  # again, at the peer's Min-SE (RFC 4028 §7.3)
        elif response.status == 491:
            # Glare: the phone was changing the session too.  Try again after a random
            # wait: 2.1-4 s on the leg whose Call-ID we chose, else 0-2 s (§14.1).
            wait = random.uniform(2.1, 4.0) if update.leg == "b" else random.uniform(0.0, 2.0)
            asyncio.get_running_loop().call_later(wait, self._after_glare, update)
        elif 200 <= response.status < 300 and response.body:
            self._spawn(self._apply_answer(call, update.leg, response.body))
        self._arm(call)

    def _after_glare(self, update: _Update) -> None:
        """Send again what met a 491, brought up to date: a refresh, or the other
        phone's current direction (it may have changed meanwhile)."""
        call, leg = update.call, update.leg
        if call.ended:
            return
        if update.refresh:
            self._refresh(call, leg)
            return
        other = "b" if leg == "a" else "a"
        self._relay_direction(
            call, to_a=leg == "a", direction=call.directions.get(other, "sendrecv")
        )
        self.flush()

    async def _apply_answer(self, call: Call, leg: str, body: bytes) -> None:
        try:
            call.leg_formats[leg] = await self._apply_sdp(call, leg, body)
        except (SdpError, ControlError) as exc:
            log.warning("call %s: answer from leg %s unusable: %s", call.call_id, leg, exc)

    def _update_failed(self, update: _Update, status: int) -> None:
        """No answer, or 481: the phone has lost the dialog, so the call is over
        (RFC 5057 §5.2); after a refresh, that is the session timer's verdict (RFC 4028 §10)."""
        call = update.call
        if call.ended:
            return
        method = update.request.method
        log.warning(
            "call %s: %s on leg %s got %d, hanging up", call.call_id, method, update.leg, status
        )
        call.hung_up_by = "system"
        call.cause = "session_expired" if update.refresh else "failed"
        self._hang_up(call, "ab")

    def _refresh(self, call: Call, leg: str) -> None:
        """Refresh one leg's session (RFC 4028 §7.4): UPDATE without a body where the
        phone allows it, else a re-INVITE offering the unchanged session."""
        if call.allows_update.get(leg):
            self._send_update(call, leg, "UPDATE")
        else:
            self._send_update(call, leg, "INVITE", call.last_sdp[leg])
        self.flush()

    def _arm(self, call: Call) -> None:
        """Schedule the earliest session-timer deadline of the call's legs."""
        if call.timer_handle is not None:
            call.timer_handle.cancel()
            call.timer_handle = None
        deadlines = [at for timer in call.timers.values() if (at := timer.get_timer()) is not None]
        if deadlines and not call.ended:
            loop = asyncio.get_running_loop()
            call.timer_handle = loop.call_at(min(deadlines), self._session_due, call)

    def _session_due(self, call: Call) -> None:
        """A leg's refresh is due (we refresh it) or its session expired (RFC 4028 §10)."""
        call.timer_handle = None
        if call.ended:
            return
        now = self._now()
        for leg, timer in call.timers.items():
            event = timer.due(now)
            if isinstance(event, Expire):
                log.warning("call %s: session on leg %s expired, hanging up", call.call_id, leg)
                call.hung_up_by, call.cause = "system", "session_expired"
                self._hang_up(call, "ab")
                return
            if isinstance(event, Refresh):
                self._refresh(call, leg)
        self._arm(call)

    def _bye(self, request: Request, now: float) -> None:
        """BYE from either phone (§15.1.2): 200, and our BYE on the other leg.

        A BYE that crossed ours (both phones hung up at once) finds the call
        just ended: it gets 200 too, and no second BYE goes out.
        """
        call = self.calls.get(request.call_id) or self._by_b.get(request.call_id)
        if call is None or call.ended:
            recent = request.call_id in self._ended
            self.service.respond(make_response(request, 200 if recent else 481), now)
            return
        self.service.respond(make_response(request, 200), now)
        from_caller = request.call_id == call.call_id
        call.hung_up_by = call.hung_up_by or ("caller" if from_caller else "callee")
        self._hang_up(call, "b" if from_caller else "a")

    def _hang_up(self, call: Call, legs: str) -> None:
        """BYE on each of ``legs`` ("a", "b") that has a dialog (§15.1.1); the call ends."""
        if call.ended:
            return
        now = self._now()
        for leg in legs:
            dialog, addr = self._leg(call, leg)
            if dialog is not None and addr is not None:
                bye = dialog.create_request("BYE", via=self.via(addr[0]))
                self.service.send_request(bye, addr, now)
        self._end(call)
        self.flush()

    @staticmethod
    def _leg(call: Call, leg: str) -> tuple[Dialog | None, Address | None]:
        """Our dialog with one leg's phone, and where that phone is."""
        if leg == "a":
            return call.a_dialog, call.addr
        return call.b_dialog, (call.b_fork.addr if call.b_fork else None)

    def _cancel(self, request: Request, now: float) -> None:
        """CANCEL from the caller (§9.2): 200 to it, 487 to the INVITE, CANCEL the branches."""
        call = self.calls.get(request.call_id)
        if call is None or call.ended:
            self.service.respond(make_response(request, 481), now)
            return
        self.service.respond(make_response(request, 200), now)
        if call.answered:
            return  # too late: the 200 is on its way; the caller will BYE
        self._cancel_forks(call, now)
        self.service.respond(make_response(call.invite, 487, to_tag=call.a_tag), now)
        call.status, call.cause, call.hung_up_by = 487, "cancelled", "caller"
        self._end(call)

    # -- shutting down ---------------------------------------------------------

    def shutdown(self) -> None:
        """End every call as the server stops: BYE on answered calls, 503 (with
        Retry-After) to ringing ones; each is logged with cause ``shutdown``."""
        if self._pinger is not None:
            self._pinger.cancel()
        now = self._now()
        for call in list(self.calls.values()):
            if call.answered:
                call.hung_up_by, call.cause = "system", "shutdown"
                self._hang_up(call, "ab")
            else:
                self._cancel_forks(call, now)
                self._finish_a(call, 503, "Service Unavailable (shutting down)")
                call.cause = "shutdown"

    async def drained(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) for ended calls' media release and log records."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    # -- bookkeeping -----------------------------------------------------------

    def _end(self, call: Call) -> None:
        if call.ended:
            return
        call.ended = True
        if call.timer_handle is not None:
            call.timer_handle.cancel()
        now = self._now()
        while self._ended and next(iter(self._ended.values())) < now - ENDED_MEMORY:
            del self._ended[next(iter(self._ended))]
        self._ended[call.call_id] = self._ended[call.b_call_id] = now
        self.calls.pop(call.call_id, None)
        self._active[call.caller] -= 1
        if not self._active[call.caller]:
            del self._active[call.caller]
        self._by_b.pop(call.b_call_id, None)
        for key in call.forks:
            self._forks.pop(key, None)
        self._spawn(self._release(call, self._wall()))

    async def _release(self, call: Call, ended_at: float) -> None:
        """Free the media, then log the call with each leg's quality."""
        legs: dict[str, Any] = {}
        if call.local_a[1]:
            try:
                summary = await self.media.request("delete", {"call_id": call.call_id})
                legs = summary.get("legs") or {}
            except ControlError as exc:
                log.warning("call %s: media delete failed: %s", call.call_id, exc)
        self.record(self._call_record(call, ended_at, legs))

    def _call_record(
        self, call: Call, ended_at: float | None = None, media: dict[str, Any] | None = None
    ) -> CallRecord:
        """The call as the call log keeps it; without ``ended_at``, a call in progress
        (written as it starts and when it is answered, so a crash cannot lose it)."""
        media = media or {}
        answerer = (call.b_fork and call.b_fork.user) or call.callee
        peers: dict[str, tuple[str, LegRole, str]] = {
            "a": (call.caller, "caller", call.addr[0]),
            "b": (answerer, "callee", ""),
        }
        legs = []
        for leg, (peer, role, transport) in peers.items():
            edge = None
            if leg == "b" and call.b_fork is not None:
                transport, edge = call.b_fork.addr[0], call.b_fork.edge
            record = LegRecord(
                leg_id=leg,
                role=role,
                peer=peer,
                transport=transport.lower(),
                edge=edge,
                billable=call.inbound if leg == "a" else call.e164 is not None,
                started_at=call.started_at,
                answered_at=call.answered_at,
                ended_at=ended_at,
                sip_status=call.status,
            )
            legs.append(record.with_media(media[leg]) if leg in media else record)
        return CallRecord(
            call_id=call.call_id,
            direction="inbound" if call.inbound else "outbound" if call.e164 else "internal",
            caller=call.caller,
            callee_dialled=call.dialled,
            callee_e164=call.e164,
            user=answerer if call.inbound else call.caller,
            started_at=call.started_at,
            ringing_at=call.ringing_at,
            answered_at=call.answered_at,
            ended_at=ended_at,
            hangup_cause=call.cause or (None if ended_at is None else "normal"),
            sip_status=call.status,
            hung_up_by=call.hung_up_by,
            codec=call.formats[0].name if call.formats else None,
            legs=legs,
        )

    def _wall(self) -> float:
        return self._now() + self.wall_offset()

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call task failed", exc_info=task.exception())


def _user_of(uri: Uri, default: str = "anonymous") -> str:
    """The user part of a SIP URI (a number or a name), or ``default``."""
    return (uri.user_unescaped if isinstance(uri, SipUri) else None) or default


def _short(text: str) -> str:
    """A reason phrase of sensible length."""
    return text if len(text) <= 100 else text[:97] + "..."


def _address(source: str) -> Address:
    """``udp:host:port`` as stored in a binding → a transport address."""
    transport, rest = source.split(":", 1)
    host, _, port = rest.rpartition(":")
    return (transport.upper(), host.strip("[]"), int(port))


def contact_address(binding: Binding) -> Address:
    """Where to send requests for a registered contact.

    The Contact URI, unless the phone is behind NAT: a private Contact address
    other than the address the REGISTER came from (or a host name, which we do
    not resolve) means the contact is unreachable as written, so requests go to
    the registration's source, which the NAT keeps open (RFC 3581, RFC 5626 §5).
    """
    source = _address(binding.source)
    try:
        uri = parse_uri(binding.contact)
        if not isinstance(uri, SipUri):
            return source
        host = uri.host.strip("[]")
        ip = ipaddress.ip_address(host)
    except (SipParseError, ValueError):
        return source
    if host != source[1] and (ip.is_private and not ip.is_loopback):
        return source
    transport = uri.params.get("transport") or source[0]
    return (transport.upper(), host, uri.port or 5060)


def _retry(invite: Request, via: str, replace: list[tuple[str, str]]) -> Request:
    """``invite`` sent again after a challenge or a 422: a new branch, CSeq + 1,
    and the ``replace`` headers instead of their old values (RFC 3261 §8.1.3.5, §22.2)."""
    names = {name.lower() for name, _ in replace}
    headers = Headers()
    for name, value in invite.headers:
        lower = name.lower()
        if lower in names:
            continue
        if lower == "via":
            value = f"{via};branch={new_branch()};rport"
        elif lower == "cseq":
            value = f"{invite.cseq.seq + 1} INVITE"
        headers.add(name, value)
    for name, value in replace:
        headers.add(name, value)
    return Request("INVITE", invite.uri_text, headers, invite.body)


def _allows_update(message: Request | Response) -> bool:
    """UPDATE is among the methods the sender's Allow lists (RFC 3311 §5.1)."""
    return any(
        method.upper() == "UPDATE"
        for value in message.headers.get_all("Allow")
        for method in split_list(value)
    )
