"""What the call layer needs from its surroundings, and the SIP messages it builds.

:class:`Runtime` is the call layer's only window on time and tasks: the server
passes one backed by its event loop, tests may pass their own clock.
:class:`Signalling` builds our requests and responses for legs (RFC 3261
§8.1.1, §12.2.1.1, §13.2.1) and hands them to the SIP service, which owns the
transactions.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from voipcore.calls.model import Cancellable, Leg
from voipcore.service import ALLOWED, CALL_EXTENSIONS, CALL_METHODS
from voipcore.sip.dialog import dialog_response, new_branch
from voipcore.sip.headers import Headers, split_list
from voipcore.sip.message import Request, Response
from voipcore.sip.transaction import Address, TransactionKey

log = logging.getLogger(__name__)

SDP = "application/sdp"
#: What we accept in a dialog (RFC 3261 §20.5) and the extensions we support (§20.37).
ALLOW = ", ".join(ALLOWED + CALL_METHODS)
SUPPORTED_TAGS = ", ".join(sorted(CALL_EXTENSIONS))


class ServiceApi(Protocol):
    """What the call layer needs from :class:`voipcore.service.SipService`."""

    def respond(self, response: Response, now: float) -> None:
        """Send a response through its server transaction."""

    def send_request(self, request: Request, addr: Address, now: float) -> TransactionKey:
        """Send a request through a new client transaction (ACK: statelessly)."""


class Runtime(Protocol):
    """Time and tasks for the call layer."""

    def now(self) -> float:
        """Monotonic seconds (the SIP service's clock)."""

    def wall(self) -> float:
        """Unix time, for the call log."""

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback`` at monotonic time ``when``."""

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` (media requests, trunk resolution) in the background."""

    def flush(self) -> None:
        """Send what the SIP service has queued."""


class Signalling:
    """Our SIP requests and responses for the legs of calls."""

    def __init__(
        self,
        service: ServiceApi,
        runtime: Runtime,
        *,
        domain: str,
        via: Callable[[str], str],
        contact: Callable[[str], str],
    ) -> None:
        self.service = service
        self.runtime = runtime
        self.domain = domain
        self.via = via
        self.contact = contact

    def respond(self, response: Response) -> None:
        self.service.respond(response, self.runtime.now())

    def send(self, request: Request, addr: Address) -> TransactionKey:
        return self.service.send_request(request, addr, self.runtime.now())

    def reply(self, leg: Leg, status: int, reason: str | None = None) -> Response:
        """A response of ours to an incoming leg's INVITE, with our tag and Contact."""
        assert leg.invite is not None and leg.addr is not None
        return dialog_response(
            leg.invite, status, contact=self.contact(leg.addr[0]), to_tag=leg.tag, reason=reason
        )

    def invite(
        self,
        leg: Leg,
        uri: str,
        addr: Address,
        *,
        from_uri: str,
        to_uri: str,
        max_forwards: int,
        timer_headers: list[tuple[str, str]],
        tag: str | None = None,
    ) -> Request:
        """Our INVITE for an outgoing leg, offering ``leg.last_sdp`` (§8.1.1, §13.2.1).

        Branches to several phones of one leg each get their own From ``tag``: a
        phone reached twice must not take the second INVITE for a loop (§8.2.2.2).
        """
        headers = Headers()
        headers.add("Via", f"{self.via(addr[0])};branch={new_branch()};rport")
        headers.add("Max-Forwards", str(max_forwards))
        headers.add("From", f"<{from_uri}>;tag={tag or leg.tag}")
        headers.add("To", f"<{to_uri}>")
        headers.add("Call-ID", leg.sip_call_id)
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", f"<{self.contact(addr[0])}>")
        headers.add("Allow", ALLOW)
        for name, value in timer_headers:
            headers.add(name, value)
        headers.add("Content-Type", SDP)
        return Request("INVITE", uri, headers, leg.last_sdp)

    def retry(self, invite: Request, addr: Address, replace: list[tuple[str, str]]) -> Request:
        """``invite`` sent again after a challenge or a 422: a new branch, CSeq + 1,
        and the ``replace`` headers instead of their old values (§8.1.3.5, §22.2)."""
        names = {name.lower() for name, _ in replace}
        headers = Headers()
        for name, value in invite.headers:
            lower = name.lower()
            if lower in names:
                continue
            if lower == "via":
                value = f"{self.via(addr[0])};branch={new_branch()};rport"
            elif lower == "cseq":
                value = f"{invite.cseq.seq + 1} INVITE"
            headers.add(name, value)
        for name, value in replace:
            headers.add(name, value)
        return Request("INVITE", invite.uri_text, headers, invite.body)

    def options(self, uri: str, addr: Address) -> Request:
        """An OPTIONS ping outside any dialog (§11)."""
        headers = Headers()
        headers.add("Via", f"{self.via(addr[0])};branch={new_branch()};rport")
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:voipcore@{self.domain}>;tag={secrets.token_hex(6)}")
        headers.add("To", f"<{uri}>")
        headers.add("Call-ID", secrets.token_hex(12))
        headers.add("CSeq", "1 OPTIONS")
        return Request("OPTIONS", uri, headers)

    def in_dialog(
        self,
        leg: Leg,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: list[tuple[str, str]] | None = None,
    ) -> tuple[Request, Address] | None:
        """A request of ours inside ``leg``'s dialog (§12.2.1.1), and where it goes;
        None if the leg has no dialog."""
        if leg.dialog is None or leg.addr is None:
            return None
        request = leg.dialog.create_request(
            method,
            via=self.via(leg.addr[0]),
            body=body,
            content_type=content_type if body else None,
            extra_headers=extra_headers or (),
        )
        return request, leg.addr

    def bye(self, leg: Leg) -> None:
        """BYE on ``leg``'s dialog, if it has one (§15.1.1)."""
        built = self.in_dialog(leg, "BYE")
        if built is not None:
            self.send(*built)


def allows_update(message: Request | Response) -> bool:
    """UPDATE is among the methods the sender's Allow lists (RFC 3311 §5.1)."""
    return any(
        method.upper() == "UPDATE"
        for value in message.headers.get_all("Allow")
        for method in split_list(value)
    )


class LoopRuntime:
    """The :class:`Runtime` of a running server: its event loop and SIP pump."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        wall_offset: Callable[[], float],
        flush: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._wall_offset = wall_offset
        self._flush = flush
        self._tasks: set[asyncio.Task[None]] = set()

    def now(self) -> float:
        return self._loop.time()

    def wall(self) -> float:
        return self._loop.time() + self._wall_offset()

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable:
        return self._loop.call_at(when, callback)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def flush(self) -> None:
        self._flush()

    async def drained(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) for the work in flight: media releases, log records."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call task failed", exc_info=task.exception())
