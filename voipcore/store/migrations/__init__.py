"""Alembic migrations of the store, run by :func:`voipcore.store.db.open_engine`.

A revision never changes once released: a new one in ``versions/`` follows the last,
and the test suite checks that a migrated database equals :mod:`voipcore.store.schema`.
"""
