"""Users, their registrations and the server's secrets."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable

from sqlalchemy import Connection, Engine, bindparam, delete, select

from voipcore.store import Binding, BindingChange, User
from voipcore.store.db import insert, upsert, writing
from voipcore.store.schema import bindings, settings, users

#: The settings row that changes whenever a user does (see :meth:`Store.data_version`).
_USERS_VERSION = "users-version"

_BINDING_FIELDS = tuple(column.name for column in bindings.columns)


class Store:
    """Users and registrations in the store's database.

    Methods are synchronous; the server calls them from one worker thread
    (see :class:`voipcore.store.writer.BatchWriter`), the CLI directly.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Built once: the REGISTER path runs them for every batch.
        self._upsert_bindings = upsert(engine, bindings)
        self._delete_bindings = delete(bindings).where(
            bindings.c.aor == bindparam("b_aor"), bindings.c.contact == bindparam("b_contact")
        )

    def close(self) -> None:
        """Close the database's connections."""
        self.engine.dispose()

    def secret(self, name: str, size: int = 32) -> bytes:
        """A random secret created once and kept, e.g. the digest nonce key.

        Persisting it means nonces issued before a restart still verify (and
        go stale normally) instead of failing as forgeries.
        """
        with writing(self.engine) as db:
            db.execute(
                insert(db, settings)
                .values(name=name, value=os.urandom(size))
                .on_conflict_do_nothing(index_elements=["name"])
            )
            value: bytes = db.execute(
                select(settings.c.value).where(settings.c.name == name)
            ).scalar_one()
        return value

    def data_version(self) -> int:
        """A number that changes whenever a user is saved or removed, by this process
        or another (e.g. the CLI): the server reloads its users when it does."""
        with self.engine.connect() as db:
            value = db.scalar(select(settings.c.value).where(settings.c.name == _USERS_VERSION))
        return 0 if value is None else int.from_bytes(value, "big")

    def put_user(self, user: User) -> None:
        """Create or replace a user."""
        with writing(self.engine) as db:
            db.execute(
                upsert(db, users),
                {column.name: getattr(user, column.name) for column in users.columns},
            )
            _users_changed(db)

    def get_user(self, username: str) -> User | None:
        """One user by name."""
        with self.engine.connect() as db:
            row = db.execute(select(users).where(users.c.username == username)).first()
        return None if row is None else User(*row)

    def list_users(self) -> list[User]:
        """All users, by name."""
        with self.engine.connect() as db:
            return [User(*row) for row in db.execute(select(users).order_by(users.c.username))]

    def remove_user(self, username: str) -> bool:
        """Delete a user and their registrations; False if there was none."""
        with writing(self.engine) as db:
            removed = db.execute(delete(users).where(users.c.username == username)).rowcount
            db.execute(delete(bindings).where(bindings.c.aor == username))
            _users_changed(db)
        return removed > 0

    def apply_bindings(self, changes: Iterable[BindingChange]) -> None:
        """Apply binding upserts and removals in one transaction (a group commit).

        Consecutive changes of one kind go to the database as one ``executemany``.
        """
        with writing(self.engine) as db:
            for remove, group in itertools.groupby(changes, key=lambda change: change[1]):
                if remove:
                    db.execute(
                        self._delete_bindings,
                        [{"b_aor": b.aor, "b_contact": b.contact} for b, _ in group],
                    )
                else:
                    db.execute(
                        self._upsert_bindings,
                        [{name: getattr(b, name) for name in _BINDING_FIELDS} for b, _ in group],
                    )

    def load_bindings(self, now: float) -> list[Binding]:
        """Every binding still valid at ``now``; expired rows are deleted."""
        with writing(self.engine) as db:
            db.execute(delete(bindings).where(bindings.c.expires_at <= now))
            rows = db.execute(select(bindings).order_by(bindings.c.aor, bindings.c.q.desc())).all()
        return [Binding(*row) for row in rows]


def _users_changed(db: Connection) -> None:
    # Random rather than counted: no read before the write, and no lost update.
    db.execute(upsert(db, settings), {"name": _USERS_VERSION, "value": os.urandom(8)})
