"""Web sign-in: password check against the stored HA1, backoff on a manual clock, sessions,
API tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from voipcore.http.auth import (
    LAST_USED_EVERY,
    Accounts,
    ApiToken,
    ApiTokens,
    Sessions,
    Throttle,
    check_password,
)
from voipcore.sip.digest import compute_ha1
from voipcore.store import User
from voipcore.store.db import open_engine
from voipcore.store.schema import api_tokens
from voipcore.store.users import Store

HOUR = 3600.0


def make_user(username: str, password: str, realm: str = "test.local") -> User:
    return User(
        username,
        realm,
        compute_ha1(username, realm, password, "MD5"),
        compute_ha1(username, realm, password, "SHA-256"),
        extension="1000",
        display_name="Alice",
    )


ALICE = make_user("alice", "alice-secret")


def make_accounts(tmp_path: Path, now: float = 0.0) -> Accounts:
    """Accounts over a store file in ``tmp_path`` holding ALICE, opened afresh."""
    engine = open_engine(f"sqlite:///{tmp_path / 's.db'}")
    Store(engine).put_user(ALICE)
    users = {ALICE.username: ALICE}
    return Accounts(users.get, Sessions(engine, HOUR, now), Throttle(), ApiTokens(engine))


def file_bytes(tmp_path: Path) -> bytes:
    """The store file and its write-ahead log."""
    return b"".join(p.read_bytes() for p in tmp_path.glob("s.db*"))


def test_password_is_checked_against_the_md5_ha1_of_its_realm() -> None:
    assert check_password(ALICE, "alice-secret")
    assert not check_password(ALICE, "alice-secreT")
    assert not check_password(make_user("alice", "alice-secret", "other.realm"), "x")
    assert check_password(make_user("alice", "alice-secret", "other.realm"), "alice-secret")


def test_throttle_lets_three_failures_through_then_doubles_up_to_the_cap() -> None:
    throttle = Throttle()
    now = 100.0
    for _ in range(3):
        assert throttle.wait("k", now) == 0
        throttle.failed("k", now)
    waits = []
    for _ in range(8):
        waits.append(throttle.wait("k", now))
        now += waits[-1]
        assert throttle.wait("k", now) == 0
        throttle.failed("k", now)
    assert waits == [1, 2, 4, 8, 16, 30, 30, 30]
    assert throttle.wait("k", now + 10) == 20
    assert throttle.wait("other", now) == 0


def test_throttle_forgets_after_a_quiet_spell_and_on_success() -> None:
    throttle = Throttle(forget=900)
    for _ in range(4):
        throttle.failed("k", 0)
    assert throttle.wait("k", 0) == 2
    throttle.failed("k", 901)  # the old failures are forgotten: this is the first again
    assert throttle.wait("k", 901) == 0
    for _ in range(3):
        throttle.failed("k", 902)
    throttle.succeeded("k")
    assert throttle.wait("k", 902) == 0


def test_sign_in_starts_a_session_that_expires(tmp_path: Path) -> None:
    accounts = make_accounts(tmp_path)
    signed_in = accounts.sign_in("alice", "alice-secret", "192.0.2.1", 10)
    assert signed_in is not None and signed_in.user == ALICE
    assert len(signed_in.token) >= 43  # 32 random bytes, base64url
    assert accounts.user(signed_in.token, 10 + HOUR - 1) == ALICE
    assert accounts.user(signed_in.token, 10 + HOUR) is None
    assert accounts.user("forged", 10) is None


def test_sign_out_ends_the_session(tmp_path: Path) -> None:
    accounts = make_accounts(tmp_path)
    signed_in = accounts.sign_in("alice", "alice-secret", "192.0.2.1", 0)
    assert signed_in is not None
    accounts.sign_out(signed_in.token)
    assert accounts.user(signed_in.token, 0) is None


@pytest.mark.parametrize(("username", "password"), [("alice", "wrong"), ("mallory", "x")])
def test_failures_count_against_the_name_and_the_address(
    tmp_path: Path, username: str, password: str
) -> None:
    accounts = make_accounts(tmp_path)
    for _ in range(3):
        assert accounts.wait(username, "192.0.2.1", 0) == 0
        assert accounts.sign_in(username, password, "192.0.2.1", 0) is None
    assert accounts.wait(username, "192.0.2.99", 0) == 1  # the name is locked...
    assert accounts.wait("bob", "192.0.2.1", 0) == 1  # ...and so is the address
    assert accounts.wait("bob", "192.0.2.99", 0) == 0


def test_sessions_survive_a_restart_and_keep_only_token_hashes(tmp_path: Path) -> None:
    first = make_accounts(tmp_path)
    signed_in = first.sign_in("alice", "alice-secret", "192.0.2.1", 0)
    assert signed_in is not None
    first.sessions.engine.dispose()
    assert signed_in.token.encode() not in file_bytes(tmp_path)
    again = make_accounts(tmp_path, now=60)
    assert again.user(signed_in.token, 60) == ALICE
    again.sign_out(signed_in.token)
    again.sessions.engine.dispose()
    assert make_accounts(tmp_path, now=60).user(signed_in.token, 60) is None


def test_expired_sessions_are_swept_from_the_table(tmp_path: Path) -> None:
    accounts = make_accounts(tmp_path)
    old = accounts.sign_in("alice", "alice-secret", "192.0.2.1", 0)
    assert old is not None
    new = make_accounts(tmp_path, now=HOUR + 1).sign_in("alice", "alice-secret", "x", HOUR + 1)
    assert new is not None
    again = make_accounts(tmp_path, now=HOUR + 1)
    assert (again.user(old.token, HOUR + 1), again.user(new.token, HOUR + 1)) == (None, ALICE)
    assert len(again.sessions._live) == 1


def test_a_deleted_user_is_signed_out() -> None:
    users = {ALICE.username: ALICE}
    engine = open_engine("sqlite:///:memory:")
    accounts = Accounts(users.get, Sessions(engine, HOUR, 0), Throttle(), ApiTokens(engine))
    signed_in = accounts.sign_in("alice", "alice-secret", "192.0.2.1", 0)
    assert signed_in is not None
    del users["alice"]
    assert accounts.user(signed_in.token, 0) is None


def test_an_api_token_names_its_user_until_revoked_and_only_its_owner_revokes_it(
    tmp_path: Path,
) -> None:
    accounts = make_accounts(tmp_path)
    token, secret = accounts.tokens.create("alice", "CRM sync", 100.0)
    assert secret.startswith("vc_") and len(secret) >= 3 + 43
    assert token == ApiToken(token.id, "alice", "CRM sync", 100.0, None, None)
    assert accounts.api_user(secret, 200.0) == ALICE
    assert accounts.api_user(secret + "x", 200.0) is None
    assert accounts.api_user("vc_forged", 200.0) is None
    assert not accounts.tokens.revoke(token.id, "mallory")
    assert accounts.api_user(secret, 201.0) == ALICE
    assert accounts.tokens.revoke(token.id, "alice")
    assert not accounts.tokens.revoke(token.id, "alice")
    assert accounts.api_user(secret, 202.0) is None
    assert accounts.tokens.list("alice") == []


def test_api_tokens_survive_a_restart_as_hashes_and_are_listed_per_user(tmp_path: Path) -> None:
    first = make_accounts(tmp_path)
    crm, crm_secret = first.tokens.create("alice", "CRM", 100.0)
    script, _ = first.tokens.create("alice", "script", 150.0, expires_at=1000.0)
    first.tokens.engine.dispose()
    assert crm_secret.encode() not in file_bytes(tmp_path)
    again = make_accounts(tmp_path)
    assert again.api_user(crm_secret, 300.0) == ALICE
    assert [(t.name, t.expires_at) for t in again.tokens.list("alice")] == [
        ("CRM", None),
        ("script", 1000.0),
    ]
    assert [t.id for t in again.tokens.list("alice")] == [crm.id, script.id]
    assert again.tokens.list("bob") == []


def test_an_expired_api_token_signs_nobody_in(tmp_path: Path) -> None:
    accounts = make_accounts(tmp_path)
    _, secret = accounts.tokens.create("alice", "week", 0.0, expires_at=7 * 24 * HOUR)
    assert accounts.api_user(secret, 7 * 24 * HOUR - 1) == ALICE
    assert accounts.api_user(secret, 7 * 24 * HOUR) is None


def last_used(engine: Engine) -> list[float | None]:
    with engine.connect() as db:
        return list(db.scalars(select(api_tokens.c.last_used_at)))


def test_a_tokens_last_use_is_written_at_most_once_a_minute(tmp_path: Path) -> None:
    accounts = make_accounts(tmp_path)
    token, secret = accounts.tokens.create("alice", "CRM", 0.0)
    engine = accounts.tokens.engine
    assert last_used(engine) == [None]
    accounts.api_user(secret, 10.0)
    assert last_used(engine) == [10.0]
    accounts.api_user(secret, 10.0 + LAST_USED_EVERY - 1)
    assert last_used(engine) == [10.0]
    accounts.api_user(secret, 10.0 + LAST_USED_EVERY)
    assert last_used(engine) == [10.0 + LAST_USED_EVERY]
    [listed] = accounts.tokens.list("alice")
    assert listed.last_used_at == 10.0 + LAST_USED_EVERY and listed.id == token.id


def test_a_deleted_users_tokens_go_with_them(tmp_path: Path) -> None:
    accounts = make_accounts(tmp_path)
    _, secret = accounts.tokens.create("alice", "CRM", 0.0)
    assert Store(accounts.tokens.engine).remove_user("alice")
    assert accounts.tokens.list("alice") == []  # ON DELETE CASCADE
    users: dict[str, User] = {}
    gone = Accounts(users.get, accounts.sessions, accounts.throttle, accounts.tokens)
    assert gone.api_user(secret, 1.0) is None
