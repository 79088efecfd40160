"""The REST API's request and response bodies and query strings (pydantic), from which
its OpenAPI document's schemas are made.

Times go out as ISO 8601 UTC (``2026-12-03T07:00:00.000Z``); phone numbers as E.164
with the extension apart (dialled as RFC 4733 DTMF after answer).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from voipcore.dialer.people import Account, Person
from voipcore.http.auth import ApiToken
from voipcore.store.calls import iso_utc


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel):
    """Paging of a list: at most ``limit`` items after ``cursor``."""

    limit: int = Field(50, ge=1, le=200, description="Items per page, 1 to 200.")
    cursor: str | None = Field(
        None, description="`next_cursor` of the previous page; absent for the first."
    )


# -- session -------------------------------------------------------------------------


class SignIn(_Body):
    username: str = Field(min_length=1)
    password: str = Field(min_length=1)


class Profile(_Out):
    """The signed-in user; ``username`` is null when nobody is."""

    username: str | None
    display_name: str | None = None
    extension: str | None = None
    role: Literal["admin", "rep"] | None = None
    ice_servers: list[dict[str, Any]] = []


class UserOut(_Out):
    username: str
    display_name: str | None
    extension: str | None
    role: Literal["admin", "rep"]


class UserList(BaseModel):
    items: list[UserOut]


# -- tokens --------------------------------------------------------------------------


class TokenIn(_Body):
    name: str = Field(min_length=1, max_length=100, description="What the token is for.")
    expires_in_days: int | None = Field(
        None, ge=1, le=3650, description="Days until it stops working; never by default."
    )


class TokenOut(BaseModel):
    id: int
    name: str
    created_at: str
    expires_at: str | None
    last_used_at: str | None

    @classmethod
    def of(cls, token: ApiToken) -> TokenOut:
        return cls(
            id=token.id,
            name=token.name,
            created_at=iso_utc(token.created_at) or "",
            expires_at=iso_utc(token.expires_at),
            last_used_at=iso_utc(token.last_used_at),
        )


class NewToken(TokenOut):
    token: str = Field(description="The secret, shown this once: keep it safe.")


class TokenList(BaseModel):
    items: list[TokenOut]


# -- people and accounts ---------------------------------------------------------------


class AccountIn(_Body):
    name: str = Field(min_length=1, max_length=200)


class AccountOut(BaseModel):
    id: int
    name: str
    people_count: int
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, account: Account) -> AccountOut:
        return cls(
            id=account.id,
            name=account.name,
            people_count=account.people_count,
            created_at=iso_utc(account.created_at) or "",
            updated_at=iso_utc(account.updated_at) or "",
        )


class AccountList(BaseModel):
    items: list[AccountOut]
    next_cursor: str | None


class AccountQuery(Page):
    q: str | None = Field(None, description="Part of the account's name.")


class NumberIn(_Body):
    number: str = Field(
        description="Any common format; may carry its extension (`x123`, `ext. 123`, `;ext=123`)."
    )
    label: str = Field("other", description="mobile, office, home, other, ...")
    extension: str | None = Field(None, description="Digits sent after answer (RFC 4733).")
    primary: bool = False


class PersonIn(_Body):
    name: str
    account_id: int | None = None
    account_name: str | None = Field(None, description="Found or created by name.")
    title: str | None = None
    email: str | None = None
    notes: str | None = None
    numbers: list[NumberIn] = []


class PersonPatchIn(_Body):
    """Only the fields given change; ``numbers``, when given, replaces the list."""

    name: str | None = None
    account_id: int | None = None
    account_name: str | None = None
    title: str | None = None
    email: str | None = None
    notes: str | None = None
    numbers: list[NumberIn] | None = None


class AccountRefOut(BaseModel):
    id: int
    name: str


class NumberOut(BaseModel):
    id: int
    label: str
    e164: str
    extension: str | None
    primary: bool
    display: str


class PersonOut(BaseModel):
    id: int
    name: str
    title: str | None
    email: str | None
    notes: str | None
    account: AccountRefOut | None
    numbers: list[NumberOut]
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, person: Person) -> PersonOut:
        account = person.account
        return cls(
            id=person.id,
            name=person.name,
            title=person.title,
            email=person.email,
            notes=person.notes,
            account=None if account is None else AccountRefOut(id=account.id, name=account.name),
            numbers=[
                NumberOut(
                    id=n.id,
                    label=n.label,
                    e164=n.e164,
                    extension=n.extension,
                    primary=n.primary,
                    display=n.display,
                )
                for n in person.numbers
            ],
            created_at=iso_utc(person.created_at) or "",
            updated_at=iso_utc(person.updated_at) or "",
        )


class PersonList(BaseModel):
    items: list[PersonOut]
    next_cursor: str | None


class PeopleQuery(Page):
    q: str | None = Field(
        None, description="Part of the person's or the account's name, or 3+ digits of a number."
    )
    account_id: int | None = Field(None, description="Only the people of this account.")


class NumberColumnIn(_Body):
    column: str
    label: str = "other"
    extension_column: str | None = None


class MappingIn(_Body):
    """Which CSV column holds what; the header row names the columns."""

    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    account: str | None = None
    title: str | None = None
    email: str | None = None
    notes: str | None = None
    numbers: list[NumberColumnIn] = Field(min_length=1)


class ImportIn(_Body):
    csv: str = Field(description="The file's text, header row first.")
    mapping: MappingIn
    dry_run: bool = Field(False, description="Check every row and report; store nothing.")


class RowErrorOut(BaseModel):
    line: int
    column: str | None
    reason: str


class ImportOut(BaseModel):
    rows: int
    imported: int
    rejected: int
    people: list[int]
    errors: list[RowErrorOut]


# -- calls ---------------------------------------------------------------------------


class ClickToCall(_Body):
    to: str | None = Field(None, description="The number to call, in any common format.")
    number_id: int | None = Field(None, description="A person's number (links the call to them).")
    extension: str | None = Field(
        None, pattern=r"^[0-9*#,]{1,20}$", description="Sent as DTMF once the number answers."
    )
    device: Literal["any", "browser", "phone"] = Field(
        "any", description="Where the user is rung first: dialer page, registered phone, or both."
    )
    passthrough: bool = Field(
        False,
        description="Ring your pass-through number (settings) through the trunk instead, and "
        "dial the number once you press 1 there: two billable carrier legs.",
    )


class CallStarted(BaseModel):
    call_id: str


class PersonRefOut(BaseModel):
    id: int
    name: str
    account: str | None


class LegOut(BaseModel):
    leg_id: str
    role: str
    peer: str
    transport: str
    kind: str
    edge: str | None
    billable: bool
    started_at: str | None
    answered_at: str | None
    ended_at: str | None
    sip_status: int | None
    mos_avg: float | None
    mos_min: float | None
    jitter: float | None
    loss: float | None
    rtt: float | None
    packets_in: int
    packets_out: int
    transferred_to: str | None
    duration: float


class CallOut(BaseModel):
    call_id: str
    direction: str
    caller: str
    callee_dialled: str
    callee_e164: str | None
    callee_extension: str | None
    user: str | None
    person_id: int | None
    person: PersonRefOut | None
    mode: Literal["direct", "click_to_call", "passthrough"]
    started_at: str | None
    ringing_at: str | None
    answered_at: str | None
    ended_at: str | None
    hangup_cause: str | None
    sip_status: int | None
    hung_up_by: str | None
    codec: str | None
    disposition: str | None
    notes: str | None
    duration: float
    ring_time: float
    billable_minutes: int = Field(
        description="Each billable carrier leg's talk time rounded up to whole minutes, summed."
    )
    cost: float | None = Field(
        None, description="billable_minutes at [trunks.twilio] rate_per_minute, in USD."
    )
    legs: list[LegOut]


class CallList(BaseModel):
    items: list[CallOut]
    next_cursor: str | None


def _moment(value: object) -> object:
    """An ISO 8601 date (``2026-12-03``) or date-time, parsed here so that an error
    names the parameter rather than each type it might have been."""
    if not isinstance(value, str):
        return value
    try:
        return date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"expected a date (2026-12-03) or a date and time (2026-12-03T09:30:00Z), not {value!r}"
        ) from None


Moment = Annotated[date | datetime | None, BeforeValidator(_moment)]


class CallQuery(Page):
    since: Moment = Field(
        None, description="Calls started at or after this (a date is its first moment, UTC)."
    )
    until: Moment = Field(None, description="Calls started before this (a date counts whole, UTC).")
    user: str | None = Field(None, description="Only this user's calls (admins).")
    person_id: int | None = Field(None, description="Only calls with this person.")
    disposition: str | None = Field(None, description="Only calls logged with this disposition.")

    def bounds(self) -> tuple[float | None, float | None]:
        """``since`` and ``until`` as Unix seconds; a plain date is its day in UTC (the
        whole day when it ends the range)."""
        return _seconds(self.since, end=False), _seconds(self.until, end=True)


class CsvQuery(CallQuery):
    limit: int = Field(10_000, ge=1, le=100_000, description="Most calls in the file.")


class DispositionIn(_Body):
    disposition: str | None = Field(description="A code from /api/v1/dispositions; null clears.")
    notes: str | None = Field(None, max_length=10_000)


class DispositionOut(_Body):
    code: str = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9_]+$")
    label: str = Field(min_length=1, max_length=80)


class DispositionList(_Body):
    items: list[DispositionOut] = Field(min_length=1)

    @field_validator("items")
    @classmethod
    def _unique(cls, items: list[DispositionOut]) -> list[DispositionOut]:
        codes = [item.code for item in items]
        if len(set(codes)) != len(codes):
            raise ValueError("each code may appear once")
        return items


def _seconds(moment: date | datetime | None, *, end: bool) -> float | None:
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        day = datetime.combine(moment, clock_time(), UTC)
        return (day + timedelta(days=1) if end else day).timestamp()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
