"""Tests for voipcore.dialer.people: the address book over a real SQLite database."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from voipcore.dialer.people import (
    MAX_NAME,
    Account,
    AccountRef,
    NumberInput,
    PeopleBook,
    PeopleError,
    Person,
    PersonInput,
    PersonPatch,
    decode_cursor,
    encode_cursor,
)
from voipcore.store.db import open_engine
from voipcore.store.schema import person_numbers

ATL = "404-555-1234"
ATL_E164 = "+14045551234"
LONDON = "+44 20 7183 8750"
LONDON_E164 = "+442071838750"


def make_engine() -> sa.Engine:
    """A fresh in-memory store, migrated as the server opens it."""
    return open_engine("sqlite://")


def count_rows(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def refused(field: str, call: Any, *args: Any) -> PeopleError:
    with pytest.raises(PeopleError) as info:
        call(*args)
    assert info.value.field == field, info.value
    assert str(info.value) == info.value.message
    return info.value


@pytest.fixture
def engine() -> sa.Engine:
    return make_engine()


@pytest.fixture
def book(engine: sa.Engine) -> PeopleBook:
    return PeopleBook(engine, "US")


# -- accounts ----------------------------------------------------------------


def test_account_lifecycle(book: PeopleBook) -> None:
    acme = book.create_account("  Acme Corp ", now=10.0)
    assert acme == Account(acme.id, "Acme Corp", 0, 10.0, 10.0)
    assert book.get_account(acme.id) == acme
    assert book.get_account(999) is None
    book.create_person(PersonInput("Jane", account_id=acme.id), now=11.0)

    renamed = book.update_account(acme.id, "Acme Inc", now=12.0)
    assert renamed == Account(acme.id, "Acme Inc", 1, 10.0, 12.0)
    assert book.update_account(999, "Nobody", now=12.0) is None

    assert book.delete_account(acme.id) is True
    assert book.delete_account(acme.id) is False
    assert book.get_account(acme.id) is None
    (jane,), _ = book.search("Jane")
    assert jane.account is None  # the person stays, under no account


@pytest.mark.parametrize("name", ["", "   ", "x" * (MAX_NAME + 1)])
def test_account_name_is_required_and_bounded(book: PeopleBook, name: str) -> None:
    refused("name", book.create_account, name, 1.0)
    acme = book.create_account("Acme", 1.0)
    refused("name", book.update_account, acme.id, name, 2.0)
    refused("account_name", book.account_named, name, 2.0)


def test_account_named_matches_any_case_and_creates(book: PeopleBook) -> None:
    acme = book.create_account("Acme", 1.0)
    assert book.account_named("ACME ", 2.0) == acme
    assert book.account_named("Globex", 3.0, create=False) is None
    globex = book.account_named("Globex", 3.0)
    assert globex is not None and globex.name == "Globex" and globex.created_at == 3.0
    assert book.account_named("globex", 4.0) == globex


def test_list_accounts_filters_counts_and_pages(book: PeopleBook) -> None:
    names = ["Umbrella", "Acme", "Globex", "acme west", "Initech", "100% Juice"]
    for name in names:
        book.create_account(name, 1.0)
    acme = book.account_named("Acme", 1.0)
    assert acme is not None
    book.create_person(PersonInput("Jane", account_id=acme.id), 2.0)
    book.create_person(PersonInput("John", account_name="acme"), 2.0)

    matched, cursor = book.list_accounts(q="ACME")
    assert [(a.name, a.people_count) for a in matched] == [("Acme", 2), ("acme west", 0)]
    assert cursor is None
    assert [a.name for a in book.list_accounts(q="%")[0]] == ["100% Juice"]

    seen: list[str] = []
    after = None
    while True:
        page, after = book.list_accounts(limit=4, after=after)
        seen += [a.name for a in page]
        if after is None:
            break
    assert seen == sorted(names)


# -- creating people ---------------------------------------------------------


def test_create_person_stores_everything(book: PeopleBook) -> None:
    person = book.create_person(
        PersonInput(
            name=" Jane Doe ",
            account_name="Acme",
            title="VP Sales",
            email="jane@acme.example",
            notes="  met at the expo\nlikes email  ",
            numbers=[
                NumberInput(ATL + " x12", label="Office"),
                NumberInput(LONDON, label="mobile", primary=True),
            ],
        ),
        now=5.0,
    )
    account = book.account_named("Acme", 5.0, create=False)
    assert account is not None
    office, mobile = person.numbers
    assert person == Person(
        id=person.id,
        name="Jane Doe",
        title="VP Sales",
        email="jane@acme.example",
        notes="met at the expo\nlikes email",
        account=AccountRef(account.id, "Acme"),
        numbers=(office, mobile),
        created_at=5.0,
        updated_at=5.0,
    )
    assert (office.label, office.e164, office.extension, office.primary) == (
        "office",
        ATL_E164,
        "12",
        False,
    )
    assert office.display == "(404) 555-1234"  # the book's country: national format
    assert (mobile.label, mobile.e164, mobile.extension, mobile.primary) == (
        "mobile",
        LONDON_E164,
        None,
        True,
    )
    assert mobile.display == "+44 20 7183 8750"  # abroad: international format
    assert book.get_person(person.id) == person
    assert book.get_person(person.id + 1) is None


def test_a_person_may_have_no_number_or_account(book: PeopleBook) -> None:
    person = book.create_person(PersonInput("Solo", title=" ", email=""), 1.0)
    assert (person.account, person.numbers, person.title, person.email) == (None, (), None, None)


def test_the_first_number_is_primary_unless_one_is_marked(book: PeopleBook) -> None:
    numbers = [NumberInput(ATL), NumberInput(LONDON)]
    first = book.create_person(PersonInput("A", numbers=numbers), 1.0)
    assert [n.primary for n in first.numbers] == [True, False]
    marked = [NumberInput(ATL), NumberInput(LONDON, primary=True)]
    second = book.create_person(PersonInput("B", numbers=marked), 1.0)
    assert [n.primary for n in second.numbers] == [False, True]
    both = [NumberInput(ATL, primary=True), NumberInput(LONDON, primary=True)]
    error = refused("numbers", book.create_person, PersonInput("C", numbers=both), 1.0)
    assert error.message == "only one number can be primary"


@pytest.mark.parametrize(
    ("number", "extension"),
    [
        ("404-555-1234 x123", None),
        ("404-555-1234x123", None),
        ("(404) 555-1234 ext. 123", None),
        ("+1 404 555 1234;ext=123", None),
        ("tel:+1-404-555-1234;ext=123", None),
        ("404-555-1234", "123"),
        ("404-555-1234 x123", "123"),  # both, agreeing
    ],
)
def test_extensions_are_kept_apart(book: PeopleBook, number: str, extension: str | None) -> None:
    person = book.create_person(
        PersonInput("X", numbers=[NumberInput(number, "office", extension)]), 1
    )
    (stored,) = person.numbers
    assert (stored.e164, stored.extension) == (ATL_E164, "123")


def test_an_extension_field_may_hold_star_hash_and_pauses(book: PeopleBook) -> None:
    person = book.create_person(PersonInput("X", numbers=[NumberInput(ATL, extension=",,12#")]), 1)
    assert person.numbers[0].extension == ",,12#"


@pytest.mark.parametrize(
    ("person", "field", "words"),
    [
        (PersonInput(""), "name", "a name is required"),
        (PersonInput("x" * 201), "name", "at most 200 characters"),
        (PersonInput("X", title="t" * 201), "title", "at most 200"),
        (PersonInput("X", email="jane at acme"), "email", "not an email address"),
        (PersonInput("X", email="a@b@c"), "email", "not an email address"),
        (PersonInput("X", notes="n" * 10_001), "notes", "at most 10000"),
        (PersonInput("X", account_id=42), "account_id", "there is no account 42"),
        (PersonInput("X", account_name="a" * 201), "account_name", "at most 200"),
        (
            PersonInput("X", numbers=[NumberInput(ATL), NumberInput("404555123")]),
            "numbers.1.number",
            "too short for a number in US",
        ),
        (
            PersonInput("X", numbers=[NumberInput("404555CALL now")]),
            "numbers.0.number",
            "letters",
        ),
        (PersonInput("X", numbers=[NumberInput("")]), "numbers.0.number", "no number"),
        (PersonInput("X", numbers=[NumberInput(ATL, label=" ")]), "numbers.0.label", "1 to 32"),
        (PersonInput("X", numbers=[NumberInput(ATL, label="l" * 33)]), "numbers.0.label", "1 to"),
        (
            PersonInput("X", numbers=[NumberInput(ATL, extension="12a")]),
            "numbers.0.extension",
            "digits, * and #",
        ),
        (
            PersonInput("X", numbers=[NumberInput(ATL, extension="1" * 21)]),
            "numbers.0.extension",
            "at most 20",
        ),
        (
            PersonInput("X", numbers=[NumberInput(ATL, "office"), NumberInput(ATL + " x9", "")]),
            "numbers.1.label",
            "1 to 32",
        ),
        (
            PersonInput("X", numbers=[NumberInput(ATL + " x12", extension="13")]),
            "numbers.0.extension",
            "already carries extension 12",
        ),
        (
            PersonInput("X", numbers=[NumberInput(ATL, "mobile"), NumberInput(ATL_E164, "office")]),
            "numbers.1.number",
            "the same number is given twice",
        ),
    ],
)
def test_refused_input_names_the_field(
    engine: sa.Engine, book: PeopleBook, person: PersonInput, field: str, words: str
) -> None:
    error = refused(field, book.create_person, person, 1.0)
    assert words in error.message
    assert count_rows(engine, person_numbers) == 0
    assert book.search()[0] == []


def test_account_id_and_account_name_exclude_each_other(book: PeopleBook) -> None:
    acme = book.create_account("Acme", 1.0)
    person = PersonInput("X", account_id=acme.id, account_name="Acme")
    assert "not both" in refused("account_id", book.create_person, person, 1.0).message


def test_a_refused_number_creates_no_account(book: PeopleBook) -> None:
    person = PersonInput("X", account_name="Acme", numbers=[NumberInput("12")])
    refused("numbers.0.number", book.create_person, person, 1.0)
    assert book.list_accounts() == ([], None)


# -- changing and deleting ---------------------------------------------------


def test_update_changes_only_the_given_fields(book: PeopleBook) -> None:
    jane = book.create_person(
        PersonInput("Jane", account_name="Acme", title="CTO", email="j@a.example", notes="n"),
        1.0,
    )
    updated = book.update_person(jane.id, PersonPatch(title=None, notes="call Monday"), 2.0)
    assert updated is not None
    assert (updated.name, updated.title, updated.email, updated.notes) == (
        "Jane",
        None,
        "j@a.example",
        "call Monday",
    )
    assert (updated.account, updated.created_at, updated.updated_at) == (jane.account, 1.0, 2.0)

    moved = book.update_person(jane.id, PersonPatch(name="Jane D", account_name="Globex"), 3.0)
    assert moved is not None and moved.account is not None
    assert (moved.name, moved.account.name) == ("Jane D", "Globex")
    alone = book.update_person(jane.id, PersonPatch(account_id=None), 4.0)
    assert alone is not None and alone.account is None
    acme = book.account_named("Acme", 5.0, create=False)
    assert acme is not None
    back = book.update_person(jane.id, PersonPatch(account_id=acme.id), 5.0)
    assert back is not None and back.account == AccountRef(acme.id, "Acme")

    assert book.update_person(jane.id + 1, PersonPatch(name="Nobody"), 6.0) is None


def test_update_numbers_replaces_the_list_keeping_unchanged_ids(book: PeopleBook) -> None:
    jane = book.create_person(
        PersonInput("Jane", numbers=[NumberInput(ATL + " x1", "office"), NumberInput(LONDON)]),
        1.0,
    )
    office, london = jane.numbers
    patch = PersonPatch(
        numbers=[
            NumberInput("+33 1 42 68 53 00", "paris", primary=True),
            NumberInput(ATL, "office", extension="1"),
        ]
    )
    updated = book.update_person(jane.id, patch, 2.0)
    assert updated is not None
    paris, office_again = updated.numbers
    assert office_again.id == office.id and not office_again.primary
    assert (paris.e164, paris.label, paris.primary) == ("+33142685300", "paris", True)
    assert paris.id != office.id

    cleared = book.update_person(jane.id, PersonPatch(numbers=[]), 3.0)
    assert cleared is not None and cleared.numbers == ()
    untouched = book.update_person(jane.id, PersonPatch(title="x"), 4.0)
    assert untouched is not None and untouched.numbers == ()


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        (PersonPatch(name=" "), "name"),
        (PersonPatch(title="t" * 201), "title"),
        (PersonPatch(email="nope"), "email"),
        (PersonPatch(notes="n" * 10_001), "notes"),
        (PersonPatch(account_id=77), "account_id"),
        (PersonPatch(account_name="a" * 201), "account_name"),
        (PersonPatch(numbers=[NumberInput(ATL), NumberInput("555")]), "numbers.1.number"),
        (PersonPatch(numbers=[NumberInput(ATL, extension="#x")]), "numbers.0.extension"),
        (
            PersonPatch(
                numbers=[NumberInput(ATL, primary=True), NumberInput(LONDON, primary=True)]
            ),
            "numbers",
        ),
    ],
)
def test_refused_patch_changes_nothing(book: PeopleBook, patch: PersonPatch, field: str) -> None:
    jane = book.create_person(PersonInput("Jane", numbers=[NumberInput(ATL)]), 1.0)
    refused(field, book.update_person, jane.id, patch, 2.0)
    assert book.get_person(jane.id) == jane


def test_delete_person_takes_their_numbers(engine: sa.Engine, book: PeopleBook) -> None:
    jane = book.create_person(PersonInput("Jane", numbers=[NumberInput(ATL)]), 1.0)
    assert book.delete_person(jane.id) is True
    assert book.delete_person(jane.id) is False
    assert book.get_person(jane.id) is None
    assert book.find_number(jane.numbers[0].id) is None
    assert count_rows(engine, person_numbers) == 0


def test_a_deleted_id_is_never_given_again(book: PeopleBook) -> None:
    """The call log and CRMs keep person and number ids: a new row must not take one."""
    acme = book.create_account("Acme", 1.0)
    jane = book.create_person(PersonInput("Jane", numbers=[NumberInput(ATL)]), 1.0)
    book.delete_person(jane.id)
    book.delete_account(acme.id)
    joe = book.create_person(PersonInput("Joe", numbers=[NumberInput(ATL)]), 2.0)
    assert joe.id > jane.id and joe.numbers[0].id > jane.numbers[0].id
    assert book.create_account("Globex", 2.0).id > acme.id


# -- finding -----------------------------------------------------------------


@pytest.fixture
def crowd(book: PeopleBook) -> dict[str, Person]:
    def add(name: str, account: str | None, *numbers: str) -> Person:
        return book.create_person(
            PersonInput(name, account_name=account, numbers=[NumberInput(n) for n in numbers]), 1.0
        )

    return {
        "jane": add("Jane Doe", "Acme", ATL),
        "john": add("John Smith", "Globex", "+1 212 555 0199", LONDON),
        "ann": add("Ann Janeway", None, "+1 312 555 0100 x55"),
        "bob": add("Bob 100%", "Initech"),
    }


@pytest.mark.parametrize(
    ("q", "names"),
    [
        ("jane", ["Ann Janeway", "Jane Doe"]),  # names, any case, as a substring
        ("ACME", ["Jane Doe"]),  # the account's name
        ("glob", ["John Smith"]),
        ("555", ["Ann Janeway", "Jane Doe", "John Smith"]),  # digits of a number
        ("(404) 555", ["Jane Doe"]),
        ("7183 8750", ["John Smith"]),
        ("011 44 20 7183 8750", ["John Smith"]),  # dialled, read as a number
        ("12", []),  # under 3 digits: not a number search
        ("55", []),  # the x55 extension is no part of the number
        ("%", ["Bob 100%"]),  # LIKE wildcards are plain text
        ("_", []),
        ("  ", ["Ann Janeway", "Bob 100%", "Jane Doe", "John Smith"]),
        (None, ["Ann Janeway", "Bob 100%", "Jane Doe", "John Smith"]),
    ],
)
def test_search(
    book: PeopleBook, crowd: dict[str, Person], q: str | None, names: list[str]
) -> None:
    found, cursor = book.search(q)
    assert [p.name for p in found] == names
    assert cursor is None


def test_search_within_an_account(book: PeopleBook, crowd: dict[str, Person]) -> None:
    account = crowd["jane"].account
    assert account is not None
    assert book.search(account_id=account.id)[0] == [crowd["jane"]]
    assert book.search("john", account_id=account.id)[0] == []


def test_search_pages_without_gaps_or_duplicates(book: PeopleBook) -> None:
    names = [f"Person {i % 7}" for i in range(23)]  # repeated names: ids break the ties
    for name in names:
        book.create_person(PersonInput(name, numbers=[NumberInput(ATL)]), 1.0)
    everyone, _ = book.search(limit=200)
    assert [(p.name, p.id) for p in everyone] == sorted((p.name, p.id) for p in everyone)

    for limit in (1, 5, 23, 50):
        seen: list[Person] = []
        cursor: str | None = None  # as the API hands it out, opaque
        pages = 0
        while True:
            after = None if cursor is None else decode_cursor(cursor, (str, int))
            page, key = book.search("555", limit=limit, after=after)
            assert len(page) <= limit
            seen += page
            pages += 1
            if key is None:
                break
            assert key == (page[-1].name, page[-1].id)
            cursor = encode_cursor(key)
        assert seen == everyone
        assert pages == -(-23 // limit)


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "",
        "W10",  # []
        encode_cursor(("a",)),
        encode_cursor((1, "a")),
        base64.urlsafe_b64encode(b'["a", true]').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "Ã©",
    ],
)
def test_a_garbage_cursor_is_refused(cursor: str) -> None:
    words = "not a valid cursor: pass next_cursor from the previous page unchanged"
    with pytest.raises(ValueError) as info:
        decode_cursor(cursor, (str, int))
    assert str(info.value) == words


@settings(derandomize=True, database=None, max_examples=200)
@given(
    st.lists(
        st.one_of(st.text(), st.integers(), st.floats(allow_nan=False, allow_infinity=False)),
        max_size=4,
    )
)
def test_cursor_round_trip(values: list[str | int | float]) -> None:
    cursor = encode_cursor(tuple(values))
    assert cursor.isascii() and not set(cursor) - set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    types = tuple(type(v) for v in values)
    assert decode_cursor(cursor, types) == tuple(values)


def test_a_float_cursor_value_may_be_written_as_an_int() -> None:
    assert decode_cursor(encode_cursor((1700000000, "a")), (float, str)) == (1700000000, "a")


def test_find_number(book: PeopleBook, crowd: dict[str, Person]) -> None:
    john = crowd["john"]
    assert book.find_number(john.numbers[1].id) == (john, john.numbers[1])
    assert book.find_number(10_000) is None


def test_find_by_e164_prefers_the_same_extension(book: PeopleBook) -> None:
    desk = book.create_person(PersonInput("Front desk", numbers=[NumberInput(ATL)]), 1.0)
    sam = book.create_person(PersonInput("Sam", numbers=[NumberInput(ATL + " x200")]), 1.0)
    assert book.find_by_e164(ATL_E164, "200") == sam
    assert book.find_by_e164(ATL_E164) == desk
    assert book.find_by_e164(ATL_E164, "999") == desk  # nobody at 999: the first holder
    assert book.find_by_e164(LONDON_E164) is None


def test_find_by_name(book: PeopleBook, crowd: dict[str, Person]) -> None:
    jane = crowd["jane"]
    assert jane.account is not None
    assert book.find_by_name(" jane DOE ", jane.account.id) == jane
    assert book.find_by_name("Jane Doe", None) is None
    assert book.find_by_name("Ann Janeway", None) == crowd["ann"]
    assert book.find_by_name("Jane", jane.account.id) is None


# -- transactions ------------------------------------------------------------


def test_a_transaction_commits_at_the_end(book: PeopleBook) -> None:
    with book.transaction() as tx:
        jane = tx.create_person(PersonInput("Jane", account_name="Acme"), 1.0)
        assert tx.get_person(jane.id) == jane
    assert book.get_person(jane.id) == jane


def test_a_dry_run_transaction_leaves_nothing(engine: sa.Engine, book: PeopleBook) -> None:
    with book.transaction(commit=False) as tx:
        tx.create_person(PersonInput("Jane", account_name="Acme", numbers=[NumberInput(ATL)]), 1.0)
        assert len(tx.search()[0]) == 1
    assert book.search() == ([], None)
    assert book.list_accounts() == ([], None)
    assert count_rows(engine, person_numbers) == 0


def test_an_error_rolls_the_transaction_back(book: PeopleBook) -> None:
    with pytest.raises(RuntimeError), book.transaction() as tx:
        tx.create_person(PersonInput("Jane"), 1.0)
        raise RuntimeError("crash")
    assert book.search() == ([], None)


def test_an_unknown_region_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown region"):
        PeopleBook(make_engine(), "XX")
