"""SIP dialogs (RFC 3261 §12-§15) and session timers (RFC 4028), sans-I/O.

A :class:`Dialog` holds the state of RFC 3261 §12: its ID, the local and remote
URIs and targets, the route set and both CSeq numbers.  It builds requests
within the dialog and applies the requests and responses the TU sees, but it
sends nothing: the TU hands what it builds to the transaction layer
(:mod:`voipcore.sip.transaction`), which sits below.  :class:`SessionTimer`
keeps the RFC 4028 deadlines against an explicit ``now``; nothing here reads
the clock.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum, StrEnum
from typing import NamedTuple

from voipcore.sip.errors import SipError, SipParseError
from voipcore.sip.headers import Headers, parse_params
from voipcore.sip.message import (
    MAGIC_COOKIE,
    REASON_PHRASES,
    Message,
    Request,
    Response,
    make_response,
    parse_uint,
)
from voipcore.sip.uri import NameAddr, SipUri, Uri, parse_name_addr

#: §8.1.1.6: the Max-Forwards of every request a UA builds.
MAX_FORWARDS = 70
#: Requests whose Contact replaces the remote target (§12.2, RFC 3311 §5.1 for UPDATE).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE"})
#: Requests that carry our local target as Contact: the target refreshes and the
#: methods that create or use a subscription (RFC 6665, RFC 3515).  RFC 3261
#: Table 3 forbids Contact in BYE and CANCEL.
CONTACT_METHODS = TARGET_REFRESH_METHODS | {"SUBSCRIBE", "NOTIFY", "REFER"}


class DialogError(SipError):
    """A request or response the dialog must refuse (RFC 3261 §12.2.2).

    ``status`` and ``reason`` are the response to send to the offending
    request: 500 for a CSeq out of order, 481 for a terminated dialog, 400 for
    an INVITE that cannot create a dialog.
    """

    def __init__(self, reason: str, status: int = 500) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class DialogStateError(SipError):
    """The TU asked for something the dialog's state forbids, e.g. a request on a dead dialog."""


class DialogState(Enum):
    """Dialog states of RFC 3261 §12.

    A provisional response with a To tag creates an *early* dialog (§12.1),
    a 2xx creates or confirms one (§13.2.2.4), and a BYE, a non-2xx final
    response to the initial INVITE, or a 481/408 ends it (§12.3, §12.2.1.2, §15).
    """

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


_EARLY = DialogState.EARLY
_CONFIRMED = DialogState.CONFIRMED
_TERMINATED = DialogState.TERMINATED


@dataclass(frozen=True, slots=True)
class DialogId:
    """Identifies a dialog (§12): Call-ID, local tag and remote tag.

    A tag missing from an RFC 2543 peer's message is the empty string (§12.1.1).
    """

    call_id: str
    local_tag: str
    remote_tag: str


def new_branch() -> str:
    """A fresh Via branch: the magic cookie and 64 random bits (§8.1.1.7)."""
    return MAGIC_COOKIE + secrets.token_hex(8)


def _without_tag(addr: NameAddr) -> NameAddr:
    return NameAddr(
        addr.uri, addr.display_name, {k: v for k, v in addr.params.items() if k != "tag"}
    )


def _with_tag(addr: NameAddr, tag: str) -> str:
    if not tag:
        return str(addr)
    return str(NameAddr(addr.uri, addr.display_name, {**addr.params, "tag": tag}))


def _contact_uri(message: Message) -> Uri | None:
    """The URI of the first Contact that is not ``*``."""
    for contact in message.contacts:
        if isinstance(contact, NameAddr):
            return contact.uri
    return None


def _record_route(message: Message) -> list[NameAddr]:
    return [parse_name_addr(value) for value in message.headers.get_all("Record-Route")]


def _is_loose(route: NameAddr) -> bool:
    """A loose router announces itself with ``lr``, possibly escaped (§19.1.1, RFC 4475)."""
    return isinstance(route.uri, SipUri) and "lr" in route.uri.unescaped_params


def _request_uri_form(uri: Uri) -> Uri:
    """A route URI made fit for the Request-URI: no method parameter, no headers (§19.1.1)."""
    if isinstance(uri, SipUri) and ("method" in uri.params or uri.headers):
        params = {k: v for k, v in uri.params.items() if k != "method"}
        return replace(uri, params=params, headers={})
    return uri


@dataclass(eq=False, slots=True)
class Dialog:
    """One dialog as RFC 3261 §12 defines its state.

    Create it with :meth:`from_uas` or :meth:`from_uac`.  Requests within it
    come from :meth:`create_request` and :meth:`create_ack`; the requests and
    responses of the dialog's transactions go through :meth:`receive_request`,
    :meth:`receive_response` (responses we get) and :meth:`send_response`
    (responses we send), which keep targets, route set, CSeq and state current.
    """

    call_id: str
    "Call-ID of every request in the dialog."
    local_tag: str
    "Our tag: From tag of our requests."
    remote_tag: str
    "The peer's tag: To tag of our requests."
    local_uri: NameAddr
    "From of our requests, without the tag."
    remote_uri: NameAddr
    "To of our requests, without the tag."
    local_target: Uri
    "Our Contact URI."
    remote_target: Uri
    "The peer's Contact URI: the Request-URI of our requests (§12.2.1.1)."
    route_set: list[NameAddr]
    "Route header values of our requests, in order (§12.1.1, §12.1.2)."
    local_cseq: int | None
    "CSeq number of our last request; None until a UAS sends one (§12.1.1)."
    remote_cseq: int | None
    "CSeq number of the peer's last request; None until the peer of a UAC sends one."
    is_uac: bool
    "True if we sent the request that created the dialog."
    secure: bool = False
    "The dialog-creating request had a SIPS Request-URI (§12.1.1, §12.1.2)."
    state: DialogState = _EARLY
    "Early, confirmed or terminated."

    @property
    def id(self) -> DialogId:
        """The dialog ID (§12)."""
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def from_uas(cls, request: Request, response: Response) -> Dialog:
        """The dialog we create by answering ``request`` with ``response`` (§12.1.1).

        ``response`` is a 101-199 with a To tag (early) or a 2xx (confirmed),
        carrying our Contact; :func:`dialog_response` builds one.  The route set
        is the request's Record-Route in order.  Raises :class:`DialogError`
        (400) if the request has no Contact to use as remote target.
        """
        tag = response.to.tag
        if not tag or not 100 < response.status < 300:
            raise ValueError("only a 101-299 response with a To tag creates a dialog (§12.1)")
        local_target = _contact_uri(response)
        if local_target is None:
            raise ValueError("a dialog-creating response needs a Contact (§12.1.1)")
        remote_target = _contact_uri(request)
        if remote_target is None:
            raise DialogError(f"{request.method} without a Contact cannot create a dialog", 400)
        return cls(
            call_id=request.call_id,
            local_tag=tag,
            remote_tag=request.from_.tag or "",
            local_uri=_without_tag(request.to),
            remote_uri=_without_tag(request.from_),
            local_target=local_target,
            remote_target=remote_target,
            route_set=_record_route(request),
            local_cseq=None,
            remote_cseq=request.cseq.seq,
            is_uac=False,
            secure=request.uri.scheme == "sips",
            state=_CONFIRMED if response.status >= 200 else _EARLY,
        )

    @classmethod
    def from_uac(cls, request: Request, response: Response) -> Dialog:
        """The dialog a response to our ``request`` creates (§12.1.2).

        A 101-199 with a To tag creates an early dialog, a 2xx a confirmed one;
        each To tag is its own dialog, so a forked INVITE can create several.
        The route set is the response's Record-Route in reverse order.  The
        remote target is the response's Contact or, when a provisional
        response lacks one, the Request-URI.  A 2xx without a To tag (RFC 2543
        peer) gets the empty remote tag.
        """
        status = response.status
        tag = response.to.tag
        if not 100 < status < 300 or (status < 200 and not tag):
            raise ValueError("only a 101-199 with a To tag or a 2xx creates a dialog (§12.1)")
        local_tag = request.from_.tag
        if not local_tag:
            raise ValueError("a dialog-creating request needs a From tag (§8.1.1.3)")
        local_target = _contact_uri(request)
        if local_target is None:
            raise ValueError("a dialog-creating request needs a Contact (§8.1.1.8)")
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=tag or "",
            local_uri=_without_tag(request.from_),
            remote_uri=_without_tag(request.to),
            local_target=local_target,
            remote_target=_contact_uri(response) or request.uri,
            route_set=_record_route(response)[::-1],
            local_cseq=request.cseq.seq,
            remote_cseq=None,
            is_uac=True,
            secure=request.uri.scheme == "sips",
            state=_CONFIRMED if status >= 200 else _EARLY,
        )

    def create_request(
        self,
        method: str,
        *,
        via: str,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> Request:
        """Build a request within the dialog (§12.2.1.1).

        ``via`` is our sent-by, e.g. ``"SIP/2.0/UDP 192.0.2.5:5060"``; a fresh
        branch is added.  The local CSeq goes up by one (the first request of
        a UAS uses 1).  ACK for a 2xx comes from :meth:`create_ack` and CANCEL
        from :func:`create_cancel`.  The caller may not send BYE as callee in
        an early dialog (§15), nor anything in a terminated one.
        """
        if method in ("ACK", "CANCEL"):
            raise ValueError(f"{method} is built by create_ack / create_cancel, not create_request")
        if self.state is _TERMINATED:
            raise DialogStateError(f"cannot send {method}: the dialog is terminated")
        if method == "BYE" and self.state is _EARLY and not self.is_uac:
            raise DialogStateError("the callee must not send BYE in an early dialog (§15)")
        seq = 1 if self.local_cseq is None else self.local_cseq + 1
        request = self._build(method, seq, via, body, content_type, extra_headers)
        self.local_cseq = seq
        return request

    def create_ack(
        self,
        invite_cseq: int,
        body: bytes = b"",
        *,
        via: str,
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> Request:
        """Build the ACK for a 2xx to the INVITE with CSeq ``invite_cseq`` (§13.2.2.4).

        Built like any request in the dialog, but with the INVITE's CSeq
        number and a new branch; the local CSeq does not move.  Credentials
        the INVITE carried go in ``extra_headers``.
        """
        return self._build("ACK", invite_cseq, via, body, content_type, extra_headers)

    def _build(
        self,
        method: str,
        seq: int,
        via: str,
        body: bytes,
        content_type: str | None,
        extra_headers: Iterable[tuple[str, str]],
    ) -> Request:
        if body and content_type is None:
            raise ValueError("a request with a body needs a Content-Type (§7.4.1)")
        uri = self.remote_target
        routes = [str(route) for route in self.route_set]
        if self.route_set and not _is_loose(self.route_set[0]):
            # Strict router (§12.2.1.1): it takes the Request-URI, and the
            # remote target travels as the last Route value.
            uri = _request_uri_form(self.route_set[0].uri)
            routes = [*routes[1:], f"<{self.remote_target}>"]
        headers = Headers()
        headers.add("Via", f"{via};branch={new_branch()}")
        headers.add("Max-Forwards", str(MAX_FORWARDS))
        for route in routes:
            headers.add("Route", route)
        headers.add("From", _with_tag(self.local_uri, self.local_tag))
        headers.add("To", _with_tag(self.remote_uri, self.remote_tag))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{seq} {method}")
        if method in CONTACT_METHODS:
            headers.add("Contact", f"<{self.local_target}>")
        for name, value in extra_headers:
            headers.add(name, value)
        if content_type is not None:
            headers.add("Content-Type", content_type)
        return Request(method, uri, headers, body)

    def receive_request(self, request: Request) -> None:
        """Check and apply a request the peer sent within the dialog (§12.2.2).

        Raises :class:`DialogError` 500 when its CSeq is lower than the last
        one (ACK and CANCEL are exempt) and 481 when the dialog is terminated.
        A target refresh request (re-INVITE, UPDATE) replaces the remote target
        with its Contact; a BYE terminates the dialog (§15.1.2).
        """
        method = request.method
        if self.state is _TERMINATED:
            if method == "ACK":
                return
            raise DialogError(REASON_PHRASES[481], 481)
        if method != "ACK" and method != "CANCEL":
            seq = request.cseq.seq
            if self.remote_cseq is not None and seq < self.remote_cseq:
                raise DialogError("CSeq out of order", 500)
            self.remote_cseq = seq
        if method in TARGET_REFRESH_METHODS:
            target = _contact_uri(request)
            if target is not None:
                self.remote_target = target
        if method == "BYE":
            self.state = _TERMINATED

    def receive_response(self, response: Response) -> None:
        """Apply a response to a request we sent in the dialog (§12.1.2, §12.2.1.2, §13.2.2.4).

        On the initial INVITE of an early dialog, 1xx and 2xx update the remote
        target; the 2xx confirms the dialog and recomputes the route set from
        its Record-Route; a non-2xx final response ends it (§12.3).  A 2xx to a
        re-INVITE or UPDATE refreshes the remote target.  A 481 or 408, and a
        final response to BYE other than a challenge, terminate the dialog.
        """
        status, method = response.status, response.cseq.method
        if status <= 100:
            return
        early_invite = method == "INVITE" and self.state is _EARLY
        if status < 300 and method in TARGET_REFRESH_METHODS and (status >= 200 or early_invite):
            target = _contact_uri(response)
            if target is not None:
                self.remote_target = target
        if early_invite and 200 <= status < 300:
            self.state = _CONFIRMED
            self.route_set = _record_route(response)[::-1]
        elif (
            (early_invite and status >= 300)
            or status in (408, 481)
            or (method == "BYE" and status >= 200 and status not in (401, 407))
        ):
            self.state = _TERMINATED

    def send_response(self, response: Response) -> None:
        """Apply a response we are about to send in the dialog (UAS side); sends nothing.

        A 2xx to the initial INVITE confirms an early dialog, a non-2xx final
        response ends it (§12.3); a 1xx/2xx to a target refresh request with a
        Contact moves our local target there.
        """
        status, method = response.status, response.cseq.method
        if method in TARGET_REFRESH_METHODS and 100 < status < 300:
            target = _contact_uri(response)
            if target is not None:
                self.local_target = target
        if method == "INVITE" and self.state is _EARLY and status >= 200:
            self.state = _CONFIRMED if status < 300 else _TERMINATED

    def terminate(self) -> None:
        """End the dialog, e.g. when a request in it timed out (§12.2.1.2)."""
        self.state = _TERMINATED


def dialog_response(
    request: Request,
    status: int,
    *,
    contact: Uri | str,
    to_tag: str | None = None,
    reason: str | None = None,
) -> Response:
    """A dialog-creating response to ``request`` (§12.1.1): :func:`make_response`
    plus the request's Record-Route values, in order, and our Contact."""
    response = make_response(request, status, reason, to_tag=to_tag)
    for name, value in request.headers:
        if name == "Record-Route":
            response.headers.add(name, value)
    response.headers.add("Contact", f"<{contact}>")
    return response


def create_cancel(invite: Request) -> Request:
    """Build the CANCEL for ``invite`` (§9.1).

    Request-URI, Call-ID, To, From and the CSeq number are the INVITE's; the
    only Via is the INVITE's top one, so the CANCEL matches its transaction;
    its Route values are copied.  Send it only after a provisional response.
    """
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    headers.add("Max-Forwards", str(MAX_FORWARDS))
    for name, value in invite.headers:
        if name == "Route":
            headers.add(name, value)
    for name in ("From", "To", "Call-ID"):
        copied = invite.headers.get(name)
        if copied is None:
            raise ValueError(f"cannot cancel a request without {name}")
        headers.add(name, copied)
    headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
    return Request("CANCEL", invite.uri_text, headers)


class DialogManager(dict[DialogId, Dialog]):
    """The dialogs of a user agent, by :class:`DialogId` (§12)."""

    def add(self, dialog: Dialog) -> Dialog:
        """Register ``dialog``; its ID must be new."""
        if dialog.id in self:
            raise ValueError(f"dialog {dialog.id} already exists")
        self[dialog.id] = dialog
        return dialog

    def find(self, message: Request | Response, *, as_uas: bool) -> Dialog | None:
        """The dialog ``message`` belongs to, or None (§12.2.2: answer 481).

        ``as_uas`` is our role in the message's transaction: True for a
        request we received (local tag = To tag), False for a response we
        received (local tag = From tag).  A request without a To tag is
        outside any dialog.
        """
        to_tag, from_tag = message.to.tag, message.from_.tag
        local, remote = (to_tag, from_tag) if as_uas else (from_tag, to_tag)
        if local is None:
            return None
        return self.get(DialogId(message.call_id, local, remote or ""))

    def discard(self, dialog: Dialog) -> None:
        """Forget ``dialog`` if it is registered."""
        self.pop(dialog.id, None)

    def terminate_early(self, call_id: str, local_tag: str) -> list[Dialog]:
        """End and forget the early dialogs of one INVITE, on its non-2xx final response (§12.3)."""
        ended = [
            d
            for d in self.values()
            if d.state is _EARLY and d.call_id == call_id and d.local_tag == local_tag
        ]
        for dialog in ended:
            dialog.terminate()
            del self[dialog.id]
        return ended


# -- RFC 4028 session timers ---------------------------------------------------

#: RFC 4028 §4, §5: no session interval or Min-SE may be below 90 s.
MIN_SE_FLOOR = 90
#: RFC 4028 §4: the recommended session interval.
DEFAULT_SESSION_EXPIRES = 1800
#: Option-tag headers of RFC 4028 §3, ready for ``extra_headers``.
SUPPORTED_TIMER = ("Supported", "timer")
REQUIRE_TIMER = ("Require", "timer")


def _has_option(message: Message, header: str, tag: str) -> bool:
    return any(value.lower() == tag for value in message.headers.get_all(header))


def supports_timer(message: Message) -> bool:
    """The sender supports session timers: ``timer`` in Supported or Require (RFC 4028 §7.1)."""
    return _has_option(message, "Supported", "timer") or _has_option(message, "Require", "timer")


def requires_timer(message: Message) -> bool:
    """``timer`` is in Require (RFC 4028 §9)."""
    return _has_option(message, "Require", "timer")


class Refresher(StrEnum):
    """Who refreshes: the UAC or the UAS of the transaction that set the interval (RFC 4028 §4)."""

    UAC = "uac"
    UAS = "uas"


@dataclass(frozen=True, slots=True)
class SessionExpires:
    """A Session-Expires value (RFC 4028 §4): ``1800;refresher=uac``."""

    interval: int
    "Session interval in seconds."
    refresher: Refresher | None = None
    "The refresher parameter, if present."

    @classmethod
    def parse(cls, text: str) -> SessionExpires:
        """Parse ``delta-seconds *(;se-params)``; unknown parameters are ignored."""
        value, semi, rest = text.partition(";")
        interval = parse_uint(value, "Session-Expires", 2**32 - 1)
        params = parse_params(semi + rest) if semi else {}
        if "refresher" not in params:
            return cls(interval)
        try:
            return cls(interval, Refresher((params["refresher"] or "").lower()))
        except ValueError:
            raise SipParseError(f"bad Session-Expires refresher in {text!r}") from None

    @classmethod
    def from_message(cls, message: Message) -> SessionExpires | None:
        """The message's Session-Expires (compact form ``x`` too), or None."""
        value = message.headers.get("Session-Expires")
        return None if value is None else cls.parse(value)

    def __str__(self) -> str:
        if self.refresher is None:
            return str(self.interval)
        return f"{self.interval};refresher={self.refresher}"


def min_se_of(message: Message) -> int | None:
    """The message's Min-SE in seconds (RFC 4028 §5), or None."""
    value = message.headers.get("Min-SE")
    if value is None:
        return None
    return parse_uint(value.partition(";")[0], "Min-SE", 2**32 - 1)


class Negotiated(NamedTuple):
    """The session interval and refresher a UAS settled on (RFC 4028 §9)."""

    interval: int
    refresher: Refresher

    def response_headers(self, request: Request) -> list[tuple[str, str]]:
        """Headers for the 2xx: Session-Expires with the refresher, and
        ``Require: timer`` when the UAC supports the extension (RFC 4028 §9)."""
        headers = [("Session-Expires", str(SessionExpires(self.interval, self.refresher)))]
        if supports_timer(request):
            headers.append(REQUIRE_TIMER)
        return headers


@dataclass(frozen=True, slots=True)
class TooSmall:
    """The requested interval is below our minimum: answer 422 (RFC 4028 §6, §9)."""

    min_se: int
    "Our Min-SE, for the 422's Min-SE header."

    def response(self, request: Request) -> Response:
        """The 422 Session Interval Too Small, with our Min-SE."""
        response = make_response(request, 422, "Session Interval Too Small")
        response.headers.add("Min-SE", str(self.min_se))
        return response


def negotiate_uas(
    request: Request, *, min_se: int = MIN_SE_FLOOR, default: int = DEFAULT_SESSION_EXPIRES
) -> Negotiated | TooSmall:
    """Choose the session interval and refresher for an INVITE or UPDATE (RFC 4028 §9).

    A requested interval below ``min_se`` gets :class:`TooSmall` (422) when the
    UAC supports timers; a UAC that does not could not retry, so the interval
    is raised to ``min_se`` instead (as a proxy does, §8.1).  Without
    Session-Expires the interval is ``default``.  Never below the request's
    Min-SE.  Refresher (§9 table 2): the request's choice if the UAC supports
    timers, else ``uac`` if it does; ``uas`` when the UAC lacks support.
    """
    if min_se < MIN_SE_FLOOR:
        raise ValueError(f"Min-SE must be at least {MIN_SE_FLOOR} s (RFC 4028 §5)")
    supported = supports_timer(request)
    requested = SessionExpires.from_message(request)
    if requested is not None and requested.interval < min_se and supported:
        return TooSmall(min_se)
    floor = max(min_se, min_se_of(request) or 0)
    interval = max(default if requested is None else requested.interval, floor)
    if not supported:
        return Negotiated(interval, Refresher.UAS)
    chosen = requested.refresher if requested is not None else None
    return Negotiated(interval, chosen or Refresher.UAC)


@dataclass(frozen=True, slots=True)
class SessionTimerEvent:
    """Base class of what :meth:`SessionTimer.due` reports."""

    interval: int
    "The session interval in force."


@dataclass(frozen=True, slots=True)
class Refresh(SessionTimerEvent):
    """We are the refresher and half the interval has passed: send a re-INVITE
    or UPDATE now (RFC 4028 §10)."""


@dataclass(frozen=True, slots=True)
class Expire(SessionTimerEvent):
    """No refresh succeeded in time: the session is over, send BYE (RFC 4028 §10)."""


class SessionTimer:
    """The RFC 4028 session timer of one dialog, sans-I/O.

    Inactive until a negotiation is applied: :meth:`apply_response` where we
    sent the INVITE/UPDATE, :meth:`apply_negotiated` where we answered it.
    Then :meth:`get_timer` is the next deadline and :meth:`due` says what to do
    at it.  The refresher refreshes at half the interval and gives up at the
    interval; the other side sends BYE ``min(32, interval / 3)`` seconds before
    the interval runs out (§10).  :meth:`refreshed` restarts both clocks.
    """

    def __init__(
        self, *, interval: int = DEFAULT_SESSION_EXPIRES, min_se: int = MIN_SE_FLOOR
    ) -> None:
        if min_se < MIN_SE_FLOOR or interval < min_se:
            raise ValueError(f"need {MIN_SE_FLOOR} <= min_se <= interval (RFC 4028 §4, §5)")
        self.interval = interval
        "Requested, then negotiated, session interval in seconds."
        self.min_se = min_se
        "Our Min-SE, raised by a 422."
        self.local_refresher: bool | None = None
        "True if we refresh, False if the peer does, None while inactive."
        self.refresh_at: float | None = None
        "When we send the next refresh."
        self.expire_at: float | None = None
        "When the session expires without a refresh."

    @property
    def active(self) -> bool:
        """A session interval is in force."""
        return self.local_refresher is not None

    def request_headers(self) -> list[tuple[str, str]]:
        """Supported, Session-Expires and Min-SE for an INVITE or UPDATE we send.

        The initial request leaves the refresher to the UAS (RFC 4028 §7.1); a
        refresh keeps it on the same side, named from our role as UAC (§7.4).
        """
        expires = SessionExpires(self.interval)
        if self.local_refresher is not None:
            refresher = Refresher.UAC if self.local_refresher else Refresher.UAS
            expires = SessionExpires(self.interval, refresher)
        return [SUPPORTED_TIMER, ("Session-Expires", str(expires)), ("Min-SE", str(self.min_se))]

    def apply_response(self, response: Response, now: float) -> None:
        """Apply a response to an INVITE or UPDATE we sent (RFC 4028 §7.2, §7.3).

        422: take its Min-SE as our floor and interval; the caller retries with
        :meth:`request_headers`.  2xx: its Session-Expires sets interval and
        refresher (we refresh unless it names ``uas``), and the clocks restart.
        A 2xx without one from a peer that supports timers means no session
        expiration, so the timer stops; from a peer that does not, we refresh
        on our own at our interval (§7.2), which is how a dead peer is noticed.
        """
        if response.status == 422:
            theirs = min_se_of(response)
            if theirs is not None:
                self.min_se = max(self.min_se, theirs)
                self.interval = max(self.interval, self.min_se)
            return
        if not 200 <= response.status < 300:
            return
        granted = SessionExpires.from_message(response)
        if granted is None and supports_timer(response):
            self.stop()
            return
        if granted is not None:
            self.interval = granted.interval
        self.local_refresher = granted is None or granted.refresher is not Refresher.UAS
        self.refreshed(now)

    def apply_negotiated(self, negotiated: Negotiated, now: float) -> None:
        """Start (or restart) with what :func:`negotiate_uas` chose as we send the 2xx."""
        self.interval = negotiated.interval
        self.local_refresher = negotiated.refresher is Refresher.UAS
        self.refreshed(now)

    def refreshed(self, now: float) -> None:
        """A session refresh succeeded at ``now``: restart the clocks (RFC 4028 §10)."""
        if self.local_refresher is None:
            return
        interval = self.interval
        if self.local_refresher:
            self.refresh_at = now + interval / 2
            self.expire_at = now + interval
        else:
            self.refresh_at = None
            self.expire_at = now + interval - min(32.0, interval / 3)

    def stop(self) -> None:
        """No session expiration any more: forget both deadlines."""
        self.local_refresher = None
        self.refresh_at = None
        self.expire_at = None

    def get_timer(self) -> float | None:
        """The next deadline, or None."""
        deadlines = [t for t in (self.refresh_at, self.expire_at) if t is not None]
        return min(deadlines) if deadlines else None

    def due(self, now: float) -> Refresh | Expire | None:
        """What is due at ``now``, reported once: :class:`Expire` (the timer
        stops), :class:`Refresh` (re-armed by the next :meth:`refreshed`), or None."""
        if self.expire_at is not None and now >= self.expire_at:
            interval = self.interval
            self.stop()
            return Expire(interval)
        if self.refresh_at is not None and now >= self.refresh_at:
            self.refresh_at = None
            return Refresh(self.interval)
        return None
