"""The recordings index: which WAV file holds which stretch of which call, until when.

A row is written when a recording stops (by the rep, or with its call); its ``id`` is
random (``secrets.token_urlsafe``), so the download URL built from it cannot be
guessed.  The retention sweep deletes files older than the retention period and
keeps their rows with ``expired_at`` set, so the API can answer 410 Gone rather
than 404 for a recording that existed.

Methods are synchronous, for the store's thread (``Backend.run``); they take the
time they need as an argument and never read the clock.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, fields

from sqlalchemy import Engine, select, update

from voipcore.store.db import writing
from voipcore.store.schema import recordings

log = logging.getLogger(__name__)

#: Seconds in a retention day.
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Recording:
    """One recording of a call, as the index keeps it."""

    id: str
    """Random and unguessable: the API's handle on the file."""
    call_id: str
    path: str
    """The stereo WAV file (the rep on the left channel)."""
    started_at: float
    """Wall-clock seconds when recording started."""
    ended_at: float | None = None
    duration: float | None = None
    """Seconds of audio in the file, paused stretches (silent) included."""
    size: int | None = None
    """Bytes of the file."""
    expired_at: float | None = None
    """When the retention sweep deleted the file; None while it is kept."""


_COLUMNS = tuple(getattr(recordings.c, f.name) for f in fields(Recording))


class RecordingStore:
    """The ``recordings`` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, recording: Recording) -> None:
        """Index a finished recording (its call must be in the call log)."""
        with writing(self.engine) as db:
            db.execute(recordings.insert(), asdict(recording))

    def get(self, recording_id: str) -> Recording | None:
        with self.engine.connect() as db:
            row = db.execute(select(*_COLUMNS).where(recordings.c.id == recording_id)).first()
        return None if row is None else Recording(*row)

    def of_call(self, call_id: str) -> list[Recording]:
        """The call's recordings, oldest first (expired ones too)."""
        query = (
            select(*_COLUMNS)
            .where(recordings.c.call_id == call_id)
            .order_by(recordings.c.started_at, recordings.c.id)
        )
        with self.engine.connect() as db:
            return [Recording(*row) for row in db.execute(query)]

    def sweep(self, now: float, retention_days: int) -> list[Recording]:
        """Delete the files of recordings started more than ``retention_days`` before
        ``now`` and mark them expired at ``now``; returns them.

        A file already gone (deleted by hand) is marked all the same; one that cannot
        be deleted stays unmarked, is logged, and is tried again at the next sweep.
        """
        cutoff = now - retention_days * DAY
        query = select(*_COLUMNS).where(
            recordings.c.started_at < cutoff, recordings.c.expired_at.is_(None)
        )
        with self.engine.connect() as db:
            due = [Recording(*row) for row in db.execute(query)]
        expired = []
        for recording in due:
            try:
                os.unlink(recording.path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.error("recording %s: cannot delete %s: %s", recording.id, recording.path, exc)
                continue
            expired.append(recording)
        if expired:
            with writing(self.engine) as db:
                db.execute(
                    update(recordings)
                    .where(recordings.c.id.in_([r.id for r in expired]))
                    .values(expired_at=now)
                )
            log.info("retention: deleted %d recordings", len(expired))
        return expired
