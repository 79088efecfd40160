"""Web sign-in: password check against the stored HA1, backoff on a manual clock, sessions."""

from __future__ import annotations

from pathlib import Path

import pytest

from voipcore.http.auth import Accounts, Sessions, Throttle, check_password
from voipcore.sip.digest import compute_ha1
from voipcore.store import User

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
    users = {ALICE.username: ALICE}
    return Accounts(users.get, Sessions(str(tmp_path / "s.db"), HOUR, now), Throttle())


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
    first.sessions.close()
    assert signed_in.token.encode() not in (tmp_path / "s.db").read_bytes()
    again = make_accounts(tmp_path, now=60)
    assert again.user(signed_in.token, 60) == ALICE
    again.sign_out(signed_in.token)
    again.sessions.close()
    assert make_accounts(tmp_path, now=60).user(signed_in.token, 60) is None


def test_a_deleted_user_is_signed_out() -> None:
    users = {ALICE.username: ALICE}
    accounts = Accounts(users.get, Sessions(":memory:", HOUR, 0), Throttle())
    signed_in = accounts.sign_in("alice", "alice-secret", "192.0.2.1", 0)
    assert signed_in is not None
    del users["alice"]
    assert accounts.user(signed_in.token, 0) is None
