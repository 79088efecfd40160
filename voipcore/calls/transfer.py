"""Call transfer by REFER (RFC 3515), blind or attended with Replaces (RFC 3891).

A party (the transferor) sends REFER inside its dialog with us.  We are a
B2BUA, so we carry the transfer out ourselves instead of passing the REFER on:
blind, we dial the Refer-To target into the call and the transferor leaves
once it answers; attended (Refer-To carrying ``?Replaces=`` for the
transferor's dialog in a second call), the party of that second call joins
the first and the transferor leaves both.  The transferor hears how it went
through the implicit subscription: NOTIFYs with ``message/sipfrag`` status
lines (RFC 3515 §2.4.4-§2.4.5, RFC 3420), unless it sent ``Refer-Sub: false``
(RFC 4488 §4).

This module parses REFER and builds the NOTIFYs; the call manager moves legs.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from voipcore.calls.model import Leg
from voipcore.calls.signalling import Signalling
from voipcore.sip.errors import SipParseError
from voipcore.sip.headers import parse_params
from voipcore.sip.message import REASON_PHRASES, Request, Response, make_response
from voipcore.sip.uri import SipUri, parse_name_addr

#: How long the implicit subscription of a REFER lasts if nothing ends it (§2.4.4).
SUBSCRIPTION_SECONDS = 60
SIPFRAG = "message/sipfrag;version=2.0"


@dataclass(frozen=True, slots=True)
class Replaces:
    """The dialog a Replaces header names (RFC 3891 §6.1), as its sender sees it."""

    call_id: str
    to_tag: str
    from_tag: str


@dataclass(frozen=True, slots=True)
class Referral:
    """What a REFER asks: call ``target``, or take the place of ``replaces``."""

    target: str
    """The Refer-To URI's user part: a user, an extension, a group or a number."""
    replaces: Replaces | None
    subscribe: bool
    """Whether the transferor wants NOTIFYs (RFC 4488: ``Refer-Sub: false`` says no)."""


class ReferError(Exception):
    """A REFER we refuse; ``status`` and the text make the response."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status

    def response(self, request: Request) -> Response:
        return make_response(request, self.status, f"{REASON_PHRASES[self.status]} ({self})")


def parse_refer(request: Request) -> Referral:
    """The REFER's Refer-To (exactly one, §2.4.1) with its Replaces, and Refer-Sub."""
    values = request.headers.get_all("Refer-To")
    if len(values) != 1:
        raise ReferError(400, "exactly one Refer-To is needed")
    try:
        uri = parse_name_addr(values[0]).uri
    except SipParseError as exc:
        raise ReferError(400, f"bad Refer-To: {exc}") from None
    if not isinstance(uri, SipUri) or not uri.user_unescaped:
        raise ReferError(400, "Refer-To must be a SIP URI with a user part")
    replaces = None
    header = next((v for k, v in uri.headers.items() if k.lower() == "replaces"), None)
    if header is not None:
        call_id, _, rest = unquote(header).partition(";")
        try:
            params = parse_params(";" + rest if rest else "")
        except SipParseError as exc:
            raise ReferError(400, f"bad Replaces: {exc}") from None
        to_tag, from_tag = params.get("to-tag"), params.get("from-tag")
        if not call_id or not to_tag or not from_tag:
            raise ReferError(400, "Replaces needs a Call-ID, to-tag and from-tag")
        replaces = Replaces(call_id, to_tag, from_tag)
    subscribe = (request.headers.get("Refer-Sub") or "true").strip().lower() != "false"
    return Referral(uri.user_unescaped, replaces, subscribe)


def matches(leg: Leg, replaces: Replaces) -> bool:
    """Whether ``replaces`` names ``leg``'s dialog: its to-tag is ours, its from-tag
    the party's (RFC 3891 §3, seen from the party that sent the REFER)."""
    dialog = leg.dialog
    return (
        dialog is not None
        and dialog.call_id == replaces.call_id
        and dialog.local_tag == replaces.to_tag
        and dialog.remote_tag == replaces.from_tag
    )


def accepted(request: Request, referral: Referral, contact: str) -> Response:
    """202 Accepted to a REFER (§2.4.2), echoing ``Refer-Sub: false`` (RFC 4488 §4)."""
    response = make_response(request, 202)
    response.headers.add("Contact", f"<{contact}>")
    if not referral.subscribe:
        response.headers.add("Refer-Sub", "false")
    return response


def notify(sig: Signalling, leg: Leg, status: int, reason: str | None = None) -> None:
    """A NOTIFY of the transfer's progress to the transferor (§2.4.5): a sipfrag
    status line; a final status ends the subscription."""
    if not leg.refer_subscribed or not leg.live:
        return
    reason = reason or REASON_PHRASES.get(status, "Unknown")
    if status >= 200:
        state = "terminated;reason=noresource"
    else:
        state = f"active;expires={SUBSCRIPTION_SECONDS}"
    built = sig.in_dialog(
        leg,
        "NOTIFY",
        body=f"SIP/2.0 {status} {reason}\r\n".encode(),
        content_type=SIPFRAG,
        extra_headers=[("Event", "refer"), ("Subscription-State", state)],
    )
    if built is not None:
        sig.send(*built)
