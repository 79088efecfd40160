"""The call layer: calls made of legs, driven by SIP and by the call-control API.

A phone's INVITE becomes a call with an incoming leg; routing decides where
it goes and an outgoing leg dials there (users' phones or the trunk).  The
first 2xx answers the caller with our own SDP (RFC 3261 §13, media anchored:
each party sees only the engine's address).  Legs join and leave a running
call: the engine relays two legs, transcodes when their codecs differ and
mixes three or more.  A call ends when fewer than two parties are left and
nobody is being dialled.

A signed-in dialer page is a party too (:mod:`~voipcore.calls.browser`): its
leg has a page instead of a dialog, places and answers calls with the ``page_*``
methods, and rings alongside its user's phones (legs dialled together are
siblings: the first to answer wins, the call fails only when all have).

The flow lives in small parts: :mod:`~voipcore.calls.routing` decides where a
call goes, :mod:`~voipcore.calls.forking` dials, :mod:`~voipcore.calls.anchor`
is the only part that talks to the media engine,
:mod:`~voipcore.calls.dialogs` handles re-INVITE, UPDATE and session timers,
:mod:`~voipcore.calls.transfer` REFER, and :mod:`~voipcore.calls.records` the
call log.  Time and tasks come from a :class:`~voipcore.calls.signalling.Runtime`.
"""

from __future__ import annotations

import copy
import functools
import logging
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from media.control import ControlError, MediaControl
from voipcore.calls import transfer
from voipcore.calls.anchor import SUPPORTED, MediaAnchor, answer_formats, describe, offer_formats
from voipcore.calls.browser import (
    DEFAULT_BROWSER_CODECS,
    Pages,
    browser_formats,
    ended,
    peer_of,
    tell,
)
from voipcore.calls.dialogs import Dialogs
from voipcore.calls.forking import Dialler
from voipcore.calls.model import Branch, Call, CallListener, Leg, LegKind, LegState, Page
from voipcore.calls.records import call_record, cause_of
from voipcore.calls.routing import (
    Device,
    DialTrunk,
    Refuse,
    RingUsers,
    Route,
    Router,
    short,
    unreachable,
)
from voipcore.calls.signalling import (
    ALLOW,
    SDP,
    SUPPORTED_TAGS,
    Runtime,
    ServiceApi,
    Signalling,
    allows_update,
)
from voipcore.sdp import Format, SdpError, SessionDescription, negotiate, webrtc_offer
from voipcore.sip.dialog import Dialog, Negotiated, SessionTimer
from voipcore.sip.message import Request, Response, make_response
from voipcore.sip.transaction import Address, TransactionKey
from voipcore.sip.uri import SipUri, Uri
from voipcore.store.calls import CallMode, CallRecord, Direction, HungUpBy, LegRole
from voipcore.trunks.twilio import TwilioTrunk

log = logging.getLogger(__name__)

#: Seconds an ended leg's Call-ID is remembered: a BYE crossing ours gets 200,
#: not 481 (64*T1, the longest a non-INVITE transaction lives, RFC 3261 §17.1.2.2).
ENDED_MEMORY = 32.0
#: Our 2xx to an INVITE is resent from T1, doubling to T2, until the ACK (§13.3.1.4).
_OK_FIRST, _OK_MAX, _OK_GIVE_UP = 0.5, 4.0, 32.0
#: Media engine events the call layer acts on.
_CALL_EVENTS = frozenset(
    {"dtmf", "quality_warning", "quality_cleared", "media_timeout", "call_ended", "webrtc"}
)
#: Seconds one queued digit takes on the wire (100 ms tone, gap, end packets), and a
#: ``,`` pause in digits dialled after answer.
_DIGIT_SPAN, _PAUSE = 0.25, 0.5
#: Reason phrases for a caller still waiting when we end its call.
_PHRASES = {"shutdown": "shutting down"}


class CallError(Exception):
    """A call-control request that cannot be carried out: ``status`` says how, as SIP would."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True, slots=True)
class CallSettings:
    """``[sip]`` settings of calls."""

    ring_timeout: float = 60.0
    """How long a leg may ring before it fails with 480 (no answer)."""
    max_calls_per_user: int = 4
    """Calls one user may start at once: a stolen password cannot fan out."""
    session_expires: int = 1800
    """RFC 4028: the session interval we ask of every leg."""
    min_se: int = 90
    session_timers: str = "always"
    browser_codecs: tuple[str, ...] = DEFAULT_BROWSER_CODECS
    """Codecs for browser legs, preferred first (``[media] browser_codecs``)."""
    passthrough_timeout: float = 15.0
    """How long a pass-through call waits for the rep to press 1 (calls.passthrough)."""


class CallManager:
    """Every call in progress; the SIP service's call handler."""

    def __init__(
        self,
        service: ServiceApi,
        media: MediaControl,
        router: Router,
        runtime: Runtime,
        *,
        via: Callable[[str], str],
        contact: Callable[[str], str],
        record: Callable[[CallRecord], None] = lambda call: None,
        trunk: TwilioTrunk | None = None,
        settings: CallSettings = CallSettings(),
        pages: Pages | None = None,
    ) -> None:
        self.router = router
        self.runtime = runtime
        self.record = record
        self.trunk = trunk
        self.settings = settings
        self.sig = Signalling(
            service, runtime, domain=router.registrar.domain, via=via, contact=contact
        )
        self.anchor = MediaAnchor(media)
        self.dialler = Dialler(
            self.sig, runtime, self, trunk=trunk, ring_timeout=settings.ring_timeout
        )
        self.dialogs = Dialogs(
            self.sig,
            runtime,
            self.anchor,
            self,
            session_expires=settings.session_expires,
            min_se=settings.min_se,
            session_timers=settings.session_timers,
        )
        self.calls: dict[str, Call] = {}
        #: INVITEs claiming to come from the trunk that did not (403).
        self.origination_refused = 0
        #: Live legs by the Call-ID of their dialog.
        self._legs: dict[str, Leg] = {}
        #: Call-IDs of legs that ended lately, with when (crossing BYEs).
        self._ended: dict[str, float] = {}
        #: Calls each user has started and not ended (the per-user limit).
        self._active: Counter[str] = Counter()
        #: Signed-in dialer pages: their users ring in the browser too.
        self.pages = pages if pages is not None else Pages()
        #: Told of each party that joins a call with its media connected (calls.recording).
        self.joined_hooks: list[Callable[[Leg], None]] = []
        media.subscribe(self._media_event)

    # -- from the SIP service ---------------------------------------------------

    def on_request(self, request: Request, addr: Address, now: float) -> None:
        """INVITE, UPDATE, BYE, CANCEL or REFER from a party (§13, §14, §15, §9)."""
        method = request.method
        if method == "INVITE" and request.to.tag is None:
            self._new_invite(request, addr, now)
            return
        leg = self._legs.get(request.call_id)
        if method == "CANCEL":
            self._cancel(leg, request)
        elif method == "BYE":
            self._bye(leg, request)
        elif leg is None or not leg.live:
            self.sig.respond(make_response(request, 481))
        elif method in ("INVITE", "UPDATE"):
            self.dialogs.modify(leg, request)
        elif method == "REFER":
            self._refer(leg, request)

    def has_dialog(self, call_id: str) -> bool:
        """Whether ``call_id`` is a live leg's dialog."""
        return call_id in self._legs

    def on_ack(self, ack: Request) -> None:
        """An ACK for a 2xx of ours (§13.3.1.4)."""
        leg = self._legs.get(ack.call_id)
        if leg is not None:
            self.dialogs.on_ack(leg, ack)

    def on_response(self, response: Response, key: TransactionKey, now: float) -> None:
        if self.dialogs.owns(key):
            self.dialogs.on_response(response, key)
        elif self.dialler.owns(key):
            self.dialler.on_response(response, key)

    def on_failure(self, key: TransactionKey, status: int, now: float) -> None:
        """No response (Timer B: 408; unsendable: 503, §8.1.3.1): as that response."""
        if self.dialogs.owns(key):
            self.dialogs.on_failure(key, status)
        else:
            self.dialler.on_failure(key, status)

    def _media_event(self, event: dict[str, Any]) -> None:
        """DTMF and quality for subscribers; dead legs (no RTP for the media timeout, or
        their media worker died) are hung up.  The once-a-second ``quality`` samples of
        every stream are not for us: they go before any lookup."""
        name = event.get("event")
        if name not in _CALL_EVENTS:
            return
        call = self.calls.get(str(event.get("call_id")))
        if call is None or call.ended:
            return
        leg = call.leg(str(event.get("leg")))
        if name == "dtmf" and leg is not None:
            call.emit("dtmf", leg, digit=event.get("digit"), duration=event.get("duration"))
            for other in call.others(leg):
                if other.kind == "browser" and other.answered:
                    tell(other, {"type": "dtmf", "digit": event.get("digit")})
        elif name in ("quality_warning", "quality_cleared") and leg is not None:
            warning = name == "quality_warning"
            if warning:
                call.emit(
                    "quality_warning", leg, metric=event.get("name"), value=event.get("value")
                )
            for browser in call.live_legs():
                if browser.kind == "browser" and browser.answered:
                    tell(
                        browser,
                        {
                            "type": "quality",
                            "leg": "yours" if browser is leg else "theirs",
                            "metric": event.get("name"),
                            "value": event.get("value"),
                            "warning": warning,
                        },
                    )
        elif name == "webrtc" and leg is not None and event.get("state") == "failed":
            log.warning("call %s: browser leg %s: %s", call.id, leg.id, event.get("reason"))
            self.leg_lost(leg, "failed")
        elif name == "media_timeout" and leg is not None and leg.answered:
            log.warning("call %s: no media on leg %s, hanging it up", call.id, leg.id)
            self.leg_lost(leg, "media_timeout")
        elif name == "call_ended" and call.answered_at is not None:
            log.warning("call %s: its media worker is gone, hanging up", call.id)
            self.hang_up(call, "media_timeout")

    # -- a phone's INVITE ----------------------------------------------------------

    def _new_invite(self, request: Request, addr: Address, now: float) -> None:
        if request.call_id in self._legs:
            return  # a retransmission the transaction layer already absorbed
        if request.max_forwards == 0:
            self.sig.respond(make_response(request, 483))  # §16.3 loop guard
            return
        trunk = self.trunk
        if trunk is not None and (
            trunk.from_twilio(addr[1]) or "X-Twilio-AccountSid" in request.headers
        ):
            self._origination(request, addr)
            return
        caller = self.router.registrar.authorize(request, self.runtime.wall(), proxy=True)
        if isinstance(caller, Response):
            self.sig.respond(caller)
            return
        negotiated = self.dialogs.session_interval(request)
        if negotiated is None:
            return
        dialled = _user_of(request.uri, "")
        if self._active[caller] >= self.settings.max_calls_per_user:
            reason = f"Busy Here (limit of {self.settings.max_calls_per_user} calls per user)"
            self._refuse(request, caller, dialled, 486, reason, "busy")
            return
        offer: SessionDescription | None = None
        formats = list(SUPPORTED)  # a delayed offer: we offer all we have
        if request.body:
            try:
                offer = SessionDescription.parse(request.body)
                audio = offer.audio
                if audio is None:
                    raise SdpError("no audio stream offered")
            except SdpError as exc:
                self._refuse(request, caller, dialled, 488, short(f"Not Acceptable Here ({exc})"))
                return
            formats = negotiate(audio, SUPPORTED)
        if not formats:
            self._refuse(request, caller, dialled, 488, "Not Acceptable Here (codecs)")
            return
        route = self.router.route(dialled, self.runtime.wall(), caller=caller)
        if isinstance(route, Refuse):
            direction: Direction = "outbound" if route.outbound else "internal"
            refusal = (route.status, route.reason, route.cause)
            self._refuse(request, caller, dialled, *refusal, direction)
            return
        call = Call(request.call_id, caller, _route_name(route), dialled, caller)
        self._begin(call, request, addr, "phone", offer, formats, negotiated)
        self._dial(call, route, role="callee", partner=call.legs[0])

    def _origination(self, request: Request, addr: Address) -> None:
        """An inbound call from the trunk: ring the user its DID belongs to."""
        assert self.trunk is not None
        did, caller = _user_of(request.uri, ""), _user_of(request.from_.uri)
        refusal = self.trunk.origination_refusal(request, addr[1])
        if refusal is not None:
            self.origination_refused += 1
            log.warning("refused inbound INVITE from %s: %s", addr[1], refusal)
            reason = short(f"Forbidden ({refusal})")
            self._refuse(request, caller, did, 403, reason, direction="inbound")
            return
        negotiated = self.dialogs.session_interval(request)
        if negotiated is None:
            return
        owner = self.trunk.config.dids.get(did)
        route: Route = Refuse(404, f"Not Found (no user for {did})", "failed")
        if owner is not None and self.router.target(owner) is not None:
            route = self.router.route(owner, self.runtime.wall())
        try:
            offer = SessionDescription.parse(request.body)
            audio = offer.audio
            formats = negotiate(audio, SUPPORTED) if audio is not None else []
        except SdpError:
            formats = []
        if not isinstance(route, Refuse) and not formats:
            route = Refuse(488, "Not Acceptable Here (codecs)", "failed")
        if isinstance(route, Refuse):
            self._refuse(request, caller, did, route.status, route.reason, route.cause, "inbound")
            return
        call = Call(request.call_id, caller, _route_name(route), did, owner or did)
        call.direction = "inbound"
        self._begin(call, request, addr, "trunk", offer, formats, negotiated)
        self._dial(call, route, role="callee", partner=call.legs[0])

    def _begin(
        self,
        call: Call,
        request: Request,
        addr: Address,
        kind: LegKind,
        offer: SessionDescription | None,
        formats: list[Format],
        negotiated: Negotiated,
    ) -> None:
        """Start ``call`` with the party whose INVITE it is as its incoming leg."""
        wall = self.runtime.wall()
        call.started_at = wall
        leg = Leg(
            call,
            call.next_leg_id(),
            kind,
            "caller",
            call.caller,
            request.call_id,
            incoming=True,
            invite=request,
            addr=addr,
            state=LegState.OFFERED,
            formats=formats,
            offer=offer,
            remote_sdp=request.body if offer is not None else b"",
            timer=self._timer(),
            negotiated=negotiated,
            allows_update=allows_update(request),
            billable=kind == "trunk",
            started_at=wall,
        )
        call.legs.append(leg)
        self.calls[call.id] = call
        self._legs[leg.sip_call_id] = leg
        self._active[call.caller] += 1
        self.record(call_record(call))
        self.sig.respond(make_response(request, 100))

    def _refuse(
        self,
        request: Request,
        caller: str,
        dialled: str,
        status: int,
        reason: str | None,
        cause: str | None = None,
        direction: Direction = "internal",
    ) -> None:
        """Turn an INVITE away, and log the attempt."""
        self.sig.respond(make_response(request, status, reason))
        self._log_refused(request.call_id, caller, dialled, status, cause, direction)

    def _log_refused(
        self,
        call_id: str,
        caller: str,
        dialled: str,
        status: int,
        cause: str | None,
        direction: Direction,
        *,
        person_id: int | None = None,
    ) -> None:
        wall = self.runtime.wall()
        self.record(
            CallRecord(
                call_id=call_id,
                direction=direction,
                caller=caller,
                callee_dialled=dialled,
                user=caller,
                started_at=wall,
                ended_at=wall,
                hangup_cause=cause or cause_of(status),
                sip_status=status,
                hung_up_by="system",
                person_id=person_id,
            )
        )

    def _timer(self) -> SessionTimer:
        return SessionTimer(interval=self.settings.session_expires, min_se=self.settings.min_se)

    # -- dialling a leg ------------------------------------------------------------

    def _dial(
        self,
        call: Call,
        route: RingUsers | DialTrunk,
        *,
        role: LegRole,
        partner: Leg | None = None,
        then: str | None = None,
        replaces: Leg | None = None,
        like: Leg | None = None,
        from_uri: str | None = None,
        digits: str = "",
    ) -> Leg:
        """Add outgoing legs to ``call`` for ``route``: one dialling its phones or the
        trunk, one per signed-in page of its users; the first to answer wins.  They are
        offered the codecs of ``like`` (by default their partner's) first, and whichever
        answers gets ``digits`` (RFC 4733).  Returns the first of them."""
        legs = []
        if isinstance(route, DialTrunk) or route.contacts:
            legs.append(
                self._dial_phone(call, route, role, partner, then, replaces, like, from_uri)
            )
        if isinstance(route, RingUsers):
            for user in route.browsers:
                legs.append(self._ring_pages(call, user, role, partner, then, replaces))
        for leg in legs:
            leg.siblings, leg.dtmf_after_answer = legs, digits
        return legs[0]

    def _dial_phone(
        self,
        call: Call,
        route: RingUsers | DialTrunk,
        role: LegRole,
        partner: Leg | None,
        then: str | None,
        replaces: Leg | None,
        like: Leg | None,
        from_uri: str | None,
    ) -> Leg:
        trunk = isinstance(route, DialTrunk)
        # The trunk gets Twilio's order whatever the phone prefers (the anchor transcodes).
        formats = list(SUPPORTED) if trunk else offer_formats(_chosen(call, like or partner))
        leg = Leg(
            call,
            call.next_leg_id(),
            "trunk" if trunk else "phone",
            role,
            route.e164 if isinstance(route, DialTrunk) else route.name,
            f"b-{secrets.token_hex(10)}",
            incoming=False,
            formats=formats,
            timer=self._timer(),
            partner=partner,
            then=then,
            replaces=replaces,
            billable=trunk,
            started_at=self.runtime.wall(),
        )
        if isinstance(route, DialTrunk):
            leg.e164 = route.e164
            if call.e164 is None and call.direction == "internal":
                call.e164, call.direction = route.e164, "outbound"
        call.legs.append(leg)
        self._legs[leg.sip_call_id] = leg
        hops = partner.invite.max_forwards if partner and partner.invite else None
        max_forwards = 69 if hops is None else hops - 1
        self.runtime.spawn(self._place(leg, route, from_uri, max_forwards))
        return leg

    def _ring_pages(
        self,
        call: Call,
        user: str,
        role: LegRole,
        partner: Leg | None,
        then: str | None,
        replaces: Leg | None,
    ) -> Leg:
        """An outgoing browser leg: every signed-in page of ``user`` rings until one
        answers with its offer (:meth:`page_answer`) or the ring timeout."""
        leg = Leg(
            call,
            call.next_leg_id(),
            "browser",
            role,
            user,
            f"w-{secrets.token_hex(10)}",
            incoming=False,
            partner=partner,
            then=then,
            replaces=replaces,
            # Not the page placing the call (a rep calling their own extension).
            pages=[p for p in self.pages.of(user) if partner is None or p is not partner.page],
            started_at=self.runtime.wall(),
        )
        call.legs.append(leg)
        shown = _shown(leg)
        tell(
            leg, {"type": "incoming", "from": {"number": shown, "name": self._display_name(shown)}}
        )
        self._ringing(leg)
        if partner is not None and partner.state is LegState.OFFERED and not partner.ringing:
            partner.ringing = True
            self._tell_ringing(partner)
        self.dialler.ring_until_timeout(leg)
        return leg

    def _display_name(self, name: str) -> str | None:
        user = self.router.users().get(name)
        return user.display_name if user is not None else None

    async def _place(
        self, leg: Leg, route: RingUsers | DialTrunk, from_uri: str | None, max_forwards: int
    ) -> None:
        """Anchor the leg's media (and its partner's), then dial."""
        call, partner = leg.call, leg.partner
        try:
            if partner is not None and not partner.local[1]:
                await self.anchor.open(partner)
            await self.anchor.open(leg)
        except ControlError as exc:
            log.error("media for call %s failed: %s", call.id, exc)
            self.leg_failed(leg, 503, "Service Unavailable (media)")
            return
        if not leg.live:
            return
        describe(leg)  # our offer, kept as the leg's current session
        if isinstance(route, RingUsers):
            domain = self.sig.domain
            self.dialler.ring(
                leg,
                route.contacts,
                from_uri=from_uri or f"sip:{call.caller}@{domain}",
                max_forwards=max_forwards,
            )
            return
        user = self.router.users().get(call.user)
        assert self.trunk is not None
        caller_id = (user and user.caller_id) or self.trunk.config.caller_id or call.caller
        await self.dialler.dial_trunk(leg, caller_id=caller_id, max_forwards=max_forwards)

    # -- what dialling comes to (DialObserver) ----------------------------------------

    def leg_progress(self, leg: Leg, response: Response) -> None:
        """Ringing, or early media: the caller hears the callee's network (§13.2.2.1)."""
        partner = leg.partner
        waiting = partner is not None and partner.state is LegState.OFFERED
        if response.body and (partner is None or partner.offer is not None or not waiting):
            self.runtime.spawn(self._early_media(leg, response))
        elif not leg.ringing:
            self._ringing(leg)
            if partner is not None and waiting:
                self._tell_ringing(partner)

    def _tell_ringing(self, caller: Leg) -> None:
        """The waiting caller hears that the callee rings: 180, or the page is told."""
        if caller.kind == "browser":
            tell(caller, {"type": "ringing"})
        else:
            self.sig.respond(self.sig.reply(caller, 180))

    def _ringing(self, leg: Leg) -> None:
        leg.ringing = True
        leg.call.ringing_at = leg.call.ringing_at or self.runtime.wall()
        if leg.replaces is not None:
            transfer.notify(self.sig, leg.replaces, 180)
        leg.call.emit("ringing", leg)

    async def _early_media(self, leg: Leg, response: Response) -> None:
        """183 with SDP: the caller gets a 183 with our answer; the 2xx repeats the same
        answer (RFC 3261 §13.3.1.4 with RFC 3264: one offer, one answer)."""
        try:
            await self._connect(leg, response)
        except (SdpError, ControlError) as exc:
            log.info("call %s: early media unusable: %s", leg.call.id, exc)
            return
        partner = leg.partner
        if leg.state is not LegState.DIALLING:
            return
        if not leg.ringing:
            self._ringing(leg)
        leg.early_sdp = True
        if partner is None or partner.state is not LegState.OFFERED:
            return
        if partner.kind == "browser":
            # The page has our answer already: early media just flows.
            self._tell_ringing(partner)
            return
        partner.early_sdp = True
        progress = self.sig.reply(partner, 183)
        progress.body = partner.last_sdp
        progress.headers.add("Content-Type", SDP)
        self.sig.respond(progress)
        self.runtime.flush()

    async def _connect(self, leg: Leg, response: Response) -> None:
        """Point ``leg``'s media at its party's answer (from a 183 or the 2xx), and
        settle our SDP for its waiting partner once."""
        formats = await self.anchor.apply(leg, response.body)
        await self._describe_partner(leg, formats)

    async def _describe_partner(self, leg: Leg, formats: list[Format]) -> None:
        """Our SDP for ``leg``'s waiting partner, once, now that ``leg`` settled on
        ``formats``: an answer to its offer, the callee's codec first."""
        partner = leg.partner
        if partner is None or partner.last_sdp:
            return
        if partner.offer is None:
            # Delayed offer: the caller gets an offer, the callee's codec first; its
            # answer comes in the ACK (§13.2.1).
            partner.formats = offer_formats(formats)
            describe(partner)
            return
        ordered = answer_formats(partner.formats, formats)
        if ordered != partner.formats:
            partner.formats = ordered
            await self.anchor.set_codecs(partner)
        describe(partner, answering=partner.offer)

    def leg_answered(self, leg: Leg, branch: Branch, response: Response) -> None:
        """A branch answered: ACK it, connect its media, and if a caller waits, answer
        it (§13.2.2.4); a second 2xx (another branch, or too late) is hung up."""
        dialog = Dialog.from_uac(branch.invite, response)
        ack = dialog.create_ack(branch.invite.cseq.seq, via=self.sig.via(branch.addr[0]))
        self.sig.send(ack, branch.addr)
        call = leg.call
        if leg.state is not LegState.DIALLING or call.ended:
            built = dialog.create_request("BYE", via=self.sig.via(branch.addr[0]))
            self.sig.send(built, branch.addr)
            self.runtime.flush()
            branch.final = response.status
            self.dialler.settled(leg)
            return
        wall = self.runtime.wall()
        leg.state, leg.dialog, leg.winner, leg.addr = LegState.ANSWERED, dialog, branch, branch.addr
        leg.answered_at, leg.status = wall, 200
        leg.allows_update = allows_update(response)
        self.dialler.cancel(leg, keep=branch)
        self._won(leg, branch.user)
        self.runtime.spawn(self._join(leg, response))

    def _won(self, leg: Leg, user: str | None) -> None:
        """``leg`` answered first: its ring timeout is off, its siblings stop ringing, the
        call is answered."""
        if leg.timer_handle is not None:
            leg.timer_handle.cancel()
            leg.timer_handle = None
        call = leg.call
        for sibling in leg.siblings:
            if sibling is not leg and sibling.state is LegState.DIALLING:
                self.dialler.cancel(sibling)
                # Its branches stay known: a 200 crossing our CANCEL is ACKed and BYEd.
                self._close_leg(sibling, 487, cause="answered_elsewhere", forget=False)
        if call.answered_at is None:
            call.answered_at, call.status, call.cause = leg.answered_at, 200, "normal"
            if call.direction == "inbound":
                call.user = user or leg.peer
        self.record(call_record(call))

    async def _join(self, leg: Leg, response: Response) -> None:
        call, partner = leg.call, leg.partner
        try:
            await self._connect(leg, response)
        except (SdpError, ControlError) as exc:
            log.warning("call %s: answer on leg %s unusable: %s", call.id, leg.id, exc)
            if partner is not None and partner.state is LegState.OFFERED:
                self.sig.bye(leg)
                self._fail_incoming(partner, 488, "Not Acceptable Here (callee's answer)")
            else:
                self.leg_lost(leg, "failed")
            return
        if not leg.live:
            return
        self.dialogs.start_timer(leg, response)
        self._joined(leg)

    def _joined(self, leg: Leg) -> None:
        """``leg``'s party is in the call with its media connected: a waiting caller is
        answered, a transfer completes, an originated call dials on, digits go out."""
        call, partner = leg.call, leg.partner
        if partner is not None and partner.state is LegState.OFFERED:
            self._answer(partner)
        call.emit("answered", leg)
        for hook in self.joined_hooks:
            hook(leg)
        if leg.replaces is not None:
            self._transferred(leg.replaces, leg)
        if leg.then is not None:
            self._dial_into(call, leg.then, role="callee", digits=call.extension or "")
        if leg.dtmf_after_answer:
            self._dial_digits(leg, leg.dtmf_after_answer)
        self.runtime.flush()

    def _dial_digits(self, leg: Leg, digits: str) -> None:
        """Send ``digits`` to the party as RFC 4733 events, ``,`` a 500 ms pause (an
        extension behind a company's number)."""
        at = self.runtime.now()
        for chunk in digits.split(","):
            if chunk:
                self.runtime.call_at(at, functools.partial(self._spawn_digits, leg, chunk))
            at += len(chunk) * _DIGIT_SPAN + _PAUSE

    def _spawn_digits(self, leg: Leg, digits: str) -> None:
        self.runtime.spawn(self._send_digits(leg, digits))

    async def _send_digits(self, leg: Leg, digits: str) -> None:
        if not leg.live:
            return
        try:
            await self.anchor.send_dtmf(leg, digits, 0.1)
        except ControlError as exc:
            log.warning("call %s: digits for leg %s not sent: %s", leg.call.id, leg.id, exc)

    def _answer(self, leg: Leg) -> None:
        """200 to an incoming leg's INVITE, with our SDP and session interval (§13.3.1.4);
        a page placing the call is told it was answered."""
        if leg.kind == "browser":
            leg.state, leg.status = LegState.ANSWERED, 200
            leg.answered_at = self.runtime.wall()
            tell(leg, {"type": "answered", "peer": peer_of(leg, leg.call.live_legs())})
            return
        assert leg.invite is not None
        ok = self.sig.reply(leg, 200)
        ok.headers.add("Allow", ALLOW)
        ok.headers.add("Supported", SUPPORTED_TAGS)
        if leg.negotiated is not None and self.dialogs.timed(leg.invite):
            for name, value in leg.negotiated.response_headers(leg.invite):
                ok.headers.add(name, value)
        ok.body = leg.last_sdp
        ok.headers.add("Content-Type", SDP)
        leg.dialog = Dialog.from_uas(leg.invite, ok)
        leg.state, leg.status = LegState.ANSWERED, 200
        leg.answered_at = self.runtime.wall()
        self.sig.respond(ok)
        self.dialogs.start_timer(leg, leg.invite)
        self._resend_ok(leg, ok, _OK_FIRST, 0.0)

    def _resend_ok(self, leg: Leg, ok: Response, interval: float, waited: float) -> None:
        """Resend our 2xx until the ACK comes; no ACK in 32 s ends the leg (§13.3.1.4)."""
        if leg.acked or not leg.live:
            return
        if waited >= _OK_GIVE_UP:
            log.warning("call %s: no ACK for our 200 in 32 s, hanging up", leg.call.id)
            self.leg_lost(leg, "failed")
            return
        if waited:
            self.sig.respond(ok)
            self.runtime.flush()

        wait = min(interval, _OK_GIVE_UP - waited)  # give up at 64*T1 sharp

        def again() -> None:
            self._resend_ok(leg, ok, min(interval * 2, _OK_MAX), waited + wait)

        self.runtime.call_at(self.runtime.now() + wait, again)

    def leg_failed(self, leg: Leg, status: int, reason: str | None) -> None:
        """No branch answered: a waiting caller gets the final status; a leg dialled
        into a running call just leaves it."""
        if not leg.live:
            return
        partner = leg.partner
        self._close_leg(leg, status)
        leg.call.emit("leg_failed", leg, status=status)
        if any(sibling.live for sibling in leg.siblings):
            return  # the party's other phones or pages still ring
        if leg.call.answered_at is None:
            leg.call.status = status
        if leg.replaces is not None:
            transfer.notify(self.sig, leg.replaces, status, reason)
        if partner is not None and partner.state is LegState.OFFERED:
            self._fail_incoming(partner, status, reason)
        else:
            self._settle(leg.call, leg, cause=cause_of(status), by="system")

    def _fail_incoming(self, leg: Leg, status: int, reason: str | None) -> None:
        """A final non-2xx to an incoming leg's INVITE, and the call is over."""
        call = leg.call
        call.status, call.cause, call.hung_up_by = status, cause_of(status), "system"
        self._final(leg, status, reason)
        self._end(call)
        self.runtime.flush()

    def _final(self, leg: Leg, status: int, reason: str | None) -> None:
        """Our final non-2xx to an incoming leg's INVITE; the leg is over."""
        if leg.invite is not None:
            response = make_response(leg.invite, status, reason, to_tag=leg.tag)
            if status == 503:
                response.headers.add("Retry-After", "5")  # our trouble is passing (§21.5.4)
            self.sig.respond(response)
        self._close_leg(leg, status)

    # -- legs leaving ------------------------------------------------------------------

    def _bye(self, leg: Leg | None, request: Request) -> None:
        """BYE from a party (§15.1.2): 200, and it leaves the call.

        A BYE that crossed ours (both hung up at once) finds its leg just ended:
        it gets 200 too, and nothing more happens.
        """
        if leg is None or not leg.live:
            recent = request.call_id in self._ended
            self.sig.respond(make_response(request, 200 if recent else 481))
            return
        self.sig.respond(make_response(request, 200))
        by: HungUpBy = "caller" if leg.role == "caller" else "callee"
        self._leave(leg, bye=False, cause="normal", by=by)

    def _cancel(self, leg: Leg | None, request: Request) -> None:
        """CANCEL from the caller (§9.2): 200 to it, 487 to the INVITE, and every leg
        dialled for it is cancelled."""
        if leg is None or not leg.incoming or leg.call.ended:
            self.sig.respond(make_response(request, 481))
            return
        self.sig.respond(make_response(request, 200))
        if leg.state is LegState.OFFERED:  # else too late: the 200 is out; the caller will BYE
            self._abandon(leg)

    def _abandon(self, leg: Leg) -> None:
        """The caller gave up before an answer: every leg dialled for it is cancelled."""
        call = leg.call
        for other in call.others(leg):
            self.dialler.cancel(other)
        call.status, call.cause, call.hung_up_by = 487, "cancelled", "caller"
        self._final(leg, 487, None)
        self._end(call)

    def leg_lost(self, leg: Leg, cause: str) -> None:
        """The leg's dialog or media is gone: BYE it, and it leaves the call."""
        if leg.live:
            self._leave(leg, bye=True, cause=cause, by="system")

    def _leave(self, leg: Leg, *, bye: bool, cause: str, by: HungUpBy) -> None:
        """``leg`` leaves its call; the call ends if that leaves fewer than two parties."""
        if bye:
            self.sig.bye(leg)
        if leg.state is LegState.DIALLING:
            self.dialler.cancel(leg)
        self._close_leg(leg, leg.status, cause=cause)
        leg.call.emit("leg_left", leg, cause=cause)
        self._settle(leg.call, leg, cause=cause, by=by)
        self.runtime.flush()

    def _close_leg(
        self, leg: Leg, status: int | None, *, cause: str | None = None, forget: bool = True
    ) -> None:
        """Mark ``leg`` ended (its stream is released with the call, or now if it goes on);
        a page is told why (``cause``, else the call's)."""
        if leg.kind == "browser" and leg.live:
            tell(leg, ended(leg, status, cause or leg.call.cause))
        leg.state, leg.status, leg.ended_at = LegState.ENDED, status, self.runtime.wall()
        if leg.timer_handle is not None:
            leg.timer_handle.cancel()
            leg.timer_handle = None
        if forget:
            self.dialler.forget(leg)
        self._forget(leg)

    def _settle(self, call: Call, left: Leg, *, cause: str, by: HungUpBy) -> None:
        """After ``left`` left: end the call if fewer than two parties remain and
        nobody is being dialled, or if everyone in the answered call has left (the
        legs still dialled are cancelled, §9.1: the rep who clicked to call hung up
        while the number rang); else take its stream out of the mix."""
        if call.ended:
            return
        live = call.live_legs()
        deserted = call.answered_at is not None and all(
            leg.state is LegState.DIALLING for leg in live
        )
        waiting = any(leg.state is not LegState.ANSWERED for leg in live)
        if not deserted and (waiting or len(live) >= 2):
            if left.local[1]:
                self.runtime.spawn(self._remove_stream(left))
            return
        call.cause = call.cause if call.cause not in (None, "normal") else cause
        call.hung_up_by = call.hung_up_by or by
        # The ones left are hung up by the one who went: a page hears it as such.
        remote = "remote_hangup" if call.cause == "normal" else None
        for leg in live:
            if leg.state is LegState.DIALLING:
                self.dialler.cancel(leg)
                self._close_leg(leg, 487, cause="cancelled")
            else:
                self.sig.bye(leg)
                self._close_leg(leg, leg.status, cause=remote)
        self._end(call)
        self.runtime.flush()

    async def _remove_stream(self, leg: Leg) -> None:
        try:
            await self.anchor.remove(leg)
        except ControlError as exc:
            log.warning("call %s: removing leg %s failed: %s", leg.call.id, leg.id, exc)

    def hang_up(self, call: Call, cause: str = "normal", by: HungUpBy = "system") -> None:
        """End ``call`` from our side (or for ``by``): BYE to parties in it, CANCEL to
        legs being dialled, 503 to a caller still waiting (with Retry-After)."""
        if call.ended:
            return
        for leg in call.live_legs():
            if leg.state is LegState.DIALLING:
                self.dialler.cancel(leg)
            elif leg.answered:
                self.sig.bye(leg)
            else:
                call.status = 503
                self._final(leg, 503, f"Service Unavailable ({_PHRASES.get(cause, cause)})")
        call.cause, call.hung_up_by = cause, by
        self._end(call)
        self.runtime.flush()

    def shutdown(self) -> None:
        """End every call as the server stops, each logged with cause ``shutdown``."""
        for call in list(self.calls.values()):
            self.hang_up(call, "shutdown")

    # -- transfer (RFC 3515, RFC 3891) ----------------------------------------------------

    def _refer(self, leg: Leg, request: Request) -> None:
        """A party asks to transfer its call: blind to a target, or attended (Replaces)."""
        try:
            referral = transfer.parse_refer(request)
            if not leg.answered:
                raise transfer.ReferError(403, "the call is not answered")
            transferee = self._sole_other(leg)
            if referral.replaces is not None:
                replaced, moving = self._replaced(leg, referral.replaces)
            else:
                route = self.router.route(referral.target, self.runtime.wall(), caller=leg.peer)
        except transfer.ReferError as exc:
            self.sig.respond(exc.response(request))
            return
        assert leg.addr is not None
        self.sig.respond(transfer.accepted(request, referral, self.sig.contact(leg.addr[0])))
        leg.refer_subscribed = referral.subscribe
        transfer.notify(self.sig, leg, 100)
        if referral.replaces is not None:
            self.runtime.spawn(self._join_calls(leg, replaced, moving))
        elif isinstance(route, Refuse):
            transfer.notify(self.sig, leg, route.status, route.reason)
        else:
            shown = f"sip:{transferee.peer}@{self.sig.domain}"
            call = leg.call
            self._dial(call, route, role="callee", replaces=leg, like=transferee, from_uri=shown)
        self.runtime.flush()

    def _sole_other(self, leg: Leg) -> Leg:
        """The one other party of a two-party call (whom a transfer moves)."""
        others = [other for other in leg.call.others(leg) if other.answered]
        if len(others) != 1 or len(leg.call.live_legs()) != 2:
            raise transfer.ReferError(403, "only a two-party call can be transferred")
        return others[0]

    def _replaced(self, leg: Leg, replaces: transfer.Replaces) -> tuple[Leg, Leg]:
        """The transferor's leg in its other call, which Replaces names, and the party
        it talks to there."""
        other = self._legs.get(replaces.call_id)
        if other is None or other.call is leg.call or not transfer.matches(other, replaces):
            raise transfer.ReferError(403, "Replaces names no other call of yours")
        return other, self._sole_other(other)

    def _transferred(self, transferor: Leg, target: Leg) -> None:
        """The transfer target answered: the transferor leaves, and the party it held
        is taken off hold."""
        held = transferor.direction != "sendrecv"
        transferor.transferred_to = (target.winner and target.winner.user) or target.peer
        target.replaces = None
        transfer.notify(self.sig, transferor, 200)
        target.call.emit("transferred", transferor, to=transferor.transferred_to)
        self._leave(transferor, bye=True, cause="transferred", by="system")
        if held:
            for other in target.call.others(target):
                if other.answered:
                    self.dialogs.reoffer(other)

    async def _join_calls(self, transferor: Leg, replaced: Leg, moving: Leg) -> None:
        """Attended transfer: the party of the transferor's other call (the one
        Replaces names) moves into this call, with a new stream and our re-INVITE
        pointing it there; the transferor leaves both calls."""
        call, other_call = transferor.call, moving.call
        old_id = moving.id
        # The other call's log keeps the party as it was there.
        record = copy.copy(moving)
        record.state, record.ended_at = LegState.ENDED, self.runtime.wall()
        other_call.legs[other_call.legs.index(moving)] = record
        moving.call, moving.id, moving.local = call, call.next_leg_id(), ("", 0)
        call.legs.append(moving)
        try:
            await self.anchor.remove(record, other_call.id)
            await self.anchor.open(moving)
            await self.anchor.apply(moving, moving.remote_sdp)
        except (ControlError, SdpError) as exc:
            log.warning("call %s: moving leg %s failed: %s", call.id, old_id, exc)
            transfer.notify(self.sig, transferor, 500)
            self.leg_lost(moving, "failed")
            return
        if transferor.live:
            self._transferred(transferor, moving)
        if replaced.live:
            replaced.transferred_to = transferor.transferred_to
            self._leave(replaced, bye=True, cause="transferred", by="system")
        if moving.live:
            self.dialogs.reoffer(moving)

    # -- dialogs (DialogObserver) ----------------------------------------------------

    def direction_changed(self, leg: Leg) -> None:
        """Hold or resume on one side of a two-party call is relayed to the other."""
        others = [other for other in leg.call.others(leg) if other.answered]
        if len(others) != 1:
            return
        if others[0].kind == "browser":
            tell(others[0], {"type": "held", "held": leg.direction != "sendrecv", "by": "peer"})
        else:
            self.dialogs.relay_direction(others[0])

    def direction_for(self, leg: Leg) -> str:
        others = [other for other in leg.call.others(leg) if other.answered]
        return others[0].direction if len(others) == 1 else "sendrecv"

    # -- the end of a call ---------------------------------------------------------------

    def _forget(self, leg: Leg) -> None:
        now = self.runtime.now()
        while self._ended and next(iter(self._ended.values())) < now - ENDED_MEMORY:
            del self._ended[next(iter(self._ended))]
        if self._legs.pop(leg.sip_call_id, None) is not None:
            self._ended[leg.sip_call_id] = now

    def _end(self, call: Call) -> None:
        if call.ended:
            return
        call.ended = True
        for leg in call.live_legs():
            self._close_leg(leg, leg.status)
        self.calls.pop(call.id, None)
        self._active[call.caller] -= 1
        if self._active[call.caller] <= 0:
            del self._active[call.caller]
        self.runtime.spawn(self._release(call, self.runtime.wall()))

    async def _release(self, call: Call, ended_at: float) -> None:
        """Free the media, then log the call with each leg's quality."""
        if call.anchored:
            try:
                summaries = await self.anchor.release(call.id)
            except ControlError as exc:
                log.warning("call %s: media delete failed: %s", call.id, exc)
                summaries = {}
            for leg in call.legs:
                if leg.id in summaries:
                    leg.media = summaries[leg.id]
        self.record(call_record(call, ended_at))
        call.emit("ended", cause=call.cause or "normal", status=call.status)

    # -- the call-control API ----------------------------------------------------------

    def _dial_into(self, call: Call, target: str, *, role: LegRole, digits: str = "") -> Leg | None:
        """Dial ``target`` into a running call (``digits`` to it once it answers);
        None (and the call settled) if it routes nowhere."""
        route = self.router.route(target, self.runtime.wall(), caller=call.user)
        if isinstance(route, Refuse):
            call.emit("leg_failed", None, status=route.status, reason=route.reason)
            live = call.live_legs()
            if live:
                self._settle(call, live[0], cause=route.cause, by="system")
            return None
        return self._dial(call, route, role=role, digits=digits)

    def originate(
        self,
        first: str,
        second: str,
        *,
        user: str,
        listener: CallListener | None = None,
        device: Device = "any",
        extension: str = "",
        person_id: int | None = None,
        mode: CallMode = "click_to_call",
    ) -> Call:
        """Call ``first``; when it answers, call ``second`` and bridge the two
        (click-to-call: ``first`` is the rep, ``second`` the number).  A
        ``passthrough`` call does not dial on by itself: calls.passthrough dials
        ``second`` once the rep presses 1.

        Both are names, extensions, ring groups or numbers; ``user`` owns the call
        (its caller id on the trunk, its per-user limit).  A user or group called
        first rings on ``device``: its registered phones, its signed-in pages, or
        both, the first to answer winning.  ``extension`` goes to ``second`` as
        RFC 4733 digits once it answers; ``person_id`` links the call to the person.
        Raises CallError when ``first`` cannot be rung (480 says why in words), when
        ``second`` is a number we may not dial, or when the user is at the limit.
        """
        if self._active[user] >= self.settings.max_calls_per_user:
            raise CallError(486, f"{user} already has {self._active[user]} calls up")
        wall = self.runtime.wall()
        route: Route | None = self.router.route(first, wall)
        if isinstance(route, RingUsers):
            route = route.on(device)
        if route is None or (isinstance(route, Refuse) and route.cause == "unavailable"):
            raise CallError(480, unreachable(first, device))
        if isinstance(route, Refuse):
            raise CallError(route.status, route.reason or route.cause)
        # A number we may not dial fails now, not once the first party has answered.
        onward = self.router.route(second, wall, caller=user)
        if isinstance(onward, Refuse) and onward.outbound:
            raise CallError(onward.status, onward.reason or onward.cause)
        call = Call(f"o-{secrets.token_hex(10)}", user, second, second, user, started_at=wall)
        call.person_id, call.extension = person_id, extension or None
        call.mode = mode
        if isinstance(onward, DialTrunk):
            call.direction, call.e164 = "outbound", onward.e164
        if listener is not None:
            call.listeners.append(listener)
        self.calls[call.id] = call
        self._active[user] += 1
        # The first party's phone shows whom it is about to be put through to.
        shown = f"sip:{second}@{self.sig.domain}"
        then = second if mode == "click_to_call" else None
        self._dial(call, route, role="caller", then=then, from_uri=shown)
        self.record(call_record(call))
        return call

    def add_leg(
        self, call_id: str, target: str, *, role: LegRole = "colleague", digits: str = ""
    ) -> Leg:
        """Dial ``target`` into a running call: once it answers, everyone hears everyone
        (``digits`` go to it as RFC 4733 events then, an extension behind a number)."""
        call = self.live_call(call_id)
        route = self.router.route(target, self.runtime.wall(), caller=call.user)
        if isinstance(route, Refuse):
            raise CallError(route.status, route.reason or unreachable(target, "any"))
        return self._dial(
            call, route, role=role, from_uri=f"sip:{call.user}@{self.sig.domain}", digits=digits
        )

    def remove_leg(self, call_id: str, leg_id: str) -> None:
        """Hang up one party; the others stay connected if two or more remain."""
        leg = self._live_leg(call_id, leg_id)
        if leg.state is LegState.OFFERED:
            self._fail_incoming(leg, 480, "Temporarily Unavailable (removed)")
        else:
            self._leave(leg, bye=True, cause="removed", by="system")

    def end(self, call_id: str, by: HungUpBy = "system") -> None:
        """Hang up the whole call (for ``by``)."""
        self.hang_up(self.live_call(call_id), by=by)

    async def play(self, call_id: str, leg_id: str, **prompt: Any) -> None:
        """Play a tone (``tone=[Hz...], duration=s``) or a WAV ``file`` to one party."""
        leg = self._live_leg(call_id, leg_id)
        await self.anchor.play(leg, prompt)

    async def stop_play(self, call_id: str, leg_id: str) -> None:
        """Stop what :meth:`play` plays to one party."""
        await self.anchor.stop_play(self._live_leg(call_id, leg_id))

    async def send_dtmf(
        self, call_id: str, leg_id: str, digits: str, duration: float = 0.1
    ) -> None:
        """Send RFC 4733 digits to one party (an extension after answer)."""
        leg = self._live_leg(call_id, leg_id)
        await self.anchor.send_dtmf(leg, digits, duration)

    # -- the dialer page (docs/browser-protocol.md) -----------------------------------

    async def page_dial(
        self,
        page: Page,
        to: str,
        sdp: str,
        *,
        extension: str = "",
        ref: object = None,
        person_id: int | None = None,
    ) -> Call:
        """The page's user calls ``to`` (a user, extension, group or number) with its
        SDP offer; ``extension`` is dialled as RFC 4733 DTMF once the far end answers,
        ``person_id`` links the call to the person called.

        The page's stream is set up and its answer sent before anything rings, so
        ringback and early media reach it.  Raises CallError when the call cannot
        be placed (the attempt is logged).
        """
        user, wall = page.user, self.runtime.wall()
        if self._active[user] >= self.settings.max_calls_per_user:
            raise CallError(486, f"{user} already has {self._active[user]} calls up")
        offer, formats = self._browser_offer(sdp)
        route = self.router.route(to, wall, caller=user)
        call_id = f"w-{secrets.token_hex(10)}"
        if isinstance(route, Refuse):
            direction: Direction = "outbound" if route.outbound else "internal"
            self._log_refused(
                call_id, user, to, route.status, route.cause, direction, person_id=person_id
            )
            raise CallError(route.status, route.reason or route.cause)
        call = Call(call_id, user, _route_name(route), to, user, started_at=wall)
        call.person_id, call.extension = person_id, extension or None
        leg = Leg(
            call,
            call.next_leg_id(),
            "browser",
            "caller",
            user,
            call_id,
            incoming=True,
            state=LegState.OFFERED,
            formats=formats,
            offer=offer,
            page=page,
            started_at=wall,
        )
        call.legs.append(leg)
        self.calls[call.id] = call
        self._active[user] += 1
        self.record(call_record(call))
        try:
            answer = await self.anchor.open_browser(leg, offer)
        except (ControlError, SdpError) as exc:
            log.error("call %s: browser media failed: %s", call.id, exc)
            self._fail_incoming(leg, 503, "Service Unavailable (media)")
            raise CallError(503, f"media: {exc}") from None
        page.send({"type": "dialling", "ref": ref, "call": call.id, "sdp": answer.decode()})
        if leg.live:
            self._dial(call, route, role="callee", partner=leg, digits=extension)
        return call

    async def page_answer(self, page: Page, call_id: str, sdp: str) -> None:
        """The page answers a call ringing it, with its SDP offer; it gets our answer."""
        call = self.live_call(call_id)
        leg = next(
            (
                leg
                for leg in call.legs
                if leg.kind == "browser" and leg.state is LegState.DIALLING and page in leg.pages
            ),
            None,
        )
        if leg is None:
            raise CallError(481, "this call is not ringing here")
        offer, offered = self._browser_offer(sdp)
        partner = leg.partner
        leg.formats = answer_formats(offered, _chosen(call, partner))
        # Claimed before any await: a phone answering meanwhile loses to the page.
        for other in leg.pages:
            if other is not page:
                other.send(ended(leg, None, "answered_elsewhere") | {"call": call.id})
        leg.page, leg.pages = page, [page]
        leg.state, leg.status, leg.answered_at = LegState.ANSWERED, 200, self.runtime.wall()
        self._won(leg, leg.peer)
        try:
            if partner is not None and not partner.local[1]:
                await self.anchor.open(partner)
            answer = await self.anchor.open_browser(leg, offer)
            await self._describe_partner(leg, leg.formats)
        except (ControlError, SdpError) as exc:
            log.warning("call %s: page answer unusable: %s", call.id, exc)
            if partner is not None and partner.state is LegState.OFFERED:
                self._fail_incoming(partner, 503, "Service Unavailable (media)")
            else:
                self.leg_lost(leg, "failed")
            raise CallError(503, f"media: {exc}") from None
        if not leg.live:
            return
        page.send(
            {"type": "answered", "call": call.id, "sdp": answer.decode(), "peer": _shown(leg)}
        )
        self._joined(leg)

    def page_hangup(self, page: Page, call_id: str) -> None:
        """The page hangs up: declines a call ringing it, abandons one it is placing,
        or leaves one it is in."""
        leg = self._page_leg(page, call_id)
        if leg.state is LegState.DIALLING:
            self.leg_failed(leg, 603, "Decline")
        elif leg.state is LegState.OFFERED:
            self._abandon(leg)
        else:
            by: HungUpBy = "caller" if leg.role == "caller" else "callee"
            self._leave(leg, bye=False, cause="normal", by=by)
        self.runtime.flush()

    async def page_mute(self, page: Page, call_id: str, muted: bool) -> None:
        """Mute or unmute the page's microphone in the engine: the others hear silence."""
        leg = self._page_leg(page, call_id, answered=True)
        leg.muted = muted
        await self.anchor.set_direction(leg, _browser_direction(leg))
        tell(leg, {"type": "muted", "muted": muted})

    async def page_hold(self, page: Page, call_id: str, held: bool) -> None:
        """The page puts the other party on hold (RFC 3264 §8.4 towards it) or back."""
        leg = self._page_leg(page, call_id, answered=True)
        leg.direction = "sendonly" if held else "sendrecv"
        await self.anchor.set_direction(leg, _browser_direction(leg))
        self.direction_changed(leg)
        tell(leg, {"type": "held", "held": held, "by": "you"})
        self.runtime.flush()

    async def page_dtmf(self, page: Page, call_id: str, digits: str) -> None:
        """Keypad digits from the page, sent as RFC 4733 events to the other parties."""
        leg = self._page_leg(page, call_id, answered=True)
        for other in leg.call.others(leg):
            if other.answered and other.kind != "browser":
                try:
                    await self.anchor.send_dtmf(other, digits, 0.1)
                except ControlError as exc:
                    raise CallError(488, str(exc)) from None

    def page_calls(self, page: Page) -> list[dict[str, object]]:
        """The page's user's live browser legs, for a page that (re)connects."""
        calls: list[dict[str, object]] = []
        state = {LegState.DIALLING: "incoming", LegState.OFFERED: "dialling"}
        for leg in self._browser_legs(page.user):
            calls.append(
                {
                    "call": leg.call.id,
                    "state": state.get(leg.state, "connected"),
                    "peer": peer_of(leg, leg.call.live_legs()),
                    "direction": "outgoing" if leg.incoming else "incoming",
                }
            )
        return calls

    def page_opened(self, page: Page) -> None:
        """A page signed in: its user rings in it from now on, and a call left without
        a page (its page reconnecting after a network blip) is carried by it again."""
        self.pages.add(page)
        for leg in self._browser_legs(page.user):
            if leg.state is LegState.DIALLING:
                leg.pages.append(page)
            elif leg.page is None:
                leg.page = page

    def page_closed(self, page: Page) -> None:
        """A page went away.  Its calls stay up (the media does not pass through the
        socket): another open page of the user, or the next one to connect, carries
        them; the engine's media timeout ends one whose browser is really gone."""
        self.pages.remove(page)
        for leg in self._browser_legs(page.user):
            if page in leg.pages:
                leg.pages.remove(page)
            if leg.page is page:
                others = self.pages.of(page.user)
                leg.page = others[-1] if others else None

    def _browser_legs(self, user: str) -> list[Leg]:
        return [
            leg
            for call in self.calls.values()
            for leg in call.live_legs()
            if leg.kind == "browser" and leg.peer == user
        ]

    def _browser_offer(self, sdp: str) -> tuple[SessionDescription, list[Format]]:
        """A page's SDP offer and the codecs we take from it; CallError 488 if unusable."""
        try:
            offer = SessionDescription.parse(sdp)
            audio = offer.audio
            if audio is None:
                raise SdpError("no audio stream offered")
            webrtc_offer(offer)  # ICE credentials, fingerprint, rtcp-mux
        except SdpError as exc:
            raise CallError(488, f"unusable offer: {exc}") from None
        formats = browser_formats(audio, self.settings.browser_codecs)
        if not formats:
            names = ", ".join(self.settings.browser_codecs)
            raise CallError(488, f"no codec in common ({names})")
        return offer, formats

    def _page_leg(self, page: Page, call_id: str, *, answered: bool = False) -> Leg:
        call = self.live_call(call_id)
        leg = next(
            (
                leg
                for leg in call.live_legs()
                if leg.kind == "browser" and (leg.page is page or page in leg.pages)
            ),
            None,
        )
        if leg is None or (answered and not leg.answered):
            raise CallError(481, f"no call {call_id!r} {'up' if answered else ''} on this page")
        return leg

    def subscribe(self, call_id: str, listener: CallListener) -> None:
        """Tell ``listener`` what happens to the call from now on."""
        self.live_call(call_id).listeners.append(listener)

    def live_call(self, call_id: str) -> Call:
        """The call ``call_id`` while it is up; CallError 404 otherwise."""
        call = self.calls.get(call_id)
        if call is None or call.ended:
            raise CallError(404, f"There is no call {call_id} in progress.")
        return call

    def _live_leg(self, call_id: str, leg_id: str) -> Leg:
        leg = self.live_call(call_id).leg(leg_id)
        if leg is None or not leg.live:
            raise CallError(404, f"call {call_id!r} has no leg {leg_id!r} in progress")
        return leg


def _chosen(call: Call, partner: Leg | None) -> list[Format]:
    """The codecs a new leg should be offered first: its partner's, else those of the
    call's first answered leg."""
    if partner is not None:
        return partner.formats
    answered = next((leg for leg in call.legs if leg.answered and leg.formats), None)
    return answered.formats if answered is not None else []


def _shown(leg: Leg) -> str:
    """Whom a page rung for ``leg`` sees the call with: the party an originated call
    puts it through to, else the caller."""
    return leg.then or leg.call.caller


def _browser_direction(leg: Leg) -> str:
    """The engine's direction for a browser leg (what the party sends and gets): on
    hold it neither sends nor hears; muted it is not heard."""
    if leg.direction != "sendrecv":
        return "inactive"
    return "recvonly" if leg.muted else "sendrecv"


def _route_name(route: RingUsers | DialTrunk) -> str:
    return route.name if isinstance(route, RingUsers) else route.e164


def _user_of(uri: Uri, default: str = "anonymous") -> str:
    """The user part of a SIP URI (a number or a name), or ``default``."""
    return (uri.user_unescaped if isinstance(uri, SipUri) else None) or default
