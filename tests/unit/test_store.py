"""The store's users, registrations and secrets, and its group-commit writer."""

from __future__ import annotations

import asyncio
from pathlib import Path

from voipcore.cli import make_user
from voipcore.store import Binding
from voipcore.store.db import open_engine
from voipcore.store.users import Store
from voipcore.store.writer import BatchWriter


def binding(contact: str, expires_at: float = 2000.0, aor: str = "alice") -> Binding:
    return Binding(aor, contact, expires_at, 1.0, "cid", 1, "udp:192.0.2.1:5060", "ua")


def open_store(path: Path) -> Store:
    return Store(open_engine(f"sqlite:///{path}"))


def test_users_round_trip_and_keep_only_hashes(tmp_path: Path) -> None:
    store = open_store(tmp_path / "db")
    user = make_user("realm", "alice", "s3cret-pw", "201", "Alice")
    admin = make_user("realm", "root", "r00t-pw", role="admin")
    store.put_user(user)
    store.put_user(admin)
    assert user.role == "rep"
    assert store.get_user("alice") == user
    assert store.list_users() == [user, admin]
    raw = (tmp_path / "db").read_bytes() + (tmp_path / "db-wal").read_bytes()
    assert b"s3cret-pw" not in raw
    assert store.remove_user("alice")
    assert not store.remove_user("alice")
    assert store.get_user("alice") is None


def test_bindings_survive_reopen_and_expired_ones_vanish(tmp_path: Path) -> None:
    store = open_store(tmp_path / "db")
    store.apply_bindings([(binding("sip:a@x", 1500.0), False), (binding("sip:b@x"), False)])
    store.apply_bindings([(binding("sip:c@x"), False), (binding("sip:c@x"), True)])
    store.close()
    reopened = open_store(tmp_path / "db")
    assert [b.contact for b in reopened.load_bindings(now=1600.0)] == ["sip:b@x"]
    assert [b.contact for b in reopened.load_bindings(now=0.0)] == ["sip:b@x"]


def test_a_binding_upsert_replaces_the_contact_and_removal_matches_aor_and_contact(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path / "db")
    store.apply_bindings(
        [(binding("sip:a@x"), False), (binding("sip:a@x", aor="bob"), False)]
        + [(binding("sip:a@x", expires_at=3000.0), False), (binding("sip:a@x", aor="bob"), True)]
    )
    assert store.load_bindings(0.0) == [binding("sip:a@x", expires_at=3000.0)]


def test_removing_a_user_removes_their_bindings(tmp_path: Path) -> None:
    store = open_store(tmp_path / "db")
    store.put_user(make_user("realm", "alice", "pw-alice"))
    store.apply_bindings([(binding("sip:a@x"), False), (binding("sip:b@x", aor="bob"), False)])
    assert store.remove_user("alice")
    assert [b.aor for b in store.load_bindings(0.0)] == ["bob"]


def test_secret_is_created_once(tmp_path: Path) -> None:
    first = open_store(tmp_path / "db").secret("nonce")
    assert len(first) == 32
    assert open_store(tmp_path / "db").secret("nonce") == first
    assert open_store(tmp_path / "db").secret("other") != first


def test_data_version_changes_when_another_process_changes_users(tmp_path: Path) -> None:
    server, cli = open_store(tmp_path / "db"), open_store(tmp_path / "db")
    before = server.data_version()
    assert server.data_version() == before
    cli.put_user(make_user("r", "bob", "password"))
    after_put = server.data_version()
    assert after_put != before
    cli.apply_bindings([(binding("sip:a@x"), False)])
    assert server.data_version() == after_put  # registrations are not user changes
    cli.remove_user("bob")
    assert server.data_version() != after_put


def test_an_in_memory_store_works_across_threads() -> None:
    store = Store(open_engine("sqlite:///:memory:"))
    store.put_user(make_user("r", "bob", "password"))

    async def main() -> None:
        writer = BatchWriter(store)
        await writer.apply([(binding("sip:a@x"), False)])
        await writer.close()

    asyncio.run(main())
    assert [u.username for u in store.list_users()] == ["bob"]
    assert len(store.load_bindings(0.0)) == 1


def test_writer_group_commits_concurrent_changes(tmp_path: Path) -> None:
    store = open_store(tmp_path / "db")
    writer = BatchWriter(store)

    async def main() -> None:
        await asyncio.gather(*(writer.apply([(binding(f"sip:{i}@x"), False)]) for i in range(50)))
        await writer.close()

    asyncio.run(main())
    assert len(store.load_bindings(0.0)) == 50
    assert writer.batches < 50


def test_writer_reports_failures_to_every_waiter(tmp_path: Path) -> None:
    store = open_store(tmp_path / "db")
    writer = BatchWriter(store)
    # A change the table refuses (NOT NULL) fails the whole batch.
    bad = Binding("alice", "sip:bad@x", 2000.0, 1.0, None, 1, "udp:x", "ua")  # type: ignore[arg-type]

    async def main() -> list[object]:
        results = await asyncio.gather(
            writer.apply([(binding("sip:a@x"), False)]),
            writer.apply([(bad, False)]),
            return_exceptions=True,
        )
        await writer.close()
        return list(results)

    assert all(isinstance(r, Exception) for r in asyncio.run(main()))
    assert store.load_bindings(0.0) == []
