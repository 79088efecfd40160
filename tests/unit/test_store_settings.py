"""Users' own settings (voipcore.store.settings) and what the API makes of the rate."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy.exc import IntegrityError

from voipcore.cli import make_user
from voipcore.http.rest_passthrough import PassthroughBackend
from voipcore.store.db import open_engine
from voipcore.store.settings import SettingsStore, UserSettings
from voipcore.store.users import Store

CELL = "+14045550177"


@pytest.fixture
def settings() -> SettingsStore:
    engine = open_engine("sqlite:///:memory:")
    Store(engine).put_user(make_user("realm", "alice", "pw-alice"))
    return SettingsStore(engine)


def test_a_user_who_saved_nothing_has_the_defaults(settings: SettingsStore) -> None:
    assert settings.get("alice") == UserSettings(passthrough_number=None)


def test_saving_replaces_the_number_and_clearing_turns_it_off(settings: SettingsStore) -> None:
    assert settings.save("alice", UserSettings(CELL)) == UserSettings(CELL)
    assert settings.get("alice").passthrough_number == CELL
    settings.save("alice", UserSettings("+14045550178"))
    assert settings.get("alice").passthrough_number == "+14045550178"
    settings.save("alice", UserSettings())
    assert settings.get("alice").passthrough_number is None


def test_settings_belong_to_a_user(settings: SettingsStore) -> None:
    with pytest.raises(IntegrityError):
        settings.save("nobody", UserSettings(CELL))


def test_the_cost_is_billable_minutes_at_the_rate(settings: SettingsStore) -> None:
    priced = PassthroughBackend(settings, None, Decimal("0.013"))
    assert (priced.cost(2), priced.cost(0), priced.cost(7)) == (0.026, 0.0, 0.091)
    assert PassthroughBackend(settings, None).cost(2) is None
