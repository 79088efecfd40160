"""SQLite store and its group-commit writer."""

from __future__ import annotations

import asyncio
from pathlib import Path

from voipcore.cli import make_user
from voipcore.store import Binding
from voipcore.store.sqlite import SqliteStore
from voipcore.store.writer import BatchWriter


def binding(contact: str, expires_at: float = 2000.0, aor: str = "alice") -> Binding:
    return Binding(aor, contact, expires_at, 1.0, "cid", 1, "udp:192.0.2.1:5060", "ua")


def test_users_round_trip_and_keep_only_hashes(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "db"))
    user = make_user("realm", "alice", "s3cret-pw", "201", "Alice")
    store.put_user(user)
    assert store.get_user("alice") == user
    assert store.list_users() == [user]
    raw = (tmp_path / "db").read_bytes() + (tmp_path / "db-wal").read_bytes()
    assert b"s3cret-pw" not in raw
    assert store.remove_user("alice")
    assert not store.remove_user("alice")
    assert store.get_user("alice") is None


def test_bindings_survive_reopen_and_expired_ones_vanish(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    store = SqliteStore(path)
    store.apply_bindings([(binding("sip:a@x", 1500.0), False), (binding("sip:b@x"), False)])
    store.apply_bindings([(binding("sip:c@x"), False), (binding("sip:c@x"), True)])
    store.close()
    reopened = SqliteStore(path)
    assert [b.contact for b in reopened.load_bindings(now=1600.0)] == ["sip:b@x"]
    assert [b.contact for b in reopened.load_bindings(now=0.0)] == ["sip:b@x"]


def test_secret_is_created_once(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    first = SqliteStore(path).secret("nonce")
    assert len(first) == 32
    assert SqliteStore(path).secret("nonce") == first


def test_data_version_changes_when_another_connection_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    server, cli = SqliteStore(path), SqliteStore(path)
    before = server.data_version()
    cli.put_user(make_user("r", "bob", "password"))
    assert server.data_version() != before


def test_writer_group_commits_concurrent_changes(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "db"))
    writer = BatchWriter(store)

    async def main() -> None:
        await asyncio.gather(*(writer.apply([(binding(f"sip:{i}@x"), False)]) for i in range(50)))
        await writer.close()

    asyncio.run(main())
    assert len(store.load_bindings(0.0)) == 50
    assert writer.batches < 50


def test_writer_reports_failures_to_every_waiter(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "db"))
    writer = BatchWriter(store)
    store.close()

    async def main() -> list[object]:
        results = await asyncio.gather(
            writer.apply([(binding("sip:a@x"), False)]),
            writer.apply([(binding("sip:b@x"), False)]),
            return_exceptions=True,
        )
        await writer.close()
        return list(results)

    assert all(isinstance(r, Exception) for r in asyncio.run(main()))
