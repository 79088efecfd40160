"""Call modes and recordings: pass-through calls, per-user settings, recordings index.

A call is dialled directly, placed by click-to-call, or carried on the rep's own
phone (pass-through: two billable carrier legs).  Users keep their pass-through
number in ``user_settings`` rather than ``users``, whose rows the config re-seeds
on every start.  Recordings are indexed by an unguessable id with their call.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("calls", sa.Column("mode", sa.Text, nullable=False, server_default="direct"))
    op.create_table(
        "user_settings",
        sa.Column(
            "username",
            sa.Text,
            sa.ForeignKey("users.username", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("passthrough_number", sa.Text),
    )
    op.create_table(
        "recordings",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column(
            "call_id",
            sa.Text,
            sa.ForeignKey("calls.call_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float),
        sa.Column("duration", sa.Float),
        sa.Column("size", sa.Integer),
        sa.Column("expired_at", sa.Float),
        sa.Index(None, "call_id"),
        sa.Index(None, "started_at"),
    )
