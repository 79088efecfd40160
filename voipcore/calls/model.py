"""The call model: a :class:`Call` holds any number of :class:`Leg` objects.

A leg is one party's connection to the call: its own SIP dialog (RFC 3261 §12),
its own media stream in the engine (named by :attr:`Leg.id`), its own codecs,
session timer (RFC 4028) and SDP session (RFC 3264 §8).  A leg is *incoming*
when the party's INVITE created it (we are the UAS) and *outgoing* when we
dial the party (we are the UAC, possibly forking to several contacts, §16.7).
The call keeps every leg it ever had, in joining order, for the call log.

Nothing here sends, awaits or reads a clock: these are the objects the
decisions in the other modules of this package read and update.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal, Protocol

from voipcore.sdp import Format, SessionDescription
from voipcore.sip.dialog import Dialog, Negotiated, SessionTimer
from voipcore.sip.message import Request
from voipcore.sip.transaction import Address, TransactionKey
from voipcore.store.calls import CallMode, HungUpBy, LegRole

#: What is on the other end of a leg: a registered phone, the carrier trunk, or a
#: signed-in dialer page (WebRTC).
LegKind = Literal["phone", "trunk", "browser"]


class Page(Protocol):
    """One signed-in dialer page: where its user's browser legs are told things."""

    user: str

    def send(self, message: dict[str, object]) -> None:
        """Queue one protocol message to the page (never blocks)."""


class LegState(Enum):
    """Where a leg is in its life (RFC 3261 §13: INVITE, provisional, final)."""

    DIALLING = "dialling"
    """Outgoing: our INVITE is out, no answer yet (it may be ringing)."""
    OFFERED = "offered"
    """Incoming: the party's INVITE waits for our final response."""
    ANSWERED = "answered"
    """The leg's INVITE got a 2xx: the party is in the call."""
    ENDED = "ended"
    """Hung up, cancelled, refused or failed; kept for the record."""


class Cancellable(Protocol):
    """A scheduled callback (asyncio's TimerHandle has this shape)."""

    def cancel(self) -> None:
        """Do not run it."""


@dataclass(eq=False)
class Branch:
    """Our INVITE to one contact of an outgoing leg's party, or to one trunk edge."""

    invite: Request
    addr: Address
    final: int = 0
    """Its final status, 0 while it is pending."""
    edge: str | None = None
    alive: bool = False
    """Something came back from it (the edge is up)."""
    authenticated: bool = False
    retried: bool = False
    """Already resent after a 422 (RFC 4028 §7.3)."""
    user: str | None = None
    """The user whose phone this is (ring groups ring several)."""


def new_tag() -> str:
    """A dialog tag of ours (RFC 3261 §19.3: 32 bits of randomness at least)."""
    return secrets.token_hex(6)


@dataclass(eq=False)
class Leg:
    """One party's connection to a call."""

    call: Call
    id: str
    """Unique within the call; the media engine's leg name ("a", "b", ...)."""
    kind: LegKind
    role: LegRole
    peer: str
    """Username for a registered user, the E.164 number for a trunk leg."""
    sip_call_id: str
    """The Call-ID of the leg's dialog: the party's for an incoming leg, ours otherwise."""
    incoming: bool
    invite: Request | None = None
    """The INVITE that created an incoming leg (ours are on the branches)."""
    addr: Address | None = None
    """Where the party is: the INVITE's source, or the answering branch's address."""
    tag: str = field(default_factory=new_tag)
    """Our tag in the leg's dialog."""
    state: LegState = LegState.DIALLING
    dialog: Dialog | None = None
    formats: list[Format] = field(default_factory=list)
    """The codecs of the leg's stream, in preference order."""
    offer: SessionDescription | None = None
    """An incoming leg's initial offer; None for a delayed offer (§13.2.1)."""
    local: tuple[str, int] = ("", 0)
    """The engine's RTP address for this leg, as put in our SDP."""
    session_id: int = field(default_factory=lambda: secrets.randbelow(2**31))
    version: int = 1
    last_sdp: bytes = b""
    """The SDP we last sent the party: a refresh repeats it (RFC 3264 §8)."""
    direction: str = "sendrecv"
    """The direction the party last offered (its hold state)."""
    offered_in_ok: bool = False
    """Our 200 to its offerless re-INVITE carried an offer: the answer is in the ACK."""
    acked: bool = False
    """The ACK for our 2xx to an incoming leg's INVITE came."""
    timer: SessionTimer = field(default_factory=SessionTimer)
    negotiated: Negotiated | None = None
    """The session interval for an incoming leg, sent in our 2xx."""
    allows_update: bool = False
    """The party listed UPDATE in Allow: we refresh with it (RFC 4028 §7.4)."""
    timer_handle: Cancellable | None = None
    """The ring timeout until answered, then the next session-timer deadline."""
    branches: dict[TransactionKey, Branch] = field(default_factory=dict)
    winner: Branch | None = None
    from_uri: str = ""
    """Our From URI on an outgoing leg's INVITEs."""
    max_forwards: int = 70
    e164: str | None = None
    edges: list[str] = field(default_factory=list)
    """Trunk edges still to try, in order."""
    partner: Leg | None = None
    """The unanswered incoming leg this outgoing leg answers for (a phone's call)."""
    then: str | None = None
    """Dial this target into the call once this leg answers (an originated call)."""
    replaces: Leg | None = None
    """The transferor's leg, which leaves the call when this one answers (RFC 3515)."""
    refer_subscribed: bool = True
    """The party wants NOTIFYs about a transfer it asked for (RFC 4488)."""
    remote_sdp: bytes = b""
    """The party's latest session description (its offer or answer)."""
    ringing: bool = False
    early_sdp: bool = False
    """Our answer went out in a 183 already; the 2xx repeats it (RFC 3264)."""
    billable: bool = False
    started_at: float = 0.0
    answered_at: float | None = None
    ended_at: float | None = None
    status: int | None = None
    """The final response to the leg's INVITE."""
    transferred_to: str | None = None
    """Where the party on this leg sent the call (RFC 3515 REFER)."""
    media: dict[str, object] | None = None
    """The engine's summary of the leg's stream, once it is released."""
    siblings: list[Leg] = field(default_factory=list)
    """Legs dialled together for one party (its phones and its pages): the first to
    answer wins, the call fails only when all have."""
    page: Page | None = None
    """A browser leg's page, once one placed or answered the call."""
    pages: list[Page] = field(default_factory=list)
    """The pages a browser leg rings until one answers."""
    muted: bool = False
    """A browser leg's microphone is off: the others hear silence."""
    dtmf_after_answer: str = ""
    """Digits (``,`` a 500 ms pause) sent to this leg's party once it answers."""

    @property
    def live(self) -> bool:
        """In the call or on its way in."""
        return self.state is not LegState.ENDED

    @property
    def answered(self) -> bool:
        return self.state is LegState.ANSWERED


#: What a call tells its subscribers: ``(event name, details)``.
CallListener = Callable[["CallEvent"], None]


@dataclass(frozen=True, slots=True)
class CallEvent:
    """Something that happened to a call, for the call-control API's subscribers."""

    name: str
    """ringing, answered, leg_joined, leg_left, dtmf, quality_warning, transferred or ended."""
    call_id: str
    leg: str | None = None
    """The leg it concerns, if one."""
    data: dict[str, object] = field(default_factory=dict)
    """Event details: the digit, the cause, the quality figures."""


@dataclass(eq=False)
class Call:
    """A call: its legs and what the call log keeps about it."""

    id: str
    """The call's identifier: the first leg's Call-ID, the engine's call id."""
    caller: str
    callee: str
    dialled: str
    user: str
    """The voipcore user the call belongs to (the caller, or the DID's owner)."""
    direction: Literal["internal", "outbound", "inbound"] = "internal"
    e164: str | None = None
    legs: list[Leg] = field(default_factory=list)
    """Every leg the call has had, in joining order."""
    started_at: float = 0.0
    ringing_at: float | None = None
    answered_at: float | None = None
    status: int | None = None
    cause: str | None = None
    hung_up_by: HungUpBy | None = None
    ended: bool = False
    listeners: list[CallListener] = field(default_factory=list)
    person_id: int | None = None
    """The person (in the people book) whose number the user dialled."""
    extension: str | None = None
    """Digits dialled after the callee answers (RFC 4733), as given."""
    mode: CallMode = "direct"
    """direct, click_to_call (the user rung first) or passthrough."""

    @property
    def anchored(self) -> bool:
        """The engine has the call: one of its legs got a stream (to release at the end)."""
        return any(leg.local[1] for leg in self.legs)

    def leg(self, leg_id: str) -> Leg | None:
        return next((leg for leg in self.legs if leg.id == leg_id), None)

    def live_legs(self) -> list[Leg]:
        return [leg for leg in self.legs if leg.live]

    def next_leg_id(self) -> str:
        """ "a", "b", ... "z", then "l27", "l28", ... in joining order."""
        count = len(self.legs)
        return chr(ord("a") + count) if count < 26 else f"l{count + 1}"

    def others(self, leg: Leg) -> list[Leg]:
        """The other live legs: who ``leg`` talks to."""
        return [other for other in self.legs if other is not leg and other.live]

    def emit(self, name: str, leg: Leg | None = None, **data: object) -> None:
        event = CallEvent(name, self.id, leg.id if leg is not None else None, data)
        for listener in list(self.listeners):
            listener(event)
