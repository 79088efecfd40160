"""Web dialer sign-in: a voipcore user's name and SIP password, then a session cookie.

The store keeps no password, only digest HA1 hashes (RFC 7616 §3.4.2), so a password
is checked by computing its HA1 with the user's realm and comparing in constant time.
Scripts sign requests with an API token instead (``Authorization: Bearer``).
Sans-I/O apart from the session and token tables: every method takes ``now``
(wall-clock seconds, as sessions outlive the process) and the caller answers the
HTTP request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from sqlalchemy import Engine, delete, select, update

from voipcore.sip.digest import compute_ha1
from voipcore.store import User
from voipcore.store.db import writing
from voipcore.store.schema import api_tokens, http_sessions

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


class Sessions:
    """Session token → (username, expiry), in memory and in the store's ``http_sessions``.

    The table lets sessions outlive a restart; lookups never touch it. It holds
    SHA-256 hashes of the tokens, so a copy of the database signs nobody in. Writes
    happen only on sign-in and sign-out, a few rows a minute.
    """

    def __init__(self, engine: Engine, lifetime: float, now: float) -> None:
        self.engine = engine
        self.lifetime = lifetime
        with engine.connect() as db:
            rows = db.execute(select(http_sessions))
            self._live: dict[str, tuple[str, float]] = {
                key: (username, expires_at) for key, username, expires_at in rows
            }
        self._sweep(now)

    def create(self, username: str, now: float) -> str:
        """A new session for ``username``: its token, for the cookie."""
        self._sweep(now)
        token = secrets.token_urlsafe(32)
        key, expires_at = _hash(token), now + self.lifetime
        self._live[key] = (username, expires_at)
        with writing(self.engine) as db:
            db.execute(
                http_sessions.insert().values(
                    token_hash=key, username=username, expires_at=expires_at
                )
            )
        return token

    def _sweep(self, now: float) -> None:
        """Forget the sessions expired at ``now``."""
        expired = [key for key, (_, expires_at) in self._live.items() if expires_at <= now]
        for key in expired:
            del self._live[key]
        if expired:
            with writing(self.engine) as db:
                db.execute(delete(http_sessions).where(http_sessions.c.expires_at <= now))

    def username(self, token: str, now: float) -> str | None:
        """Who ``token`` signed in, None if nobody or the session expired."""
        entry = self._live.get(_hash(token))
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def drop(self, token: str) -> None:
        """End the session of ``token`` (sign-out)."""
        key = _hash(token)
        if self._live.pop(key, None) is not None:
            with writing(self.engine) as db:
                db.execute(delete(http_sessions).where(http_sessions.c.token_hash == key))


#: What API tokens start with, so they are recognisable (e.g. by secret scanners).
TOKEN_PREFIX = "vc_"

#: A token's ``last_used_at`` is written at most this often (seconds).
LAST_USED_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class ApiToken:
    """An API token as its owner sees it; the secret itself is never kept."""

    id: int
    username: str
    name: str
    """What the owner called it, e.g. ``CRM sync``."""
    created_at: float
    expires_at: float | None
    """Unix time it stops working; None: never."""
    last_used_at: float | None
    """Unix time it last signed a request in, to the minute; None: never."""


class ApiTokens:
    """Bearer tokens for scripts and CRMs (RFC 6750 §2.1), kept as SHA-256 hashes.

    Like :class:`Sessions`, lookups are in memory (loaded at start); the table in
    the store holds the tokens across restarts.  A token works until it expires
    or its owner revokes it.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        with engine.connect() as db:
            rows = db.execute(select(api_tokens.c.token_hash, *_TOKEN_COLUMNS))
            self._live = {key: ApiToken(*values) for key, *values in rows}

    def create(
        self, username: str, name: str, now: float, expires_at: float | None = None
    ) -> tuple[ApiToken, str]:
        """A new token of ``username``'s: its record, and the secret to show once."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        key = _hash(secret)
        with writing(self.engine) as db:
            result = db.execute(
                api_tokens.insert().values(
                    username=username,
                    name=name,
                    token_hash=key,
                    created_at=now,
                    expires_at=expires_at,
                )
            )
        key_row = result.inserted_primary_key
        assert key_row is not None
        token = ApiToken(key_row[0], username, name, now, expires_at, None)
        self._live[key] = token
        return token, secret

    def list(self, username: str) -> list[ApiToken]:
        """``username``'s tokens, oldest first."""
        with self.engine.connect() as db:
            rows = db.execute(
                select(*_TOKEN_COLUMNS)
                .where(api_tokens.c.username == username)
                .order_by(api_tokens.c.created_at, api_tokens.c.id)
            )
            return [ApiToken(*row) for row in rows]

    def revoke(self, token_id: int, username: str) -> bool:
        """Delete token ``token_id`` if it is ``username``'s; False if there is no such token."""
        with writing(self.engine) as db:
            deleted = db.execute(
                delete(api_tokens).where(
                    api_tokens.c.id == token_id, api_tokens.c.username == username
                )
            ).rowcount
        if deleted:
            self._live = {key: token for key, token in self._live.items() if token.id != token_id}
        return deleted > 0

    def username(self, secret: str, now: float) -> str | None:
        """Whose ``secret`` is, None if nobody's or it expired; notes its use."""
        key = _hash(secret)
        token = self._live.get(key)
        if token is None or (token.expires_at is not None and token.expires_at <= now):
            return None
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_EVERY:
            self._live[key] = replace(token, last_used_at=now)
            with writing(self.engine) as db:
                db.execute(
                    update(api_tokens).where(api_tokens.c.id == token.id).values(last_used_at=now)
                )
        return token.username


_TOKEN_COLUMNS = (
    api_tokens.c.id,
    api_tokens.c.username,
    api_tokens.c.name,
    api_tokens.c.created_at,
    api_tokens.c.expires_at,
    api_tokens.c.last_used_at,
)


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
    """Sign-in, sign-out, session and API token lookup over the server's users."""

    def __init__(
        self, users: UserLookup, sessions: Sessions, throttle: Throttle, tokens: ApiTokens
    ) -> None:
        self.users = users
        self.sessions = sessions
        self.throttle = throttle
        self.tokens = tokens

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

    def api_user(self, token: str, now: float) -> User | None:
        """The user of API token ``token``; None when unknown, expired, revoked or deleted."""
        username = self.tokens.username(token, now)
        return None if username is None else self.users(username)

    def sign_out(self, token: str) -> None:
        """End ``token``'s session."""
        self.sessions.drop(token)
