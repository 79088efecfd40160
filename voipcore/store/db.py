"""The store's database: an SQLAlchemy engine, migrated to the current schema on open.

SQLite in WAL mode is the embedded default; queries are SQLAlchemy Core built from
:mod:`voipcore.store.schema`, so PostgreSQL can take its place.  The one statement
the dialects spell differently, ``INSERT ... ON CONFLICT``, comes from :func:`insert`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Table, create_engine, event, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import StaticPool

#: Where the Alembic migrations live (a package resource, so no alembic.ini is needed).
MIGRATIONS = "voipcore.store:migrations"

#: Execution option of a connection whose transactions take SQLite's write lock up front.
_IMMEDIATE = "voipcore_immediate"


class SchemaError(RuntimeError):
    """The database holds a schema newer than this code understands."""


def open_engine(url: str) -> Engine:
    """An engine on ``url`` (``sqlite:///PATH``, ``sqlite:///:memory:``), migrated to head.

    SQLite connections run in WAL mode with ``synchronous=NORMAL`` (a commit survives a
    crash of the process; only an OS crash or power loss can drop the last ones),
    wait up to 5 s for a lock and enforce foreign keys.  Raises :class:`SchemaError`
    if a newer voipcore migrated the database.
    """
    memory = url in ("sqlite://", "sqlite:///:memory:")
    options: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        # One connection for :memory: (each would be a database of its own), shared by threads.
        options = {"connect_args": {"check_same_thread": False}}
        if memory:
            options["poolclass"] = StaticPool
    engine = create_engine(url, **options)
    if engine.dialect.name == "sqlite":
        _sqlite_setup(engine, wal=not memory)
    try:
        with engine.connect() as connection:
            _migrate(connection)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _sqlite_setup(engine: Engine, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def connected(dbapi_connection: Any, record: object) -> None:
        # The driver's own transaction handling issues no BEGIN before DDL; SQLAlchemy's
        # "begin" event does it instead, so migrations are transactions too.
        dbapi_connection.isolation_level = None
        for pragma in (
            *(("journal_mode=WAL",) if wal else ()),
            "synchronous=NORMAL",
            "busy_timeout=5000",
            "foreign_keys=ON",
        ):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        # IMMEDIATE takes the write lock at BEGIN, so busy_timeout applies instead of a
        # read transaction failing to upgrade to a write one.
        # Straight to the driver: through exec_driver_sql it cost a third of a small
        # group commit (events, an execution context) for a statement with no result.
        immediate = connection.get_execution_options().get(_IMMEDIATE, False)
        _driver(connection).execute("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction, committed on exit and rolled back on error.

    In SQLite the transaction takes the write lock at once (``BEGIN IMMEDIATE``).
    """
    with engine.connect() as connection:
        connection.execution_options(**{_IMMEDIATE: True})
        with connection.begin():
            yield connection


def _migrate(connection: Connection) -> None:
    """Alembic ``upgrade head`` on ``connection``, in one transaction."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = connection
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    sqlite_db = connection.dialect.name == "sqlite"
    if sqlite_db:
        # SQLite alters a table by copying it and dropping the old one, and dropping a
        # table with foreign keys on deletes the rows that reference it (ON DELETE
        # CASCADE).  The pragma is a no-op inside a transaction: set it before, on the
        # driver's connection, where no BEGIN comes first.
        _pragma(connection, "foreign_keys=OFF")
    try:
        connection.execution_options(**{_IMMEDIATE: True})
        with connection.begin():
            current = MigrationContext.configure(connection).get_current_heads()
            unknown = [revision for revision in current if revision not in known]
            if unknown:
                raise SchemaError(
                    f"the database is at schema revision {', '.join(unknown)}, which this"
                    " voipcore does not know: a newer voipcore wrote it"
                )
            command.upgrade(config, "head")
    finally:
        if sqlite_db:
            _pragma(connection, "foreign_keys=ON")


def _driver(connection: Connection) -> Any:
    """The DB-API connection under ``connection`` (SQLite's)."""
    return connection.connection.driver_connection


def _pragma(connection: Connection, pragma: str) -> None:
    _driver(connection).execute(f"PRAGMA {pragma}")


def insert(bind: Engine | Connection, table: Table) -> sqlite.Insert | postgresql.Insert:
    """An ``INSERT`` into ``table`` that can take ``ON CONFLICT``, in ``bind``'s dialect."""
    if bind.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def upsert(
    bind: Engine | Connection, table: Table, keep_if_null: Collection[str] = ()
) -> sqlite.Insert | postgresql.Insert:
    """An ``INSERT`` that replaces the row with the same primary key, if any.

    Columns in ``keep_if_null`` keep their stored value when the new row has NULL.
    """
    statement = insert(bind, table)
    keys = [column.name for column in table.primary_key]
    return statement.on_conflict_do_update(
        index_elements=keys,
        set_={
            column.name: func.coalesce(statement.excluded[column.name], column)
            if column.name in keep_if_null
            else statement.excluded[column.name]
            for column in table.columns
            if column.name not in keys
        },
    )
