"""The dialer page's WebSocket: our JSON protocol (docs/browser-protocol.md) to the call layer.

One socket per signed-in page.  The page sends what its user does (dial,
answer, hang up, mute, hold, keypad, invite, remove) and gets what happens to
its calls (incoming, ringing, answered, ended with the cause, DTMF, quality, the
parties of a conference).  Media never passes here: it flows over WebRTC to
the media engine.  A bad message gets an ``error`` naming the field; the socket
stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from voipcore.calls import conference
from voipcore.calls.manager import CallError, CallManager
from voipcore.calls.passthrough import Passthrough
from voipcore.calls.recording import ACTIONS, Recordings
from voipcore.dialer.numbers import InvalidNumber, is_extension_like, normalize
from voipcore.http.api import same_origin

log = logging.getLogger(__name__)

#: Seconds between WebSocket pings from our side (RFC 6455 §5.5.2): a dead page is
#: noticed, and NATs keep the connection open.
HEARTBEAT = 20.0
#: Largest message a page may send (an SDP offer is a few kB).
MAX_MESSAGE = 64 * 1024

#: The person a call is with: (number dialled, extension, person the page picked or
#: None) -> that person's id if they exist, else whoever holds the number, else None.
PersonLink = Callable[[str, str, int | None], Awaitable[int | None]]


class BadMessage(ValueError):
    """A page message that does not follow the protocol; the text names the field."""


class PageSocket:
    """One page's WebSocket, and the :class:`~voipcore.calls.model.Page` the call layer
    tells things to."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        user: str,
        calls: CallManager,
        *,
        region: str,
        link: PersonLink,
        passthrough: Passthrough | None = None,
        recordings: Recordings | None = None,
    ) -> None:
        self.ws = ws
        self.user = user
        self.calls = calls
        self.region = region
        self.link = link
        self.recordings = recordings
        self.passthrough = passthrough
        self._outbox: asyncio.Queue[dict[str, object] | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, message: dict[str, object]) -> None:
        """Queue a message for the page (the call layer never waits on a socket)."""
        self._outbox.put_nowait(message)

    async def run(self, hello: dict[str, object]) -> None:
        """Serve the page until it goes: hello first, then messages both ways."""
        writer = asyncio.create_task(self._write())
        calls = self.calls.page_calls(self)
        if self.recordings is not None:
            for entry in calls:
                entry["recording"] = self.recordings.state(str(entry["call"])).value
        self.send({"type": "hello", **hello, "calls": calls})
        self.calls.page_opened(self)
        conference.catch_up(self.calls, self)
        try:
            async for message in self.ws:
                if message.type == WSMsgType.TEXT:
                    self._received(message.data)
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            self.calls.page_closed(self)
            self._outbox.put_nowait(None)
            await writer
            for task in list(self._tasks):
                task.cancel()

    async def _write(self) -> None:
        while (message := await self._outbox.get()) is not None:
            if self.ws.closed:
                continue
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_str(json.dumps(message))

    def _received(self, text: str) -> None:
        ref: object = None
        try:
            message = json.loads(text)
            if not isinstance(message, dict):
                raise BadMessage("a message is a JSON object")
            ref = message.get("ref")
            kind = _field(message, "type", str)
            handler = self._handlers.get(kind)
            if handler is None:
                raise BadMessage(f"type: unknown message type {kind!r}")
            handler(message)
        except (ValueError, BadMessage) as exc:
            self._error(ref, None, str(exc))

    @functools.cached_property
    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], None]]:
        """Each message type's handler, built once per page."""
        return {
            "ping": lambda m: self.send({"type": "pong"}),
            "normalize": self._normalize,
            "dial": self._dial,
            "answer": self._answer,
            "decline": self._hangup,
            "hangup": self._hangup,
            "mute": self._mute,
            "hold": self._hold,
            "dtmf": self._dtmf,
            "record": self._record,
            "invite": self._invite,
            "remove": self._remove,
        }

    def _error(self, ref: object, call: object, message: str) -> None:
        error: dict[str, object] = {"type": "error", "message": message}
        if ref is not None:
            error["ref"] = ref
        if call is not None:
            error["call"] = call
        self.send(error)

    def _spawn(self, message: dict[str, Any], work: Callable[[], Any]) -> None:
        """Run a call-control coroutine; its CallError goes back to the page."""

        async def guarded() -> None:
            try:
                await work()
            except CallError as exc:
                self._error(message.get("ref"), message.get("call"), str(exc))

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- messages ---------------------------------------------------------------------

    def _normalize(self, message: dict[str, Any]) -> None:
        """The E.164 form of what the user typed, or why it is not a number."""
        number = _field(message, "number", str).strip()
        reply: dict[str, object] = {"type": "number", "ref": message.get("ref")}
        if is_extension_like(number):
            reply |= {"e164": number, "display": f"extension {number}"}
        else:
            try:
                parsed = normalize(number, self.region)
            except InvalidNumber as exc:
                reply["error"] = str(exc)
            else:
                local = parsed.region == self.region
                reply |= {
                    "e164": parsed.e164,
                    "display": parsed.national if local else parsed.international,
                }
                if parsed.extension:
                    reply["extension"] = parsed.extension
        self.send(reply)

    def _dial(self, message: dict[str, Any]) -> None:
        to = _field(message, "to", str).strip()
        # Pass-through: the rep's own phone carries the audio, so there is no offer.
        passthrough = _field(message, "passthrough", bool) if "passthrough" in message else False
        sdp = "" if passthrough else _field(message, "sdp", str)
        extension = message.get("extension") or ""
        if not isinstance(extension, str) or any(c not in "0123456789*#," for c in extension):
            raise BadMessage("extension: digits, * and # only, with , for a pause")
        picked = message.get("person_id")
        if picked is not None and (isinstance(picked, bool) or not isinstance(picked, int)):
            raise BadMessage("person_id: expected a whole number")

        async def place() -> None:
            person = await self.link(to, extension, picked)
            if passthrough:
                if self.passthrough is None:
                    raise CallError(403, "Pass-through calls need a trunk on this server.")
                await self.passthrough.dial(
                    self.user,
                    to,
                    extension=extension,
                    person_id=person,
                    page=self,
                    ref=message.get("ref"),
                )
                return
            await self.calls.page_dial(
                self, to, sdp, extension=extension, ref=message.get("ref"), person_id=person
            )

        self._spawn(message, place)

    def _answer(self, message: dict[str, Any]) -> None:
        call, sdp = _field(message, "call", str), _field(message, "sdp", str)
        self._spawn(message, lambda: self.calls.page_answer(self, call, sdp))

    def _hangup(self, message: dict[str, Any]) -> None:
        call = _field(message, "call", str)

        async def hang_up() -> None:
            if self.passthrough is not None and self.passthrough.owns(call):
                self.passthrough.hang_up(self, call)
            else:
                self.calls.page_hangup(self, call)

        self._spawn(message, hang_up)

    def _mute(self, message: dict[str, Any]) -> None:
        call, muted = _field(message, "call", str), _field(message, "muted", bool)
        self._spawn(message, lambda: self.calls.page_mute(self, call, muted))

    def _hold(self, message: dict[str, Any]) -> None:
        call, held = _field(message, "call", str), _field(message, "held", bool)
        self._spawn(message, lambda: self.calls.page_hold(self, call, held))

    def _dtmf(self, message: dict[str, Any]) -> None:
        call, digits = _field(message, "call", str), _field(message, "digits", str)
        if not digits or any(c not in "0123456789*#ABCDabcd" for c in digits):
            raise BadMessage("digits: 0-9, *, # or A-D")
        if self.passthrough is not None and self.passthrough.owns(call):
            passthrough = self.passthrough
            self._spawn(message, lambda: passthrough.send_dtmf(self, call, digits))
            return
        self._spawn(message, lambda: self.calls.page_dtmf(self, call, digits))

    def _invite(self, message: dict[str, Any]) -> None:
        """A colleague or a number dialled into the call (:mod:`~voipcore.calls.conference`);
        the page hears of them in ``participants``."""
        call, to = _field(message, "call", str), _field(message, "to", str)

        async def invite() -> None:
            try:
                conference.invite(self.calls, call, to, user=self.user, admin=False)
            except InvalidNumber as exc:
                raise CallError(400, f"to: {exc}") from None

        self._spawn(message, invite)

    def _remove(self, message: dict[str, Any]) -> None:
        call, leg = _field(message, "call", str), _field(message, "leg", str)

        async def remove() -> None:
            conference.remove(self.calls, call, leg, user=self.user, admin=False)

        self._spawn(message, remove)

    def _record(self, message: dict[str, Any]) -> None:
        """Start, pause, resume or stop recording the call (:mod:`~voipcore.calls.recording`);
        every page in the call hears the new state in a ``recording`` message."""
        call, action = _field(message, "call", str), _field(message, "action", str)
        if action not in ACTIONS:
            raise BadMessage(f"action: one of {', '.join(ACTIONS)}")

        async def record() -> None:
            if self.recordings is None:
                raise CallError(409, "Recording is not set up on this server.")
            await self.recordings.act(call, action, user=self.user, admin=False)

        self._spawn(message, record)


def _field(message: dict[str, Any], name: str, kind: type) -> Any:
    value = message.get(name)
    if not isinstance(value, kind):
        raise BadMessage(f"{name}: expected a {kind.__name__}")
    return value


def dialer_route(
    calls: CallManager,
    signed_in: Callable[[web.Request], str | None],
    hello: Callable[[str], dict[str, object]],
    *,
    region: str,
    link: PersonLink,
    passthrough: Passthrough | None = None,
    recordings: Recordings | None = None,
) -> web.RouteDef:
    """``GET /api/v1/ws``: the signed-in page's WebSocket (401 otherwise, 403 from
    another site's page: the cookie alone must not let one in, RFC 6455 §10.2)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        user = signed_in(request)
        if user is None:
            return web.json_response({"error": "sign in first"}, status=401)
        if not same_origin(request):
            return web.json_response({"error": "cross-site WebSocket refused"}, status=403)
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=MAX_MESSAGE)
        await ws.prepare(request)
        log.info("dialer page of %s connected from %s", user, request.remote)
        page = PageSocket(
            ws,
            user,
            calls,
            region=region,
            link=link,
            passthrough=passthrough,
            recordings=recordings,
        )
        await page.run(hello(user))
        log.info("dialer page of %s disconnected", user)
        return ws

    return web.get("/api/v1/ws", handler)
