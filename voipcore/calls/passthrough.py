"""Pass-through calls: the rep's own phone first, then the prospect, bridged by us.

For reps whose internet cannot carry browser audio: the dialer page (or the API)
sets the call up, the audio goes over a second phone.  We call the rep's
pass-through number through the trunk (an INVITE, RFC 3261 §13.2: a billable
carrier leg), play a prompt once they answer and wait for them to press 1, an
RFC 4733 telephone-event on their leg.  On 1 we dial the prospect with the rep's
caller id (a second billable leg) and the engine bridges the two; the prospect's
extension follows as RFC 4733 digits once it answers, exactly as for a browser
call.  Another key ends the call (``passthrough_declined``), and so does no key
within ``[sip] passthrough_timeout`` (``passthrough_timeout``).  Either side
hanging up ends both: the call manager ends a call left with one party.

:class:`PassthroughCall` is the state machine of one call, driven by its
:class:`~voipcore.calls.model.CallEvent` stream and one timer; every transition is
in :data:`TRANSITIONS`.  :class:`Passthrough` places such calls for the page and
the REST API.
"""

from __future__ import annotations

import functools
import logging
import wave
from collections.abc import Awaitable, Callable
from enum import Enum
from pathlib import Path

import media
from media.control import ControlError
from voipcore.calls.browser import ended
from voipcore.calls.manager import CallError, CallManager
from voipcore.calls.model import Call, CallEvent, Cancellable, Page
from voipcore.dialer.numbers import InvalidNumber, normalize

log = logging.getLogger(__name__)

#: "Press 1 to connect your call.": 16-bit 8 kHz mono, as the engine plays prompts.
PROMPT = Path(media.__file__).parent / "prompts" / "press_1.wav"
#: How often the prompt is played while the rep has not pressed a key.
PROMPT_PLAYS = 2
#: Seconds of quiet between two plays of the prompt.
PROMPT_GAP = 1.0
#: Seconds between the rep's 1 and dialling the prospect: the key's end packet is sent
#: three times (RFC 4733 §2.5.1.4), and a late copy must not reach the prospect as a 1.
KEY_GUARD = 0.5


class Stage(Enum):
    """Where a pass-through call is; the page is told each one as ``state``."""

    CALLING_YOU = "calling_you"
    """The rep's pass-through number rings."""
    PRESS_1 = "press_1"
    """The rep answered: the prompt plays until they press a key or time runs out."""
    DIALLING = "dialling"
    """The rep pressed 1: the prospect's number is being dialled."""
    CONNECTED = "connected"
    """The prospect answered: the two talk."""
    ENDED = "ended"


#: (stage, what happened) -> the next stage.  Anything else leaves the stage as it is
#: (a digit pressed once connected is for the prospect, not for us).
TRANSITIONS: dict[tuple[Stage, str], Stage] = {
    (Stage.CALLING_YOU, "rep_answered"): Stage.PRESS_1,
    (Stage.PRESS_1, "pressed_1"): Stage.DIALLING,
    (Stage.PRESS_1, "pressed_other"): Stage.ENDED,
    (Stage.PRESS_1, "timeout"): Stage.ENDED,
    (Stage.DIALLING, "prospect_answered"): Stage.CONNECTED,
    **{(stage, "ended"): Stage.ENDED for stage in Stage if stage is not Stage.ENDED},
}

#: The hang-up cause when the rep's key ends the call.
CAUSES = {"pressed_other": "passthrough_declined", "timeout": "passthrough_timeout"}


def passthrough_number(text: str, region: str, own_extension: str | None = None) -> str:
    """The E.164 form of a rep's pass-through number typed in any common format, or
    ``own_extension`` as typed: the rep's own registered phone (a desk phone here).

    Raises :class:`~voipcore.dialer.numbers.InvalidNumber` when it is not a valid
    number, or when it has an extension: we cannot press through a switchboard to
    reach the rep, so the number must ring their phone directly.
    """
    if own_extension is not None and text.strip() == own_extension:
        return own_extension
    number = normalize(text, region)
    if number.extension is not None:
        raise InvalidNumber(
            "extension",
            f"has an extension ({number.extension}): the server cannot reach you through "
            "a switchboard; give a number that rings your phone directly",
            text,
        )
    return number.e164


@functools.lru_cache(maxsize=4)
def prompt_seconds(path: Path) -> float:
    """How long the prompt at ``path`` plays."""
    with wave.open(str(path), "rb") as prompt:
        return prompt.getnframes() / prompt.getframerate()


class PassthroughCall:
    """One pass-through call: listens to its events, plays the prompt, dials on."""

    def __init__(
        self,
        calls: CallManager,
        call: Call,
        prospect: str,
        *,
        extension: str = "",
        page: Page | None = None,
        prompt: Path = PROMPT,
    ) -> None:
        self.calls, self.call, self.prospect = calls, call, prospect
        self.extension, self.page, self.prompt = extension, page, prompt
        self.stage = Stage.CALLING_YOU
        self.rep_leg = call.legs[0].id
        self.prospect_leg: str | None = None
        self._timer: Cancellable | None = None

    def start(self) -> None:
        """Tell the page the rep's phone is being called."""
        self._tell()

    def on_event(self, event: CallEvent) -> None:
        """A :class:`~voipcore.calls.model.CallListener`: the call's events, in order."""
        happened = self._classify(event)
        if happened is not None:
            self._move(happened, event.data)

    def time_out(self) -> None:
        """No key within the timeout."""
        self._timer = None
        self._move("timeout", {})

    def _classify(self, event: CallEvent) -> str | None:
        """The call event as this machine's input: whose leg, which key."""
        if event.name == "ended":
            return "ended"
        if event.name == "answered":
            if event.leg == self.rep_leg:
                return "rep_answered"
            if event.leg is not None and event.leg == self.prospect_leg:
                return "prospect_answered"
        if event.name == "dtmf" and event.leg == self.rep_leg:
            return "pressed_1" if event.data.get("digit") == "1" else "pressed_other"
        return None

    def _move(self, happened: str, data: dict[str, object]) -> None:
        """Take the transition for ``happened``, if the table has one, and act on it."""
        stage = TRANSITIONS.get((self.stage, happened))
        if stage is None:
            return
        self.stage = stage
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if stage is Stage.PRESS_1:
            self._prompt_rep()
        elif stage is Stage.DIALLING:
            self._dial_prospect()
        elif stage is Stage.CONNECTED:
            self._send({"type": "answered", "peer": self.prospect})
        if stage is not Stage.ENDED:
            self._tell()
            return
        cause = CAUSES.get(happened)
        if cause is not None:
            self.calls.hang_up(self.call, cause)  # its own "ended" comes after: ignored
        status = data.get("status")
        cause = cause or str(data.get("cause") or "normal")
        self._send(ended(self.call.legs[0], status if isinstance(status, int) else None, cause))

    def _prompt_rep(self) -> None:
        """Play the prompt to the rep (again after a pause), and start the timeout."""
        runtime = self.calls.runtime
        now = runtime.now()
        self._timer = runtime.call_at(now + self.calls.settings.passthrough_timeout, self.time_out)
        self._spawn_prompt()
        every = prompt_seconds(self.prompt) + PROMPT_GAP
        for play in range(1, PROMPT_PLAYS):
            runtime.call_at(now + play * every, self._spawn_prompt)

    def _spawn_prompt(self) -> None:
        if self.stage is Stage.PRESS_1:
            self.calls.runtime.spawn(self._play(file=str(self.prompt)))

    async def _play(self, **prompt: object) -> None:
        try:
            await self.calls.play(self.call.id, self.rep_leg, **prompt)
        except (CallError, ControlError) as exc:
            log.warning("call %s: pass-through prompt not played: %s", self.call.id, exc)

    def _dial_prospect(self) -> None:
        """Stop the prompt, and once the rep's key is over dial the prospect."""
        runtime = self.calls.runtime
        runtime.spawn(self._stop_prompt())
        self._timer = runtime.call_at(runtime.now() + KEY_GUARD, self._add_prospect)

    def _add_prospect(self) -> None:
        """Dial the prospect into the call (with the rep's caller id; the extension
        goes as RFC 4733 digits once it answers)."""
        self._timer = None
        if self.call.ended:  # the rep hung up meanwhile; its "ended" is on its way
            return
        try:
            leg = self.calls.add_leg(
                self.call.id, self.prospect, role="callee", digits=self.extension
            )
        except CallError as exc:
            log.warning("call %s: pass-through to %s failed: %s", self.call.id, self.prospect, exc)
            self.calls.hang_up(self.call, "failed")
            return
        self.prospect_leg = leg.id

    async def _stop_prompt(self) -> None:
        try:
            await self.calls.stop_play(self.call.id, self.rep_leg)
        except (CallError, ControlError) as exc:
            log.info("call %s: prompt not stopped: %s", self.call.id, exc)

    def _tell(self) -> None:
        message: dict[str, object] = {"type": "passthrough", "state": self.stage.value}
        if self.stage is Stage.DIALLING:
            message["to"] = self.prospect
        self._send(message)

    def _send(self, message: dict[str, object]) -> None:
        if self.page is not None:
            self.page.send({**message, "call": self.call.id})


#: The user's pass-through number (E.164), or None if they have not set one.
NumberOf = Callable[[str], Awaitable[str | None]]


class Passthrough:
    """Places pass-through calls for the dialer page and the REST API."""

    def __init__(self, calls: CallManager, number_of: NumberOf, prompt: Path = PROMPT) -> None:
        self.calls, self.number_of, self.prompt = calls, number_of, prompt
        self._live: dict[str, PassthroughCall] = {}

    async def dial(
        self,
        user: str,
        prospect: str,
        *,
        extension: str = "",
        person_id: int | None = None,
        page: Page | None = None,
        ref: object = None,
    ) -> Call:
        """Call ``user``'s pass-through number, then ``prospect`` once they press 1.

        ``page`` (placing the call with its request ``ref``) gets ``dialling`` and then
        each stage as a ``passthrough`` message (docs/browser-protocol.md).

        Raises CallError (403) when the user has no pass-through number, or as
        :meth:`~voipcore.calls.manager.CallManager.originate` does.
        """
        number = await self.number_of(user)
        if number is None:
            raise CallError(403, "Set your pass-through number in Settings to call that way.")
        # Their own extension rings their registered phones only, never their pages.
        call = self.calls.originate(
            number,
            prospect,
            user=user,
            device="phone",
            extension=extension,
            person_id=person_id,
            mode="passthrough",
        )
        flow = PassthroughCall(
            self.calls, call, prospect, extension=extension, page=page, prompt=self.prompt
        )
        self._live[call.id] = flow
        call.listeners.append(flow.on_event)
        call.listeners.append(lambda event: self._forget(call.id, event))
        if page is not None:
            page.send({"type": "dialling", "ref": ref, "call": call.id})
        flow.start()
        return call

    def owns(self, call_id: str) -> bool:
        """Whether ``call_id`` is a pass-through call in progress."""
        return call_id in self._live

    def hang_up(self, page: Page, call_id: str) -> None:
        """The page's user hangs up their pass-through call: both parties are."""
        self._own(page, call_id)
        self.calls.end(call_id, by="caller")

    async def send_dtmf(self, page: Page, call_id: str, digits: str) -> None:
        """Keypad digits from the page, sent to the prospect as RFC 4733 events (the
        rep's own phone sends its keys itself)."""
        leg = self._own(page, call_id).prospect_leg
        if leg is None:
            raise CallError(481, "the number is not dialled yet: press 1 on your phone")
        try:
            await self.calls.send_dtmf(call_id, leg, digits)
        except ControlError as exc:
            raise CallError(488, str(exc)) from None

    def _own(self, page: Page, call_id: str) -> PassthroughCall:
        """The page's user's pass-through call ``call_id`` (CallError 481 if not theirs)."""
        flow = self._live.get(call_id)
        if flow is None or flow.call.user != page.user:
            raise CallError(481, f"no pass-through call {call_id!r} of yours")
        return flow

    def _forget(self, call_id: str, event: CallEvent) -> None:
        if event.name == "ended":
            self._live.pop(call_id, None)
