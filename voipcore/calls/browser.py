"""Browser legs: a signed-in dialer page is a party, like a registered phone.

The page speaks our JSON protocol over one WebSocket (docs/browser-protocol.md)
instead of SIP; its audio is a WebRTC leg the media engine terminates.  Where a
phone's leg has a dialog, a browser's leg has a :class:`Page`: the call layer
tells it what happens (ringing, answered, ended with the cause) and the page
asks for what its user does (dial, answer, decline, hang up, mute, hold, keypad).

The page always makes the SDP offer, for calls it places and calls it answers
alike, so the server is always the answerer: ICE-lite, DTLS server (RFC 8842).
:class:`Pages` knows which users have a page open: they ring like phones.
"""

from __future__ import annotations

from voipcore.calls.model import Leg, Page
from voipcore.calls.records import cause_of
from voipcore.sdp import OPUS, PCMA, PCMU, Format, MediaDescription, negotiate

#: Codecs a browser leg can use, by the names ``[media] browser_codecs`` lists.
BROWSER_CODECS = {"PCMU": PCMU, "PCMA": PCMA, "OPUS": OPUS}
#: The default preference: G.711 first, so a call to a phone or the trunk is relayed
#: without transcoding or Opus encoding; Opus when the browser offers nothing else.
DEFAULT_BROWSER_CODECS = ("PCMU", "PCMA", "opus")


def browser_formats(audio: MediaDescription, preference: tuple[str, ...]) -> list[Format]:
    """The codecs we take from a page's offer, in our order of ``preference``."""
    ours = [BROWSER_CODECS[name.upper()] for name in preference]
    order = {f.name.upper(): i for i, f in enumerate(ours)}
    return sorted(negotiate(audio, ours), key=lambda f: order.get(f.name.upper(), len(order)))


class Pages:
    """The open pages of each user (a user may have several tabs or machines)."""

    def __init__(self) -> None:
        self._by_user: dict[str, list[Page]] = {}

    def add(self, page: Page) -> None:
        self._by_user.setdefault(page.user, []).append(page)

    def remove(self, page: Page) -> None:
        pages = self._by_user.get(page.user, [])
        if page in pages:
            pages.remove(page)
        if not pages:
            self._by_user.pop(page.user, None)

    def of(self, user: str) -> list[Page]:
        return list(self._by_user.get(user, ()))

    def online(self, user: str) -> bool:
        """Whether ``user`` can be rung in a browser."""
        return bool(self._by_user.get(user))


def tell(leg: Leg, message: dict[str, object]) -> None:
    """Send ``message`` to the page carrying ``leg``; before one answers, to every page
    of the user that rings."""
    pages = [leg.page] if leg.page is not None else leg.pages
    for page in pages:
        page.send({**message, "call": leg.call.id})


def ended(leg: Leg, status: int | None, cause: str | None) -> dict[str, object]:
    """The ``ended`` message: the cause in the call log's words, the SIP status if any."""
    if cause is None:
        cause = cause_of(status) if status is not None and status >= 300 else "normal"
    message: dict[str, object] = {"type": "ended", "cause": cause}
    if status is not None and status >= 300:
        message["status"] = status
    return message


def peer_of(leg: Leg, others: list[Leg]) -> str:
    """Whom the page talks to: the other party's number or name."""
    other = next((o for o in others if o is not leg), None)
    if other is None:
        return leg.call.dialled
    winner = other.winner
    return (winner.user if winner is not None else None) or other.peer
