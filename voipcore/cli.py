"""Command line: ``voipcore serve | check-config | users | calls | people | twilio``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from twilio.http import HttpClient
from twilio.rest import Client

from voipcore.config import Config, ConfigError, TwilioTrunkConfig, UserConfig, load_config
from voipcore.dialer.csvimport import ColumnMapping, ImportReport, NumberColumn, import_people
from voipcore.dialer.numbers import InvalidNumber, normalize, validate_region
from voipcore.dialer.people import PeopleBook, PeopleError, Person
from voipcore.logs import setup_logging
from voipcore.sip.digest import compute_ha1
from voipcore.store import User
from voipcore.store.calls import CallLog, format_table, to_json
from voipcore.store.db import open_engine
from voipcore.store.schema import ROLES
from voipcore.store.users import Store
from voipcore.trunks.provisioning import (
    ProvisioningError,
    TrunkSpec,
    format_report,
    format_status,
    provision,
    status,
)

DEFAULT_CONFIG = os.environ.get("VOIPCORE_CONFIG", "config/voipcore.toml")


def make_user(
    realm: str,
    username: str,
    password: str,
    extension: str | None = None,
    display_name: str | None = None,
    caller_id: str | None = None,
    role: str = "rep",
) -> User:
    """A user record holding HA1 hashes for MD5 and SHA-256, never the password."""
    return User(
        username=username,
        realm=realm,
        ha1_md5=compute_ha1(username, realm, password, "MD5"),
        ha1_sha256=compute_ha1(username, realm, password, "SHA-256"),
        extension=extension,
        display_name=display_name,
        caller_id=caller_id,
        role=role,
    )


def seed_users(config: Config, store: Store) -> None:
    """Put the config's ``[[users]]`` into the store.

    A user with a password in the config gets that password.  One without
    keeps the password it has; if it has none (or the domain changed), a
    random one is generated and printed once.
    """
    realm = config.sip.domain
    for entry in config.users:
        existing = store.get_user(entry.username)
        if entry.password is not None:
            store.put_user(_user_from_config(realm, entry, entry.password))
        elif existing is None or existing.realm != realm:
            password = secrets.token_urlsafe(9)
            store.put_user(_user_from_config(realm, entry, password))
            print(
                f"created user {entry.username} with password {password}\n"
                f"  (set your own: voipcore users add {entry.username} --config FILE)",
                file=sys.stderr,
            )


def _user_from_config(realm: str, entry: UserConfig, password: str) -> User:
    return make_user(
        realm,
        entry.username,
        password,
        entry.extension,
        entry.display_name,
        entry.caller_id,
        entry.role,
    )


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"voipcore: invalid config: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config)
    listen = ", ".join(str(spec) for spec in config.sip.listen)
    print(
        f"{args.config}: OK (domain {config.sip.domain}; sip {listen}; http {config.http.listen})"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    config = _load(args.config)
    setup_logging(args.log_level, args.log_format, sip_trace=args.sip_trace)
    store = Store(open_engine(config.store.url))
    seed_users(config, store)
    from voipcore.server import ListenError

    try:
        if args.event_loop == "uvloop":
            import uvloop

            uvloop.run(_serve(config, store))
        else:
            asyncio.run(_serve(config, store))
    except ListenError as exc:
        print(f"voipcore: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(config: Config, store: Store) -> None:
    from voipcore.server import ListenError, Server

    server = Server(config, store)
    try:
        await server.start()
    except ListenError:
        await server.stop()  # what did start (listeners, media workers) goes again
        raise
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def _open_store(args: argparse.Namespace) -> tuple[Config, Store]:
    config = _load(args.config)
    return config, Store(open_engine(config.store.url))


def cmd_users_add(args: argparse.Namespace) -> int:
    config, store = _open_store(args)
    password = args.password
    if password is None:
        if sys.stdin.isatty():
            password = getpass.getpass(f"password for {args.username}: ")
        else:
            password = secrets.token_urlsafe(9)
            print(f"generated password for {args.username}: {password}")
    if len(password) < 4:
        print("voipcore: password must be at least 4 characters", file=sys.stderr)
        return 2
    extension = args.extension if args.extension is not None else _default_extension(args.username)
    caller_id = args.caller_id
    if caller_id is not None:
        try:
            caller_id = normalize(caller_id, config.dialing.default_region).e164
        except InvalidNumber as exc:
            print(f"voipcore: --caller-id {args.caller_id!r}: {exc}", file=sys.stderr)
            return 2
    store.put_user(
        make_user(
            config.sip.domain,
            args.username,
            password,
            extension,
            args.display_name,
            caller_id,
            args.role,
        )
    )
    print(f"user {args.username} saved")
    return 0


def _default_extension(username: str) -> str | None:
    return username if username.isdigit() else None


def cmd_users_list(args: argparse.Namespace) -> int:
    _, store = _open_store(args)
    print(f"{'username':<20} {'role':<6} {'extension':<10} {'caller ID':<16} display name")
    for user in store.list_users():
        print(
            f"{user.username:<20} {user.role:<6} {user.extension or '-':<10} "
            f"{user.caller_id or '-':<16} {user.display_name or ''}"
        )
    return 0


def cmd_users_remove(args: argparse.Namespace) -> int:
    _, store = _open_store(args)
    if not store.remove_user(args.username):
        print(f"voipcore: no user {args.username!r}", file=sys.stderr)
        return 1
    print(f"user {args.username} removed")
    return 0


def _open_book(args: argparse.Namespace) -> PeopleBook:
    """The address book, reading national numbers in ``--region`` or the config's."""
    config, store = _open_store(args)
    return PeopleBook(store.engine, args.region or config.dialing.default_region)


def _read_csv(path: str) -> str:
    """The text of a CSV file (``-``: stdin); ``PeopleError`` naming it when unreadable."""
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        return data.decode("utf-8")
    except OSError as exc:
        raise PeopleError(path, exc.strerror or str(exc)) from None
    except UnicodeDecodeError:
        raise PeopleError(path, "not UTF-8 text: export it as CSV UTF-8") from None


def _number_column(spec: str) -> NumberColumn:
    """``COL[:LABEL[:EXT_COL]]`` as ``--number`` takes it."""
    column, _, rest = spec.partition(":")
    label, _, extension_column = rest.partition(":")
    return NumberColumn(column, label or "other", extension_column or None)


def format_import_report(report: ImportReport, dry_run: bool) -> str:
    """What an import did, for IT: counts, then one line per rejected row (its reason
    already starts with the column at fault, when there is one)."""
    imported = f"{report.imported} (dry run: nothing stored)" if dry_run else report.imported
    lines = [
        f"rows read: {report.rows}",
        f"imported:  {imported}",
        f"rejected:  {report.rejected}",
    ]
    lines += [f"line {error.line}: {error.reason}" for error in report.errors]
    return "\n".join(lines)


def cmd_people_import(args: argparse.Namespace) -> int:
    mapping = ColumnMapping(
        name=args.name,
        first_name=args.first_name,
        last_name=args.last_name,
        account=args.account,
        title=args.title,
        email=args.email,
        notes=args.notes,
        numbers=[_number_column(spec) for spec in args.number],
    )
    book = _open_book(args)
    try:
        report = import_people(_read_csv(args.file), mapping, book, time.time(), args.dry_run)
    except PeopleError as exc:
        print(f"voipcore: {exc.field}: {exc.message}", file=sys.stderr)
        return 2
    print(format_import_report(report, args.dry_run))
    return 1 if report.rejected else 0


def _primary_number(person: Person) -> str:
    number = next((n for n in person.numbers if n.primary), None)
    if number is None:
        return "-"
    return f"{number.e164} x{number.extension}" if number.extension else number.e164


def cmd_people_list(args: argparse.Namespace) -> int:
    found, more = _open_book(args).search(args.search, limit=args.limit)
    print(f"{'name':<30} {'account':<24} {'primary number':<24} numbers")
    for person in found:
        account = person.account.name if person.account else "-"
        print(
            f"{person.name:<30} {account:<24} {_primary_number(person):<24} {len(person.numbers)}"
        )
    if more is not None:
        print(f"(first {args.limit} shown: raise --limit or narrow with --search)")
    return 0


def twilio_client(trunk: TwilioTrunkConfig, http_client: HttpClient | None = None) -> Client:
    """A REST client from ``[trunks.twilio]``: an API key (preferred) or the auth token."""
    if not trunk.account_sid:
        raise ConfigError("trunks.twilio.account_sid: needed to talk to Twilio's API")
    if trunk.api_key_sid and trunk.api_key_secret:
        return Client(
            trunk.api_key_sid, trunk.api_key_secret, trunk.account_sid, http_client=http_client
        )
    if trunk.auth_token:
        return Client(trunk.account_sid, trunk.auth_token, http_client=http_client)
    raise ConfigError(
        "trunks.twilio: set api_key_sid and api_key_secret (or auth_token) to provision"
    )


def trunk_spec(trunk: TwilioTrunkConfig) -> TrunkSpec:
    """What ``[trunks.twilio]`` says the Twilio trunk should look like."""
    if not trunk.origination_uri:
        raise ConfigError(
            "trunks.twilio.origination_uri: where Twilio sends inbound calls, "
            "e.g. sip:pbx.example.com:5060"
        )
    return TrunkSpec(
        friendly_name=trunk.friendly_name,
        domain_name=trunk.domain,
        username=trunk.username,
        password=trunk.password,
        origination_uri=trunk.origination_uri,
        phone_numbers=sorted(trunk.dids),
        secure=trunk.secure,
    )


def run_twilio(config: Config, action: str, http_client: HttpClient | None = None) -> str:
    """``provision`` or ``status`` against Twilio; returns the report to print."""
    trunk = config.trunks.twilio
    if trunk is None:
        raise ConfigError("trunks.twilio: no Twilio trunk is configured")
    client, spec = twilio_client(trunk, http_client), trunk_spec(trunk)
    if action == "provision":
        return format_report(provision(client, spec))
    return format_status(status(client, spec))


def cmd_twilio(args: argparse.Namespace) -> int:
    config = _load(args.config)
    try:
        print(run_twilio(config, args.action))
    except ConfigError as exc:
        print(f"voipcore: invalid config: {exc}", file=sys.stderr)
        return 2
    except ProvisioningError as exc:
        print(f"voipcore: Twilio: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_calls_list(args: argparse.Namespace) -> int:
    config = _load(args.config)
    engine = open_engine(config.store.url)
    calls = CallLog(engine).list(limit=args.limit, user=args.user)
    print(json.dumps(to_json(calls), indent=2) if args.json else format_table(calls))
    engine.dispose()
    return 0


def _region(text: str) -> str:
    try:
        return validate_region(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voipcore", description="SIP/VoIP media server")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--config", default=DEFAULT_CONFIG, help="TOML config file")
    serve.add_argument("--sip-trace", action="store_true", help="log every SIP message")
    serve.add_argument("--log-level", default="INFO")
    serve.add_argument("--log-format", choices=("text", "json"), default="text")
    serve.add_argument(
        "--event-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="asyncio is the stdlib loop, kept for comparison benchmarks",
    )
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("config", nargs="?", default=DEFAULT_CONFIG)
    check.set_defaults(func=cmd_check_config)

    users = sub.add_parser("users", help="manage accounts").add_subparsers(
        dest="action", required=True
    )
    add = users.add_parser("add", help="create a user or change its password")
    add.add_argument("username")
    add.add_argument("--password", help="default: prompt, or generate when not a terminal")
    add.add_argument("--extension")
    add.add_argument("--display-name")
    add.add_argument(
        "--caller-id", help="number shown on this user's trunk calls (default: the trunk's)"
    )
    add.add_argument(
        "--role", choices=ROLES, default="rep", help="admin: sees everyone's calls (default: rep)"
    )
    add.set_defaults(func=cmd_users_add)
    lst = users.add_parser("list", help="list users")
    lst.set_defaults(func=cmd_users_list)
    rm = users.add_parser("remove", help="delete a user and their registrations")
    rm.add_argument("username")
    rm.set_defaults(func=cmd_users_remove)
    calls = sub.add_parser("calls", help="the call log").add_subparsers(
        dest="action", required=True
    )
    calls_list = calls.add_parser("list", help="recent calls, newest first")
    calls_list.add_argument("--json", action="store_true", help="JSON with legs and quality")
    calls_list.add_argument("--limit", type=int, default=50)
    calls_list.add_argument("--user", help="only this user's calls")
    calls_list.set_defaults(func=cmd_calls_list)
    people = sub.add_parser("people", help="the address book").add_subparsers(
        dest="action", required=True
    )
    imp = people.add_parser(
        "import",
        help="import people from a CSV file",
        description="Columns are named by their header (any case). "
        "Exit status: 0 all rows imported, 1 some rejected, 2 bad mapping or file.",
    )
    imp.add_argument("file", metavar="FILE", help="CSV file with a header line; - for stdin")
    imp.add_argument("--name", metavar="COL", help="the whole name")
    imp.add_argument("--first-name", metavar="COL", help="with --last-name, instead of --name")
    imp.add_argument("--last-name", metavar="COL")
    for field in ("account", "title", "email", "notes"):
        imp.add_argument(f"--{field}", metavar="COL")
    imp.add_argument(
        "--number",
        metavar="COL[:LABEL[:EXT_COL]]",
        action="append",
        required=True,
        help="a phone number column, its label (default: other) and the column of its "
        "extensions; repeat for more (the first one a row has is primary)",
    )
    imp.add_argument("--dry-run", action="store_true", help="check and report, store nothing")
    people_list = people.add_parser("list", help="people by name, with their primary number")
    people_list.add_argument("--search", help="in names, accounts and numbers")
    people_list.add_argument("--limit", type=_positive, default=50)
    for p in (imp, people_list):
        p.add_argument(
            "--region",
            metavar="XX",
            type=_region,
            help="where national numbers are read (default: [dialing] default_region)",
        )
    imp.set_defaults(func=cmd_people_import)
    people_list.set_defaults(func=cmd_people_list)
    twilio = sub.add_parser("twilio", help="the Twilio Elastic SIP trunk ([trunks.twilio])")
    twilio.add_argument(
        "action",
        choices=("provision", "status"),
        help="provision: create or update it (idempotent); status: show it",
    )
    twilio.set_defaults(func=cmd_twilio)
    for p in (add, lst, rm, twilio, calls_list, imp, people_list):
        p.add_argument("--config", default=DEFAULT_CONFIG, help="TOML config file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``voipcore`` command."""
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
