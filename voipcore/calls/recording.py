"""Call recording: the install's policy, start / pause / resume / stop, the consent beep,
and the index of finished files.

A recording is a stereo WAV file, the rep on the left channel and the party they talk
to on the right (in a conference, every other party, mixed), whichever leg is the rep's:
the caller's on calls the rep makes (dialled, clicked to call), the callee's on calls
that come in from the trunk.  The engine writes it (:mod:`media.recorder`); paused
stretches are silence in the file, so its timeline is the call's.

The policy is the install's (``[recording] policy``): ``never`` refuses every
request; ``rep`` lets the rep start, pause, resume and stop from the dialer or the
API; ``always`` starts recording as soon as the rep and the other party are
connected, and lets the rep pause it (a card number read out, PCI DSS) but not stop
it.  Consent laws differ by state and country, so with ``announce = "beep"`` every
party hears a short tone whenever recording starts or resumes.

A recording is indexed (:mod:`voipcore.store.recordings`) when it stops, by the rep
or with its call, under a random id that names it in the API: no guessable URLs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import wave
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any, Literal, get_args

from media.control import OTHERS, ControlError
from voipcore.calls.browser import tell
from voipcore.calls.manager import CallError, CallManager
from voipcore.calls.model import Call, CallEvent, Leg
from voipcore.store.calls import AsyncCallLog
from voipcore.store.recordings import Recording, RecordingStore

log = logging.getLogger(__name__)

Policy = Literal["never", "always", "rep"]
Announce = Literal["none", "beep"]
Action = Literal["start", "pause", "resume", "stop"]
ACTIONS: tuple[Action, ...] = get_args(Action)

#: The beep's frequency and length: the Bell System's recorder warning tone, 1400 Hz for
#: half a second, the sound people know as "this call is being recorded".
BEEP_HZ, BEEP_SECONDS = 1400.0, 0.5

#: Indexes a finished recording (its duration and size still to be read from the file).
Index = Callable[[Recording], Coroutine[Any, Any, None]]


class RecordingState(Enum):
    """Where a call's recording is; ``stopped`` also before the first start."""

    RECORDING = "recording"
    PAUSED = "paused"
    STOPPED = "stopped"


#: Every legal move, (state, action) -> the state after it: the one table of transitions.
TRANSITIONS: dict[tuple[RecordingState, str], RecordingState] = {
    (RecordingState.STOPPED, "start"): RecordingState.RECORDING,
    (RecordingState.RECORDING, "pause"): RecordingState.PAUSED,
    (RecordingState.PAUSED, "resume"): RecordingState.RECORDING,
    (RecordingState.RECORDING, "stop"): RecordingState.STOPPED,
    (RecordingState.PAUSED, "stop"): RecordingState.STOPPED,
}


@dataclass(frozen=True, slots=True)
class RecordingSettings:
    """``[recording]`` as the call layer needs it."""

    directory: Path
    """Where the files are written, made on first use (absolute: the engine may run in
    another process)."""
    policy: Policy = "rep"
    announce: Announce = "beep"


@dataclass
class LiveRecording:
    """A call's recording in progress."""

    recording: Recording
    """What will be indexed when it stops (its id names it in the API from the start)."""
    state: RecordingState


def rep_leg(call: Call) -> Leg | None:
    """The rep's connected leg once another party is connected too, else None.

    The rep is the caller, except on a call that came in from the trunk, where the
    rep is the user who answered it.
    """
    role = "callee" if call.direction == "inbound" else "caller"
    answered = [leg for leg in call.live_legs() if leg.answered]
    rep = next((leg for leg in answered if leg.role == role), None)
    return rep if rep is not None and len(answered) > 1 else None


class Recordings:
    """Every live call's recording, driven by the rep (pages, the API) and the policy."""

    def __init__(self, calls: CallManager, settings: RecordingSettings, index: Index) -> None:
        self.calls = calls
        self.settings = settings
        self.index = index
        self._active: dict[str, LiveRecording] = {}
        if settings.policy == "always":
            calls.joined_hooks.append(self._joined)

    @property
    def policy(self) -> Policy:
        return self.settings.policy

    def state(self, call_id: str) -> RecordingState:
        active = self._active.get(call_id)
        return RecordingState.STOPPED if active is None else active.state

    async def act(self, call_id: str, action: str, *, user: str, admin: bool) -> LiveRecording:
        """Start, pause, resume or stop the recording of a live call for ``user`` (the
        call's owner, or an admin); returns the recording and its new state.

        Raises CallError: 404 for no such call in progress, 403 for another user's
        call, 409 when the policy or the recording's state refuses ``action`` (one of
        :data:`ACTIONS`, as the callers check).
        """
        call = self.calls.live_call(call_id)
        if not admin and call.user != user:
            raise CallError(403, "This is another user's call.")
        if self.policy == "never":
            raise CallError(409, "Recording is turned off on this server.")
        if self.policy == "always" and action == "stop":
            raise CallError(409, "Every call is recorded on this server: pause it instead.")
        active = self._active.get(call.id)
        state = RecordingState.STOPPED if active is None else active.state
        after = TRANSITIONS.get((state, action))
        if after is None:
            raise CallError(409, _refusal(action, state))
        if active is None:
            return await self._start(call)
        if after is RecordingState.STOPPED:
            await self._stop(call, active)
            return active
        active.state = after
        try:
            await self.calls.anchor.record(call.id, action)
        except ControlError as exc:
            active.state = state
            raise CallError(409, f"The media engine refused: {exc}") from None
        self._tell(call, after)
        if after is RecordingState.RECORDING:
            await self._announce(call)
        return active

    async def _start(self, call: Call) -> LiveRecording:
        rep = rep_leg(call)
        if rep is None:
            raise CallError(409, "The call is not connected yet: record once both are in it.")
        recording_id = secrets.token_urlsafe(18)
        # Made on first use: an install that never records has no empty folder.
        self.settings.directory.mkdir(parents=True, exist_ok=True)
        path = self.settings.directory / f"{recording_id}.wav"
        recording = Recording(recording_id, call.id, str(path), self.calls.runtime.wall())
        active = self._active[call.id] = LiveRecording(recording, RecordingState.RECORDING)
        # Before the await: a call ending meanwhile must find the recording to index.
        if self._call_event not in call.listeners:
            call.listeners.append(self._call_event)
        try:
            await self.calls.anchor.record(
                call.id, "start", file=str(path), channels=[rep.id, OTHERS]
            )
        except ControlError as exc:
            self._active.pop(call.id, None)
            raise CallError(409, f"The media engine refused: {exc}") from None
        log.info("call %s: recording %s started", call.id, recording_id)
        self._tell(call, RecordingState.RECORDING)
        await self._announce(call)
        return active

    async def _stop(self, call: Call, active: LiveRecording) -> None:
        del self._active[call.id]
        active.state = RecordingState.STOPPED
        try:
            reply = await self.calls.anchor.record(call.id, "stop")
        except ControlError as exc:
            # The call's media went meanwhile, and its recorder with it: the file is whole.
            log.info("call %s: recording stopped with the call's media: %s", call.id, exc)
        else:
            error = reply.get("recording", {}).get("error")
            if error:
                log.error("call %s: recording %s: %s", call.id, active.recording.id, error)
        self._tell(call, RecordingState.STOPPED)
        await self.index(replace(active.recording, ended_at=self.calls.runtime.wall()))

    def _call_event(self, event: CallEvent) -> None:
        """A call that ends stops its recording (the engine closed the file with it)."""
        if event.name != "ended":
            return
        active = self._active.pop(event.call_id, None)
        if active is not None:
            ended = replace(active.recording, ended_at=self.calls.runtime.wall())
            self.calls.runtime.spawn(self.index(ended))

    def _joined(self, leg: Leg) -> None:
        """Policy ``always``: record as soon as the rep and the other party are connected."""
        call = leg.call
        if call.id not in self._active and rep_leg(call) is not None:
            self.calls.runtime.spawn(self._start_always(call))

    async def _start_always(self, call: Call) -> None:
        if call.ended or call.id in self._active:
            return
        try:
            await self._start(call)
        except CallError as exc:
            log.error("call %s: recording (policy always) did not start: %s", call.id, exc)

    async def _announce(self, call: Call) -> None:
        """The consent beep to every connected party (one it cannot reach is logged)."""
        if self.settings.announce != "beep":
            return
        for leg in call.live_legs():
            if leg.answered:
                try:
                    await self.calls.play(call.id, leg.id, tone=[BEEP_HZ], duration=BEEP_SECONDS)
                except (CallError, ControlError) as exc:
                    log.warning("call %s: no recording beep for leg %s: %s", call.id, leg.id, exc)

    def _tell(self, call: Call, state: RecordingState) -> None:
        """Every dialer page in the call hears what the recording does."""
        for leg in call.live_legs():
            if leg.kind == "browser" and leg.answered:
                tell(leg, {"type": "recording", "state": state.value})


def _refusal(action: str, state: RecordingState) -> str:
    """Why ``action`` cannot be done in ``state``, in words."""
    if state is RecordingState.STOPPED:
        return f"Nothing to {action}: the call is not being recorded."
    if action == "start":
        return f"The call is already being recorded ({state.value})."
    return f"Cannot {action} a recording that is {state.value}."


def store_index(store: RecordingStore, call_log: AsyncCallLog) -> Index:
    """An :data:`Index` into ``store``, on the store's thread, after the call's own row
    (the recordings table refers to it)."""

    async def index(recording: Recording) -> None:
        await call_log.flush()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(call_log.executor, functools.partial(_add, store, recording))

    return index


def _add(store: RecordingStore, recording: Recording) -> None:
    """Store thread: read the file's size and duration, then index it."""
    try:
        size = os.path.getsize(recording.path)
        with wave.open(recording.path, "rb") as wav:
            duration = wav.getnframes() / wav.getframerate()
    except (OSError, EOFError, wave.Error) as exc:
        log.error("recording %s not indexed: %s", recording.id, exc)
        return
    store.add(replace(recording, duration=duration, size=size))
    log.info("recording %s of call %s: %.1f s", recording.id, recording.call_id, duration)
