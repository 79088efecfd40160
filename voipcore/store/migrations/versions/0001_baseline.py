"""Baseline: the store as voipcore kept it before Alembic (call log schema version 3).

A new database gets these tables.  One written before Alembic keeps its rows: users
gain ``caller_id`` if they predate per-user caller IDs, a version 1 call log gains
its legs' kind and transfer target, then every table is rebuilt in the shape below
(named constraints, NOT NULL keys, the CHECK allowing browser legs that version 3
brought) and the ``schema_versions`` table goes.  Missing tables are created.

Revision ID: 0001
Revises: None
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from voipcore.store.db import SchemaError
from voipcore.store.migrations import legacy

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

#: The last call log schema version before Alembic.
CALL_LOG_VERSION = 3


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    existing = set(inspector.get_table_names())
    if "users" in existing and "caller_id" not in {
        c["name"] for c in inspector.get_columns("users")
    }:
        op.add_column("users", sa.Column("caller_id", sa.Text))
    if "schema_versions" in existing:
        version = bind.scalar(
            sa.text("SELECT version FROM schema_versions WHERE component = 'calls'")
        )
        if version is not None and version > CALL_LOG_VERSION:
            raise SchemaError(
                f"call log schema is version {version}, this voipcore knows up to "
                f"{CALL_LOG_VERSION}"
            )
        if version == 1:
            _call_log_v1_to_v2()
        op.drop_table("schema_versions")
    for table in legacy.metadata.sorted_tables:
        if table.name in existing:
            # Copied by column name: version 1's upgrade appended two columns to call_legs.
            with op.batch_alter_table(table.name, copy_from=table, recreate="always"):
                pass
        else:
            table.create(bind)


def _call_log_v1_to_v2() -> None:
    """Legs gain a kind (a leg through a trunk edge is the trunk's) and a transfer target."""
    op.add_column("call_legs", sa.Column("kind", sa.Text, nullable=False, server_default="phone"))
    op.add_column("call_legs", sa.Column("transferred_to", sa.Text))
    op.execute("UPDATE call_legs SET kind = 'trunk' WHERE edge IS NOT NULL")
