"""Tests for voipcore.dialer.csvimport: CSV files into the people book, every row accounted for."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_people import count_rows, make_engine
from voipcore.dialer.csvimport import (
    ColumnMapping,
    ImportReport,
    NumberColumn,
    RowError,
    import_people,
)
from voipcore.dialer.people import PeopleBook, PeopleError, Person, PersonInput
from voipcore.store.schema import accounts, people, person_numbers

PROSPECTS = (Path(__file__).parent.parent / "fixtures" / "people" / "prospects.csv").read_text(
    encoding="utf-8"
)
MAPPING = ColumnMapping(
    name="Full Name",
    account="Company",
    title="Title",
    email="Email",
    notes="Notes",
    numbers=[
        NumberColumn("Mobile", "mobile"),
        NumberColumn("Office", "Office", extension_column="Office Ext"),
    ],
)
# Every line of prospects.csv but the header: a good row's line, or its RowError.
GOOD_LINES = [2, 3, 4, 5, 6, 20]
ERRORS = [
    RowError(9, "Mobile", "Mobile: too short for a number in US"),
    RowError(10, "Mobile", "Mobile: contains letters: 'ab'"),
    RowError(11, "Full Name", "Full Name: a name is required"),
    RowError(12, None, "no phone number (in Mobile, Office)"),
    RowError(13, None, "empty row"),
    RowError(14, None, "duplicate of line 2 (same name and account)"),
    RowError(15, "Office Ext", "Office Ext: an extension without a number in Office"),
    RowError(
        16,
        "Office Ext",
        "Office Ext: the number already carries extension 1: "
        "give it in one place or make them match",
    ),
    RowError(17, "Email", "Email: not an email address: 'pat-at-example'"),
    RowError(18, None, "empty row"),
    RowError(19, None, "duplicate of person 1, already in the book (same name and account)"),
]


@pytest.fixture
def engine() -> sa.Engine:
    return make_engine()


@pytest.fixture
def book(engine: sa.Engine) -> PeopleBook:
    book = PeopleBook(engine, "US")
    book.create_person(PersonInput("Sam Existing", account_name="Acme"), now=1.0)
    return book


def stored(book: PeopleBook, report: ImportReport) -> list[Person]:
    found = [book.get_person(person_id) for person_id in report.people]
    assert None not in found
    return [person for person in found if person is not None]


def numbers_of(person: Person) -> list[tuple[str, str, str | None, bool]]:
    return [(n.label, n.e164, n.extension, n.primary) for n in person.numbers]


def test_prospects_report_accounts_for_every_line(book: PeopleBook) -> None:
    report = import_people(PROSPECTS, MAPPING, book, now=2.0)
    assert report == ImportReport(
        rows=len(GOOD_LINES) + len(ERRORS),
        imported=len(GOOD_LINES),
        rejected=len(ERRORS),
        people=report.people,
        errors=tuple(ERRORS),
    )
    assert len(report.people) == len(GOOD_LINES)
    # Lines 7 and 8 continue Maria's quoted notes; 20 is the last line.
    data_lines = sorted(GOOD_LINES + [e.line for e in ERRORS] + [7, 8])
    assert data_lines == list(range(2, len(PROSPECTS.splitlines()) + 1))


def test_prospects_are_stored_as_e164_with_extensions_apart(book: PeopleBook) -> None:
    by_name = {p.name: p for p in stored(book, import_people(PROSPECTS, MAPPING, book, now=2.0))}
    assert list(by_name) == [
        "Jane Doe",
        "John Smith",
        "Ann Lee",
        "Raj Patel",
        "Maria Garcia",
        "Lisa Wong",
    ]

    jane = by_name["Jane Doe"]
    assert jane.account is not None and jane.account.name == "Acme"
    assert (jane.title, jane.email, jane.notes, jane.created_at) == (
        "VP Sales",
        "jane@acme.example",
        None,
        2.0,
    )
    assert numbers_of(jane) == [("mobile", "+14045551234", None, True)]
    assert numbers_of(by_name["John Smith"]) == [("office", "+12125550199", "200", True)]
    assert numbers_of(by_name["Ann Lee"]) == [
        ("mobile", "+13125550100", None, True),
        ("office", "+13125550101", "7", False),
    ]
    assert numbers_of(by_name["Raj Patel"]) == [("office", "+14155550134", "42", True)]
    maria = by_name["Maria Garcia"]
    assert maria.notes == 'Met at the expo.\nPrefers mornings.\nSaid "call me Mari"'
    assert numbers_of(maria) == [
        ("mobile", "+16175550150", None, True),
        ("office", "+16175550151", "305", False),
    ]
    lisa = by_name["Lisa Wong"]
    assert (lisa.account, lisa.notes) == (None, None)
    assert numbers_of(lisa) == [
        ("mobile", "+442071838750", None, True),
        ("office", "+14045550114", None, False),
    ]
    # "Acme" and "acme" rows went to one account, next to Sam's.
    assert sorted(a.name for a in book.list_accounts()[0]) == [
        "Acme",
        "Globex",
        "Initech",
        "Umbrella",
    ]
    acme = book.account_named("Acme", 3.0, create=False)
    assert acme is not None and acme.people_count == 3


def test_a_dry_run_reports_the_same_and_writes_nothing(engine: sa.Engine, book: PeopleBook) -> None:
    before = [count_rows(engine, table) for table in (accounts, people, person_numbers)]
    report = import_people(PROSPECTS, MAPPING, book, now=2.0, dry_run=True)
    assert (report.rows, report.imported, report.rejected, report.people) == (17, 6, 11, ())
    assert report.errors == tuple(ERRORS)
    assert [count_rows(engine, table) for table in (accounts, people, person_numbers)] == before


def test_bom_and_crlf_line_endings_change_nothing(book: PeopleBook) -> None:
    text = "\ufeff" + PROSPECTS.replace("\n", "\r\n")
    report = import_people(text, MAPPING, book, now=2.0, dry_run=True)
    assert (report.imported, report.errors) == (6, tuple(ERRORS))


def test_first_and_last_name_columns(book: PeopleBook) -> None:
    text = (
        "First,Last,Phone\n"
        "Ada,Lovelace,404-555-0120\n"
        ",Turing,404-555-0121\n"
        "Grace,,404-555-0122\n"
        ",,404-555-0123\n"
    )
    mapping = ColumnMapping(first_name="First", last_name="Last", numbers=[NumberColumn("Phone")])
    report = import_people(text, mapping, book, now=2.0)
    assert [p.name for p in stored(book, report)] == ["Ada Lovelace", "Turing", "Grace"]
    assert report.errors == (RowError(5, "First", "First: a name is required"),)


def test_short_rows_read_missing_cells_as_blank(book: PeopleBook) -> None:
    text = "Name,Phone,Mobile\nAda,404-555-0120\nBob\n"
    mapping = ColumnMapping(name="Name", numbers=[NumberColumn("Phone"), NumberColumn("Mobile")])
    report = import_people(text, mapping, book, now=2.0)
    assert (report.imported, report.errors) == (
        1,
        (RowError(3, None, "no phone number (in Phone, Mobile)"),),
    )


def test_header_only_file_imports_nothing(book: PeopleBook) -> None:
    mapping = ColumnMapping(name="Name", numbers=[NumberColumn("Phone")])
    assert import_people("Name,Phone\n", mapping, book, now=2.0) == ImportReport(0, 0, 0, (), ())


@pytest.mark.parametrize(
    ("text", "mapping", "field", "words"),
    [
        ("", ColumnMapping(name="Name"), "csv", "the file is empty"),
        (
            "Name,Phone\n",
            ColumnMapping(name="Name", numbers=[NumberColumn("Phone"), NumberColumn("Phone 2")]),
            "mapping.numbers.1.column",
            "no column 'Phone 2' in the file (columns: 'Name', 'Phone')",
        ),
        (
            "Name,Phone,Ext\n",
            ColumnMapping(name="Name", numbers=[NumberColumn("Phone", extension_column="Extn")]),
            "mapping.numbers.0.extension_column",
            "no column 'Extn'",
        ),
        (
            "Name,Phone\n",
            ColumnMapping(name="Name", numbers=[NumberColumn("Phone", label="")]),
            "mapping.numbers.0.label",
            "a label is 1 to 32 characters",
        ),
        ("Name,Phone\n", ColumnMapping(name="Name"), "mapping.numbers", "at least one"),
        (
            "Name,Phone\n",
            ColumnMapping(numbers=[NumberColumn("Phone")]),
            "mapping.name",
            "map the name column",
        ),
        (
            "Name,First,Phone\n",
            ColumnMapping(name="Name", first_name="First", numbers=[NumberColumn("Phone")]),
            "mapping.name",
            "not both",
        ),
        (
            "Name,Phone\n",
            ColumnMapping(name="Name", account="Company", numbers=[NumberColumn("Phone")]),
            "mapping.account",
            "no column 'Company'",
        ),
        (
            "Name,Phone,phone\n",
            ColumnMapping(name="Name", numbers=[NumberColumn("Phone")]),
            "mapping.numbers.0.column",
            "the file has 2 columns named 'Phone'",
        ),
        (
            'Name,Phone\nAda,"' + "4" * (csv.field_size_limit() + 1) + '"\n',
            ColumnMapping(name="Name", numbers=[NumberColumn("Phone")]),
            "csv",
            "line 2: field larger than field limit",
        ),
    ],
)
def test_a_mapping_that_does_not_fit_is_refused(
    book: PeopleBook, text: str, mapping: ColumnMapping, field: str, words: str
) -> None:
    with pytest.raises(PeopleError) as info:
        import_people(text, mapping, book, now=2.0)
    assert info.value.field == field
    assert words in info.value.message
    assert len(book.search()[0]) == 1  # only Sam


def test_headers_match_whatever_their_case_and_spacing(book: PeopleBook) -> None:
    mapping = ColumnMapping(name="full name", numbers=[NumberColumn("MOBILE ")])
    report = import_people(" Full Name , Mobile\nAda,404-555-0120\n", mapping, book, now=2.0)
    assert report.imported == 1


CELL = st.one_of(st.sampled_from(["", " ", "a\nb", '"', "x12"]), st.text(max_size=12))
NUMBER = st.sampled_from(
    ["404-555-0120", "(312) 555-0101;ext=7", "+44 20 7183 8750 ext. 9", "", "", "12", "a\nb"]
)
# Name, Company, Mobile, Office, Ext: rows that often import, and often clash.
ROW = st.tuples(
    st.sampled_from(["Ada", "ada ", "Bob", "Cy", "", '"']),
    st.sampled_from(["Acme", "ACME", "", "Globex"]),
    NUMBER,
    NUMBER,
    st.sampled_from(["", "", "7", "12#", "x"]),
).map(list)
# What io.StringIO(newline="") and so csv.reader's line_num count as the end of a line.
LINE_BREAK = re.compile(r"\r\n|\r|\n")


@settings(
    derandomize=True,
    database=None,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.one_of(ROW, st.lists(CELL, max_size=7)), max_size=12), st.booleans())
def test_no_row_is_lost(rows: list[list[str]], dry_run: bool) -> None:
    book = PeopleBook(make_engine(), "US")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Name", "Company", "Mobile", "Office", "Ext"])
    starts = []
    for row in rows:
        starts.append(len(LINE_BREAK.findall(out.getvalue())) + 1)
        writer.writerow(row)
    mapping = ColumnMapping(
        name="Name",
        account="Company",
        numbers=[NumberColumn("Mobile", "mobile"), NumberColumn("Office", "office", "Ext")],
    )
    report = import_people(out.getvalue(), mapping, book, now=1.0, dry_run=dry_run)
    assert report.rows == len(rows) == report.imported + report.rejected
    assert report.rejected == len(report.errors)
    error_lines = [error.line for error in report.errors]
    assert len(set(error_lines)) == len(error_lines)
    assert set(error_lines) <= set(starts)
    stored = len(book.search(limit=200)[0])
    assert (len(report.people), stored) == ((0, 0) if dry_run else (report.imported,) * 2)
