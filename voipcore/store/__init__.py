"""Persistent state: users, registrations (locations), sessions, the call log.

One SQLAlchemy engine (:func:`voipcore.store.db.open_engine`) holds every table of
:mod:`voipcore.store.schema`; SQLite in WAL mode is the embedded default.
Signalling never waits on the disk inside the event loop: writes go through
:class:`voipcore.store.writer.BatchWriter`, which group-commits them on a
worker thread and resolves each caller's future once its rows are durable.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class User:
    """An account; passwords are kept only as digest HA1 hashes (RFC 7616 §3.4.2)."""

    username: str
    realm: str
    ha1_md5: str
    ha1_sha256: str
    extension: str | None = None
    display_name: str | None = None
    caller_id: str | None = None
    """E.164 caller ID for this user's trunk calls; None: the trunk's default."""
    role: str = "rep"
    """``admin`` (sees every user's calls, manages the team's data) or ``rep``."""

    def ha1(self, algorithm: str) -> str | None:
        """The stored HA1 for a digest algorithm name, or None if unsupported."""
        base = algorithm.upper().removesuffix("-SESS")
        if base == "MD5":
            return self.ha1_md5
        if base == "SHA-256":
            return self.ha1_sha256
        return None


@dataclass(frozen=True, slots=True)
class Binding:
    """One registered contact of a user (RFC 3261 §10.3).

    ``expires_at`` is wall-clock time so it survives a restart; ``source`` is
    ``transport:host:port`` the REGISTER came from, which is where requests for
    this contact are sent when the phone is behind NAT (RFC 3581).
    """

    aor: str
    contact: str
    expires_at: float
    q: float
    call_id: str
    cseq: int
    source: str
    user_agent: str = ""


#: A binding change: (binding, remove).  Removal matches on (aor, contact).
BindingChange = tuple[Binding, bool]
