"""Each user's own settings (``user_settings``): today the pass-through number.

Validation is the caller's: what is stored here is already E.164 (see
:func:`voipcore.calls.passthrough.passthrough_number`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select

from voipcore.store.db import upsert, writing
from voipcore.store.schema import user_settings


@dataclass(frozen=True, slots=True)
class UserSettings:
    """One user's settings; a user who never saved any has the defaults."""

    passthrough_number: str | None = None
    """The rep's own cell or desk phone in E.164 (never with an extension), rung first
    for pass-through calls; None: pass-through is off for this user."""


class SettingsStore:
    """Users' settings in the store's database (synchronous: run on the store's thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, username: str) -> UserSettings:
        with self.engine.connect() as db:
            number = db.execute(
                select(user_settings.c.passthrough_number).where(
                    user_settings.c.username == username
                )
            ).scalar_one_or_none()
        return UserSettings(passthrough_number=number)

    def save(self, username: str, saved: UserSettings) -> UserSettings:
        """Replace ``username``'s settings with ``saved``; returns them."""
        with writing(self.engine) as db:
            db.execute(
                upsert(db, user_settings).values(
                    username=username, passthrough_number=saved.passthrough_number
                )
            )
        return saved
