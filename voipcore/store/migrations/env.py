"""Alembic's entry point: migrates the connection :func:`voipcore.store.db.open_engine` passes."""

from __future__ import annotations

from alembic import context

from voipcore.store.schema import metadata

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    # SQLite alters most things only by copying the table (batch mode, "recreate").
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
