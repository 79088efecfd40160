"""Conferencing: a colleague or a number invited into a running call, and who is in it.

The call layer already mixes three or more parties (:meth:`CallManager.add_leg`
dials one in, :meth:`CallManager.remove_leg` hangs one up and the others talk on
while two remain; the engine relays two legs and mixes more).  What a rep needs
around that lives here: who may invite and remove (the call's owner or an admin;
anyone may take themselves out), the target read as a user, extension, ring group
or number (normalised to E.164, its extension dialled as RFC 4733 digits after
answer), and the parties as the page and the REST API show them.  Once someone
has been invited, every page in the call is told the parties whenever one joins
or leaves, and a page that reconnects is told them again
(docs/browser-protocol.md, ``participants``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from voipcore.calls.browser import tell
from voipcore.calls.manager import CallError, CallManager
from voipcore.calls.model import Call, CallEvent, Leg, LegKind, Page
from voipcore.dialer.numbers import is_extension_like, normalize
from voipcore.store.calls import LegRole, iso_utc

#: Where a party is: being rung, in the call, or gone from it.
PartyState = Literal["ringing", "connected", "left"]
#: Call events after which the pages in the call get the parties again.
_CHANGES = frozenset({"ringing", "answered", "leg_left", "leg_failed"})


@dataclass(frozen=True, slots=True)
class Party:
    """One participant of a call, as the page and the API show it."""

    leg_id: str
    """The party's leg (what a removal names)."""
    role: LegRole
    peer: str
    """The user's name, or the E.164 number of a party on the trunk."""
    name: str | None
    """The user's display name; None for a number."""
    kind: LegKind
    state: PartyState
    invited_at: float
    """Unix time the party's leg started (its INVITE, or the page's dial)."""
    joined_at: float | None
    left_at: float | None

    def to_json(self) -> dict[str, object]:
        """The party with ISO 8601 UTC times, as both the API and the page get it."""
        return {
            "leg_id": self.leg_id,
            "role": self.role,
            "peer": self.peer,
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "invited_at": iso_utc(self.invited_at),
            "joined_at": iso_utc(self.joined_at),
            "left_at": iso_utc(self.left_at),
        }


def invite(calls: CallManager, call_id: str, to: str, *, user: str, admin: bool) -> Leg:
    """``user`` dials ``to`` (a user, extension, ring group or number) into the call;
    returns the new party's leg (the first of its phones and pages rung).

    Raises :class:`~voipcore.dialer.numbers.InvalidNumber` for a number that cannot
    be, and CallError: 404 no such call, 403 not the owner's, 409 when the call is not
    answered yet, the target is in it already or routes nowhere (the words say why).
    """
    call = calls.live_call(call_id)
    if not (admin or call.user == user):
        raise CallError(403, "Only the call's owner or an admin may invite into it.")
    if call.answered_at is None:
        raise CallError(409, "The call is not answered yet.")
    target, digits = _target(calls, to)
    if any(_user_of(leg) == target for leg in call.live_legs()):
        raise CallError(409, f"{target} is already in this call.")
    try:
        leg = calls.add_leg(call_id, target, digits=digits)
    except CallError as exc:
        raise CallError(409, exc.reason) from None
    if not any(isinstance(listener, _Announcer) for listener in call.listeners):
        call.listeners.append(_Announcer(calls, call))
    announce(calls, call)
    return leg


def remove(calls: CallManager, call_id: str, leg_id: str, *, user: str, admin: bool) -> None:
    """Hang up one party (every phone and page still ringing for it); the others stay
    connected while two or more remain.  The owner and admins remove anyone, a user
    only themselves.  CallError: 404 no such call or party in it, 403 not allowed."""
    call = calls.live_call(call_id)
    leg = call.leg(leg_id)
    if leg is None or not leg.live:
        raise CallError(404, f"Call {call_id} has no party {leg_id} in it.")
    if not (admin or call.user == user or _user_of(leg) == user):
        raise CallError(403, "Only the call's owner or an admin may remove another party.")
    for party in [leg, *(s for s in leg.siblings if s is not leg)]:
        if party.live and not call.ended:
            calls.remove_leg(call_id, party.id)


def visible(calls: CallManager, call_id: str, *, user: str, admin: bool) -> Call:
    """The call in progress, for its owner, an admin or one of its parties to see
    (CallError 404, 403)."""
    call = calls.live_call(call_id)
    if not (admin or call.user == user or any(_user_of(leg) == user for leg in call.legs)):
        raise CallError(403, "This is another user's call.")
    return call


def parties(calls: CallManager, call: Call) -> list[Party]:
    """Everyone who is in the call, is being rung or has left it, in joining order.

    A party rung on several phones and pages shows once (the first still ringing);
    those that lost to the one that answered, or never answered, are not parties.
    """
    shown = []
    for leg in call.legs:
        if leg.answered_at is None:
            earlier = leg.siblings[: leg.siblings.index(leg)] if leg in leg.siblings else []
            if not leg.live or any(sibling.live for sibling in earlier):
                continue
            state: PartyState = "ringing"
        else:
            state = "connected" if leg.live else "left"
        peer = _user_of(leg)
        user = None if leg.kind == "trunk" else calls.router.find_user(peer)
        shown.append(
            Party(
                leg_id=leg.id,
                role=leg.role,
                peer=peer,
                name=user.display_name if user is not None else None,
                kind=leg.kind,
                state=state,
                invited_at=leg.started_at,
                joined_at=leg.answered_at,
                left_at=leg.ended_at if state == "left" else None,
            )
        )
    return shown


def announce(calls: CallManager, call: Call) -> None:
    """Tell every page in the call who is in it (``participants``)."""
    message = _participants(calls, call)
    for leg in _pages_in(call):
        tell(leg, message)


def catch_up(calls: CallManager, page: Page) -> None:
    """A page that (re)connects is told the parties of its conference calls."""
    for call in calls.calls.values():
        conferenced = any(isinstance(listener, _Announcer) for listener in call.listeners)
        if conferenced and any(leg.page is page for leg in _pages_in(call)):
            page.send(_participants(calls, call) | {"call": call.id})


def _participants(calls: CallManager, call: Call) -> dict[str, object]:
    """The ``participants`` message: the parties, and the owner (who may invite and remove)."""
    return {
        "type": "participants",
        "owner": call.user,
        "parties": [party.to_json() for party in parties(calls, call)],
    }


def _pages_in(call: Call) -> list[Leg]:
    """The call's browser legs in it (answered), whose pages hear of its parties."""
    return [leg for leg in call.live_legs() if leg.kind == "browser" and leg.answered]


@dataclass(eq=False)
class _Announcer:
    """A call listener: the pages hear of each party joining or leaving."""

    calls: CallManager
    call: Call

    def __call__(self, event: CallEvent) -> None:
        if event.name in _CHANGES and not self.call.ended:
            announce(self.calls, self.call)


def _target(calls: CallManager, to: str) -> tuple[str, str]:
    """Whom ``to`` names, as the router takes it, and digits to dial after answer: a
    user or group by name, an extension as typed, a number in E.164."""
    text = to.strip()
    found = calls.router.target(text)
    if found is not None:
        return found[0], ""
    if is_extension_like(text):
        return text, ""
    number = normalize(text, calls.router.default_region)
    return number.e164, number.extension or ""


def _user_of(leg: Leg) -> str:
    """The user or number on a leg: whoever answered among a group's phones."""
    winner = leg.winner
    return (winner.user if winner is not None else None) or leg.peer
