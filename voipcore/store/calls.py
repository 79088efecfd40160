"""Call log: one record per call, answered or not, with its legs and their quality.

The call model writes a call when it starts and again when it rings, is answered
and ends; each write replaces the previous one (idempotent by ``call_id``, legs
replaced).  The rep's disposition and notes come later through
:meth:`SqliteCallLog.set_disposition`, and a later write from the call model
never erases them.

SQLite in WAL mode keeps every committed record across a crash of the process.
:class:`AsyncCallLog` group-commits writes on one thread so signalling never
waits on the disk.  Quality follows the media engine's units: jitter and RTT in
seconds, loss as a fraction of expected packets (RFC 3550 §6.4.1), MOS from the
E-model (ITU-T G.107).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, tzinfo
from typing import Any, ClassVar, Literal, TypeVar, get_args

from voipcore.store.writer import Done

log = logging.getLogger(__name__)
_T = TypeVar("_T")

Direction = Literal["internal", "outbound", "inbound"]
HungUpBy = Literal["caller", "callee", "system"]
LegRole = Literal["caller", "callee", "colleague"]
LegKind = Literal["phone", "trunk", "browser"]

#: Dispositions a rep may log unless the log is configured with its own set.
DEFAULT_DISPOSITIONS = frozenset(
    {
        "connected",
        "no_answer",
        "busy",
        "voicemail",
        "wrong_number",
        "callback",
        "not_interested",
        "other",
    }
)


class DispositionError(ValueError):
    """A disposition outside the configured set."""


class SchemaError(RuntimeError):
    """The database holds a call log schema newer than this code understands."""


def _check_choice(kind: str, value: object, allowed: object) -> None:
    choices: tuple[str, ...] = get_args(allowed)
    if value not in choices:
        raise ValueError(f"{kind} must be one of {', '.join(choices)}, not {value!r}")


def _elapsed(start: float | None, end: float | None) -> float:
    return 0.0 if start is None or end is None else max(0.0, end - start)


@dataclass(frozen=True, slots=True, kw_only=True)
class LegRecord:
    """One SIP leg of a call: the rep's phone or browser, the far end, or a colleague.

    Each ``billable`` leg is a cost leg on the carrier trunk: a pass-through call
    has two.
    """

    leg_id: str
    """Unique within the call; the media engine's leg name."""
    role: LegRole
    """Who is on this leg."""
    peer: str
    """Username for a registered user, the number for a carrier leg."""
    transport: str
    """SIP transport of the leg: udp, tcp, tls, ws or wss."""
    kind: LegKind = "phone"
    """A registered phone, the carrier trunk, or a WebRTC leg from the web dialer page."""
    edge: str | None = None
    """Twilio edge the leg went through (e.g. ``ashburn``); None off the trunk."""
    billable: bool = False
    """Whether the carrier charges for this leg."""
    started_at: float
    """Unix time the leg's INVITE was sent or received."""
    answered_at: float | None = None
    """Unix time of the leg's 2xx, None if it was never answered."""
    ended_at: float | None = None
    """Unix time the leg ended (BYE, CANCEL or final error response)."""
    sip_status: int | None = None
    """Final response to the leg's INVITE (RFC 3261 §21)."""
    mos_avg: float | None = None
    """Average E-model MOS over the leg (ITU-T G.107)."""
    mos_min: float | None = None
    """Worst MOS sample of the leg."""
    jitter: float | None = None
    """Interarrival jitter in seconds (RFC 3550 §6.4.1)."""
    loss: float | None = None
    """Fraction of expected packets lost, 0 to 1 (RFC 3550 §6.4.1)."""
    rtt: float | None = None
    """Round-trip time in seconds from RTCP reports (RFC 3550 §6.4.1)."""
    packets_in: int = 0
    """RTP packets received from the peer."""
    packets_out: int = 0
    """RTP packets sent to the peer."""
    transferred_to: str | None = None
    """Where this leg's party transferred the call (RFC 3515): a user or an E.164 number."""

    def __post_init__(self) -> None:
        _check_choice("leg role", self.role, LegRole)
        _check_choice("leg kind", self.kind, LegKind)

    @property
    def duration(self) -> float:
        """Seconds from answer to end; 0 if the leg was not answered or has not ended."""
        return _elapsed(self.answered_at, self.ended_at)

    def with_media(self, stats: Mapping[str, object]) -> LegRecord:
        """This leg with the quality from one leg of the media engine's call summary.

        ``stats`` is a value of ``legs`` in the engine's ``query``/``delete``
        reply: ``mos`` (``{"min", "avg"}`` or None), ``jitter`` and ``rtt`` in
        seconds, ``lost`` and ``expected`` packets, ``packets_in``, ``packets_out``.
        """
        mos = stats.get("mos")
        if mos is not None and not isinstance(mos, Mapping):
            raise ValueError(f"media stats 'mos' must be an object, not {mos!r}")
        lost, expected = _number(stats, "lost"), _number(stats, "expected")
        loss = None
        if lost is not None and expected:
            # Cumulative loss goes negative when duplicates arrive (RFC 3550 §6.4.1).
            loss = min(1.0, max(0.0, lost) / expected)
        return replace(
            self,
            mos_avg=None if mos is None else _number(mos, "avg"),
            mos_min=None if mos is None else _number(mos, "min"),
            jitter=_number(stats, "jitter"),
            loss=loss,
            rtt=_number(stats, "rtt"),
            packets_in=int(_number(stats, "packets_in") or 0),
            packets_out=int(_number(stats, "packets_out") or 0),
        )


def _number(data: Mapping[str, object], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"media stats {key!r} must be a number, not {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """Everything the log keeps about one call, answered or not."""

    call_id: str
    """The call's identifier in voipcore (the B2BUA's, not one leg's SIP Call-ID)."""
    direction: Direction
    """internal (user to user), outbound (to the trunk) or inbound (from the trunk)."""
    caller: str
    """Username or number of the calling party."""
    callee_dialled: str
    """The destination as dialled, e.g. ``(404) 555-1234`` or an extension."""
    callee_e164: str | None = None
    """The destination as E.164 (``+14045551234``), None for extensions."""
    user: str | None = None
    """The voipcore user the call belongs to (the rep), None for unknown callers."""
    started_at: float
    """Unix time the call started (INVITE received or dialler click)."""
    ringing_at: float | None = None
    """Unix time of the first ringing (180/183) from the callee."""
    answered_at: float | None = None
    """Unix time of the callee's 2xx; None if never answered."""
    ended_at: float | None = None
    """Unix time the call ended; None while it is up."""
    hangup_cause: str | None = None
    """normal, busy, no_answer, cancelled, rejected, failed, media_timeout, ..."""
    sip_status: int | None = None
    """Final SIP status of the call towards the caller (RFC 3261 §21)."""
    hung_up_by: HungUpBy | None = None
    """Which side ended the call; system for timeouts and failures."""
    codec: str | None = None
    """Audio codec negotiated with the callee (RFC 3264), e.g. PCMU."""
    disposition: str | None = None
    """Outcome logged by the rep after hang-up."""
    notes: str | None = None
    """Free text logged by the rep after hang-up."""
    callee_extension: str | None = None
    """Extension dialled as DTMF (RFC 4733) once the callee answered, e.g. ``123``."""
    person_id: int | None = None
    """The person called or calling, from the people book; None when unknown."""
    legs: list[LegRecord] = field(default_factory=list)
    """The call's legs in the order they were created."""

    def __post_init__(self) -> None:
        _check_choice("call direction", self.direction, Direction)
        if self.hung_up_by is not None:
            _check_choice("hung_up_by", self.hung_up_by, HungUpBy)

    @property
    def duration(self) -> float:
        """Talk time: seconds from answer to end, 0 if unanswered or still up."""
        return _elapsed(self.answered_at, self.ended_at)

    @property
    def ring_time(self) -> float:
        """Seconds the callee rang before answering or the call ending, 0 if it never rang."""
        end = self.answered_at if self.answered_at is not None else self.ended_at
        return _elapsed(self.ringing_at, end)


# callee_extension and person_id are not stored until the store's SQLAlchemy port.
_CALL_FIELDS = tuple(
    f.name for f in fields(CallRecord) if f.name not in ("legs", "callee_extension", "person_id")
)
# "user" is reserved in PostgreSQL, the scale-out back end: keep the schemas alike.
_CALL_COLUMNS = tuple("username" if name == "user" else name for name in _CALL_FIELDS)
_LEG_FIELDS = tuple(f.name for f in fields(LegRecord))
_LEG_COLUMNS = ", ".join(("call_id", "position", *_LEG_FIELDS))
#: The rep's fields: an upsert leaves them alone unless it sets them.
_REP_FIELDS = ("disposition", "notes")
#: The call_legs table after CREATE TABLE, for the schema and the migration that rebuilds it.
_CALL_LEGS_TABLE = """call_legs (
    call_id     TEXT NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    leg_id      TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('caller', 'callee', 'colleague')),
    peer        TEXT NOT NULL,
    transport   TEXT NOT NULL,
    kind        TEXT NOT NULL DEFAULT 'phone' CHECK (kind IN ('phone', 'trunk', 'browser')),
    edge        TEXT,
    billable    INTEGER NOT NULL,
    started_at  REAL NOT NULL,
    answered_at REAL,
    ended_at    REAL,
    sip_status  INTEGER,
    mos_avg     REAL,
    mos_min     REAL,
    jitter      REAL,
    loss        REAL,
    rtt         REAL,
    packets_in  INTEGER NOT NULL,
    packets_out INTEGER NOT NULL,
    transferred_to TEXT,
    PRIMARY KEY (call_id, leg_id)
)"""


class CallLogSchema:
    """Tables of the call log in SQLite; :meth:`create` is idempotent."""

    VERSION: ClassVar[int] = 3
    DDL: ClassVar[str] = f"""
CREATE TABLE IF NOT EXISTS calls (
    call_id        TEXT PRIMARY KEY,
    direction      TEXT NOT NULL CHECK (direction IN ('internal', 'outbound', 'inbound')),
    caller         TEXT NOT NULL,
    callee_dialled TEXT NOT NULL,
    callee_e164    TEXT,
    username       TEXT,
    started_at     REAL NOT NULL,
    ringing_at     REAL,
    answered_at    REAL,
    ended_at       REAL,
    hangup_cause   TEXT,
    sip_status     INTEGER,
    hung_up_by     TEXT CHECK (hung_up_by IN ('caller', 'callee', 'system')),
    codec          TEXT,
    disposition    TEXT,
    notes          TEXT
);
CREATE INDEX IF NOT EXISTS calls_started_at ON calls (started_at);
CREATE INDEX IF NOT EXISTS calls_username ON calls (username, started_at);
CREATE TABLE IF NOT EXISTS {_CALL_LEGS_TABLE};
INSERT OR IGNORE INTO schema_versions VALUES ('calls', {VERSION});
"""
    #: Steps from each older version to the next, run in order on an older log.
    MIGRATIONS: ClassVar[dict[int, str]] = {
        1: """
ALTER TABLE call_legs ADD COLUMN kind TEXT NOT NULL DEFAULT 'phone'
    CHECK (kind IN ('phone', 'trunk'));
ALTER TABLE call_legs ADD COLUMN transferred_to TEXT;
UPDATE call_legs SET kind = 'trunk' WHERE edge IS NOT NULL;
""",
        # SQLite cannot change a CHECK constraint (kind gains 'browser'): rebuild the
        # table.  Columns are named, as a log upgraded from version 1 has kind and
        # transferred_to last; indexes go with the old table and DDL recreates them.
        # The step builds today's table from today's columns: a later change to
        # call_legs must rebuild it the same way, and freeze this list at version 3's.
        2: f"""
ALTER TABLE call_legs RENAME TO call_legs_v2;
CREATE TABLE {_CALL_LEGS_TABLE};
INSERT INTO call_legs ({_LEG_COLUMNS}) SELECT {_LEG_COLUMNS} FROM call_legs_v2;
DROP TABLE call_legs_v2;
""",
    }

    @classmethod
    def create(cls, db: sqlite3.Connection) -> None:
        """Create the tables if missing; refuse a database written by a newer schema."""
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions "
            "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        row = db.execute("SELECT version FROM schema_versions WHERE component = 'calls'").fetchone()
        if row is not None and row[0] > cls.VERSION:
            raise SchemaError(
                f"call log schema is version {row[0]}, this voipcore knows up to {cls.VERSION}"
            )
        if row is not None:
            for version in range(row[0], cls.VERSION):
                db.executescript(
                    "BEGIN;"
                    + cls.MIGRATIONS[version]
                    + f"UPDATE schema_versions SET version = {version + 1}"
                    " WHERE component = 'calls'; COMMIT;"
                )
        db.executescript(cls.DDL)


def _placeholders(count: int) -> str:
    return ", ".join(["?"] * count)


_UPSERT_CALL = (
    f"INSERT INTO calls ({', '.join(_CALL_COLUMNS)}) VALUES ({_placeholders(len(_CALL_COLUMNS))})"
    " ON CONFLICT (call_id) DO UPDATE SET "
    + ", ".join(
        f"{c} = COALESCE(excluded.{c}, {c})" if c in _REP_FIELDS else f"{c} = excluded.{c}"
        for c in _CALL_COLUMNS[1:]
    )
)
_INSERT_LEG = (
    f"INSERT INTO call_legs ({_LEG_COLUMNS}) VALUES ({_placeholders(len(_LEG_FIELDS) + 2)})"
)
_SELECT = (
    f"SELECT {', '.join('c.' + c for c in _CALL_COLUMNS)},"
    f" {', '.join('l.' + f for f in _LEG_FIELDS)}"
    " FROM (SELECT * FROM calls {where} ORDER BY started_at DESC, call_id DESC LIMIT ?) AS c"
    " LEFT JOIN call_legs AS l ON l.call_id = c.call_id"
    " ORDER BY c.started_at DESC, c.call_id DESC, l.position"
)


class SqliteCallLog:
    """The call log in SQLite, in its own file or sharing the store's connection.

    Given a path it opens the file in WAL mode (a commit survives a crash of the
    process); given a connection it uses it as it is and leaves it open on
    :meth:`close`.  Methods are synchronous and must be called from one thread
    at a time (:class:`AsyncCallLog`'s, or the CLI's).
    """

    def __init__(
        self,
        db: str | os.PathLike[str] | sqlite3.Connection,
        dispositions: Iterable[str] = DEFAULT_DISPOSITIONS,
    ) -> None:
        self.dispositions = frozenset(dispositions)
        """Dispositions :meth:`set_disposition` accepts."""
        if isinstance(db, sqlite3.Connection):
            self._db, self._owned = db, False
        else:
            self._db = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
            self._owned = True
            self._db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: only an OS crash or power loss can drop the last commits.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA foreign_keys=ON")
        CallLogSchema.create(self._db)

    def close(self) -> None:
        """Close the database if this log opened it."""
        if self._owned:
            self._db.close()

    def check_disposition(self, disposition: str | None) -> None:
        """Raise :class:`DispositionError` unless ``disposition`` is None or configured."""
        if disposition is not None and disposition not in self.dispositions:
            raise DispositionError(
                f"unknown disposition {disposition!r}; "
                f"expected one of: {', '.join(sorted(self.dispositions))}"
            )

    def upsert(self, call: CallRecord) -> None:
        """Write ``call``, replacing an earlier version of it and all its legs."""
        self.upsert_many([call])

    def upsert_many(self, calls: Iterable[CallRecord]) -> None:
        """Write many calls in one transaction; the last version of a repeated call wins.

        A call's disposition and notes are kept when the new version has None.
        """
        latest = {call.call_id: call for call in calls}
        for call in latest.values():
            self.check_disposition(call.disposition)
        ids = [(call_id,) for call_id in latest]
        with self._transaction():
            self._db.executemany(
                _UPSERT_CALL,
                [tuple(getattr(call, name) for name in _CALL_FIELDS) for call in latest.values()],
            )
            self._db.executemany("DELETE FROM call_legs WHERE call_id = ?", ids)
            self._db.executemany(
                _INSERT_LEG,
                [
                    (call.call_id, position, *(getattr(leg, name) for name in _LEG_FIELDS))
                    for call in latest.values()
                    for position, leg in enumerate(call.legs)
                ],
            )

    def set_disposition(
        self, call_id: str, disposition: str | None, notes: str | None = None
    ) -> None:
        """Record the rep's outcome and notes (None clears them); KeyError for an unknown call."""
        self.check_disposition(disposition)
        with self._transaction():
            cursor = self._db.execute(
                "UPDATE calls SET disposition = ?, notes = ? WHERE call_id = ?",
                (disposition, notes, call_id),
            )
        if cursor.rowcount == 0:
            raise KeyError(f"no call {call_id!r} in the call log")

    def close_unfinished(self, at: float, cause: str) -> int:
        """End every call the log still shows in progress (the server died under it):
        ``ended_at`` = ``at``, ``cause``, hung up by the system.  Returns how many."""
        with self._transaction():
            ended = self._db.execute(
                "UPDATE calls SET ended_at = ?, hangup_cause = ?, hung_up_by = 'system'"
                " WHERE ended_at IS NULL",
                (at, cause),
            ).rowcount
            self._db.execute("UPDATE call_legs SET ended_at = ? WHERE ended_at IS NULL", (at,))
        return int(ended)

    def get(self, call_id: str) -> CallRecord | None:
        """One call with its legs, or None."""
        found = self._select("WHERE call_id = ?", [call_id], 1)
        return found[0] if found else None

    def list(
        self, limit: int = 50, user: str | None = None, since: float | None = None
    ) -> builtins.list[CallRecord]:
        """The newest ``limit`` calls, optionally of one user or started at or after ``since``."""
        if limit < 0:
            raise ValueError(f"limit must be 0 or more, not {limit}")
        conditions: builtins.list[str] = []
        params: builtins.list[object] = []
        if user is not None:
            conditions.append("username = ?")
            params.append(user)
        if since is not None:
            conditions.append("started_at >= ?")
            params.append(since)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        return self._select(where, params, limit)

    def _select(
        self, where: str, params: builtins.list[object], limit: int
    ) -> builtins.list[CallRecord]:
        # One statement, so the calls and their legs come from one snapshot.
        rows = self._db.execute(_SELECT.format(where=where), [*params, limit]).fetchall()
        calls: builtins.list[CallRecord] = []
        width = len(_CALL_FIELDS)
        for row in rows:
            if not calls or calls[-1].call_id != row[0]:
                calls.append(CallRecord(**dict(zip(_CALL_FIELDS, row[:width], strict=True))))
            if row[width] is not None:
                values: dict[str, Any] = dict(zip(_LEG_FIELDS, row[width:], strict=True))
                values["billable"] = bool(values["billable"])
                calls[-1].legs.append(LegRecord(**values))
        return calls

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front, so busy_timeout applies
        # instead of a read transaction failing to upgrade.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


class AsyncCallLog:
    """The call log for the event loop: writes are group-committed on one thread.

    Upserts queue for ``window`` seconds; while a batch commits the next one
    collects, so under load many calls share a commit, and repeated updates of
    one call in a batch collapse into its latest state.  Completion is reported
    once the batch is committed, that is, once the record survives a crash.

    Pass the store's single-thread executor to share its thread (and its
    connection); otherwise the log gets a thread of its own.  Close this before
    a shared executor is shut down.
    """

    def __init__(
        self, log: SqliteCallLog, executor: Executor | None = None, window: float = 0.002
    ) -> None:
        self.log = log
        self.window = window
        """How long the first write of a batch waits for company."""
        self._owns_executor = executor is None
        self.executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="calls")
        self._queued: dict[str, CallRecord] = {}
        self._queued_done: list[Done] = []
        self._timer: asyncio.TimerHandle | None = None
        self._committing: list[Done] | None = None
        """Callbacks of the batch on the thread now, None when none is."""
        self.batches = 0
        """Batches committed, for tests and metrics."""

    def submit(self, call: CallRecord, done: Done | None = None) -> None:
        """Queue ``call``; ``done`` runs on the loop when it is committed (None) or failed."""
        self.log.check_disposition(call.disposition)
        # A snapshot: the caller may go on changing its list of legs.
        self._queued[call.call_id] = replace(call, legs=list(call.legs))
        if done is not None:
            self._queued_done.append(done)
        if self._timer is None and self._committing is None:
            self._timer = asyncio.get_running_loop().call_later(self.window, self._commit)

    async def upsert(self, call: CallRecord) -> None:
        """Write ``call``; returns once committed, raises if the batch failed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.submit(call, functools.partial(_resolve, future))
        await future

    async def flush(self) -> None:
        """Return once everything submitted so far is committed; raises if it failed."""
        if self._queued:
            waiters = self._queued_done
        elif self._committing is not None:
            waiters = self._committing
        else:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(functools.partial(_resolve, future))
        await future

    async def set_disposition(
        self, call_id: str, disposition: str | None, notes: str | None = None
    ) -> None:
        """:meth:`SqliteCallLog.set_disposition` after the writes queued before it."""
        self.log.check_disposition(disposition)
        await self.flush()
        await self._run(functools.partial(self.log.set_disposition, call_id, disposition, notes))

    async def get(self, call_id: str) -> CallRecord | None:
        """:meth:`SqliteCallLog.get` on the writer thread (committed writes only)."""
        return await self._run(functools.partial(self.log.get, call_id))

    async def list(
        self, limit: int = 50, user: str | None = None, since: float | None = None
    ) -> builtins.list[CallRecord]:
        """:meth:`SqliteCallLog.list` on the writer thread (committed writes only)."""
        return await self._run(functools.partial(self.log.list, limit, user, since))

    async def close(self) -> None:
        """Commit what is queued, then stop the thread if this log owns it."""
        try:
            await self.flush()
        finally:
            if self._owns_executor:
                self.executor.shutdown(wait=True)

    async def _run(self, job: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, job)

    def _commit(self) -> None:
        self._timer = None
        batch = builtins.list(self._queued.values())
        self._committing, self._queued_done = self._queued_done, []
        self._queued = {}
        try:
            job = asyncio.get_running_loop().run_in_executor(
                self.executor, self.log.upsert_many, batch
            )
        except RuntimeError as exc:  # the executor was shut down
            self._committed(len(batch), exc)
            return
        job.add_done_callback(lambda finished: self._committed(len(batch), finished.exception()))

    def _committed(self, size: int, error: BaseException | None) -> None:
        callbacks = self._committing or []
        self._committing = None
        if error is None:
            self.batches += 1
        else:
            log.error("call log write of %d calls failed: %s", size, error)
        for done in callbacks:
            try:
                done(error)
            except Exception:
                log.exception("call log completion callback failed")
        if self._queued:
            self._commit()


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the waiter was cancelled
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _iso_utc(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _record_json(record: CallRecord | LegRecord) -> dict[str, object]:
    data: dict[str, object] = {}
    for f in fields(record):
        value = getattr(record, f.name)
        if f.name.endswith("_at"):
            value = _iso_utc(value)
        elif f.name == "legs":
            value = [_record_json(leg) for leg in value]
        data[f.name] = value
    data["duration"] = record.duration
    if isinstance(record, CallRecord):
        data["ring_time"] = record.ring_time
    return data


def to_json(calls: Iterable[CallRecord]) -> builtins.list[dict[str, object]]:
    """Calls as JSON-ready dicts: every field, legs nested, times as ISO 8601 UTC.

    ``duration`` (and ``ring_time`` for calls) are added in seconds.
    """
    return [_record_json(call) for call in calls]


def _status(call: CallRecord) -> str:
    if call.ended_at is None:
        state = (
            "up"
            if call.answered_at is not None
            else "ringing"
            if call.ringing_at is not None
            else "trying"
        )
    else:
        state = call.hangup_cause or "ended"
    return state if call.sip_status is None else f"{state} ({call.sip_status})"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def _worst_mos(call: CallRecord) -> str:
    scores = [leg.mos_avg for leg in call.legs if leg.mos_avg is not None]
    return f"{min(scores):.2f}" if scores else "-"


def _local_iso(timestamp: float, tz: tzinfo | None) -> str:
    # astimezone(None) turns the naive local time into an aware one, so the offset shows.
    return datetime.fromtimestamp(timestamp, tz).astimezone(tz).isoformat(timespec="seconds")


def format_table(calls: Iterable[CallRecord], tz: tzinfo | None = None) -> str:
    """A text table for ``voipcore calls list``, one call per line, in the order given.

    Start times are ISO 8601 in ``tz`` (local time by default); ``mos`` is the
    worst leg's average.
    """
    header = ("started", "direction", "from", "to", "status", "duration", "mos")
    rows = [header] + [
        (
            _local_iso(call.started_at, tz),
            call.direction,
            call.caller,
            call.callee_e164 or call.callee_dialled,
            _status(call),
            _clock(call.duration),
            _worst_mos(call),
        )
        for call in calls
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {header.index("duration"), header.index("mos")}
    lines = (
        "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    )
    return "\n".join(lines)
