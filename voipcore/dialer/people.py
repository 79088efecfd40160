"""The team's address book: accounts (the companies it sells to), people and their numbers.

Numbers are kept as ITU-T E.164 (``+14045551234``) with the extension apart, so the
dialer can call the number and send the extension as DTMF once it answers (RFC 4733).
Input may be in any form :func:`voipcore.dialer.numbers.normalize` reads, with the
extension written in it (``x123``, ``ext. 123``, RFC 3966 §5.1.5 ``;ext=123``) or given
on its own. Refused input raises :class:`PeopleError` naming the field as the REST API
shows it (``numbers.1.number``).

Methods are synchronous (the server calls them on its store thread) and take ``now`` (Unix
seconds) where they write; each write is one transaction (:func:`voipcore.store.db.writing`)
and :meth:`PeopleBook.transaction` joins many calls into one. Lists page by keyset: a page
starts after the sort key ``(name, id)`` of the previous page's last row, which
:func:`encode_cursor` turns into the API's opaque cursor.
"""

from __future__ import annotations

import base64
import copy
import enum
import json
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol, TypeVar

import phonenumbers
import sqlalchemy as sa
from phonenumbers import PhoneNumberFormat

from voipcore.dialer.numbers import InvalidNumber, normalize, validate_region
from voipcore.store.db import writing
from voipcore.store.schema import accounts, people, person_numbers

MAX_NAME: Final = 200
MAX_TITLE: Final = 200
MAX_EMAIL: Final = 254
MAX_NOTES: Final = 10_000
MAX_LABEL: Final = 32
MAX_EXTENSION: Final = 20

# Sent as DTMF after answer: digits, * and #, ',' a pause (as phones dial "4045551234,,123").
_EXTENSION_RE = re.compile(r"[0-9*#,]+")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+")
# Fewer digits than this in a search are not looked up in numbers (every number has a 1).
_MIN_SEARCH_DIGITS = 3

CursorValue = str | int | float
#: Where a list of accounts or people is in its order: the (name, id) of a row.
NameKey = tuple[str, int]
_T = TypeVar("_T")


class PeopleError(ValueError):
    """Input the book refuses: ``field`` is its path as the API shows it, ``message`` says
    what is wrong in words for a person (also the exception's text)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def encode_cursor(values: tuple[CursorValue, ...]) -> str:
    """An opaque, URL-safe cursor holding the sort key of a page's last row."""
    data = json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode_cursor(text: str, types: tuple[type[CursorValue], ...]) -> tuple[Any, ...]:
    """The values :func:`encode_cursor` packed, checked one by one against ``types`` (an
    int is accepted for a float); ``ValueError`` when ``text`` is anything else."""
    error = ValueError("not a valid cursor: pass next_cursor from the previous page unchanged")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        values = json.loads(data)
    except ValueError:  # binascii.Error, UnicodeDecodeError, JSONDecodeError
        raise error from None
    if not isinstance(values, list) or len(values) != len(types):
        raise error
    for value, kind in zip(values, types, strict=True):
        if type(value) is not kind and not (kind is float and type(value) is int):
            raise error
    return tuple(values)


def normalize_label(label: str) -> str:
    """A number's label, lower-cased (``mobile``, ``office``, ``home``, ``other``, any word);
    ``ValueError`` unless 1 to :data:`MAX_LABEL` characters."""
    text = label.strip().lower()
    if not 1 <= len(text) <= MAX_LABEL:
        raise ValueError(
            f"a label is 1 to {MAX_LABEL} characters, such as mobile, office, home or other"
        )
    return text


# -- what the book returns ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    """A company the team sells to."""

    id: int
    name: str
    people_count: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class AccountRef:
    """The account a person belongs to, as a person shows it."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class PersonNumber:
    """One of a person's numbers."""

    id: int
    label: str
    e164: str
    """ITU-T E.164, e.g. ``+14045551234``, without the extension."""
    extension: str | None
    """Digits (and ``* # ,``) to send as DTMF once the number answers, or None."""
    primary: bool
    display: str
    """National format for numbers of the book's country (``(404) 555-1234``), else
    international (``+44 20 7183 8750``)."""


@dataclass(frozen=True, slots=True)
class Person:
    """A contact, under an account or none, with numbers in the order given (primary one
    included)."""

    id: int
    name: str
    title: str | None
    email: str | None
    notes: str | None
    account: AccountRef | None
    numbers: tuple[PersonNumber, ...]
    created_at: float
    updated_at: float


# -- what the book takes -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class NumberInput:
    """A number as typed: any format :func:`~voipcore.dialer.numbers.normalize` reads, with or
    without an extension in it; ``extension`` gives it apart (both must then agree)."""

    number: str
    label: str = "other"
    extension: str | None = None
    primary: bool = False


@dataclass(frozen=True, slots=True)
class PersonInput:
    """A new person. ``account_id`` names an existing account; ``account_name`` finds one
    by name (case-insensitively) or creates it. Exactly one number ends up primary: the
    one marked, else the first."""

    name: str
    account_id: int | None = None
    account_name: str | None = None
    title: str | None = None
    email: str | None = None
    notes: str | None = None
    numbers: Sequence[NumberInput] = ()


class Missing(enum.Enum):
    """The type of :data:`MISSING`."""

    MISSING = "missing"


#: A :class:`PersonPatch` field that was not given: it stays as it is.
MISSING: Final = Missing.MISSING


@dataclass(frozen=True, slots=True)
class PersonPatch:
    """Changes to a person: only the fields given change. ``numbers`` replaces the list
    (numbers kept with the same E.164 and extension keep their ids); ``account_id=None``
    takes the person out of their account."""

    name: str | Missing = MISSING
    account_id: int | None | Missing = MISSING
    account_name: str | None | Missing = MISSING
    title: str | None | Missing = MISSING
    email: str | None | Missing = MISSING
    notes: str | None | Missing = MISSING
    numbers: Sequence[NumberInput] | Missing = MISSING


# -- validation --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Number:
    label: str
    e164: str
    extension: str | None
    primary: bool


def _text(field: str, value: str | None, limit: int) -> str | None:
    """Trimmed text, None when blank."""
    text = (value or "").strip()
    if len(text) > limit:
        raise PeopleError(field, f"at most {limit} characters (this has {len(text)})")
    return text or None


def _name(field: str, value: str) -> str:
    text = _text(field, value, MAX_NAME)
    if text is None:
        raise PeopleError(field, "a name is required")
    return text


def _email(value: str | None) -> str | None:
    text = _text("email", value, MAX_EMAIL)
    if text is not None and not _EMAIL_RE.fullmatch(text):
        raise PeopleError("email", f"not an email address: {text!r}")
    return text


def _number(item: NumberInput, path: str, region: str) -> _Number:
    try:
        label = normalize_label(item.label)
    except ValueError as exc:
        raise PeopleError(f"{path}.label", str(exc)) from None
    try:
        dialled = normalize(item.number, region)
    except InvalidNumber as exc:
        raise PeopleError(f"{path}.number", str(exc)) from None
    extension = _text(f"{path}.extension", item.extension, MAX_EXTENSION)
    if extension is not None and not _EXTENSION_RE.fullmatch(extension):
        raise PeopleError(
            f"{path}.extension", "an extension is digits, * and #, with ',' for a pause"
        )
    if extension is not None and dialled.extension not in (None, extension):
        raise PeopleError(
            f"{path}.extension",
            f"the number already carries extension {dialled.extension}: "
            "give it in one place or make them match",
        )
    return _Number(label, dialled.e164, extension or dialled.extension, item.primary)


def _numbers(items: Sequence[NumberInput], region: str) -> list[_Number]:
    """Validated numbers, exactly one of them primary when there are any."""
    numbers: list[_Number] = []
    for index, item in enumerate(items):
        number = _number(item, f"numbers.{index}", region)
        if any((n.e164, n.extension) == (number.e164, number.extension) for n in numbers):
            raise PeopleError(f"numbers.{index}.number", "the same number is given twice")
        numbers.append(number)
    primaries = sum(n.primary for n in numbers)
    if primaries > 1:
        raise PeopleError("numbers", "only one number can be primary")
    if numbers and not primaries:
        numbers[0] = replace(numbers[0], primary=True)
    return numbers


def _given(value: _T | Missing) -> _T | None:
    return None if value is MISSING else value


# -- queries -----------------------------------------------------------------


class _Keyed(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def name(self) -> str: ...


_K = TypeVar("_K", bound=_Keyed)

_PEOPLE_COUNT = (
    sa.select(sa.func.count())
    .where(people.c.account_id == accounts.c.id)
    .scalar_subquery()
    .label("people_count")
)
_ACCOUNTS = sa.select(accounts, _PEOPLE_COUNT)
_PEOPLE = sa.select(people, accounts.c.name.label("account_name")).select_from(
    people.outerjoin(accounts)
)


def _keyset(
    query: sa.Select[Any], table: sa.Table, after: NameKey | None, limit: int
) -> sa.Select[Any]:
    """``query`` ordered by (name, id), from after ``after``, one row past the page."""
    if after is not None:
        name, last_id = after
        key = sa.tuple_(table.c.name, table.c.id)
        query = query.where(key > sa.tuple_(sa.literal(name), sa.literal(last_id)))
    return query.order_by(table.c.name, table.c.id).limit(limit + 1)


def _page(items: list[_K], limit: int) -> tuple[list[_K], NameKey | None]:
    """A page of what :func:`_keyset` fetched, and the key the next one starts after."""
    if len(items) <= limit:
        return items, None
    last = items[limit - 1]
    return items[:limit], (last.name, last.id)


def _ci_equals(column: sa.ColumnElement[str], text: str) -> sa.ColumnElement[bool]:
    return sa.func.lower(column) == sa.func.lower(text)


def _account(row: sa.Row[Any]) -> Account:
    return Account(row.id, row.name, row.people_count, row.created_at, row.updated_at)


class PeopleBook:
    """Accounts and people in the store's database; national numbers are read in ``region``
    (ISO 3166-1, e.g. ``US``)."""

    def __init__(self, engine: sa.Engine, region: str) -> None:
        self._engine = engine
        self._conn: sa.Connection | None = None
        self.region = validate_region(region)
        self._country_code = phonenumbers.country_code_for_region(self.region)

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[PeopleBook]:
        """A book whose every call joins one write transaction, committed at the end when
        ``commit`` (and nothing raised), otherwise rolled back: a dry run."""
        with writing(self._engine) as conn:
            bound = copy.copy(self)
            bound._conn = conn
            yield bound
            if not commit:
                conn.rollback()

    @contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        if self._conn is not None:
            yield self._conn
        else:
            with self._engine.connect() as conn:
                yield conn

    @contextmanager
    def _writing(self) -> Iterator[sa.Connection]:
        if self._conn is not None:
            yield self._conn
        else:
            with writing(self._engine) as conn:
                yield conn

    # -- accounts --

    def create_account(self, name: str, now: float) -> Account:
        """A new account; ``PeopleError("name")`` when the name is blank or too long."""
        name = _name("name", name)
        with self._writing() as conn:
            return self._insert_account(conn, name, now)

    def get_account(self, account_id: int) -> Account | None:
        with self._reading() as conn:
            return self._account(conn, account_id)

    def update_account(self, account_id: int, name: str, now: float) -> Account | None:
        """Renames an account; None when there is no such account."""
        name = _name("name", name)
        with self._writing() as conn:
            conn.execute(
                accounts.update()
                .where(accounts.c.id == account_id)
                .values(name=name, updated_at=now)
            )
            return self._account(conn, account_id)

    def delete_account(self, account_id: int) -> bool:
        """Deletes an account (its people stay, under no account); False when unknown."""
        with self._writing() as conn:
            deleted = conn.execute(accounts.delete().where(accounts.c.id == account_id))
            return deleted.rowcount > 0

    def list_accounts(
        self, q: str | None = None, limit: int = 50, after: NameKey | None = None
    ) -> tuple[list[Account], NameKey | None]:
        """Accounts by name, those whose name contains ``q`` (any case); a page of ``limit``
        after the key ``after``, and the key of the next page (None after the last)."""
        query = _ACCOUNTS
        if q and q.strip():
            query = query.where(accounts.c.name.icontains(q.strip(), autoescape=True))
        with self._reading() as conn:
            rows = conn.execute(_keyset(query, accounts, after, limit))
            return _page([_account(row) for row in rows], limit)

    def account_named(self, name: str, now: float, create: bool = True) -> Account | None:
        """The account of that name (any case; the oldest if several), created when missing
        and ``create``, else None; ``PeopleError("account_name")`` for a blank or long name."""
        name = _name("account_name", name)
        with self._writing() if create else self._reading() as conn:
            return self._account_named(conn, name, now, create)

    # -- people --

    def create_person(self, person: PersonInput, now: float) -> Person:
        """Adds a person and their numbers; :class:`PeopleError` names the field at fault."""
        name = _name("name", person.name)
        title = _text("title", person.title, MAX_TITLE)
        email = _email(person.email)
        notes = _text("notes", person.notes, MAX_NOTES)
        numbers = _numbers(person.numbers, self.region)
        with self._writing() as conn:
            account_id = self._resolve_account(conn, person.account_id, person.account_name, now)
            person_id: int = conn.execute(
                people.insert()
                .values(
                    account_id=account_id,
                    name=name,
                    title=title,
                    email=email,
                    notes=notes,
                    created_at=now,
                    updated_at=now,
                )
                .returning(people.c.id)
            ).scalar_one()
            self._write_numbers(conn, person_id, numbers)
            return self._person(conn, person_id)

    def get_person(self, person_id: int) -> Person | None:
        with self._reading() as conn:
            found = self._people(conn, _PEOPLE.where(people.c.id == person_id))
            return found[0] if found else None

    def update_person(self, person_id: int, patch: PersonPatch, now: float) -> Person | None:
        """Changes the fields ``patch`` gives; None when there is no such person."""
        values: dict[str, object] = {"updated_at": now}
        if patch.name is not MISSING:
            values["name"] = _name("name", patch.name)
        if patch.title is not MISSING:
            values["title"] = _text("title", patch.title, MAX_TITLE)
        if patch.email is not MISSING:
            values["email"] = _email(patch.email)
        if patch.notes is not MISSING:
            values["notes"] = _text("notes", patch.notes, MAX_NOTES)
        numbers = None if patch.numbers is MISSING else _numbers(patch.numbers, self.region)
        with self._writing() as conn:
            exists = conn.execute(sa.select(people.c.id).where(people.c.id == person_id))
            if exists.first() is None:
                return None
            if patch.account_id is not MISSING or patch.account_name is not MISSING:
                values["account_id"] = self._resolve_account(
                    conn, _given(patch.account_id), _given(patch.account_name), now
                )
            conn.execute(people.update().where(people.c.id == person_id).values(values))
            if numbers is not None:
                self._write_numbers(conn, person_id, numbers)
            return self._person(conn, person_id)

    def delete_person(self, person_id: int) -> bool:
        """Deletes a person and their numbers; False when unknown. Their calls stay logged."""
        with self._writing() as conn:
            return conn.execute(people.delete().where(people.c.id == person_id)).rowcount > 0

    def search(
        self,
        q: str | None = None,
        account_id: int | None = None,
        limit: int = 50,
        after: NameKey | None = None,
    ) -> tuple[list[Person], NameKey | None]:
        """People by name, then id: those whose name or account's name contains ``q`` (any
        case) or, when ``q`` has 3 or more digits, with a number containing those digits
        (or equal to ``q`` read as a number); a page of ``limit`` after the key ``after``,
        and the key of the next page (None after the last)."""
        query = _PEOPLE
        if account_id is not None:
            query = query.where(people.c.account_id == account_id)
        if q and q.strip():
            query = query.where(sa.or_(*self._matches(q.strip())))
        with self._reading() as conn:
            return _page(self._people(conn, _keyset(query, people, after, limit)), limit)

    def find_number(self, number_id: int) -> tuple[Person, PersonNumber] | None:
        """The number of that id and the person holding it."""
        with self._reading() as conn:
            person_id = conn.execute(
                sa.select(person_numbers.c.person_id).where(person_numbers.c.id == number_id)
            ).scalar()
            if person_id is None:
                return None
            person = self._person(conn, person_id)
        return person, next(n for n in person.numbers if n.id == number_id)

    def find_by_e164(self, e164: str, extension: str | None = None) -> Person | None:
        """Who holds the E.164 number: the one with the same extension first, else the
        oldest holder."""
        with self._reading() as conn:
            person_id = conn.execute(
                sa.select(person_numbers.c.person_id)
                .where(person_numbers.c.e164 == e164)
                .order_by(
                    sa.case(
                        (person_numbers.c.extension.is_not_distinct_from(extension), 0), else_=1
                    ),
                    person_numbers.c.person_id,
                )
                .limit(1)
            ).scalar()
            return None if person_id is None else self._person(conn, person_id)

    def find_by_name(self, name: str, account_id: int | None) -> Person | None:
        """The oldest person of that name (any case) under that account (or under none)."""
        query = _PEOPLE.where(
            _ci_equals(people.c.name, name.strip()),
            people.c.account_id.is_not_distinct_from(account_id),
        )
        with self._reading() as conn:
            found = self._people(conn, query.order_by(people.c.id).limit(1))
            return found[0] if found else None

    # -- helpers, within a transaction --

    def _matches(self, q: str) -> list[sa.ColumnElement[bool]]:
        matches = [
            people.c.name.icontains(q, autoescape=True),
            accounts.c.name.icontains(q, autoescape=True),
        ]
        digits = phonenumbers.normalize_digits_only(q)
        if len(digits) >= _MIN_SEARCH_DIGITS:
            numbers = sa.select(person_numbers.c.id).where(
                person_numbers.c.person_id == people.c.id
            )
            matches.append(numbers.where(person_numbers.c.e164.contains(digits)).exists())
            try:
                # A national number with its trunk prefix ("020 7183 8750") is no substring.
                e164 = normalize(q, self.region).e164
            except InvalidNumber:
                pass
            else:
                matches.append(numbers.where(person_numbers.c.e164 == e164).exists())
        return matches

    def _account(self, conn: sa.Connection, account_id: int) -> Account | None:
        row = conn.execute(_ACCOUNTS.where(accounts.c.id == account_id)).first()
        return None if row is None else _account(row)

    def _insert_account(self, conn: sa.Connection, name: str, now: float) -> Account:
        account_id: int = conn.execute(
            accounts.insert()
            .values(name=name, created_at=now, updated_at=now)
            .returning(accounts.c.id)
        ).scalar_one()
        return Account(account_id, name, 0, now, now)

    def _account_named(
        self, conn: sa.Connection, name: str, now: float, create: bool
    ) -> Account | None:
        row = conn.execute(
            _ACCOUNTS.where(_ci_equals(accounts.c.name, name)).order_by(accounts.c.id).limit(1)
        ).first()
        if row is not None:
            return _account(row)
        return self._insert_account(conn, name, now) if create else None

    def _resolve_account(
        self, conn: sa.Connection, account_id: int | None, account_name: str | None, now: float
    ) -> int | None:
        """The account a person goes under: ``account_id`` checked, or ``account_name``
        found or created, or None for no account."""
        if account_id is not None:
            if account_name is not None:
                raise PeopleError("account_id", "give account_id or account_name, not both")
            if self._account(conn, account_id) is None:
                raise PeopleError("account_id", f"there is no account {account_id}")
            return account_id
        name = _text("account_name", account_name, MAX_NAME)
        if name is None:
            return None
        account = self._account_named(conn, name, now, create=True)
        assert account is not None
        return account.id

    def _write_numbers(self, conn: sa.Connection, person_id: int, numbers: list[_Number]) -> None:
        """Makes ``numbers`` the person's, in order; unchanged ones keep their ids."""
        current = {
            (row.e164, row.extension): row.id
            for row in conn.execute(
                sa.select(
                    person_numbers.c.id, person_numbers.c.e164, person_numbers.c.extension
                ).where(person_numbers.c.person_id == person_id)
            )
        }
        wanted = {(n.e164, n.extension) for n in numbers}
        conn.execute(
            person_numbers.delete().where(
                person_numbers.c.id.in_([i for key, i in current.items() if key not in wanted])
            )
        )
        for position, number in enumerate(numbers):
            values = {"label": number.label, "is_primary": number.primary, "position": position}
            number_id = current.get((number.e164, number.extension))
            if number_id is None:
                conn.execute(
                    person_numbers.insert().values(
                        person_id=person_id, e164=number.e164, extension=number.extension, **values
                    )
                )
            else:
                conn.execute(
                    person_numbers.update().where(person_numbers.c.id == number_id).values(values)
                )

    def _person(self, conn: sa.Connection, person_id: int) -> Person:
        (person,) = self._people(conn, _PEOPLE.where(people.c.id == person_id))
        return person

    def _people(self, conn: sa.Connection, query: sa.Select[Any]) -> list[Person]:
        """The people ``query`` (over :data:`_PEOPLE`) selects, with their numbers."""
        rows = conn.execute(query).all()
        numbers: defaultdict[int, list[PersonNumber]] = defaultdict(list)
        if rows:
            for row in conn.execute(
                sa.select(person_numbers)
                .where(person_numbers.c.person_id.in_([row.id for row in rows]))
                .order_by(person_numbers.c.person_id, person_numbers.c.position)
            ):
                numbers[row.person_id].append(
                    PersonNumber(
                        row.id,
                        row.label,
                        row.e164,
                        row.extension,
                        row.is_primary,
                        self._display(row.e164),
                    )
                )
        return [
            Person(
                id=row.id,
                name=row.name,
                title=row.title,
                email=row.email,
                notes=row.notes,
                account=None
                if row.account_id is None
                else AccountRef(row.account_id, row.account_name),
                numbers=tuple(numbers[row.id]),
                created_at=row.created_at,
                updated_at=row.updated_at,
            )
            for row in rows
        ]

    def _display(self, e164: str) -> str:
        numobj = phonenumbers.parse(e164)
        same_country = numobj.country_code == self._country_code
        return phonenumbers.format_number(
            numobj, PhoneNumberFormat.NATIONAL if same_country else PhoneNumberFormat.INTERNATIONAL
        )
