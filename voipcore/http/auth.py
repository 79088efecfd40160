"""Web dialer sign-in: a voipcore user's name and SIP password, then a session cookie.

The store keeps no password, only digest HA1 hashes (RFC 7616 §3.4.2), so a password
is checked by computing its HA1 with the user's realm and comparing in constant time.
Sans-I/O apart from the session table: every method takes ``now`` (wall-clock seconds,
as sessions outlive the process) and the caller answers the HTTP request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field

from voipcore.sip.digest import compute_ha1
from voipcore.store import User

#: The session cookie (RFC 6265 §4.1), set HttpOnly, Secure, SameSite=Strict.
SESSION_COOKIE = "voipcore_session"

#: A user by name, None if there is none (the server's live user table).
UserLookup = Callable[[str], User | None]


def check_password(user: User, password: str) -> bool:
    """Whether ``password`` is ``user``'s: its HA1 equals the stored MD5 one."""
    ha1 = compute_ha1(user.username, user.realm, password, "MD5")
    return hmac.compare_digest(ha1.encode(), user.ha1_md5.encode())


#: Throttled keys kept before the forgotten ones are swept out.
_SWEEP_AT = 4096


@dataclass(slots=True)
class _Failures:
    count: int
    last: float


@dataclass(slots=True)
class Throttle:
    """Exponential backoff of failed sign-ins, per key (a username, a client address).

    The first ``free`` failures cost nothing; each further one locks the key for
    ``base`` seconds, doubling up to ``cap``. A success clears the key, and so do
    ``forget`` seconds without a failure.
    """

    free: int = 3
    base: float = 1.0
    cap: float = 30.0
    forget: float = 900.0
    _failures: dict[str, _Failures] = field(default_factory=dict, init=False)

    def wait(self, key: str, now: float) -> float:
        """Seconds before ``key`` may try again; 0: now."""
        entry = self._failures.get(key)
        if entry is None or entry.count < self.free:
            return 0.0
        lock = min(self.base * 2.0 ** (entry.count - self.free), self.cap)
        return max(0.0, entry.last + lock - now)

    def failed(self, key: str, now: float) -> None:
        """Count a failed attempt of ``key`` at ``now``."""
        if len(self._failures) >= _SWEEP_AT:
            self._failures = {k: e for k, e in self._failures.items() if now - e.last < self.forget}
        entry = self._failures.get(key)
        if entry is None or now - entry.last >= self.forget:
            self._failures[key] = _Failures(1, now)
        else:
            entry.count += 1
            entry.last = now

    def succeeded(self, key: str) -> None:
        """Clear ``key``'s failures."""
        self._failures.pop(key, None)


_SESSIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS http_sessions (
    token_hash TEXT PRIMARY KEY,
    username   TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
"""


class Sessions:
    """Session token → (username, expiry), in memory and in an SQLite table.

    The table (in the store's file) lets sessions outlive a restart; lookups never
    touch it. It holds SHA-256 hashes of the tokens, so a copy of the database signs
    nobody in. Writes happen only on sign-in and sign-out, a few rows a minute.
    """

    def __init__(self, path: str, lifetime: float, now: float) -> None:
        self.lifetime = lifetime
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.executescript(_SESSIONS_SCHEMA)
        rows = self._db.execute("SELECT token_hash, username, expires_at FROM http_sessions")
        self._live: dict[str, tuple[str, float]] = {
            key: (username, expires_at) for key, username, expires_at in rows
        }
        self._sweep(now)

    def close(self) -> None:
        """Close the table."""
        self._db.close()

    def create(self, username: str, now: float) -> str:
        """A new session for ``username``: its token, for the cookie."""
        self._sweep(now)
        token = secrets.token_urlsafe(32)
        entry = (username, now + self.lifetime)
        self._live[_hash(token)] = entry
        self._db.execute("INSERT INTO http_sessions VALUES (?, ?, ?)", (_hash(token), *entry))
        return token

    def _sweep(self, now: float) -> None:
        """Forget the sessions expired at ``now``."""
        expired = [key for key, (_, expires_at) in self._live.items() if expires_at <= now]
        for key in expired:
            del self._live[key]
        if expired:
            self._db.execute("DELETE FROM http_sessions WHERE expires_at <= ?", (now,))

    def username(self, token: str, now: float) -> str | None:
        """Who ``token`` signed in, None if nobody or the session expired."""
        entry = self._live.get(_hash(token))
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def drop(self, token: str) -> None:
        """End the session of ``token`` (sign-out)."""
        if self._live.pop(_hash(token), None) is not None:
            self._db.execute("DELETE FROM http_sessions WHERE token_hash = ?", (_hash(token),))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _throttled(username: str, address: str) -> tuple[str, str]:
    """The :class:`Throttle` keys a sign-in attempt counts against."""
    return f"user:{username}", f"addr:{address}"


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A successful sign-in."""

    token: str
    """The new session's token, for the cookie."""
    user: User


class Accounts:
    """Sign-in, sign-out and session lookup over the server's users."""

    def __init__(self, users: UserLookup, sessions: Sessions, throttle: Throttle) -> None:
        self.users = users
        self.sessions = sessions
        self.throttle = throttle

    def wait(self, username: str, address: str, now: float) -> float:
        """Seconds before ``username`` from ``address`` may try a password; 0: now."""
        return max(self.throttle.wait(key, now) for key in _throttled(username, address))

    def sign_in(self, username: str, password: str, address: str, now: float) -> SignedIn | None:
        """A new session if the password is ``username``'s; None (and a failure counted
        against both the name and ``address``) otherwise."""
        user = self.users(username)
        keys = _throttled(username, address)
        if user is None or not check_password(user, password):
            for key in keys:
                self.throttle.failed(key, now)
            return None
        for key in keys:
            self.throttle.succeeded(key)
        return SignedIn(self.sessions.create(username, now), user)

    def user(self, token: str, now: float) -> User | None:
        """The signed-in user of ``token``; None when signed out, expired or deleted."""
        username = self.sessions.username(token, now)
        return None if username is None else self.users(username)

    def sign_out(self, token: str) -> None:
        """End ``token``'s session."""
        self.sessions.drop(token)
