"""The tables as voipcore created them before Alembic (call log schema version 3).

Frozen: the baseline migration creates these, and later ones copy from them; the
live description is :mod:`voipcore.store.schema`.
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
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

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
)

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

settings = Table(
    "settings",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", LargeBinary, nullable=False),
)

http_sessions = Table(
    "http_sessions",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column("username", Text, nullable=False),
    Column("expires_at", Float, nullable=False),
    sqlite_with_rowid=False,
)

calls = Table(
    "calls",
    metadata,
    Column("call_id", Text, primary_key=True),
    Column("direction", Text, nullable=False),
    Column("caller", Text, nullable=False),
    Column("callee_dialled", Text, nullable=False),
    Column("callee_e164", Text),
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
    CheckConstraint("direction IN ('internal', 'outbound', 'inbound')", name="direction"),
    CheckConstraint("hung_up_by IN ('caller', 'callee', 'system')", name="hung_up_by"),
    Index("calls_started_at", "started_at"),
    Index("calls_username", "username", "started_at"),
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
