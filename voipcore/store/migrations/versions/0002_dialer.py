"""The sales dialer: user roles, API tokens, accounts and people, dispositions as a table.

Users become reps unless made admins; calls may carry the extension dialled after
the number and the person called.  The dispositions table starts with the list the
call log used to have built in.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from voipcore.store.migrations import legacy

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: The dispositions a new or upgraded store offers, in order.
DISPOSITIONS = (
    ("connected", "Connected"),
    ("voicemail", "Left voicemail"),
    ("no_answer", "No answer"),
    ("busy", "Busy"),
    ("wrong_number", "Wrong number"),
    ("callback", "Call back"),
    ("not_interested", "Not interested"),
    ("other", "Other"),
)


def _created_updated() -> tuple[sa.Column[float], sa.Column[float]]:
    return sa.Column("created_at", sa.Float, nullable=False), sa.Column(
        "updated_at", sa.Float, nullable=False
    )


def upgrade() -> None:
    # SQLite adds a CHECK only by copying the table (batch "recreate"); copy_from keeps
    # the constraints SQLite cannot reflect.
    with op.batch_alter_table("users", copy_from=legacy.users) as users:
        users.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="rep"))
        users.create_check_constraint("role", "role IN ('admin', 'rep')")
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "username",
            sa.Text,
            sa.ForeignKey("users.username", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("token_hash", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("last_used_at", sa.Float),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False),
        *_created_updated(),
        sa.Index(None, "name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "people",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="SET NULL")),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("title", sa.Text),
        sa.Column("email", sa.Text),
        sa.Column("notes", sa.Text),
        *_created_updated(),
        sa.Index(None, "name"),
        sa.Index(None, "account_id"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "person_numbers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "person_id", sa.Integer, sa.ForeignKey("people.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("label", sa.Text, nullable=False, server_default="other"),
        sa.Column("e164", sa.Text, nullable=False),
        sa.Column("extension", sa.Text),
        sa.Column("is_primary", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("position", sa.Integer, nullable=False, server_default="0"),
        sa.Index(None, "e164"),
        sa.Index(None, "person_id", "position"),
        sqlite_autoincrement=True,
    )
    dispositions = op.create_table(
        "dispositions",
        sa.Column("code", sa.Text, primary_key=True),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("position", sa.Integer, nullable=False, server_default="0"),
        sa.Column("active", sa.Boolean, nullable=False, server_default="1"),
    )
    op.bulk_insert(
        dispositions,
        [
            {"code": code, "label": label, "position": position, "active": True}
            for position, (code, label) in enumerate(DISPOSITIONS)
        ],
    )
    op.add_column("calls", sa.Column("callee_extension", sa.Text))
    # No foreign key: deleting a person must never fail a call-log write.
    op.add_column("calls", sa.Column("person_id", sa.Integer))
    op.create_index("ix_calls_person_id_started_at", "calls", ["person_id", "started_at"])
