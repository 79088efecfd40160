"""People from a CSV file (RFC 4180, as spreadsheets and CRMs export it) into the book.

The first line names the columns; a :class:`ColumnMapping` says which column holds what.
Each row is imported whole or rejected whole with a :class:`RowError` naming its line in
the file (where the row starts: a quoted cell may span lines) and saying what is wrong in
a rep's words, so every row is accounted for: ``rows == imported + rejected``. Numbers go
through the book's checks (:func:`voipcore.dialer.numbers.normalize`, stored as E.164 with
the extension apart); the extension may be written in the number's cell (``x123``,
``ext. 123``, RFC 3966 ``;ext=123``) or have its own column. All rows go in one
transaction, so a crash leaves nothing half-imported.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from voipcore.dialer.people import (
    NumberInput,
    PeopleBook,
    PeopleError,
    PersonInput,
    normalize_label,
)

_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class NumberColumn:
    """A column of phone numbers, their label, and the column of their extensions if any."""

    column: str
    label: str = "other"
    extension_column: str | None = None


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """Which column (by its header) holds what: the name whole or as first and last name,
    at least one number column; the others are optional. The first number column with a
    value in a row gives that person's primary number."""

    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    account: str | None = None
    title: str | None = None
    email: str | None = None
    notes: str | None = None
    numbers: Sequence[NumberColumn] = ()


@dataclass(frozen=True, slots=True)
class RowError:
    """Why the row starting at ``line`` (the header is line 1) was not imported; ``column``
    is the header of the cell at fault, if one is."""

    line: int
    column: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did: ``people`` are the ids created (none on a dry run), ``errors``
    one per rejected row, in file order."""

    rows: int
    imported: int
    rejected: int
    people: tuple[int, ...]
    errors: tuple[RowError, ...]


@dataclass(frozen=True, slots=True)
class _Column:
    header: str
    index: int

    def cell(self, row: list[str]) -> str:
        return row[self.index].strip() if self.index < len(row) else ""


@dataclass(frozen=True, slots=True)
class _NumberColumn:
    number: _Column
    label: str
    extension: _Column | None


@dataclass(frozen=True, slots=True)
class _Plan:
    """A mapping checked against the header."""

    name: list[_Column]  # the whole name, or first and last name
    account: _Column | None
    title: _Column | None
    email: _Column | None
    notes: _Column | None
    numbers: list[_NumberColumn]


class _RowRejected(Exception):
    def __init__(self, column: str | None, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = f"{column}: {reason}" if column else reason


def import_people(
    text: str, mapping: ColumnMapping, book: PeopleBook, now: float, dry_run: bool = False
) -> ImportReport:
    """Imports the people of a CSV file's text (a leading BOM is skipped).

    Raises :class:`PeopleError` when the file has no header or the mapping does not fit
    it (``field`` is ``csv`` or the mapping's key, e.g. ``mapping.numbers.1.column``);
    row problems are reported, not raised. A dry run checks and reports everything,
    duplicates within the file included, and writes nothing.
    """
    rows = _rows(text.removeprefix(_BOM))
    _, header = next(rows, (1, None))
    if header is None:
        raise PeopleError("csv", "the file is empty: its first line must name the columns")
    plan = _plan(mapping, [cell.strip() for cell in header])
    errors: list[RowError] = []
    lines: dict[int, int] = {}  # the line of each person created, in file order
    with book.transaction(commit=not dry_run) as tx:
        for line, row in rows:
            try:
                person_id = _import_row(row, plan, tx, now, lines)
            except _RowRejected as rejected:
                errors.append(RowError(line, rejected.column, rejected.reason))
            else:
                lines[person_id] = line
    return ImportReport(
        rows=len(lines) + len(errors),
        imported=len(lines),
        rejected=len(errors),
        people=() if dry_run else tuple(lines),
        errors=tuple(errors),
    )


def _rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """Each row of the file and the line it starts on."""
    reader = csv.reader(io.StringIO(text, newline=""))
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader, None)
        except csv.Error as exc:
            raise PeopleError("csv", f"line {line}: {exc}") from None
        if row is None:
            return
        yield line, row


def _plan(mapping: ColumnMapping, header: list[str]) -> _Plan:
    def column(field: str, name: str) -> _Column:
        key = name.strip().casefold()
        matches = [i for i, cell in enumerate(header) if cell.casefold() == key]
        if not matches:
            listed = ", ".join(repr(cell) for cell in header if cell)
            raise PeopleError(field, f"no column {name!r} in the file (columns: {listed})")
        if len(matches) > 1:
            raise PeopleError(field, f"the file has {len(matches)} columns named {name!r}")
        return _Column(header[matches[0]], matches[0])

    def optional(key: str, name: str | None) -> _Column | None:
        return None if name is None else column(f"mapping.{key}", name)

    if mapping.name is not None and (mapping.first_name or mapping.last_name):
        raise PeopleError("mapping.name", "map either name or first_name/last_name, not both")
    names = [
        column(f"mapping.{key}", header_name)
        for key, header_name in [
            ("name", mapping.name),
            ("first_name", mapping.first_name),
            ("last_name", mapping.last_name),
        ]
        if header_name is not None
    ]
    if not names:
        raise PeopleError("mapping.name", "map the name column, or first_name and last_name")
    if not mapping.numbers:
        raise PeopleError("mapping.numbers", "map at least one phone number column")
    numbers = []
    for index, number in enumerate(mapping.numbers):
        path = f"mapping.numbers.{index}"
        try:
            label = normalize_label(number.label)
        except ValueError as exc:
            raise PeopleError(f"{path}.label", str(exc)) from None
        numbers.append(
            _NumberColumn(
                column(f"{path}.column", number.column),
                label,
                optional(f"numbers.{index}.extension_column", number.extension_column),
            )
        )
    return _Plan(
        names,
        optional("account", mapping.account),
        optional("title", mapping.title),
        optional("email", mapping.email),
        optional("notes", mapping.notes),
        numbers,
    )


def _import_row(
    row: list[str], plan: _Plan, book: PeopleBook, now: float, lines: dict[int, int]
) -> int:
    """Creates the row's person and returns their id, or raises :class:`_RowRejected`."""
    if not any(cell.strip() for cell in row):
        raise _RowRejected(None, "empty row")
    name = " ".join(filter(None, (column.cell(row) for column in plan.name)))
    numbers: list[NumberInput] = []
    sources: list[_NumberColumn] = []  # the column of each number given
    for column in plan.numbers:
        number = column.number.cell(row)
        extension_column = column.extension
        extension = extension_column.cell(row) if extension_column else ""
        if number:
            numbers.append(NumberInput(number, column.label, extension or None))
            sources.append(column)
        elif extension_column and extension:
            raise _RowRejected(
                extension_column.header, f"an extension without a number in {column.number.header}"
            )
    if not numbers:
        headers = ", ".join(column.number.header for column in plan.numbers)
        raise _RowRejected(None, f"no phone number (in {headers})")

    def cell(column: _Column | None) -> str | None:
        return column.cell(row) if column else None

    account_name = cell(plan.account) or None
    person = PersonInput(
        name=name,
        account_name=account_name,
        title=cell(plan.title),
        email=cell(plan.email),
        notes=cell(plan.notes),
        numbers=numbers,
    )
    try:
        _check_duplicate(book, name, account_name, now, lines)
        return book.create_person(person, now).id
    except PeopleError as error:
        raise _RowRejected(_header_of(error.field, plan, sources, person), error.message) from None


def _check_duplicate(
    book: PeopleBook, name: str, account_name: str | None, now: float, lines: dict[int, int]
) -> None:
    """Rejects a person already in the book (or earlier in the file) under the same account."""
    if account_name is None:
        account_id = None
    else:
        account = book.account_named(account_name, now, create=False)
        if account is None:
            return
        account_id = account.id
    twin = book.find_by_name(name, account_id)
    if twin is None:
        return
    where = (
        f"line {lines[twin.id]}" if twin.id in lines else f"person {twin.id}, already in the book"
    )
    raise _RowRejected(None, f"duplicate of {where} (same name and account)")


def _header_of(
    field: str, plan: _Plan, sources: list[_NumberColumn], person: PersonInput
) -> str | None:
    """The header of the column a :class:`PeopleError` field came from."""
    first, _, rest = field.partition(".")
    if first == "numbers" and rest:
        index, _, part = rest.partition(".")
        source = sources[int(index)]
        if part == "extension" and source.extension and person.numbers[int(index)].extension:
            return source.extension.header
        return source.number.header
    column = {
        "name": plan.name[0],
        "account_name": plan.account,
        "title": plan.title,
        "email": plan.email,
        "notes": plan.notes,
    }.get(first)
    return column.header if column else None
