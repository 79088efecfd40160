"""Call log: one record per call, answered or not, with its legs and their quality.

The call model writes a call when it starts and again when it rings, is answered
and ends; each write replaces the previous one (idempotent by ``call_id``, legs
replaced).  The rep's disposition (one of the ``dispositions`` table's active codes)
and notes come later through :meth:`CallLog.set_disposition`, and a later write
from the call model never erases them.

The store's database keeps every committed record across a crash of the process.
:class:`AsyncCallLog` group-commits writes on one thread so signalling never
waits on the disk.  Quality follows the media engine's units: jitter and RTT in
seconds, loss as a fraction of expected packets (RFC 3550 §6.4.1), MOS from the
E-model (ITU-T G.107).
"""

from __future__ import annotations

import asyncio
import builtins
import csv
import functools
import io
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Literal, TypeVar, get_args

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    bindparam,
    delete,
    select,
    tuple_,
    update,
)

from voipcore.store.db import upsert, writing
from voipcore.store.schema import call_legs, calls, dispositions
from voipcore.store.writer import Done

log = logging.getLogger(__name__)
_T = TypeVar("_T")

Direction = Literal["internal", "outbound", "inbound"]
HungUpBy = Literal["caller", "callee", "system"]
LegRole = Literal["caller", "callee", "colleague"]
LegKind = Literal["phone", "trunk", "browser"]
CallMode = Literal["direct", "click_to_call", "passthrough"]


class DispositionError(ValueError):
    """A disposition that is not in the active list, or a list that is not valid."""


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
    mode: CallMode = "direct"
    """How the call was placed: dialled directly, click-to-call (the rep rung first), or
    pass-through (the rep's own phone first: two billable carrier legs)."""
    legs: list[LegRecord] = field(default_factory=list)
    """The call's legs in the order they were created."""

    def __post_init__(self) -> None:
        _check_choice("call direction", self.direction, Direction)
        _check_choice("call mode", self.mode, CallMode)
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

    @property
    def billable_minutes(self) -> int:
        """What the carrier bills: each billable leg's talk time rounded up to whole
        minutes (as Twilio bills a leg), summed; a pass-through call has two such legs."""
        return sum(math.ceil(leg.duration / 60) for leg in self.legs if leg.billable)


_CALL_FIELDS = tuple(f.name for f in fields(CallRecord) if f.name != "legs")
# "user" is reserved in PostgreSQL: the column is username.
_CALL_COLUMNS = tuple(calls.c["username" if name == "user" else name] for name in _CALL_FIELDS)
_LEG_FIELDS = tuple(f.name for f in fields(LegRecord))
#: The rep's fields: an upsert leaves them alone unless it sets them.
_REP_FIELDS = ("disposition", "notes")


class CallLog:
    """The call log in the store's database.

    Methods are synchronous and run on one thread at a time (:class:`AsyncCallLog`'s,
    or the CLI's).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Built once: every batch of the group commit runs them.
        self._upsert_calls = upsert(engine, calls, keep_if_null=_REP_FIELDS)
        self._delete_legs = delete(call_legs).where(call_legs.c.call_id == bindparam("id"))
        self._insert_legs = call_legs.insert()

    def dispositions(self) -> builtins.list[tuple[str, str]]:
        """The dispositions a rep may log, as (code, label), in the order offered."""
        with self.engine.connect() as db:
            return _active_dispositions(db)

    def set_dispositions(self, items: Iterable[tuple[str, str]]) -> None:
        """Replace the list :meth:`dispositions` returns; calls logged with a code that
        leaves it keep their code.  Raises :class:`DispositionError` for an empty code
        or label, or a code twice."""
        listed = builtins.list(items)
        codes = [code for code, _ in listed]
        if len(set(codes)) != len(codes):
            raise DispositionError(f"each disposition code must appear once: {', '.join(codes)}")
        if not all(code and label for code, label in listed):
            raise DispositionError("a disposition needs a code and a label")
        rows = [
            {"code": code, "label": label, "position": position, "active": True}
            for position, (code, label) in enumerate(listed)
        ]
        with writing(self.engine) as db:
            db.execute(update(dispositions).values(active=False))
            if rows:
                db.execute(upsert(db, dispositions), rows)

    def upsert(self, call: CallRecord) -> None:
        """Write ``call``, replacing an earlier version of it and all its legs."""
        self.upsert_many([call])

    def upsert_many(self, records: Iterable[CallRecord]) -> None:
        """Write many calls in one transaction; the last version of a repeated call wins.

        A call's disposition and notes are kept when the new version has None; one
        that is not an active disposition fails the whole write.
        """
        latest = {call.call_id: call for call in records}
        with writing(self.engine) as db:
            given = {call.disposition for call in latest.values() if call.disposition is not None}
            if given:
                allowed = dict(_active_dispositions(db))
                for disposition in given:
                    _check_disposition(disposition, allowed)
            db.execute(
                self._upsert_calls,
                [
                    {
                        column.name: getattr(call, name)
                        for name, column in zip(_CALL_FIELDS, _CALL_COLUMNS, strict=True)
                    }
                    for call in latest.values()
                ],
            )
            db.execute(self._delete_legs, [{"id": call_id} for call_id in latest])
            legs = [
                {
                    "call_id": call.call_id,
                    "position": position,
                    **{name: getattr(leg, name) for name in _LEG_FIELDS},
                }
                for call in latest.values()
                for position, leg in enumerate(call.legs)
            ]
            if legs:
                db.execute(self._insert_legs, legs)

    def set_disposition(
        self, call_id: str, disposition: str | None, notes: str | None = None
    ) -> None:
        """Record the rep's outcome and notes (None clears them).

        Raises :class:`DispositionError` unless ``disposition`` is None or an active
        disposition, KeyError for an unknown call.
        """
        with writing(self.engine) as db:
            if disposition is not None:
                _check_disposition(disposition, dict(_active_dispositions(db)))
            updated = db.execute(
                update(calls)
                .where(calls.c.call_id == call_id)
                .values(disposition=disposition, notes=notes)
            ).rowcount
        if updated == 0:
            raise KeyError(f"no call {call_id!r} in the call log")

    def close_unfinished(self, at: float, cause: str) -> int:
        """End every call the log still shows in progress (the server died under it):
        ``ended_at`` = ``at``, ``cause``, hung up by the system.  Returns how many."""
        with writing(self.engine) as db:
            ended = db.execute(
                update(calls)
                .where(calls.c.ended_at.is_(None))
                .values(ended_at=at, hangup_cause=cause, hung_up_by="system")
            ).rowcount
            db.execute(update(call_legs).where(call_legs.c.ended_at.is_(None)).values(ended_at=at))
        return int(ended)

    def get(self, call_id: str) -> CallRecord | None:
        """One call with its legs, or None."""
        found = self._select([calls.c.call_id == call_id], 1)
        return found[0] if found else None

    def list(
        self,
        limit: int = 50,
        *,
        user: str | None = None,
        person_id: int | None = None,
        disposition: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before: tuple[float, str] | None = None,
    ) -> builtins.list[CallRecord]:
        """Up to ``limit`` calls, newest first, that match every filter given.

        ``since`` and ``until`` bound the start time (Unix seconds; ``since``
        included, ``until`` not).  ``before`` is the (``started_at``, ``call_id``)
        of the last call of the previous page: this page starts after it (keyset
        pagination; ask for one more than a page to learn whether another follows).
        """
        if limit < 0:
            raise ValueError(f"limit must be 0 or more, not {limit}")
        conditions: builtins.list[ColumnElement[bool]] = []
        for column, value in (
            (calls.c.username, user),
            (calls.c.person_id, person_id),
            (calls.c.disposition, disposition),
        ):
            if value is not None:
                conditions.append(column == value)
        if since is not None:
            conditions.append(calls.c.started_at >= since)
        if until is not None:
            conditions.append(calls.c.started_at < until)
        if before is not None:
            conditions.append(tuple_(calls.c.started_at, calls.c.call_id) < tuple_(*before))
        return self._select(conditions, limit)

    def _select(
        self, conditions: builtins.list[ColumnElement[bool]], limit: int
    ) -> builtins.list[CallRecord]:
        newest_first = (calls.c.started_at.desc(), calls.c.call_id.desc())
        page = select(calls).where(*conditions).order_by(*newest_first).limit(limit).subquery()
        # One statement, so the calls and their legs come from one snapshot.
        statement = (
            select(*(page.c[c.name] for c in _CALL_COLUMNS), *(call_legs.c[f] for f in _LEG_FIELDS))
            .select_from(page.outerjoin(call_legs, call_legs.c.call_id == page.c.call_id))
            .order_by(page.c.started_at.desc(), page.c.call_id.desc(), call_legs.c.position)
        )
        with self.engine.connect() as db:
            rows = db.execute(statement).all()
        found: builtins.list[CallRecord] = []
        width = len(_CALL_FIELDS)
        for row in rows:
            if not found or found[-1].call_id != row[0]:
                found.append(CallRecord(**dict(zip(_CALL_FIELDS, row[:width], strict=True))))
            if row[width] is not None:
                found[-1].legs.append(LegRecord(**dict(zip(_LEG_FIELDS, row[width:], strict=True))))
        return found


def _active_dispositions(db: Connection) -> builtins.list[tuple[str, str]]:
    query = (
        select(dispositions.c.code, dispositions.c.label)
        .where(dispositions.c.active)
        .order_by(dispositions.c.position, dispositions.c.code)
    )
    return [(code, label) for code, label in db.execute(query)]


def _check_disposition(disposition: str, allowed: Mapping[str, str]) -> None:
    if disposition not in allowed:
        raise DispositionError(
            f"unknown disposition {disposition!r}; expected one of: {', '.join(allowed)}"
        )


class AsyncCallLog:
    """The call log for the event loop: writes are group-committed on one thread.

    Upserts queue for ``window`` seconds; while a batch commits the next one
    collects, so under load many calls share a commit, and repeated updates of
    one call in a batch collapse into its latest state.  Completion is reported
    once the batch is committed, that is, once the record survives a crash.

    Pass the store's single-thread executor to share its thread; otherwise the log
    gets a thread of its own.  Close this before a shared executor is shut down.
    A record whose disposition is not active fails its whole batch: the call model
    leaves dispositions to :meth:`set_disposition`.
    """

    def __init__(
        self, log: CallLog, executor: Executor | None = None, window: float = 0.002
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
        """:meth:`CallLog.set_disposition` after the writes queued before it."""
        await self.flush()
        await self._run(functools.partial(self.log.set_disposition, call_id, disposition, notes))

    async def get(self, call_id: str) -> CallRecord | None:
        """:meth:`CallLog.get` on the writer thread (committed writes only)."""
        return await self._run(functools.partial(self.log.get, call_id))

    async def list(
        self,
        limit: int = 50,
        *,
        user: str | None = None,
        person_id: int | None = None,
        disposition: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before: tuple[float, str] | None = None,
    ) -> builtins.list[CallRecord]:
        """:meth:`CallLog.list` on the writer thread (committed writes only)."""
        return await self._run(
            functools.partial(
                self.log.list,
                limit,
                user=user,
                person_id=person_id,
                disposition=disposition,
                since=since,
                until=until,
                before=before,
            )
        )

    async def dispositions(self) -> builtins.list[tuple[str, str]]:
        """:meth:`CallLog.dispositions` on the writer thread."""
        return await self._run(self.log.dispositions)

    async def set_dispositions(self, items: Iterable[tuple[str, str]]) -> None:
        """:meth:`CallLog.set_dispositions` on the writer thread."""
        await self._run(functools.partial(self.log.set_dispositions, builtins.list(items)))

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


def iso_utc(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _record_json(record: CallRecord | LegRecord) -> dict[str, object]:
    data: dict[str, object] = {}
    for f in fields(record):
        value = getattr(record, f.name)
        if f.name.endswith("_at"):
            value = iso_utc(value)
        elif f.name == "legs":
            value = [_record_json(leg) for leg in value]
        data[f.name] = value
    data["duration"] = record.duration
    if isinstance(record, CallRecord):
        data["ring_time"] = record.ring_time
        data["billable_minutes"] = record.billable_minutes
    return data


def to_json(calls: Iterable[CallRecord]) -> builtins.list[dict[str, object]]:
    """Calls as JSON-ready dicts: every field, legs nested, times as ISO 8601 UTC.

    ``duration`` (and ``ring_time`` for calls) are added in seconds, and
    ``billable_minutes`` for calls.
    """
    return [_record_json(call) for call in calls]


#: The columns of :func:`to_csv`.
CSV_HEADER = (
    "call_id",
    "started_at",
    "direction",
    "user",
    "caller",
    "callee",
    "callee_extension",
    "person_id",
    "duration",
    "hangup_cause",
    "disposition",
    "notes",
    "mos",
    "mode",
    "billable_minutes",
    "cost",
)


def call_cost(billable_minutes: int, rate_per_minute: Decimal | None) -> float | None:
    """The estimated cost in USD of ``billable_minutes`` (:attr:`CallRecord.billable_minutes`)
    at ``rate_per_minute`` (``[trunks.twilio] rate_per_minute``); None without a rate.
    The API's ``cost`` and :func:`to_csv`'s both come from here."""
    if rate_per_minute is None:
        return None
    return float(round(rate_per_minute * billable_minutes, 6))


def to_csv(calls: Iterable[CallRecord], rate_per_minute: Decimal | None = None) -> str:
    """Calls as CSV (RFC 4180): a header row, then one row per call in the order given.

    ``started_at`` is ISO 8601 UTC, ``callee`` the E.164 number (the dialled string
    when there is none), ``duration`` talk time in seconds, ``mos`` the worst leg's
    average, ``mode`` direct, click_to_call or passthrough, ``cost`` the
    ``billable_minutes`` at ``rate_per_minute`` in USD (:func:`call_cost`); a missing
    value is an empty cell (``cost`` without a rate).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for call in calls:
        writer.writerow(
            (
                call.call_id,
                iso_utc(call.started_at),
                call.direction,
                call.user,
                call.caller,
                call.callee_e164 or call.callee_dialled,
                call.callee_extension,
                call.person_id,
                f"{call.duration:.3f}",
                call.hangup_cause,
                call.disposition,
                call.notes,
                _worst_mos(call),
                call.mode,
                call.billable_minutes,
                _money(call_cost(call.billable_minutes, rate_per_minute)),
            )
        )
    return out.getvalue()


def _money(amount: float | None) -> str | None:
    """``0.052`` for 0.052 (never ``5.2e-05``); None for none."""
    if amount is None:
        return None
    return f"{amount:.6f}".rstrip("0").rstrip(".")


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


def _worst_mos(call: CallRecord) -> str | None:
    """The lowest average MOS of the call's legs, two decimals; None if none has one."""
    scores = [leg.mos_avg for leg in call.legs if leg.mos_avg is not None]
    return f"{min(scores):.2f}" if scores else None


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
            _worst_mos(call) or "-",
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
