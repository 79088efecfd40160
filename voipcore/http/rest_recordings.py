"""The REST API's recording operations: start, pause, resume and stop a call's recording,
list a call's recordings, and download one (:mod:`voipcore.calls.recording`).

Only the call's owner and admins see or hear a recording.  A recording is named by a
random id (no guessable URLs); one deleted by the retention sweep is 410 Gone
(RFC 9110 §15.5.11), not 404, so a link kept from before says what happened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from voipcore.calls.manager import CallError
from voipcore.calls.recording import Action, Recordings
from voipcore.http.access import owned_call
from voipcore.http.api import Api, ApiError, ApiRequest, Param
from voipcore.store.calls import iso_utc
from voipcore.store.recordings import Recording, RecordingStore

if TYPE_CHECKING:
    from voipcore.http.rest import Backend

#: Where one recording is fetched; the id is the only part that varies.
DOWNLOAD = "/api/v1/recordings/{recording_id}"


@dataclass(frozen=True, slots=True)
class RecordingsBackend:
    """What the recording operations work on."""

    live: Recordings
    """Recordings of calls in progress."""
    store: RecordingStore
    """The index of finished recordings."""


class RecordingActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Action = Field(
        description="start, pause (the file keeps the time, silent), resume or stop."
    )


class RecordingStateOut(BaseModel):
    call_id: str
    recording_id: str = Field(description="The recording this action was on.")
    state: Literal["recording", "paused", "stopped"]


class RecordingOut(BaseModel):
    id: str = Field(description="Random: the recording's only name.")
    call_id: str
    url: str = Field(description="Where the WAV file is (the call's owner and admins only).")
    started_at: str
    ended_at: str | None
    duration: float | None = Field(description="Seconds, paused stretches included.")
    size: int | None = Field(description="Bytes.")
    expired_at: str | None = Field(description="When the retention period deleted the file.")

    @classmethod
    def of(cls, recording: Recording) -> RecordingOut:
        return cls(
            id=recording.id,
            call_id=recording.call_id,
            url=DOWNLOAD.format(recording_id=recording.id),
            started_at=iso_utc(recording.started_at) or "",
            ended_at=iso_utc(recording.ended_at),
            duration=recording.duration,
            size=recording.size,
            expired_at=iso_utc(recording.expired_at),
        )


class RecordingList(BaseModel):
    items: list[RecordingOut]


def add_recording_operations(api: Api, backend: Backend) -> None:
    """Declare the recording operations on ``api``."""
    call_id = {"call_id": Param(str, "The call's id.")}

    def recordings() -> RecordingsBackend:
        if backend.recordings is None:
            raise ApiError(409, "The server is still starting.")
        return backend.recordings

    @api.operation(
        "POST",
        "/api/v1/calls/{call_id}/recording",
        summary="Record a call",
        tag="recordings",
        params=call_id,
        body=RecordingActionIn,
        response=RecordingStateOut,
        errors=(403, 404, 409),
    )
    async def control_recording(req: ApiRequest) -> RecordingStateOut:
        """Starts, pauses, resumes or stops the recording of your call in progress (stereo:
        you on the left, the other party on the right). With the install's announcement
        on, everyone hears a beep when it starts or resumes. 409 says why when the
        install's policy or the recording's state refuses."""
        ident, action = req.str_param("call_id"), req.body(RecordingActionIn).action
        try:
            live = await recordings().live.act(
                ident, action, user=req.user.username, admin=req.is_admin
            )
        except CallError as exc:
            raise ApiError(exc.status, exc.reason) from None
        return RecordingStateOut(
            call_id=ident, recording_id=live.recording.id, state=live.state.value
        )

    @api.operation(
        "GET",
        "/api/v1/calls/{call_id}/recordings",
        summary="A call's recordings",
        tag="recordings",
        params=call_id,
        response=RecordingList,
        errors=(403, 404),
    )
    async def list_recordings(req: ApiRequest) -> RecordingList:
        """The call's finished recordings, oldest first, with where to fetch each; those
        past the retention period are listed with `expired_at` (their files are gone)."""
        record = await owned_call(backend.call_log, req, req.str_param("call_id"))
        store = recordings().store
        found = await backend.run(lambda: store.of_call(record.call_id))
        return RecordingList(items=[RecordingOut.of(recording) for recording in found])

    @api.operation(
        "GET",
        DOWNLOAD,
        summary="Download a recording",
        tag="recordings",
        params={"recording_id": Param(str, "The recording's id.")},
        produces="audio/wav",
        errors=(403, 404, 410),
    )
    async def get_recording(req: ApiRequest) -> web.StreamResponse:
        """The recording as a stereo 16-bit 8 kHz WAV file (you left, the other party
        right); byte ranges are served, so a player can seek. 410 once the retention
        period has deleted it."""
        ident, store = req.str_param("recording_id"), recordings().store

        def lookup() -> tuple[Recording | None, bool]:
            found = store.get(ident)
            return found, found is not None and os.path.isfile(found.path)

        recording, on_disk = await backend.run(lookup)
        if recording is None:
            raise ApiError(404, f"There is no recording {ident}.")
        await owned_call(backend.call_log, req, recording.call_id)
        if recording.expired_at is not None:
            raise ApiError(410, "This recording was deleted at the end of its retention period.")
        if not on_disk:
            raise ApiError(404, f"The file of recording {ident} is missing on the server.")
        return web.FileResponse(
            recording.path,
            headers={
                "Content-Type": "audio/wav",
                "Content-Disposition": f'inline; filename="recording-{recording.id}.wav"',
                "Cache-Control": "private, no-cache",
            },
        )
