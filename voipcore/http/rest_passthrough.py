"""The REST API's settings and pass-through operations (:mod:`voipcore.calls.passthrough`).

``GET`` and ``PUT /api/v1/settings`` read and change the signed-in user's own
settings: the pass-through number, normalised to E.164 (one with an extension is
refused: we cannot get through a switchboard to the rep).  The reply also says
whether this server can place pass-through calls and what a billable minute
costs, so the page can show, before dialling, that a pass-through call is billed
for two carrier legs.  ``POST /api/v1/calls`` with ``"passthrough": true`` places
one (see rest.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from voipcore.calls.manager import CallError, CallManager
from voipcore.calls.passthrough import Passthrough, passthrough_number
from voipcore.dialer.numbers import InvalidNumber
from voipcore.http.api import Api, ApiError, ApiRequest
from voipcore.store.calls import call_cost
from voipcore.store.settings import SettingsStore, UserSettings

if TYPE_CHECKING:
    from voipcore.http.rest import Backend, Runner

#: Carrier legs a pass-through call is billed for: the rep's phone and the prospect.
PASSTHROUGH_LEGS = 2


@dataclass(frozen=True, slots=True)
class PassthroughBackend:
    """What the settings and pass-through operations work on."""

    settings: SettingsStore
    calls: Passthrough | None
    """Places pass-through calls; None without a trunk (pass-through is unavailable)."""
    rate_per_minute: Decimal | None = None
    """``[trunks.twilio] rate_per_minute``: USD per billable minute per leg."""

    def cost(self, billable_minutes: int) -> float | None:
        """The estimated cost of ``billable_minutes`` in USD; None without a rate."""
        return call_cost(billable_minutes, self.rate_per_minute)


def passthrough_backend(
    engine: Engine,
    calls: CallManager,
    run: Runner,
) -> PassthroughBackend:
    """The settings store on ``engine`` and, with a trunk, pass-through calls placed by
    ``calls`` with each user's number read on the store's thread (``run``)."""
    settings = SettingsStore(engine)

    async def number_of(user: str) -> str | None:
        return (await run(lambda: settings.get(user))).passthrough_number

    trunk = calls.trunk
    if trunk is None:
        return PassthroughBackend(settings, None)
    return PassthroughBackend(settings, Passthrough(calls, number_of), trunk.config.rate_per_minute)


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    passthrough_number: str | None = Field(
        max_length=64,
        description="Your own cell or desk phone in any common format, rung first for "
        "pass-through calls; no extension. Your own extension rings the phones you have "
        "registered here. null turns pass-through off.",
    )


class SettingsOut(BaseModel):
    passthrough_number: str | None = Field(
        description="Your pass-through number in E.164, or your own extension."
    )
    passthrough_available: bool = Field(
        description="This server can place pass-through calls (it has a trunk)."
    )
    passthrough_legs: int = Field(description="Carrier legs a pass-through call is billed for.")
    rate_per_minute: float | None = Field(
        description="USD per billable minute per carrier leg, rounded up per leg; null: unknown."
    )


def add_passthrough_operations(api: Api, backend: Backend) -> None:
    """Declare ``GET`` and ``PUT /api/v1/settings`` on ``api``."""
    passthrough = backend.passthrough
    if passthrough is None:
        return
    store = passthrough.settings
    rate = passthrough.rate_per_minute

    def out(saved: UserSettings) -> SettingsOut:
        return SettingsOut(
            passthrough_number=saved.passthrough_number,
            passthrough_available=passthrough.calls is not None,
            passthrough_legs=PASSTHROUGH_LEGS,
            rate_per_minute=None if rate is None else float(rate),
        )

    @api.operation(
        "GET", "/api/v1/settings", summary="Your settings", tag="settings", response=SettingsOut
    )
    async def get_settings(req: ApiRequest) -> SettingsOut:
        """Your own settings, and what pass-through calls cost here."""
        username = req.user.username
        return out(await backend.run(lambda: store.get(username)))

    @api.operation(
        "PUT",
        "/api/v1/settings",
        summary="Change your settings",
        tag="settings",
        body=SettingsIn,
        response=SettingsOut,
    )
    async def update_settings(req: ApiRequest) -> SettingsOut:
        """Sets your pass-through number (normalised to E.164; your own extension rings
        your registered phone instead), or clears it with null.
        A number with an extension is refused: the server cannot reach you through a
        switchboard."""
        text, username = req.body(SettingsIn).passthrough_number, req.user.username
        number = None
        if text:
            try:
                number = passthrough_number(text, backend.region, req.user.extension)
            except InvalidNumber as exc:
                raise ApiError(400, f"passthrough_number: {exc}", "passthrough_number") from None
        wanted = UserSettings(passthrough_number=number)
        return out(await backend.run(lambda: store.save(username, wanted)))


async def dial_passthrough(
    backend: Backend, user: str, to: str, *, extension: str, person_id: int | None
) -> str:
    """``POST /api/v1/calls`` with ``"passthrough": true``: the call's id (409 in words
    when it cannot be placed)."""
    passthrough = backend.passthrough
    if passthrough is None or passthrough.calls is None:
        raise ApiError(409, "Pass-through calls need a trunk.", "passthrough")
    try:
        call = await passthrough.calls.dial(user, to, extension=extension, person_id=person_id)
    except CallError as exc:
        raise ApiError(409, exc.reason, "passthrough") from None
    return call.id
