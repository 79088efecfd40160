"""SQLite store (WAL): the embedded default back end."""

from __future__ import annotations

import itertools
import os
import sqlite3
from collections.abc import Iterable

from voipcore.store import Binding, User

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username     TEXT PRIMARY KEY,
    realm        TEXT NOT NULL,
    ha1_md5      TEXT NOT NULL,
    ha1_sha256   TEXT NOT NULL,
    extension    TEXT UNIQUE,
    display_name TEXT,
    caller_id    TEXT
);
-- Clustered on its key (WITHOUT ROWID): an upsert updates one B-tree, not two.
CREATE TABLE IF NOT EXISTS bindings (
    aor        TEXT NOT NULL,
    contact    TEXT NOT NULL,
    expires_at REAL NOT NULL,
    q          REAL NOT NULL,
    call_id    TEXT NOT NULL,
    cseq       INTEGER NOT NULL,
    source     TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    PRIMARY KEY (aor, contact)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"""

#: A binding change: (binding, remove).  Removal matches on (aor, contact).
BindingChange = tuple[Binding, bool]


class SqliteStore:
    """Users and registrations in one SQLite file.

    Methods are synchronous; the server calls them from one worker thread
    (see :class:`voipcore.store.writer.BatchWriter`), the CLI directly.
    """

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives a process crash; only an OS crash
        # or power loss can drop the last transactions.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(users)")}
        if "caller_id" not in columns:  # a store from before per-user caller IDs
            self._db.execute("ALTER TABLE users ADD COLUMN caller_id TEXT")

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def secret(self, name: str, size: int = 32) -> bytes:
        """A random secret created once and kept, e.g. the digest nonce key.

        Persisting it means nonces issued before a restart still verify (and
        go stale normally) instead of failing as forgeries.
        """
        with self._transaction():
            row = self._db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return bytes(row[0])
            value = os.urandom(size)
            self._db.execute("INSERT INTO settings VALUES (?, ?)", (name, value))
        return value

    def data_version(self) -> int:
        """Changes when another connection (e.g. the CLI) commits (SQLite data_version)."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def put_user(self, user: User) -> None:
        """Create or replace a user."""
        self._db.execute(
            "INSERT OR REPLACE INTO users VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                user.username,
                user.realm,
                user.ha1_md5,
                user.ha1_sha256,
                user.extension,
                user.display_name,
                user.caller_id,
            ),
        )

    def get_user(self, username: str) -> User | None:
        """One user by name."""
        row = self._db.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
        return None if row is None else User(*row)

    def list_users(self) -> list[User]:
        """All users, by name."""
        return [User(*row) for row in self._db.execute("SELECT * FROM users ORDER BY username")]

    def remove_user(self, username: str) -> bool:
        """Delete a user and their registrations; False if there was none."""
        with self._transaction():
            cur = self._db.execute("DELETE FROM users WHERE username = ?", (username,))
            self._db.execute("DELETE FROM bindings WHERE aor = ?", (username,))
        return cur.rowcount > 0

    def apply_bindings(self, changes: Iterable[BindingChange]) -> None:
        """Apply binding upserts and removals in one transaction (a group commit).

        Consecutive changes of one kind go to SQLite as one ``executemany``.
        """
        with self._transaction():
            for remove, group in itertools.groupby(changes, key=lambda change: change[1]):
                if remove:
                    self._db.executemany(
                        "DELETE FROM bindings WHERE aor = ? AND contact = ?",
                        [(b.aor, b.contact) for b, _ in group],
                    )
                else:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO bindings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [
                            (
                                b.aor,
                                b.contact,
                                b.expires_at,
                                b.q,
                                b.call_id,
                                b.cseq,
                                b.source,
                                b.user_agent,
                            )
                            for b, _ in group
                        ],
                    )

    def load_bindings(self, now: float) -> list[Binding]:
        """Every binding still valid at ``now``; expired rows are deleted."""
        with self._transaction():
            self._db.execute("DELETE FROM bindings WHERE expires_at <= ?", (now,))
            rows = self._db.execute("SELECT * FROM bindings ORDER BY aor, q DESC").fetchall()
        return [Binding(*row) for row in rows]

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
