"""Requests inside a leg's dialog: re-INVITE and UPDATE both ways, and session timers.

The media anchor absorbs what concerns one leg: a party's new address or
codec changes only its own stream (the engine transcodes if the legs now
differ, RFC 3261 §14.2), and a session refresh only restarts that leg's timer
(RFC 4028 §10).  A new direction (hold, resume) is reported to the call layer,
which relays it to the other party in our own re-INVITE.  Our re-INVITEs and
UPDATEs meet glare (491) with the random wait of §14.1, and a 408 or 481 to
them means the party has lost the dialog (RFC 5057 §5.2).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Protocol

from media.control import ControlError
from voipcore.calls.anchor import MediaAnchor, describe
from voipcore.calls.model import Leg, LegState
from voipcore.calls.routing import short
from voipcore.calls.signalling import ALLOW, SDP, SUPPORTED_TAGS, Runtime, Signalling
from voipcore.sdp import SdpError, SessionDescription
from voipcore.sip.dialog import (
    Expire,
    Negotiated,
    Refresh,
    negotiate_uas,
    supports_timer,
)
from voipcore.sip.message import Request, Response, make_response
from voipcore.sip.transaction import TransactionKey

log = logging.getLogger(__name__)


class DialogObserver(Protocol):
    """What the call layer hears from the legs' dialogs."""

    def direction_changed(self, leg: Leg) -> None:
        """The party put the call on hold or resumed it (``leg.direction``)."""

    def direction_for(self, leg: Leg) -> str:
        """The direction to offer ``leg``'s party now (the other party's hold state)."""

    def leg_lost(self, leg: Leg, cause: str) -> None:
        """The leg's dialog is gone (no answer, 481, session expired): hang it up."""


@dataclass
class _Update:
    """A re-INVITE or UPDATE of ours in flight on one leg."""

    leg: Leg
    request: Request
    refresh: bool
    """A session refresh (RFC 4028 §10), not a change of the session."""


class Dialogs:
    """In-dialog requests and RFC 4028 session timers for every leg."""

    def __init__(
        self,
        sig: Signalling,
        runtime: Runtime,
        anchor: MediaAnchor,
        observer: DialogObserver,
        *,
        session_expires: int,
        min_se: int,
        session_timers: str,
    ) -> None:
        self.sig = sig
        self.runtime = runtime
        self.anchor = anchor
        self.observer = observer
        self.session_expires = session_expires
        self.min_se = min_se
        self.session_timers = session_timers
        self._updates: dict[TransactionKey, _Update] = {}

    # -- session intervals ---------------------------------------------------------

    def timed(self, message: Request | Response) -> bool:
        """Whether the phone that sent ``message`` gets a session timer on its leg:
        always, or with ``session_timers = "accept"`` only if it supports them (§7.1)."""
        return self.session_timers == "always" or supports_timer(message)

    def session_interval(self, request: Request) -> Negotiated | None:
        """The session interval for an INVITE or UPDATE we answer (RFC 4028 §9);
        None once a 422 has told the sender to ask for more."""
        negotiated = negotiate_uas(request, min_se=self.min_se, default=self.session_expires)
        if isinstance(negotiated, Negotiated):
            return negotiated
        self.sig.respond(negotiated.response(request))
        return None

    def start_timer(self, leg: Leg, answer: Request | Response) -> None:
        """The leg is answered: its session timer starts (RFC 4028 §7.2, §9)."""
        now = self.runtime.now()
        if isinstance(answer, Response):
            if self.timed(answer):
                leg.timer.apply_response(answer, now)
        elif leg.negotiated is not None and self.timed(answer):
            leg.timer.apply_negotiated(leg.negotiated, now)
        self.arm(leg)

    def arm(self, leg: Leg) -> None:
        """Schedule the leg's next session-timer deadline."""
        if leg.timer_handle is not None:
            leg.timer_handle.cancel()
            leg.timer_handle = None
        at = leg.timer.get_timer()
        if at is not None and leg.live:
            leg.timer_handle = self.runtime.call_at(at, lambda: self._session_due(leg))

    def _session_due(self, leg: Leg) -> None:
        """The leg's refresh is due (we refresh it) or its session expired (§10)."""
        leg.timer_handle = None
        if not leg.live:
            return
        event = leg.timer.due(self.runtime.now())
        if isinstance(event, Expire):
            log.warning("call %s: session on leg %s expired", leg.call.id, leg.id)
            self.observer.leg_lost(leg, "session_expired")
            return
        if isinstance(event, Refresh):
            self.refresh(leg)
        self.arm(leg)

    # -- from the parties ------------------------------------------------------------

    def modify(self, leg: Leg, request: Request) -> None:
        """A re-INVITE (§14.2) or UPDATE (RFC 3311) from ``leg``'s party."""
        early_update = request.method == "UPDATE" and leg.early_sdp and leg.live
        if not (leg.answered or early_update):
            self.sig.respond(make_response(request, 481))
            return
        negotiated = self.session_interval(request) if leg.answered else None
        if leg.answered and negotiated is None:
            return  # 422 sent
        offer: SessionDescription | None = None
        try:
            if request.body:
                offer = SessionDescription.parse(request.body)
                if offer.audio is None:
                    raise SdpError("no audio stream")
        except SdpError as exc:
            self.sig.respond(make_response(request, 488, short(f"Not Acceptable Here ({exc})")))
            return
        if offer is None:
            self._accept(leg, request, negotiated, None)
        else:
            self.runtime.spawn(self._renegotiate(leg, request, offer, negotiated))

    async def _renegotiate(
        self,
        leg: Leg,
        request: Request,
        offer: SessionDescription,
        negotiated: Negotiated | None,
    ) -> None:
        """Apply a party's new offer to its leg and answer it."""
        try:
            await self.anchor.apply(leg, request.body, command="offer")
        except SdpError as exc:
            # The old session stays as it was (§14.2).
            self.sig.respond(make_response(request, 488, short(f"Not Acceptable Here ({exc})")))
            self.runtime.flush()
            return
        except ControlError as exc:
            log.warning("call %s: media update failed: %s", leg.call.id, exc)
            failed = make_response(request, 500)
            failed.headers.add("Retry-After", "2")  # §14.2: try again later
            self.sig.respond(failed)
            self.runtime.flush()
            return
        if not leg.live:
            return
        assert offer.audio is not None
        direction = offer.audio.direction
        turned = leg.direction != direction  # held or resumed
        leg.direction = direction
        self._accept(leg, request, negotiated, offer)
        if turned and leg.answered:
            self.observer.direction_changed(leg)
        self.runtime.flush()

    def _accept(
        self,
        leg: Leg,
        request: Request,
        negotiated: Negotiated | None,
        offer: SessionDescription | None,
    ) -> None:
        """200 to a re-INVITE or UPDATE: our answer (or, to a re-INVITE without
        one, our current session as the offer, §14.2), the session interval."""
        ok = make_response(request, 200)
        ok.headers.add("Contact", f"<{self.sig.contact(request.via.transport)}>")
        ok.headers.add("Allow", ALLOW)
        ok.headers.add("Supported", SUPPORTED_TAGS)
        if negotiated is not None and not self.timed(request):
            negotiated = None
        if negotiated is not None:
            for name, value in negotiated.response_headers(request):
                ok.headers.add(name, value)
        body = b""
        if offer is not None:
            body = describe(leg, answering=offer)
        elif request.method == "INVITE":
            body = leg.last_sdp
            leg.offered_in_ok = True
        if body:
            ok.body = body
            ok.headers.add("Content-Type", SDP)
        self.sig.respond(ok)
        if negotiated is not None:
            leg.timer.apply_negotiated(negotiated, self.runtime.now())
            self.arm(leg)

    def on_ack(self, leg: Leg, ack: Request) -> None:
        """An ACK for a 2xx of ours (§13.3.1.4): the first one on an incoming leg stops
        our 200's retransmissions; one answering an offer we made in a 200 carries it."""
        if leg.incoming and not leg.acked:
            leg.acked = True
            if leg.offer is None and ack.body:
                self.runtime.spawn(self._apply_answer(leg, ack.body, hang_up=True))
        elif leg.offered_in_ok and ack.body:
            # The answer to the offer in our 200 to an offerless re-INVITE (§14.2).
            leg.offered_in_ok = False
            self.runtime.spawn(self._apply_answer(leg, ack.body))

    async def _apply_answer(self, leg: Leg, body: bytes, *, hang_up: bool = False) -> None:
        try:
            await self.anchor.apply(leg, body)
        except (SdpError, ControlError) as exc:
            log.warning("call %s: answer from leg %s unusable: %s", leg.call.id, leg.id, exc)
            if hang_up:
                self.observer.leg_lost(leg, "failed")

    # -- ours ------------------------------------------------------------------------

    def relay_direction(self, leg: Leg) -> None:
        """Our re-INVITE to ``leg``'s party offering the direction it should now have."""
        body = describe(leg, direction=self.observer.direction_for(leg))
        self._send(leg, "INVITE", body, refresh=False)

    def reoffer(self, leg: Leg) -> None:
        """Our re-INVITE with the leg's session as it is now (a new address after a
        transfer, or taking the party off hold)."""
        self.relay_direction(leg)
        self.runtime.flush()

    def refresh(self, leg: Leg) -> None:
        """Refresh the leg's session (RFC 4028 §7.4): UPDATE without a body where the
        party allows it, else a re-INVITE offering the unchanged session."""
        if leg.allows_update:
            self._send(leg, "UPDATE")
        else:
            self._send(leg, "INVITE", leg.last_sdp)
        self.runtime.flush()

    def _send(self, leg: Leg, method: str, body: bytes = b"", *, refresh: bool = True) -> None:
        """A re-INVITE or UPDATE of ours on ``leg``, with our session-timer headers."""
        built = self.sig.in_dialog(
            leg,
            method,
            body=body,
            content_type=SDP,
            extra_headers=leg.timer.request_headers(),
        )
        if built is None:
            return
        request, addr = built
        self._updates[self.sig.send(request, addr)] = _Update(leg, request, refresh)

    def owns(self, key: TransactionKey) -> bool:
        return key in self._updates

    def on_response(self, response: Response, key: TransactionKey) -> None:
        """The answer to our re-INVITE or UPDATE (§14.1, RFC 4028 §7.2)."""
        if response.status < 200:
            return
        update = self._updates.pop(key)
        leg, request = update.leg, update.request
        now = self.runtime.now()
        if 200 <= response.status < 300 and request.method == "INVITE" and leg.dialog:
            assert leg.addr is not None
            ack = leg.dialog.create_ack(request.cseq.seq, via=self.sig.via(leg.addr[0]))
            self.sig.send(ack, leg.addr)
        if not leg.live:
            return
        if response.status in (408, 481):
            self._failed(update, response.status)
            return
        interval = leg.timer.interval
        if leg.timer.active or self.timed(response):
            leg.timer.apply_response(response, now)
        if response.status == 422 and leg.timer.interval > interval:
            self.refresh(leg)  # again, at the peer's Min-SE (RFC 4028 §7.3)
        elif response.status == 491:
            # Glare: the party was changing the session too.  Try again after a random
            # wait: 2.1-4 s on a leg whose Call-ID we chose, else 0-2 s (§14.1).
            wait = random.uniform(0.0, 2.0) if leg.incoming else random.uniform(2.1, 4.0)
            self.runtime.call_at(now + wait, lambda: self._after_glare(update))
        elif 200 <= response.status < 300 and response.body:
            self.runtime.spawn(self._apply_answer(leg, response.body))
        self.arm(leg)

    def on_failure(self, key: TransactionKey, status: int) -> None:
        update = self._updates.pop(key, None)
        if update is not None:
            self._failed(update, status)

    def _after_glare(self, update: _Update) -> None:
        """Send again what met a 491, brought up to date: a refresh, or the direction
        the party should have now (it may have changed meanwhile)."""
        leg = update.leg
        if not leg.live:
            return
        if update.refresh:
            self.refresh(leg)
        else:
            self.reoffer(leg)

    def _failed(self, update: _Update, status: int) -> None:
        """No answer, or 481: the party has lost the dialog (RFC 5057 §5.2); after a
        refresh, that is the session timer's verdict (RFC 4028 §10)."""
        leg = update.leg
        if leg.state is LegState.ENDED:
            return
        method = update.request.method
        log.warning("call %s: %s on leg %s got %d", leg.call.id, method, leg.id, status)
        self.observer.leg_lost(leg, "session_expired" if update.refresh else "failed")
