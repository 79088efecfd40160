"""The store's Alembic migrations: a new database and every older one end as schema.py says."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import IntegrityError

from voipcore.http.auth import Sessions
from voipcore.store import Binding
from voipcore.store.calls import CallLog
from voipcore.store.db import SchemaError, open_engine
from voipcore.store.schema import metadata, users
from voipcore.store.users import Store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "store"
LEGACY = ["store_v3.sql", "calllog_v1.sql", "calllog_v2.sql"]
DEFAULT_DISPOSITIONS = [
    ("connected", "Connected"),
    ("voicemail", "Left voicemail"),
    ("no_answer", "No answer"),
    ("busy", "Busy"),
    ("wrong_number", "Wrong number"),
    ("callback", "Call back"),
    ("not_interested", "Not interested"),
    ("other", "Other"),
]


def legacy_db(path: Path, fixture: str) -> Path:
    """``path`` holding the dump ``fixture`` of a store an older voipcore wrote."""
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript((FIXTURES / fixture).read_text())
    db.close()
    return path


def engine_on(path: Path) -> Engine:
    return open_engine(f"sqlite:///{path}")


def sqlite_schema(path: Path) -> list[tuple[str, str, list[str]]]:
    """Every table and index with the lines of its SQL, sorted: a rebuilt table lists
    its constraints in another order, and has its name quoted."""
    db = sqlite3.connect(path)
    found = db.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    db.close()
    return [
        (
            kind,
            name,
            sorted(line.strip(" ,") for line in sql.replace(f'"{name}"', name).split("\n")),
        )
        for kind, name, sql in found
    ]


def differences(engine: Engine) -> list[object]:
    with engine.connect() as db:
        return list(compare_metadata(MigrationContext.configure(db), metadata))


def test_a_new_database_is_exactly_the_schema(tmp_path: Path) -> None:
    engine = engine_on(tmp_path / "new.db")
    assert differences(engine) == []
    assert CallLog(engine).dispositions() == DEFAULT_DISPOSITIONS


@pytest.mark.parametrize("fixture", LEGACY)
def test_an_older_store_is_upgraded_to_exactly_the_schema(tmp_path: Path, fixture: str) -> None:
    engine = engine_on(legacy_db(tmp_path / "old.db", fixture))
    assert differences(engine) == []
    engine.dispose()
    engine_on(tmp_path / "new.db").dispose()
    # The same tables, columns, constraints and indexes as a new database, to the letter.
    assert sqlite_schema(tmp_path / "old.db") == sqlite_schema(tmp_path / "new.db")


def test_opening_again_changes_nothing(tmp_path: Path) -> None:
    engine_on(tmp_path / "db").dispose()
    before = sqlite_schema(tmp_path / "db")
    engine = engine_on(tmp_path / "db")
    assert differences(engine) == []
    assert sqlite_schema(tmp_path / "db") == before


def test_every_row_of_a_version_3_store_survives_the_upgrade(tmp_path: Path) -> None:
    engine = engine_on(legacy_db(tmp_path / "old.db", "store_v3.sql"))
    store = Store(engine)
    assert [(u.username, u.extension, u.caller_id, u.role) for u in store.list_users()] == [
        ("alice", "101", None, "rep"),
        ("bob", "102", "+14045550102", "rep"),
        ("carol", None, None, "rep"),
    ]
    alice = store.get_user("alice")
    assert alice is not None and alice.ha1_md5 == "ad64bbc671a94d5541bd962397c23a12"
    assert store.load_bindings(0.0) == [
        Binding(
            "alice",
            "<sip:alice@192.0.2.10:5060>",
            1800000000.0,
            1.0,
            "reg-a1",
            7,
            "udp:192.0.2.10:5060",
            "Yealink T54W",
        ),
        Binding(
            "bob",
            "<sip:bob@192.0.2.11:5061;transport=tls>",
            1800000100.0,
            0.5,
            "reg-b1",
            3,
            "tls:192.0.2.11:5061",
            "Polycom",
        ),
    ]
    assert store.secret("digest-nonce") == bytes(range(32))
    sessions = Sessions(engine, 3600, 1700000000.0)
    assert sessions._live == {"ab" * 32: ("alice", 1800000000.0)}
    log = CallLog(engine)
    assert log.dispositions() == DEFAULT_DISPOSITIONS
    calls = {call.call_id: call for call in log.list()}
    assert list(calls) == ["v3-internal", "v3-missed", "v3-out"]
    out, missed, internal = calls["v3-out"], calls["v3-missed"], calls["v3-internal"]
    assert (out.disposition, out.notes, out.callee_dialled) == (
        "callback",
        "call back Tuesday",
        "(404) 555-1234",
    )
    assert (out.callee_extension, out.person_id) == (None, None)
    assert (missed.disposition, missed.notes, missed.sip_status) == ("no_answer", None, 487)
    assert [(leg.leg_id, leg.kind, leg.billable, leg.transferred_to) for leg in out.legs] == [
        ("a", "browser", False, None),
        ("b", "trunk", True, "bob"),
    ]
    assert (out.legs[1].mos_min, out.legs[1].packets_in) == (3.6, 3240)
    assert [(leg.leg_id, leg.peer) for leg in internal.legs] == [("in", "bob"), ("out", "alice")]
    assert [leg.edge for leg in missed.legs] == ["ashburn"]
    assert "schema_versions" not in inspect(engine).get_table_names()


def test_users_from_before_caller_ids_gain_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE users (username TEXT PRIMARY KEY, realm TEXT NOT NULL, ha1_md5 TEXT NOT NULL,"
        " ha1_sha256 TEXT NOT NULL, extension TEXT UNIQUE, display_name TEXT)"
    )
    old.execute("INSERT INTO users VALUES ('ann', 'r', 'h1', 'h2', '201', 'Ann')")
    old.commit()
    old.close()
    engine = engine_on(path)
    user = Store(engine).get_user("ann")
    assert user is not None
    assert (user.extension, user.caller_id, user.role) == ("201", None, "rep")
    assert differences(engine) == []


def test_a_role_outside_admin_and_rep_is_refused(tmp_path: Path) -> None:
    engine = engine_on(legacy_db(tmp_path / "old.db", "store_v3.sql"))
    with engine.begin() as db, pytest.raises(IntegrityError, match="CHECK"):
        db.execute(users.update().values(role="owner"))
    with engine.connect() as db:
        assert set(db.scalars(select(users.c.role))) == {"rep"}


def test_a_database_from_a_newer_voipcore_is_refused_by_name(tmp_path: Path) -> None:
    engine_on(tmp_path / "db").dispose()
    db = sqlite3.connect(tmp_path / "db")
    db.execute("UPDATE alembic_version SET version_num = '0099'")
    db.commit()
    db.close()
    with pytest.raises(SchemaError, match="revision 0099.*newer voipcore"):
        engine_on(tmp_path / "db")


def test_a_call_log_newer_than_version_3_is_refused(tmp_path: Path) -> None:
    path = legacy_db(tmp_path / "old.db", "calllog_v2.sql")
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_versions SET version = 4")
    db.commit()
    db.close()
    with pytest.raises(SchemaError, match="version 4"):
        engine_on(path)
    # Nothing changed: the refused upgrade rolled back.
    assert "alembic_version" not in [name for _, name, _ in sqlite_schema(path)]
