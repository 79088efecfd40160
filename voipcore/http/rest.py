"""The REST API under ``/api/v1``: sign-in, API tokens, people and accounts, CSV import,
click-to-call, the call log with dispositions, and its CSV export.

Every operation is declared once (:class:`voipcore.http.api.Api`); the OpenAPI document
at ``/api/v1/openapi.json`` is made from the same declarations.  Store work runs on the
store's thread (:attr:`Backend.run`), never on the event loop.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from aiohttp import web

from voipcore.calls.manager import CallError, CallManager
from voipcore.dialer.csvimport import ColumnMapping, NumberColumn, import_people
from voipcore.dialer.numbers import InvalidNumber, normalize
from voipcore.dialer.people import (
    NumberInput,
    PeopleBook,
    PeopleError,
    PersonInput,
    PersonPatch,
    decode_cursor,
    encode_cursor,
)
from voipcore.http.access import owned_call, whose_calls
from voipcore.http.api import Api, ApiError, ApiRequest, Param, caller
from voipcore.http.auth import SESSION_COOKIE, Accounts
from voipcore.http.dialer import PersonLink
from voipcore.http.models import (
    AccountIn,
    AccountList,
    AccountOut,
    AccountQuery,
    CallList,
    CallOut,
    CallQuery,
    CallStarted,
    ClickToCall,
    CsvQuery,
    DispositionIn,
    DispositionList,
    DispositionOut,
    ImportIn,
    ImportOut,
    NewToken,
    NumberIn,
    PeopleQuery,
    PersonIn,
    PersonList,
    PersonOut,
    PersonPatchIn,
    PersonRefOut,
    Profile,
    RowErrorOut,
    SignIn,
    TokenIn,
    TokenList,
    TokenOut,
    UserList,
    UserOut,
)
from voipcore.http.rest_conference import add_conference_operations
from voipcore.http.rest_passthrough import (
    PassthroughBackend,
    add_passthrough_operations,
    dial_passthrough,
)
from voipcore.http.rest_recordings import RecordingsBackend, add_recording_operations
from voipcore.store import User
from voipcore.store.calls import AsyncCallLog, CallRecord, DispositionError, to_csv, to_json

log = logging.getLogger(__name__)
T = TypeVar("T")


class Runner(Protocol):
    """Runs a store job (a function of no arguments) on the store's thread."""

    def __call__(self, job: Callable[[], T], /) -> Awaitable[T]: ...


@dataclass(frozen=True, slots=True)
class Backend:
    """What the API works on."""

    accounts: Accounts
    """Users, sessions and tokens."""
    run: Runner
    """Runs a store job (a function of no arguments) on the store's thread."""
    people: PeopleBook
    call_log: AsyncCallLog
    calls: Callable[[], CallManager | None]
    """The live call manager (None before the server has started it)."""
    users: Callable[[], Mapping[str, User]]
    ice_servers: Sequence[Mapping[str, Any]] = ()
    region: str = "US"
    passthrough: PassthroughBackend | None = None
    """Users' settings, pass-through calls and the trunk's rate (None: neither)."""
    recordings: RecordingsBackend | None = None
    """Call recording, live and indexed (None: not set up)."""


def build_api(backend: Backend) -> Api:
    """The ``/api/v1`` operations over ``backend``."""
    api = Api(
        "voipcore",
        "1",
        "The voipcore REST API: sign in with the dialer's session cookie, or send an API "
        "token as `Authorization: Bearer <token>`. Lists page with `limit` and `cursor`; "
        'errors are `{"error": ..., "field": ...}`.',
    )
    accounts, run, book = backend.accounts, backend.run, backend.people

    def profile(user: User) -> Profile:
        return Profile(
            username=user.username,
            display_name=user.display_name,
            extension=user.extension,
            role="admin" if user.role == "admin" else "rep",
            ice_servers=[dict(server) for server in backend.ice_servers],
        )

    # -- session --

    @api.operation(
        "POST",
        "/api/v1/session",
        summary="Sign in",
        tag="session",
        access="public",
        body=SignIn,
        response=Profile,
        errors=(401, 429),
    )
    async def sign_in(req: ApiRequest) -> web.StreamResponse:
        """Checks the user's SIP password and sets the session cookie (HttpOnly, Secure,
        SameSite=Strict). Failed attempts back off per name and per address."""
        body, now = req.body(SignIn), time.time()
        address = req.request.remote or ""
        wait = accounts.wait(body.username, address, now)
        if wait > 0:
            # RFC 6585 §4; Retry-After in whole seconds (RFC 9110 §10.2.3).
            response = ApiError(429, "Too many failed sign-ins.").response()
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response
        signed_in = accounts.sign_in(body.username, body.password, address, now)
        if signed_in is None:
            log.info("web sign-in refused for %r from %s", body.username, address)
            raise ApiError(401, "Wrong username or password.")
        response = web.json_response(profile(signed_in.user).model_dump(mode="json"))
        response.set_cookie(
            SESSION_COOKIE,
            signed_in.token,
            max_age=int(accounts.sessions.lifetime),
            path="/",
            secure=True,
            httponly=True,
            samesite="Strict",
        )
        return response

    @api.operation(
        "GET",
        "/api/v1/session",
        summary="Who is signed in",
        tag="session",
        access="public",
        response=Profile,
    )
    async def get_session(req: ApiRequest) -> Profile | web.Response:
        """The signed-in user; `username` is null when nobody is (not an error, so a page
        that asks on load keeps a clean console)."""
        user, _ = caller(req.request)
        return web.json_response({"username": None}) if user is None else profile(user)

    @api.operation(
        "DELETE",
        "/api/v1/session",
        summary="Sign out",
        tag="session",
        access="public",
        status=204,
    )
    async def sign_out(req: ApiRequest) -> web.StreamResponse:
        """Ends the session and clears its cookie."""
        token = req.request.cookies.get(SESSION_COOKIE)
        if token:
            accounts.sign_out(token)
        response = web.Response(status=204)
        response.del_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
        return response

    @api.operation(
        "GET",
        "/api/v1/users",
        summary="List users",
        tag="users",
        access="admin",
        response=UserList,
    )
    async def list_users(req: ApiRequest) -> UserList:
        """Every user of this server, by name."""
        users = sorted(backend.users().values(), key=lambda user: user.username)
        return UserList(
            items=[
                UserOut(
                    username=u.username,
                    display_name=u.display_name,
                    extension=u.extension,
                    role="admin" if u.role == "admin" else "rep",
                )
                for u in users
            ]
        )

    # -- tokens --

    @api.operation(
        "GET", "/api/v1/tokens", summary="List your API tokens", tag="tokens", response=TokenList
    )
    async def list_tokens(req: ApiRequest) -> TokenList:
        """Your tokens (never their secrets)."""
        tokens = await run(lambda: accounts.tokens.list(req.user.username))
        return TokenList(items=[TokenOut.of(token) for token in tokens])

    @api.operation(
        "POST",
        "/api/v1/tokens",
        summary="Create an API token",
        tag="tokens",
        body=TokenIn,
        response=NewToken,
        status=201,
    )
    async def create_token(req: ApiRequest) -> NewToken:
        """A token for scripts and CRMs, acting as you. Its secret is shown this once."""
        body, now = req.body(TokenIn), time.time()
        expires = None if body.expires_in_days is None else now + body.expires_in_days * 86400
        token, secret = await run(
            lambda: accounts.tokens.create(req.user.username, body.name, now, expires)
        )
        return NewToken(**TokenOut.of(token).model_dump(), token=secret)

    @api.operation(
        "DELETE",
        "/api/v1/tokens/{token_id}",
        summary="Revoke an API token",
        tag="tokens",
        status=204,
        params={"token_id": Param(int, "The token's id.")},
        errors=(404,),
    )
    async def revoke_token(req: ApiRequest) -> None:
        """The token stops working at once."""
        token_id = req.int_param("token_id")
        if not await run(lambda: accounts.tokens.revoke(token_id, req.user.username)):
            raise ApiError(404, f"You have no token {token_id}.")

    # -- accounts --

    @api.operation(
        "GET",
        "/api/v1/accounts",
        summary="List accounts",
        tag="people",
        query=AccountQuery,
        response=AccountList,
    )
    async def list_accounts(req: ApiRequest) -> AccountList:
        """Accounts (companies) by name."""
        query = req.query(AccountQuery)
        after = _cursor(query.cursor, (str, int))
        found, following = await run(lambda: book.list_accounts(query.q, query.limit, after))
        return AccountList(items=[AccountOut.of(a) for a in found], next_cursor=_next(following))

    @api.operation(
        "POST",
        "/api/v1/accounts",
        summary="Create an account",
        tag="people",
        body=AccountIn,
        response=AccountOut,
        status=201,
    )
    async def create_account(req: ApiRequest) -> AccountOut:
        """A new account (company)."""
        name = req.body(AccountIn).name
        return AccountOut.of(await _people(run, lambda: book.create_account(name, time.time())))

    account_id = {"account_id": Param(int, "The account's id.")}

    @api.operation(
        "GET",
        "/api/v1/accounts/{account_id}",
        summary="Get an account",
        tag="people",
        params=account_id,
        response=AccountOut,
        errors=(404,),
    )
    async def get_account(req: ApiRequest) -> AccountOut:
        """One account."""
        found = await run(lambda: book.get_account(req.int_param("account_id")))
        return AccountOut.of(_found(found, "account", req.int_param("account_id")))

    @api.operation(
        "PATCH",
        "/api/v1/accounts/{account_id}",
        summary="Rename an account",
        tag="people",
        params=account_id,
        body=AccountIn,
        response=AccountOut,
        errors=(404,),
    )
    async def update_account(req: ApiRequest) -> AccountOut:
        """Renames the account."""
        ident, name = req.int_param("account_id"), req.body(AccountIn).name
        found = await _people(run, lambda: book.update_account(ident, name, time.time()))
        return AccountOut.of(_found(found, "account", ident))

    @api.operation(
        "DELETE",
        "/api/v1/accounts/{account_id}",
        summary="Delete an account",
        tag="people",
        params=account_id,
        access="admin",
        status=204,
        errors=(404,),
    )
    async def delete_account(req: ApiRequest) -> None:
        """Deletes the account; its people stay, with no account."""
        ident = req.int_param("account_id")
        if not await run(lambda: book.delete_account(ident)):
            raise ApiError(404, f"There is no account {ident}.")

    # -- people --

    @api.operation(
        "GET",
        "/api/v1/people",
        summary="Search people",
        tag="people",
        query=PeopleQuery,
        response=PersonList,
    )
    async def list_people(req: ApiRequest) -> PersonList:
        """People by name, matching `q` in their name, their account's name or a number."""
        query = req.query(PeopleQuery)
        after = _cursor(query.cursor, (str, int))
        found, following = await run(
            lambda: book.search(query.q, query.account_id, query.limit, after)
        )
        return PersonList(items=[PersonOut.of(p) for p in found], next_cursor=_next(following))

    @api.operation(
        "POST",
        "/api/v1/people",
        summary="Add a person",
        tag="people",
        body=PersonIn,
        response=PersonOut,
        status=201,
    )
    async def create_person(req: ApiRequest) -> PersonOut:
        """A person and their numbers, each normalised to E.164 with its extension apart."""
        body = req.body(PersonIn)
        person = PersonInput(
            name=body.name,
            account_id=body.account_id,
            account_name=body.account_name,
            title=body.title,
            email=body.email,
            notes=body.notes,
            numbers=_numbers(body.numbers),
        )
        return PersonOut.of(await _people(run, lambda: book.create_person(person, time.time())))

    person_id = {"person_id": Param(int, "The person's id.")}

    @api.operation(
        "GET",
        "/api/v1/people/{person_id}",
        summary="Get a person",
        tag="people",
        params=person_id,
        response=PersonOut,
        errors=(404,),
    )
    async def get_person(req: ApiRequest) -> PersonOut:
        """One person with their numbers."""
        ident = req.int_param("person_id")
        return PersonOut.of(_found(await run(lambda: book.get_person(ident)), "person", ident))

    @api.operation(
        "PATCH",
        "/api/v1/people/{person_id}",
        summary="Change a person",
        tag="people",
        params=person_id,
        body=PersonPatchIn,
        response=PersonOut,
        errors=(404,),
    )
    async def update_person(req: ApiRequest) -> PersonOut:
        """Changes the fields given; `numbers` replaces the person's list."""
        ident, body = req.int_param("person_id"), req.body(PersonPatchIn)
        given = body.model_dump(exclude_unset=True)
        if "numbers" in given:
            given["numbers"] = _numbers(body.numbers or [])
        patch = PersonPatch(**given)
        found = await _people(run, lambda: book.update_person(ident, patch, time.time()))
        return PersonOut.of(_found(found, "person", ident))

    @api.operation(
        "DELETE",
        "/api/v1/people/{person_id}",
        summary="Delete a person",
        tag="people",
        params=person_id,
        access="admin",
        status=204,
        errors=(404,),
    )
    async def delete_person(req: ApiRequest) -> None:
        """Deletes the person and their numbers; their calls stay in the log."""
        ident = req.int_param("person_id")
        if not await run(lambda: book.delete_person(ident)):
            raise ApiError(404, f"There is no person {ident}.")

    @api.operation(
        "POST",
        "/api/v1/people/import",
        summary="Import people from CSV",
        tag="people",
        body=ImportIn,
        response=ImportOut,
    )
    async def import_csv(req: ApiRequest) -> ImportOut:
        """Reads the file with the column mapping; every row is imported or reported with
        its line number and reason, none dropped."""
        body = req.body(ImportIn)
        m = body.mapping
        mapping = ColumnMapping(
            name=m.name,
            first_name=m.first_name,
            last_name=m.last_name,
            account=m.account,
            title=m.title,
            email=m.email,
            notes=m.notes,
            numbers=[NumberColumn(n.column, n.label, n.extension_column) for n in m.numbers],
        )
        report = await _people(
            run, lambda: import_people(body.csv, mapping, book, time.time(), body.dry_run)
        )
        return ImportOut(
            rows=report.rows,
            imported=report.imported,
            rejected=report.rejected,
            people=list(report.people),
            errors=[
                RowErrorOut(line=e.line, column=e.column, reason=e.reason) for e in report.errors
            ],
        )

    # -- calls --

    @api.operation(
        "POST",
        "/api/v1/calls",
        summary="Click-to-call",
        tag="calls",
        body=ClickToCall,
        response=CallStarted,
        status=202,
        errors=(404, 409),
    )
    async def click_to_call(req: ApiRequest) -> CallStarted:
        """Rings you first (your dialer page, your phone, or both), then dials the number
        once you answer; its extension goes as DTMF after the number answers. With
        `passthrough`, your pass-through number is rung through the trunk and the number
        is dialled once you press 1 there."""
        body, user = req.body(ClickToCall), req.user
        if (body.to is None) == (body.number_id is None):
            raise ApiError(400, "Give either 'to' or 'number_id'.", "to")
        extension = body.extension
        person: int | None = None
        if body.number_id is not None:
            number_id = body.number_id
            found = await run(lambda: book.find_number(number_id))
            if found is None:
                raise ApiError(404, f"There is no number {number_id}.", "number_id")
            owner, number = found
            to, person = number.e164, owner.id
            extension = extension or number.extension
        else:
            assert body.to is not None
            try:
                dialled = normalize(body.to, backend.region)
            except InvalidNumber as exc:
                raise ApiError(400, f"to: {exc}", "to") from None
            to, extension = dialled.e164, extension or dialled.extension
            person = await person_link(backend)(to, extension or "", None)
        if body.passthrough:
            call_id = await dial_passthrough(
                backend, user.username, to, extension=extension or "", person_id=person
            )
            return CallStarted(call_id=call_id)
        manager = backend.calls()
        if manager is None:
            raise ApiError(409, "The server is still starting.")
        try:
            call = manager.originate(
                user.username,
                to,
                user=user.username,
                device=body.device,
                extension=extension or "",
                person_id=person,
            )
        except CallError as exc:
            raise ApiError(409, exc.reason) from None
        return CallStarted(call_id=call.id)

    async def calls_page(req: ApiRequest, query: CallQuery) -> tuple[list[CallOut], str | None]:
        user = whose_calls(req, query.user)
        before = _cursor(query.cursor, (float, str))
        since, until = query.bounds()

        found = await backend.call_log.list(
            query.limit + 1,
            user=user,
            person_id=query.person_id,
            disposition=query.disposition,
            since=since,
            until=until,
            before=before,
        )
        following = None
        if len(found) > query.limit:
            found = found[: query.limit]
            following = encode_cursor((found[-1].started_at, found[-1].call_id))
        return await run(lambda: _calls_out(book, found, backend.passthrough)), following

    @api.operation(
        "GET",
        "/api/v1/calls",
        summary="Call history",
        tag="calls",
        query=CallQuery,
        response=CallList,
        errors=(403,),
    )
    async def list_calls(req: ApiRequest) -> CallList:
        """Your calls, newest first (an admin's: everyone's), with filters."""
        items, following = await calls_page(req, req.query(CallQuery))
        return CallList(items=items, next_cursor=following)

    @api.operation(
        "GET",
        "/api/v1/calls.csv",
        summary="Export call history",
        tag="calls",
        query=CsvQuery,
        produces="text/csv",
        errors=(403,),
    )
    async def export_calls(req: ApiRequest) -> web.StreamResponse:
        """The same calls as the history, as a CSV file (header row first), with each
        call's mode, billable minutes and estimated cost as the history gives them."""
        query = req.query(CsvQuery)
        user = whose_calls(req, query.user)
        since, until = query.bounds()
        found = await backend.call_log.list(
            query.limit,
            user=user,
            person_id=query.person_id,
            disposition=query.disposition,
            since=since,
            until=until,
        )
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        billing = backend.passthrough
        return web.Response(
            text=to_csv(found, None if billing is None else billing.rate_per_minute),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="calls-{stamp}.csv"'},
        )

    call_id = {"call_id": Param(str, "The call's id.")}

    async def own_call(req: ApiRequest) -> CallRecord:
        return await owned_call(backend.call_log, req, req.str_param("call_id"))

    @api.operation(
        "GET",
        "/api/v1/calls/{call_id}",
        summary="Get a call",
        tag="calls",
        params=call_id,
        response=CallOut,
        errors=(403, 404),
    )
    async def get_call(req: ApiRequest) -> CallOut:
        """One call with its legs and their quality."""
        record = await own_call(req)
        return (await run(lambda: _calls_out(book, [record], backend.passthrough)))[0]

    @api.operation(
        "PUT",
        "/api/v1/calls/{call_id}/disposition",
        summary="Log a call's outcome",
        tag="calls",
        params=call_id,
        body=DispositionIn,
        response=CallOut,
        errors=(403, 404),
    )
    async def set_disposition(req: ApiRequest) -> CallOut:
        """Stores the disposition and notes with the call record."""
        record, body = await own_call(req), req.body(DispositionIn)
        try:
            await backend.call_log.set_disposition(record.call_id, body.disposition, body.notes)
        except DispositionError as exc:
            raise ApiError(400, f"disposition: {exc}", "disposition") from None
        updated = await backend.call_log.get(record.call_id)
        assert updated is not None
        return (await run(lambda: _calls_out(book, [updated], backend.passthrough)))[0]

    @api.operation(
        "GET",
        "/api/v1/dispositions",
        summary="Dispositions",
        tag="calls",
        response=DispositionList,
    )
    async def list_dispositions(req: ApiRequest) -> DispositionList:
        """What a call may be logged as, in the order the dialer offers them."""
        found = await backend.call_log.dispositions()
        return DispositionList(items=[DispositionOut(code=c, label=lbl) for c, lbl in found])

    @api.operation(
        "PUT",
        "/api/v1/dispositions",
        summary="Set the dispositions",
        tag="calls",
        access="admin",
        body=DispositionList,
        response=DispositionList,
    )
    async def replace_dispositions(req: ApiRequest) -> DispositionList:
        """Replaces the list; calls logged with a dropped code keep it."""
        items = [(item.code, item.label) for item in req.body(DispositionList).items]
        await backend.call_log.set_dispositions(items)
        return req.body(DispositionList)

    @api.operation(
        "GET", "/api/v1/openapi.json", summary="This document", tag="meta", access="public"
    )
    async def openapi(req: ApiRequest) -> web.StreamResponse:
        """The OpenAPI 3.1 description of this API."""
        return web.json_response(document)

    add_conference_operations(api, backend)
    add_passthrough_operations(api, backend)
    add_recording_operations(api, backend)
    document = api.document()
    return api


def person_link(backend: Backend) -> PersonLink:
    """The person a call is with (:data:`~voipcore.http.dialer.PersonLink`), looked up
    in the people book on the store's thread."""

    async def link(to: str, extension: str, picked: int | None) -> int | None:
        def job() -> int | None:
            if picked is not None and backend.people.get_person(picked) is not None:
                return picked
            if not to.startswith("+"):  # an internal extension: nobody in the book
                return None
            holder = backend.people.find_by_e164(to, extension or None)
            return None if holder is None else holder.id

        result: int | None = await backend.run(job)
        return result

    return link


async def _people(run: Runner, job: Callable[[], T]) -> T:
    """Runs a people-book job; its validation errors become 400s naming the field."""
    try:
        result: T = await run(job)
    except PeopleError as exc:
        raise ApiError(400, f"{exc.field}: {exc.message}", exc.field) from None
    return result


def _numbers(numbers: list[NumberIn]) -> list[NumberInput]:
    return [NumberInput(n.number, n.label, n.extension, n.primary) for n in numbers]


def _found(value: T | None, kind: str, ident: int) -> T:
    if value is None:
        raise ApiError(404, f"There is no {kind} {ident}.")
    return value


def _cursor(text: str | None, types: tuple[type, ...]) -> tuple[Any, ...] | None:
    if text is None:
        return None
    try:
        return decode_cursor(text, types)
    except ValueError as exc:
        raise ApiError(400, f"cursor: {exc}", "cursor") from None


def _next(values: tuple[Any, ...] | None) -> str | None:
    return None if values is None else encode_cursor(values)


def _calls_out(
    book: PeopleBook, records: list[CallRecord], billing: PassthroughBackend | None
) -> list[CallOut]:
    """The records as the API shows them, each with its person's name and, with a
    rate in ``billing``, its estimated cost (store thread)."""
    people: dict[int, PersonRefOut | None] = {}
    for record in records:
        if record.person_id is not None and record.person_id not in people:
            person = book.get_person(record.person_id)
            people[record.person_id] = (
                None
                if person is None
                else PersonRefOut(
                    id=person.id,
                    name=person.name,
                    account=None if person.account is None else person.account.name,
                )
            )
    out = []
    for record, data in zip(records, to_json(records), strict=True):
        data["person"] = None if record.person_id is None else people[record.person_id]
        data["cost"] = None if billing is None else billing.cost(record.billable_minutes)
        out.append(CallOut.model_validate(data))
    return out
