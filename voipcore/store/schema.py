"""Every table of the store, as SQLAlchemy Core metadata.

One description serves SQLite (the embedded default) and PostgreSQL (scale-out):
queries are built from these tables, never written as dialect SQL, and the
Alembic migrations in :mod:`voipcore.store.migrations` bring an install's
database to this shape without losing its rows.  Times are Unix seconds (REAL),
as the call log has always kept them; phone numbers are E.164 text.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

#: Constraint names fixed by convention, so a migration can name what it alters.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Tables whose rows others point at by id (API tokens, people in the call log, numbers in
# a CRM's click-to-call) are AUTOINCREMENT in SQLite: a deleted row's id is never reused.

#: Roles of a user: an admin sees every user's calls and manages the team's data.
ROLES = ("admin", "rep")

users = Table(
    "users",
    metadata,
    Column("username", Text, primary_key=True),
    Column("realm", Text, nullable=False),
    Column("ha1_md5", Text, nullable=False),
    Column("ha1_sha256", Text, nullable=False),
    Column("extension", Text, unique=True),
    Column("display_name", Text),
    Column("caller_id", Text),
    Column("role", String(16), nullable=False, server_default="rep"),
    CheckConstraint("role IN ('admin', 'rep')", name="role"),
)

#: Registered contacts (RFC 3261 §10.3); clustered on its key in SQLite.
bindings = Table(
    "bindings",
    metadata,
    Column("aor", Text, primary_key=True),
    Column("contact", Text, primary_key=True),
    Column("expires_at", Float, nullable=False),
    Column("q", Float, nullable=False),
    Column("call_id", Text, nullable=False),
    Column("cseq", Integer, nullable=False),
    Column("source", Text, nullable=False),
    Column("user_agent", Text, nullable=False),
    sqlite_with_rowid=False,
)

#: Secrets made once and kept (the digest nonce key).
settings = Table(
    "settings",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", LargeBinary, nullable=False),
)

#: Web sign-in sessions, by SHA-256 of the cookie's token.
http_sessions = Table(
    "http_sessions",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column("username", Text, nullable=False),
    Column("expires_at", Float, nullable=False),
    sqlite_with_rowid=False,
)

#: Tokens for scripts and CRMs (``Authorization: Bearer``), by SHA-256 of the token.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", Text, ForeignKey("users.username", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),
    Column("token_hash", Text, nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("last_used_at", Float),
    sqlite_autoincrement=True,
)

#: Companies the team sells to.
accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index(None, "name"),
    sqlite_autoincrement=True,
)

#: Contacts, each under an account or none.
people = Table(
    "people",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="SET NULL")),
    Column("name", Text, nullable=False),
    Column("title", Text),
    Column("email", Text),
    Column("notes", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index(None, "name"),
    Index(None, "account_id"),
    sqlite_autoincrement=True,
)

#: A person's phone numbers: E.164 with the extension apart (dialled as DTMF after answer).
person_numbers = Table(
    "person_numbers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("person_id", Integer, ForeignKey("people.id", ondelete="CASCADE"), nullable=False),
    Column("label", Text, nullable=False, server_default="other"),
    Column("e164", Text, nullable=False),
    Column("extension", Text),
    Column("is_primary", Boolean, nullable=False, server_default="0"),
    Column("position", Integer, nullable=False, server_default="0"),
    Index(None, "e164"),
    Index(None, "person_id", "position"),
    sqlite_autoincrement=True,
)

#: What a rep may log about a call after hang-up, in the order the dialer offers them.
dispositions = Table(
    "dispositions",
    metadata,
    Column("code", Text, primary_key=True),
    Column("label", Text, nullable=False),
    Column("position", Integer, nullable=False, server_default="0"),
    Column("active", Boolean, nullable=False, server_default="1"),
)

#: What a user sets for themselves (``users`` rows are re-seeded from the config).
user_settings = Table(
    "user_settings",
    metadata,
    Column("username", Text, ForeignKey("users.username", ondelete="CASCADE"), primary_key=True),
    # E.164, never with an extension: the rep's cell or desk phone for pass-through calls.
    Column("passthrough_number", Text),
)

#: One record per call, answered or not (see :mod:`voipcore.store.calls`).
calls = Table(
    "calls",
    metadata,
    Column("call_id", Text, primary_key=True),
    Column("direction", Text, nullable=False),
    Column("caller", Text, nullable=False),
    Column("callee_dialled", Text, nullable=False),
    Column("callee_e164", Text),
    # "user" is reserved in PostgreSQL.
    Column("username", Text),
    Column("started_at", Float, nullable=False),
    Column("ringing_at", Float),
    Column("answered_at", Float),
    Column("ended_at", Float),
    Column("hangup_cause", Text),
    Column("sip_status", Integer),
    Column("hung_up_by", Text),
    Column("codec", Text),
    Column("disposition", Text),
    Column("notes", Text),
    Column("callee_extension", Text),
    # No foreign key, like username: the log is history and a write of it must never
    # fail because the person was deleted while the call was up.
    Column("person_id", Integer),
    # direct, click_to_call or passthrough (the rep's own phone first: two carrier legs).
    Column("mode", Text, nullable=False, server_default="direct"),
    CheckConstraint("direction IN ('internal', 'outbound', 'inbound')", name="direction"),
    CheckConstraint("hung_up_by IN ('caller', 'callee', 'system')", name="hung_up_by"),
    Index("calls_started_at", "started_at"),
    Index("calls_username", "username", "started_at"),
    Index(None, "person_id", "started_at"),
)

call_legs = Table(
    "call_legs",
    metadata,
    Column("call_id", Text, ForeignKey("calls.call_id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("leg_id", Text, primary_key=True),
    Column("role", Text, nullable=False),
    Column("peer", Text, nullable=False),
    Column("transport", Text, nullable=False),
    Column("kind", Text, nullable=False, server_default="phone"),
    Column("edge", Text),
    Column("billable", Boolean, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("answered_at", Float),
    Column("ended_at", Float),
    Column("sip_status", Integer),
    Column("mos_avg", Float),
    Column("mos_min", Float),
    Column("jitter", Float),
    Column("loss", Float),
    Column("rtt", Float),
    Column("packets_in", Integer, nullable=False),
    Column("packets_out", Integer, nullable=False),
    Column("transferred_to", Text),
    CheckConstraint("role IN ('caller', 'callee', 'colleague')", name="role"),
    CheckConstraint("kind IN ('phone', 'trunk', 'browser')", name="kind"),
)


#: Call recordings: ``id`` is random (no guessable URLs); the file is deleted, and
#: ``expired_at`` set, once the retention period has passed.
recordings = Table(
    "recordings",
    metadata,
    Column("id", Text, primary_key=True),
    Column("call_id", Text, ForeignKey("calls.call_id", ondelete="CASCADE"), nullable=False),
    Column("path", Text, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("duration", Float),
    Column("size", Integer),
    Column("expired_at", Float),
    Index(None, "call_id"),
    Index(None, "started_at"),
)
