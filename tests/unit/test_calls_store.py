"""Call log: records in the store, group-committing async wrapper, CLI formatting, CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields, replace
from datetime import UTC
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from voipcore.cli import make_user
from voipcore.store.calls import (
    AsyncCallLog,
    CallLog,
    CallRecord,
    DispositionError,
    LegRecord,
    call_cost,
    format_table,
    to_csv,
    to_json,
)
from voipcore.store.db import open_engine
from voipcore.store.users import Store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def rep_leg(**changes: Any) -> LegRecord:
    return replace(
        LegRecord(leg_id="rep", role="caller", peer="alice", transport="wss", started_at=T0),
        **changes,
    )


def carrier_leg(**changes: Any) -> LegRecord:
    leg = LegRecord(
        leg_id="pstn",
        role="callee",
        peer="+14045551234",
        transport="udp",
        edge="ashburn",
        billable=True,
        started_at=T0 + 0.5,
    )
    return replace(leg, **changes)


def started(call_id: str = "c1", at: float = T0, user: str | None = "alice") -> CallRecord:
    return CallRecord(
        call_id=call_id,
        direction="outbound",
        caller="alice",
        callee_dialled="(404) 555-1234",
        callee_e164="+14045551234",
        user=user,
        started_at=at,
        legs=[rep_leg(started_at=at)],
    )


def finished(call_id: str = "c1") -> CallRecord:
    """A call that rang 3 s, talked 65 s, with every field and quality set."""
    return replace(
        started(call_id),
        ringing_at=T0 + 1,
        answered_at=T0 + 4,
        ended_at=T0 + 69,
        hangup_cause="normal",
        sip_status=200,
        hung_up_by="callee",
        codec="PCMU",
        legs=[
            rep_leg(answered_at=T0 + 0.2, ended_at=T0 + 69, sip_status=200, mos_avg=4.3),
            carrier_leg(
                answered_at=T0 + 4,
                ended_at=T0 + 69,
                sip_status=200,
                mos_avg=4.1,
                mos_min=3.6,
                jitter=0.012,
                loss=0.01,
                rtt=0.08,
                packets_in=3240,
                packets_out=3250,
            ),
        ],
    )


def busy(call_id: str = "c2") -> CallRecord:
    return replace(
        started(call_id, at=T0 + 100),
        ringing_at=T0 + 101,
        ended_at=T0 + 103,
        hangup_cause="busy",
        sip_status=486,
        hung_up_by="callee",
    )


def open_log(path: Path) -> CallLog:
    return CallLog(open_engine(f"sqlite:///{path}"))


@pytest.fixture
def calls(tmp_path: Path) -> CallLog:
    return open_log(tmp_path / "calls.db")


def test_finished_call_round_trips_with_every_field_after_reopen(tmp_path: Path) -> None:
    log = open_log(tmp_path / "calls.db")
    call = replace(finished(), callee_extension="123", person_id=42)
    log.upsert(call)
    log.engine.dispose()
    reopened = open_log(tmp_path / "calls.db")
    assert reopened.get("c1") == call
    assert reopened.list() == [call]


def test_updates_at_answer_and_end_replace_the_call_and_its_legs(calls: CallLog) -> None:
    calls.upsert(replace(started(), legs=[rep_leg(), carrier_leg(leg_id="pstn-edge1")]))
    answered = replace(started(), answered_at=T0 + 4, legs=[rep_leg(), carrier_leg()])
    calls.upsert(answered)
    assert calls.get("c1") == answered
    calls.upsert(finished())
    stored = calls.get("c1")
    assert stored == finished()
    assert stored is not None and [leg.leg_id for leg in stored.legs] == ["rep", "pstn"]


def test_rewrite_from_the_call_model_keeps_the_reps_disposition(calls: CallLog) -> None:
    calls.upsert(finished())
    calls.set_disposition("c1", "callback", "call back Tuesday")
    calls.upsert(finished())
    stored = calls.get("c1")
    assert stored is not None
    assert (stored.disposition, stored.notes) == ("callback", "call back Tuesday")
    calls.upsert(replace(finished(), disposition="connected"))
    stored = calls.get("c1")
    assert stored is not None
    assert (stored.disposition, stored.notes) == ("connected", "call back Tuesday")


def test_list_is_newest_first_and_limited(calls: CallLog) -> None:
    calls.upsert_many(started(f"c{i}", at=T0 + i) for i in (3, 1, 4, 0, 2))
    assert [c.call_id for c in calls.list()] == ["c4", "c3", "c2", "c1", "c0"]
    assert [c.call_id for c in calls.list(limit=2)] == ["c4", "c3"]
    assert calls.list(limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        calls.list(limit=-1)


def test_list_filters_by_user_and_start_time(calls: CallLog) -> None:
    calls.upsert_many(
        [
            started("a-old", at=T0, user="alice"),
            started("b", at=T0 + 10, user="bob"),
            started("a-new", at=T0 + 20, user="alice"),
            started("anon", at=T0 + 30, user=None),
        ]
    )
    assert [c.call_id for c in calls.list(user="alice")] == ["a-new", "a-old"]
    assert [c.call_id for c in calls.list(since=T0 + 10)] == ["anon", "a-new", "b"]
    assert [c.call_id for c in calls.list(user="alice", since=T0 + 10)] == ["a-new"]


def test_list_filters_by_person_disposition_and_an_open_ended_start_range(
    calls: CallLog,
) -> None:
    calls.upsert_many(
        [
            replace(started("p7-a", at=T0), person_id=7),
            replace(started("p7-b", at=T0 + 10), person_id=7, user="bob"),
            replace(started("p8", at=T0 + 20), person_id=8),
            started("nobody", at=T0 + 30),
        ]
    )
    calls.set_disposition("p7-b", "voicemail")
    calls.set_disposition("p8", "voicemail")
    assert [c.call_id for c in calls.list(person_id=7)] == ["p7-b", "p7-a"]
    assert [c.call_id for c in calls.list(disposition="voicemail")] == ["p8", "p7-b"]
    assert [c.call_id for c in calls.list(person_id=7, disposition="voicemail")] == ["p7-b"]
    assert [c.call_id for c in calls.list(person_id=7, user="alice")] == ["p7-a"]
    # since is included, until is not.
    assert [c.call_id for c in calls.list(since=T0 + 10, until=T0 + 30)] == ["p8", "p7-b"]
    assert [c.call_id for c in calls.list(until=T0 + 10)] == ["p7-a"]


def test_pages_follow_each_other_newest_first_without_gaps_or_repeats(calls: CallLog) -> None:
    # Calls starting in the same second are ordered by call_id, so no page boundary
    # can split or repeat them.
    calls.upsert_many(
        [started(f"c{i:02}", at=T0 + i // 3, user="alice" if i % 4 else "bob") for i in range(20)]
    )
    seen: list[str] = []
    before: tuple[float, str] | None = None
    pages = 0
    while True:
        page = calls.list(4 + 1, user="alice", before=before)  # one more: is there a next?
        seen += [c.call_id for c in page[:4]]
        pages += 1
        if len(page) <= 4:
            break
        before = (page[3].started_at, page[3].call_id)
    everyone = calls.list(100, user="alice")
    assert seen == [c.call_id for c in everyone]
    assert len(seen) == 15 and pages == 4
    assert seen[:3] == ["c19", "c18", "c17"]
    after_c04 = calls.list(before=(T0 + 1, "c04"))
    assert [c.call_id for c in after_c04] == ["c03", "c02", "c01", "c00"]


def test_list_keeps_each_calls_own_legs(calls: CallLog) -> None:
    calls.upsert_many([finished("talked"), busy("busy"), replace(started("bare"), legs=[])])
    by_id = {c.call_id: c for c in calls.list()}
    assert by_id["talked"].legs == finished().legs
    assert by_id["busy"].legs == [rep_leg(started_at=T0 + 100)]
    assert by_id["bare"].legs == []


def test_repeated_call_in_one_batch_keeps_its_last_version(calls: CallLog) -> None:
    calls.upsert_many([started(), finished(), busy("c1")])
    assert calls.list() == [busy("c1")]


def test_unknown_call_is_none_and_its_disposition_a_key_error(calls: CallLog) -> None:
    assert calls.get("nope") is None
    with pytest.raises(KeyError, match="nope"):
        calls.set_disposition("nope", "busy", None)


def test_disposition_outside_the_set_is_refused_with_the_choices(calls: CallLog) -> None:
    calls.upsert(finished())
    with pytest.raises(
        DispositionError, match="'sold'; expected one of: connected, voicemail, no_answer"
    ):
        calls.set_disposition("c1", "sold", "")
    with pytest.raises(ValueError):
        calls.upsert(replace(finished(), disposition="sold"))
    calls.set_disposition("c1", "voicemail", "left a message")
    calls.set_disposition("c1", None, None)
    stored = calls.get("c1")
    assert stored is not None and (stored.disposition, stored.notes) == (None, None)


def test_a_new_list_of_dispositions_replaces_the_old_and_calls_keep_theirs(
    calls: CallLog,
) -> None:
    calls.upsert_many([finished("c1"), finished("c2")])
    calls.set_disposition("c1", "busy")
    calls.set_dispositions([("sale", "Sale"), ("no_sale", "No sale"), ("connected", "Talked")])
    assert calls.dispositions() == [
        ("sale", "Sale"),
        ("no_sale", "No sale"),
        ("connected", "Talked"),
    ]
    calls.set_disposition("c2", "sale", "2 seats")
    with pytest.raises(DispositionError, match="'busy'.*expected one of: sale, no_sale, connected"):
        calls.set_disposition("c2", "busy")
    stored = calls.get("c1")
    assert stored is not None and stored.disposition == "busy"
    assert [c.call_id for c in calls.list(disposition="busy")] == ["c1"]
    calls.set_dispositions([("busy", "Line busy")])  # an old code comes back, relabelled
    assert calls.dispositions() == [("busy", "Line busy")]
    calls.set_disposition("c2", "busy")


@pytest.mark.parametrize(
    ("items", "error"),
    [
        ([("sale", "Sale"), ("sale", "Again")], "once: sale, sale"),
        ([("", "Nothing")], "a code and a label"),
        ([("sale", "")], "a code and a label"),
    ],
)
def test_an_invalid_list_of_dispositions_is_refused_and_changes_nothing(
    calls: CallLog, items: list[tuple[str, str]], error: str
) -> None:
    before = calls.dispositions()
    with pytest.raises(DispositionError, match=error):
        calls.set_dispositions(items)
    assert calls.dispositions() == before


def test_unanswered_call_is_logged_with_zero_duration(calls: CallLog) -> None:
    calls.upsert(busy())
    stored = calls.get("c2")
    assert stored is not None and stored == busy()
    assert stored.answered_at is None
    assert stored.duration == 0.0
    assert stored.ring_time == 2.0


def test_duration_runs_from_answer_to_end_and_ring_time_from_ringing(
    calls: CallLog,
) -> None:
    call = finished()
    assert (call.duration, call.ring_time) == (65.0, 3.0)
    assert call.legs[1].duration == 65.0
    up = replace(call, ended_at=None)
    assert (up.duration, up.ring_time) == (0.0, 3.0)
    assert started().ring_time == 0.0


def test_invalid_direction_role_and_hung_up_by_are_refused() -> None:
    with pytest.raises(ValueError, match="direction must be one of internal"):
        replace(started(), direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hung_up_by"):
        replace(started(), hung_up_by="nobody")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="leg role"):
        rep_leg(role="observer")


def test_leg_takes_quality_from_the_media_engine_summary() -> None:
    summary = {
        "codec": "PCMU",
        "packets_in": 1000,
        "packets_out": 990,
        "lost": 20,
        "expected": 1000,
        "jitter": 0.004,
        "rtt": 0.12,
        "mos": {"min": 3.9, "avg": 4.2, "max": 4.4},
    }
    leg = carrier_leg().with_media(summary)
    assert (leg.mos_avg, leg.mos_min, leg.jitter, leg.rtt) == (4.2, 3.9, 0.004, 0.12)
    assert (leg.loss, leg.packets_in, leg.packets_out) == (0.02, 1000, 990)
    assert leg.leg_id == "pstn" and leg.billable
    early = carrier_leg().with_media({**summary, "mos": None, "lost": -3, "rtt": None})
    assert (early.mos_avg, early.loss, early.rtt) == (None, 0.0, None)
    assert carrier_leg().with_media({**summary, "expected": 0}).loss is None
    with pytest.raises(ValueError, match="'jitter' must be a number"):
        carrier_leg().with_media({**summary, "jitter": "high"})


def test_json_has_every_field_nested_legs_and_utc_iso_times() -> None:
    [data] = to_json([finished()])
    json.dumps(data)
    assert set(data) == {f.name for f in fields(CallRecord)} | {
        "duration",
        "ring_time",
        "billable_minutes",
    }
    assert data["started_at"] == "2023-11-14T22:13:20.000Z"
    assert data["answered_at"] == "2023-11-14T22:13:24.000Z"
    assert (data["duration"], data["ring_time"], data["user"]) == (65.0, 3.0, "alice")
    legs = data["legs"]
    assert isinstance(legs, list) and len(legs) == 2
    assert set(legs[1]) == {f.name for f in fields(LegRecord)} | {"duration"}
    assert legs[1]["started_at"] == "2023-11-14T22:13:20.500Z"
    assert (legs[1]["edge"], legs[1]["billable"], legs[1]["mos_avg"]) == ("ashburn", True, 4.1)
    [unanswered] = to_json([busy()])
    assert (unanswered["answered_at"], unanswered["duration"]) == (None, 0.0)


def test_billable_minutes_round_each_billable_leg_up_as_twilio_bills() -> None:
    # 65 s on the carrier is 2 minutes; the rep's own phone leg costs nothing.
    assert finished().billable_minutes == 2
    assert to_json([finished()])[0]["billable_minutes"] == 2
    # Pass-through: the rep's cell (60 s: one minute exactly) is a carrier leg too.
    cell = carrier_leg(leg_id="a", role="caller", answered_at=T0 + 1, ended_at=T0 + 61)
    passthrough = replace(finished(), mode="passthrough", legs=[cell, finished().legs[1]])
    assert passthrough.billable_minutes == 1 + 2
    assert busy().billable_minutes == 0


def test_csv_has_a_header_then_one_row_per_call() -> None:
    talked = replace(
        finished(),
        callee_extension="123",
        person_id=42,
        disposition="callback",
        notes='said "hi", bye',
    )
    internal = replace(
        busy(), direction="internal", callee_dialled="201", callee_e164=None, user=None, legs=[]
    )
    rows = list(csv.reader(io.StringIO(to_csv([talked, internal], Decimal("0.013")))))
    assert rows == [
        [
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
        ],
        [
            "c1",
            "2023-11-14T22:13:20.000Z",
            "outbound",
            "alice",
            "alice",
            "+14045551234",
            "123",
            "42",
            "65.000",
            "normal",
            "callback",
            'said "hi", bye',
            "4.10",
            "direct",
            "2",
            "0.026",
        ],
        [
            "c2",
            "2023-11-14T22:15:00.000Z",
            "internal",
            "",
            "alice",
            "201",
            "",
            "",
            "0.000",
            "busy",
            "",
            "",
            "",
            "direct",
            "0",
            "0",
        ],
    ]
    assert to_csv([]) == ",".join(rows[0]) + "\r\n"


def test_csv_has_the_mode_billable_minutes_and_the_cost_the_api_shows() -> None:
    cell = carrier_leg(leg_id="a", role="caller", answered_at=T0 + 1, ended_at=T0 + 61)
    passthrough = replace(finished(), mode="passthrough", legs=[cell, finished().legs[1]])
    click = replace(busy(), mode="click_to_call")

    def tail(rate: Decimal | None) -> list[list[str]]:
        return [row[-3:] for row in csv.reader(io.StringIO(to_csv([passthrough, click], rate)))]

    assert tail(Decimal("0.013")) == [
        ["mode", "billable_minutes", "cost"],
        ["passthrough", "3", "0.039"],
        ["click_to_call", "0", "0"],
    ]
    assert tail(None)[1:] == [["passthrough", "3", ""], ["click_to_call", "0", ""]]
    # A tiny rate is still written as a plain decimal, never 1.3e-05.
    assert tail(Decimal("0.0000043"))[1][2] == "0.000013"
    assert call_cost(3, Decimal("0.013")) == 0.039
    assert call_cost(3, None) is None


def test_table_shows_one_aligned_line_per_call() -> None:
    long_call = replace(finished("c3"), ended_at=T0 + 4 + 3725, callee_e164=None)
    up = replace(finished("c4"), ended_at=None, hangup_cause=None, sip_status=None, legs=[])
    table = format_table([busy(), finished(), long_call, up], tz=UTC)
    assert table.splitlines() == [
        "started                    direction  from   to              status        duration   mos",
        "2023-11-14T22:15:00+00:00  outbound   alice  +14045551234    busy (486)        0:00     -",
        "2023-11-14T22:13:20+00:00  outbound   alice  +14045551234    normal (200)      1:05  4.10",
        "2023-11-14T22:13:20+00:00  outbound   alice  (404) 555-1234  normal (200)   1:02:05  4.10",
        "2023-11-14T22:13:20+00:00  outbound   alice  +14045551234    up                0:00     -",
    ]
    assert format_table([], tz=UTC) == "started  direction  from  to  status  duration  mos"


def test_table_start_time_is_local_with_its_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "EST5")
    time.tzset()
    try:
        table = format_table([finished()])
    finally:
        monkeypatch.undo()
        time.tzset()
    assert table.splitlines()[1].startswith("2023-11-14T17:13:20-05:00  outbound")


def old_log(path: Path, fixture: str) -> Path:
    """``path`` holding the dump ``fixture`` of a call log an older voipcore wrote."""
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript((FIXTURES / "store" / fixture).read_text())
    db.close()
    return path


def test_a_version_1_log_is_upgraded_with_its_calls_intact(tmp_path: Path) -> None:
    path = old_log(tmp_path / "calls.db", "calllog_v1.sql")
    calls = open_log(path)
    call = calls.get("v1-call")
    assert call is not None
    assert (call.disposition, call.notes, call.callee_e164) == (
        "connected",
        "spoke to Dana",
        "+14045551234",
    )
    # Legs had no kind: the one through a trunk edge is the trunk leg.
    assert [(leg.leg_id, leg.kind, leg.transferred_to) for leg in call.legs] == [
        ("a", "phone", None),
        ("b", "trunk", None),
    ]
    assert call.legs[1].mos_avg == 4.3
    calls.upsert(replace(call, legs=[replace(call.legs[0], transferred_to="bob")]))
    again = calls.get("v1-call")
    assert again is not None and again.legs[0].transferred_to == "bob"


def test_a_version_1_log_upgraded_through_version_2_keeps_each_value_in_its_column(
    tmp_path: Path,
) -> None:
    # Version 1 to 2 appended kind and transferred_to; the rebuild to 3 must not
    # copy by position, or kind would land in edge and edge in billable.
    calls = open_log(old_log(tmp_path / "calls.db", "calllog_v1.sql"))
    call = calls.get("v1-call")
    assert call is not None
    answered: dict[str, Any] = {
        "started_at": T0,
        "answered_at": T0 + 2,
        "ended_at": T0 + 10,
        "sip_status": 200,
    }
    assert call.legs == [
        LegRecord(
            leg_id="a",
            role="caller",
            peer="alice",
            transport="udp",
            **answered,
            packets_in=400,
            packets_out=400,
        ),
        LegRecord(
            leg_id="b",
            role="callee",
            peer="+14045551234",
            transport="udp",
            kind="trunk",
            edge="ashburn",
            billable=True,
            **answered,
            mos_avg=4.3,
            packets_in=400,
            packets_out=400,
        ),
    ]


#: Version 2's columns, named so rows compare whatever their order on disk.
V2_CALL_COLUMNS = (
    "call_id, direction, caller, callee_dialled, callee_e164, username, started_at,"
    " ringing_at, answered_at, ended_at, hangup_cause, sip_status, hung_up_by, codec,"
    " disposition, notes"
)
V2_LEG_COLUMNS = (
    "call_id, position, leg_id, role, peer, transport, kind, edge, billable, started_at,"
    " answered_at, ended_at, sip_status, mos_avg, mos_min, jitter, loss, rtt,"
    " packets_in, packets_out, transferred_to"
)


def stored_rows(path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Every call and every leg in ``path`` as raw rows."""
    db = sqlite3.connect(path)
    found = (
        db.execute(f"SELECT {V2_CALL_COLUMNS} FROM calls ORDER BY call_id").fetchall(),
        db.execute(f"SELECT {V2_LEG_COLUMNS} FROM call_legs ORDER BY call_id, position").fetchall(),
    )
    db.close()
    return found


def test_a_version_2_log_is_upgraded_with_every_row_and_value(tmp_path: Path) -> None:
    path = old_log(tmp_path / "calls.db", "calllog_v2.sql")
    before = stored_rows(path)
    assert (len(before[0]), len(before[1])) == (2, 3)
    calls = open_log(path)
    assert stored_rows(path) == before
    call = calls.get("v2-call")
    assert call is not None
    assert (call.disposition, call.notes) == ("callback", "call back Tuesday")
    phone, trunk = call.legs
    assert (phone.kind, phone.transport, phone.transferred_to) == ("phone", "tls", "bob")
    assert (trunk.kind, trunk.edge, trunk.billable) == ("trunk", "ashburn", True)
    assert (trunk.mos_avg, trunk.mos_min, trunk.jitter, trunk.loss, trunk.rtt) == (
        4.1,
        3.6,
        0.012,
        0.01,
        0.08,
    )
    assert (trunk.packets_in, trunk.packets_out) == (3240, 3250)


@pytest.mark.parametrize("fixture", [None, "calllog_v1.sql", "calllog_v2.sql"])
def test_a_browser_leg_is_written_and_read_back(tmp_path: Path, fixture: str | None) -> None:
    path = tmp_path / "calls.db"
    calls = open_log(path if fixture is None else old_log(path, fixture))
    call = replace(finished("web"), legs=[rep_leg(kind="browser"), carrier_leg(kind="trunk")])
    calls.upsert(call)
    assert calls.get("web") == call
    calls.engine.dispose()
    assert open_log(path).get("web") == call


@pytest.mark.parametrize("fixture", [None, "calllog_v2.sql"])
def test_an_unknown_leg_kind_is_refused(tmp_path: Path, fixture: str | None) -> None:
    with pytest.raises(
        ValueError, match="leg kind must be one of phone, trunk, browser, not 'fax'"
    ):
        rep_leg(kind="fax")
    path = tmp_path / "calls.db"
    open_log(path if fixture is None else old_log(path, fixture)).upsert(finished())
    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        db.execute("UPDATE call_legs SET kind = 'fax'")


def test_legs_belong_to_their_call(calls: CallLog, tmp_path: Path) -> None:
    calls.upsert(finished())
    db = sqlite3.connect(tmp_path / "calls.db", isolation_level=None)
    db.execute("PRAGMA foreign_keys=ON")
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        db.execute(
            "INSERT INTO call_legs (call_id, position, leg_id, role, peer, transport,"
            " billable, started_at, packets_in, packets_out)"
            " VALUES ('ghost', 0, 'x', 'caller', 'p', 'udp', 0, 0, 0, 0)"
        )
    db.execute("DELETE FROM calls")
    assert db.execute("SELECT COUNT(*) FROM call_legs").fetchone() == (0,)


def test_async_dispositions_and_filtered_list_run_on_the_thread(calls: CallLog) -> None:
    writer = AsyncCallLog(calls)

    async def main() -> tuple[list[tuple[str, str]], list[CallRecord]]:
        await writer.set_dispositions([("sale", "Sale")])
        writer.submit(replace(started("p", at=T0), person_id=3))
        writer.submit(started("q", at=T0 + 1))
        await writer.set_disposition("p", "sale")
        found = await writer.list(
            10, person_id=3, disposition="sale", since=T0, until=T0 + 1, before=(T0 + 1, "q")
        )
        listed = await writer.dispositions()
        await writer.close()
        return listed, found

    listed, found = asyncio.run(main())
    assert listed == [("sale", "Sale")]
    assert [c.call_id for c in found] == ["p"]


def test_the_call_log_and_the_user_store_share_one_database(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'voipcore.db'}")
    store, log = Store(engine), CallLog(engine)
    log.upsert(finished())
    store.put_user(make_user("realm", "alice", "alice-pw"))
    engine.dispose()
    again = open_engine(f"sqlite:///{tmp_path / 'voipcore.db'}")
    assert CallLog(again).get("c1") == finished()
    assert [u.username for u in Store(again).list_users()] == ["alice"]


def test_async_upserts_share_commits(calls: CallLog) -> None:
    writer = AsyncCallLog(calls)

    async def main() -> None:
        await asyncio.gather(*(writer.upsert(started(f"c{i}", at=T0 + i)) for i in range(50)))
        await writer.close()

    asyncio.run(main())
    assert len(calls.list(limit=100)) == 50
    assert 1 <= writer.batches < 50


def test_async_updates_of_one_call_collapse_into_its_latest(calls: CallLog) -> None:
    writer = AsyncCallLog(calls)
    reports: list[BaseException | None] = []

    async def main() -> CallRecord | None:
        writer.submit(started(), reports.append)
        writer.submit(replace(started(), answered_at=T0 + 4), reports.append)
        writer.submit(finished(), reports.append)
        await writer.flush()
        found = await writer.get("c1")
        await writer.close()
        return found

    assert asyncio.run(main()) == finished()
    assert reports == [None, None, None]
    assert writer.batches == 1


def test_async_writes_a_snapshot_of_the_legs(calls: CallLog) -> None:
    writer = AsyncCallLog(calls)
    call = started()

    async def main() -> None:
        writer.submit(call)
        call.legs.append(carrier_leg())
        await writer.close()

    asyncio.run(main())
    stored = calls.get("c1")
    assert stored is not None and [leg.leg_id for leg in stored.legs] == ["rep"]


def test_async_write_queued_during_a_commit_goes_in_the_next_batch(
    calls: CallLog,
) -> None:
    shared = ThreadPoolExecutor(max_workers=1)
    gate = threading.Event()
    shared.submit(gate.wait)  # holds the first batch on the thread
    writer = AsyncCallLog(calls, executor=shared, window=0.0)

    async def main() -> None:
        first = asyncio.ensure_future(writer.upsert(started("c1")))
        while writer._committing is None:
            await asyncio.sleep(0)
        second = asyncio.ensure_future(writer.upsert(started("c2")))
        await asyncio.sleep(0)
        assert writer.batches == 0 and not first.done() and not second.done()
        gate.set()
        await asyncio.wait_for(asyncio.gather(first, second), timeout=10)
        await writer.close()

    asyncio.run(main())
    shared.shutdown()
    assert writer.batches == 2
    assert sorted(c.call_id for c in calls.list()) == ["c1", "c2"]


def test_async_disposition_waits_for_the_queued_call(calls: CallLog) -> None:
    writer = AsyncCallLog(calls)

    async def main() -> list[CallRecord]:
        writer.submit(finished())
        await writer.set_disposition("c1", "callback", "Tuesday")
        with pytest.raises(DispositionError):
            await writer.set_disposition("c1", "sold")
        with pytest.raises(KeyError):
            await writer.set_disposition("nope", "busy")
        listed = await writer.list(limit=1)
        await writer.close()
        return listed

    assert asyncio.run(main()) == [replace(finished(), disposition="callback", notes="Tuesday")]


def test_async_reports_a_failed_commit_to_every_waiter(calls: CallLog) -> None:
    writer = AsyncCallLog(calls)
    reports: list[BaseException | None] = []

    async def main() -> list[object]:
        writer.submit(replace(started("c0"), disposition="sold"), reports.append)
        results = await asyncio.gather(
            writer.upsert(started("c1")), writer.upsert(started("c2")), return_exceptions=True
        )
        await writer.close()
        return list(results)

    results = asyncio.run(main())
    assert all(isinstance(r, DispositionError) for r in [*results, *reports])
    assert writer.batches == 0
    assert calls.list() == []


def test_async_uses_a_shared_executor_and_leaves_it_running(calls: CallLog) -> None:
    shared = ThreadPoolExecutor(max_workers=1)
    writer = AsyncCallLog(calls, executor=shared)

    async def main() -> None:
        await writer.upsert(finished())
        await writer.close()

    asyncio.run(main())
    assert shared.submit(calls.get, "c1").result() == finished()
    shared.shutdown()


_CRASHING_WRITER = """
import asyncio, os, signal, sys
from voipcore.store.calls import AsyncCallLog, CallLog, CallRecord, LegRecord
from voipcore.store.db import open_engine

log = CallLog(open_engine("sqlite:///" + sys.argv[1]))
call = CallRecord(call_id="sync", direction="inbound", caller="+14045551234",
                  callee_dialled="201", user="alice", started_at=1.0)
log.upsert(call)

async def main():
    writer = AsyncCallLog(log)
    leg = LegRecord(leg_id="rep", role="callee", peer="alice", transport="tcp", started_at=2.0)
    await writer.upsert(CallRecord(call_id="async", direction="internal", caller="bob",
                                   callee_dialled="201", started_at=2.0, legs=[leg]))
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def test_committed_calls_survive_the_process_being_killed(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    child = subprocess.run(
        [sys.executable, "-c", _CRASHING_WRITER, str(path)], capture_output=True, timeout=60
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    assert os.path.getsize(f"{path}-wal") > 0  # never checkpointed: recovered from the WAL
    log = open_log(path)
    assert [c.call_id for c in log.list()] == ["async", "sync"]
    stored = log.get("async")
    assert stored is not None and [leg.peer for leg in stored.legs] == ["alice"]


def test_calls_left_in_progress_by_a_crash_are_closed_at_restart(calls: CallLog) -> None:
    calls.upsert_many([started("up"), finished("done")])
    assert calls.close_unfinished(T0 + 60, "server_restart") == 1
    up, done = calls.get("up"), calls.get("done")
    assert up is not None and done is not None
    assert (up.ended_at, up.hangup_cause, up.hung_up_by) == (T0 + 60, "server_restart", "system")
    assert all(leg.ended_at == T0 + 60 for leg in up.legs)
    assert done == finished("done")  # ended calls are left alone
    assert calls.close_unfinished(T0 + 90, "server_restart") == 0
