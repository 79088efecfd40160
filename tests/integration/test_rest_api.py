"""The REST API over HTTPS on a running server: every operation of its OpenAPI document
is exercised here (or, for click-to-call's ringing path, in test_click_to_call.py), and
every JSON reply is checked against the document's schema for its status."""

from __future__ import annotations

import csv
import importlib
import io
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from typing import Any, TypeVar

import pytest
from openapi_schema_validator import validate as validate_json
from openapi_spec_validator import validate

from tests.harness import ServerProcess, TestUser, wait_for
from tests.sipclient import SipClient
from voipcore.http.tls import CERT_FILE
from voipcore.sdp import PCMU, build_offer

pytestmark = pytest.mark.integration

DOMAIN = "test.local"
USERS = [
    TestUser("alice", "alice-secret", "201"),
    TestUser("bob", "bob-secret", "202"),
    TestUser("carol", "carol-secret", "203", role="admin"),
]
F = TypeVar("F", bound=Callable[..., Any])

#: Operation ids each test says it exercises; the `api` fixture checks each did.
COVERS: dict[str, set[str]] = {}


def covers(*operations: str) -> Callable[[F], F]:
    """Mark a test as the one exercising ``operations`` (checked after it runs)."""

    def mark(test: F) -> F:
        COVERS[test.__name__] = set(operations)
        return test

    return mark


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module: alice and bob are reps, carol is an admin."""
    proc = ServerProcess(tmp_path_factory.mktemp("rest"), users=list(USERS), https=True)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def document(server: ServerProcess) -> dict[str, Any]:
    reply = Client(server).get("/api/v1/openapi.json")
    assert reply.status == 200
    doc: dict[str, Any] = reply.json
    return doc


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class Client:
    """HTTPS to the server, by session cookie or ``token``; records what it called."""

    server: ServerProcess
    token: str | None = None
    document: dict[str, Any] | None = None
    exercised: set[str] = field(default_factory=set)
    cookies: CookieJar = field(default_factory=CookieJar)

    def __post_init__(self) -> None:
        context = ssl.create_default_context(cafile=self.server.workdir / CERT_FILE)
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context),
            urllib.request.HTTPCookieProcessor(self.cookies),
        )

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.server.https_port}"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        **query: Any,
    ) -> Reply:
        url = self.base + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json"} if data is not None else {}
        if self.token is not None:
            sent["Authorization"] = f"Bearer {self.token}"
        sent |= headers or {}
        request = urllib.request.Request(url, data=data, method=method, headers=sent)
        try:
            with self._opener.open(request, timeout=10) as response:
                reply = Reply(response.status, dict(response.headers), response.read().decode())
        except urllib.error.HTTPError as error:
            reply = Reply(error.code, dict(error.headers), error.read().decode())
        self._check(method, path, reply)
        return reply

    def get(self, path: str, **query: Any) -> Reply:
        return self.request("GET", path, **query)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return self.request("POST", path, {} if body is None else body, **kwargs)

    def sign_in(self, user: TestUser) -> Reply:
        return self.post("/api/v1/session", {"username": user.username, "password": user.password})

    def _check(self, method: str, path: str, reply: Reply) -> None:
        """Record the operation, and check a JSON reply against its documented schema."""
        if self.document is None:
            return
        for template, operations in self.document["paths"].items():
            pattern = re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
            operation = operations.get(method.lower())
            if operation is None or not re.match(pattern, path):
                continue
            self.exercised.add(operation["operationId"])
            response = operation["responses"].get(str(reply.status))
            assert response is not None, f"{method} {path}: undocumented status {reply.status}"
            content = response.get("content", {})
            if "application/json" in content:
                schema = content["application/json"]["schema"] | {
                    "components": self.document["components"]
                }
                validate_json(reply.json, schema)
            return
        raise AssertionError(f"{method} {path} is not in the OpenAPI document")


@pytest.fixture
def api(
    request: pytest.FixtureRequest, server: ServerProcess, document: dict[str, Any]
) -> Iterator[Callable[..., Client]]:
    """Makes clients that check replies against the document; after the test, checks
    that the operations it claims to cover were called."""
    made: list[Client] = []

    def client(token: str | None = None) -> Client:
        made.append(Client(server, token, document))
        return made[-1]

    yield client
    called = set().union(*(c.exercised for c in made)) if made else set()
    missing = COVERS.get(request.node.originalname, set()) - called
    assert not missing, f"{request.node.name} claims {missing} but never called them"


def signed_in(api: Callable[..., Client], user: TestUser) -> Client:
    client: Client = api()
    assert client.sign_in(user).status == 200
    return client


def failed_call(server: ServerProcess, user: TestUser, target: str) -> str:
    """``user`` calls ``target`` (nobody registered there): the call is logged, 480."""
    phone = SipClient("127.0.0.1", server.udp_port)
    try:
        # The call never connects: its SDP names the SIP socket's port, where no RTP comes.
        sdp = build_offer(
            address="127.0.0.1", port=phone.port, formats=[PCMU], session_id=1, version=1
        )
        invite = phone.invite(user.username, user.password, DOMAIN, target, sdp.to_bytes())
        while (response := phone.recv()).status < 200:
            pass
        assert response.status == 480
        phone.send_raw(phone.ack_bytes(invite, response))
    finally:
        phone.close()
    return invite.call_id


#: Test modules elsewhere that claim operations with :func:`covers`.
CLAIMING_MODULES = (
    "tests.integration.test_conference",
    "tests.integration.test_passthrough",
    "tests.integration.test_recording",
)


def test_the_document_is_valid_openapi_and_every_operation_has_a_test(
    document: dict[str, Any],
) -> None:
    for module in CLAIMING_MODULES:  # their claims register as they are imported
        importlib.import_module(module)
    validate(document)
    operations = {
        op["operationId"] for methods in document["paths"].values() for op in methods.values()
    }
    claimed = set().union(*COVERS.values())
    assert operations == claimed, (
        f"untested: {sorted(operations - claimed)}; gone: {sorted(claimed - operations)}"
    )


@covers("openapi", "get_session", "sign_in", "sign_out")
def test_session_by_cookie(api: Callable[..., Client]) -> None:
    client = api()
    assert client.get("/api/v1/openapi.json").json["openapi"] == "3.1.0"
    assert client.get("/api/v1/session").json == {"username": None}
    wrong = client.post("/api/v1/session", {"username": "alice", "password": "nope"})
    assert wrong.status == 401 and wrong.json == {"error": "Wrong username or password."}
    missing = client.post("/api/v1/session", {"username": "alice"})
    assert missing.status == 400 and missing.json["field"] == "password"
    profile = client.sign_in(USERS[0]).json
    assert profile["username"] == "alice" and profile["role"] == "rep"
    assert client.get("/api/v1/session").json["username"] == "alice"
    assert client.request("DELETE", "/api/v1/session").status == 204
    assert client.get("/api/v1/session").json["username"] is None


@covers("list_users")
def test_only_admins_list_users(api: Callable[..., Client]) -> None:
    assert api().get("/api/v1/users").status == 401
    assert signed_in(api, USERS[0]).get("/api/v1/users").status == 403
    users = signed_in(api, USERS[2]).get("/api/v1/users").json["items"]
    assert [(u["username"], u["role"]) for u in users] == [
        ("alice", "rep"),
        ("bob", "rep"),
        ("carol", "admin"),
    ]


@covers("create_token", "list_tokens", "revoke_token")
def test_an_api_token_works_for_scripts_until_revoked(api: Callable[..., Client]) -> None:
    bob = signed_in(api, USERS[1])
    made = bob.post("/api/v1/tokens", {"name": "crm", "expires_in_days": 30})
    assert made.status == 201 and made.json["token"].startswith("vc_")
    script = api(made.json["token"])
    assert script.get("/api/v1/session").json["username"] == "bob"
    listed = script.get("/api/v1/tokens").json["items"]
    assert [t["name"] for t in listed] == ["crm"] and "token" not in listed[0]
    assert listed[0]["expires_at"] is not None
    # Another user cannot revoke it; bob can, and then it no longer signs anyone in.
    alice = signed_in(api, USERS[0])
    assert alice.request("DELETE", f"/api/v1/tokens/{made.json['id']}").status == 404
    assert bob.request("DELETE", f"/api/v1/tokens/{made.json['id']}").status == 204
    assert script.get("/api/v1/tokens").status == 401
    assert api("vc_not-a-token").get("/api/v1/tokens").status == 401
    bad = bob.post("/api/v1/tokens", {"name": ""})
    assert bad.status == 400 and bad.json["field"] == "name"


def test_a_cookie_request_from_another_site_is_refused(api: Callable[..., Client]) -> None:
    alice = signed_in(api, USERS[0])
    foreign = alice.post(
        "/api/v1/accounts", {"name": "Evil"}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status == 403


@covers("create_account", "get_account", "update_account", "list_accounts", "delete_account")
def test_accounts(api: Callable[..., Client]) -> None:
    alice = signed_in(api, USERS[0])
    made = alice.post("/api/v1/accounts", {"name": "Globex Corporation"})
    assert made.status == 201 and made.json["people_count"] == 0
    ident = made.json["id"]
    renamed = alice.request("PATCH", f"/api/v1/accounts/{ident}", {"name": "Globex"})
    assert renamed.json["name"] == "Globex"
    assert alice.get(f"/api/v1/accounts/{ident}").json["name"] == "Globex"
    assert alice.get("/api/v1/accounts/999999").status == 404
    assert alice.get("/api/v1/accounts/abc").status == 400
    found = alice.get("/api/v1/accounts", q="glob").json["items"]
    assert [a["id"] for a in found] == [ident]
    assert alice.request("DELETE", f"/api/v1/accounts/{ident}").status == 403
    carol = signed_in(api, USERS[2])
    assert carol.request("DELETE", f"/api/v1/accounts/{ident}").status == 204
    assert alice.get(f"/api/v1/accounts/{ident}").status == 404
    assert carol.request("DELETE", f"/api/v1/accounts/{ident}").status == 404


@covers("create_person", "get_person", "update_person", "list_people", "delete_person")
def test_people_with_several_numbers(api: Callable[..., Client]) -> None:
    alice = signed_in(api, USERS[0])
    body = {
        "name": "Dana Buyer",
        "account_name": "Initech",
        "title": "VP Purchasing",
        "numbers": [
            {"number": "(404) 555-0134", "label": "mobile"},
            {"number": "404-555-0199 ext. 42", "label": "office", "primary": True},
        ],
    }
    made = alice.post("/api/v1/people", body)
    assert made.status == 201, made.text
    person = made.json
    assert person["account"]["name"] == "Initech"
    numbers = [(n["label"], n["e164"], n["extension"], n["primary"]) for n in person["numbers"]]
    assert numbers == [
        ("mobile", "+14045550134", None, False),
        ("office", "+14045550199", "42", True),
    ]
    assert person["numbers"][0]["display"] == "(404) 555-0134"
    bad = alice.post("/api/v1/people", body | {"numbers": [{"number": "555-01"}]})
    assert bad.status == 400 and bad.json["field"] == "numbers.0.number"
    two = alice.post(
        "/api/v1/people",
        body
        | {
            "numbers": [
                {"number": "4045550101", "primary": True},
                {"number": "4045550102", "primary": True},
            ]
        },
    )
    assert two.status == 400 and two.json["field"] == "numbers"
    unknown = alice.post("/api/v1/people", {"name": "X", "shoe_size": 9})
    assert unknown.status == 400 and unknown.json["field"] == "shoe_size"
    ident = person["id"]
    patched = alice.request("PATCH", f"/api/v1/people/{ident}", {"title": "CFO"})
    assert patched.json["title"] == "CFO" and len(patched.json["numbers"]) == 2
    assert alice.get(f"/api/v1/people/{ident}").json == patched.json
    for q in ("dana", "initech", "5550199"):
        assert [p["id"] for p in alice.get("/api/v1/people", q=q).json["items"]] == [ident]
    assert alice.get("/api/v1/people", cursor="garbage").status == 400
    assert alice.get("/api/v1/people", limit=0).json["field"] == "limit"
    assert alice.request("DELETE", f"/api/v1/people/{ident}").status == 403
    carol = signed_in(api, USERS[2])
    assert carol.request("DELETE", f"/api/v1/people/{ident}").status == 204
    assert alice.get(f"/api/v1/people/{ident}").status == 404


def test_people_pages_follow_the_cursor(api: Callable[..., Client]) -> None:
    alice = signed_in(api, USERS[0])
    names = [f"Pager {i:02}" for i in range(7)]
    for name in names:
        assert alice.post("/api/v1/people", {"name": name}).status == 201
    seen: list[str] = []
    cursor = None
    while True:
        page = alice.get("/api/v1/people", q="pager", limit=3, cursor=cursor).json
        seen += [p["name"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == names


@covers("import_csv")
def test_csv_import_reports_every_bad_row(api: Callable[..., Client]) -> None:
    alice = signed_in(api, USERS[0])
    text = (
        "Name,Company,Phone,Ext\n"
        "Ann Able,Umbrella,(212) 555-0101,7\n"
        "Ben Bad,Umbrella,12,\n"
        "Cy Cell,Umbrella,+1 212 555 0102 x99,\n"
    )
    mapping = {
        "name": "Name",
        "account": "Company",
        "numbers": [{"column": "Phone", "label": "office", "extension_column": "Ext"}],
    }
    report = alice.post("/api/v1/people/import", {"csv": text, "mapping": mapping}).json
    assert (report["rows"], report["imported"], report["rejected"]) == (3, 2, 1)
    assert [(e["line"], e["column"]) for e in report["errors"]] == [(3, "Phone")]
    people = [alice.get(f"/api/v1/people/{i}").json for i in report["people"]]
    assert [(p["numbers"][0]["e164"], p["numbers"][0]["extension"]) for p in people] == [
        ("+12125550101", "7"),
        ("+12125550102", "99"),
    ]
    # A body past aiohttp's default 1 MiB is read (not 413); its absurd cell is named.
    big = "Name,Phone,Notes\n" + "Long Notes,(212) 555-0103," + "x" * 2_000_000 + "\n"
    mapped = {"name": "Name", "notes": "Notes", "numbers": [{"column": "Phone"}]}
    huge = alice.post("/api/v1/people/import", {"csv": big, "mapping": mapped, "dry_run": True})
    assert huge.status == 400 and huge.json["field"] == "csv" and "line 2" in huge.json["error"]
    wrong = alice.post(
        "/api/v1/people/import",
        {"csv": text, "mapping": mapping | {"name": "Full Name"}},
    )
    assert wrong.status == 400 and "Full Name" in wrong.json["error"]


@covers("list_dispositions", "replace_dispositions")
def test_dispositions_are_configurable_by_admins(api: Callable[..., Client]) -> None:
    alice, carol = signed_in(api, USERS[0]), signed_in(api, USERS[2])
    before = alice.get("/api/v1/dispositions").json["items"]
    assert before[0] == {"code": "connected", "label": "Connected"}
    new = {"items": [*before, {"code": "demo_booked", "label": "Demo booked"}]}
    assert alice.request("PUT", "/api/v1/dispositions", new).status == 403
    assert carol.request("PUT", "/api/v1/dispositions", new).status == 200
    assert alice.get("/api/v1/dispositions").json == new
    twice = {"items": [before[0], before[0]]}
    assert carol.request("PUT", "/api/v1/dispositions", twice).json["field"] == "items"


@covers("list_calls", "get_call", "set_disposition", "export_calls")
def test_call_history_is_private_with_filters_and_csv(
    api: Callable[..., Client], server: ServerProcess
) -> None:
    alice_call = failed_call(server, USERS[0], "202")
    bob_call = failed_call(server, USERS[1], "201")
    alice, bob, carol = (signed_in(api, user) for user in USERS)

    def listed(client: Client, **query: Any) -> list[str]:
        return [c["call_id"] for c in client.get("/api/v1/calls", **query).json["items"]]

    wait_for(lambda: alice_call in listed(alice), "alice's call in the log")
    wait_for(lambda: bob_call in listed(bob), "bob's call in the log")
    assert bob_call not in listed(alice) and alice_call not in listed(bob)
    assert {alice_call, bob_call} <= set(listed(carol))
    assert listed(carol, user="bob") == listed(bob)
    # Another user's calls: 403, whether asked for by filter or by id.
    assert alice.get("/api/v1/calls", user="bob").status == 403
    assert alice.get(f"/api/v1/calls/{bob_call}").status == 403
    assert alice.get("/api/v1/calls/no-such-call").status == 404
    assert carol.get(f"/api/v1/calls/{bob_call}").json["user"] == "bob"
    call = alice.get(f"/api/v1/calls/{alice_call}").json
    assert call["sip_status"] == 480 and call["disposition"] is None
    logged = alice.request(
        "PUT",
        f"/api/v1/calls/{alice_call}/disposition",
        {"disposition": "no_answer", "notes": "try after lunch"},
    )
    assert logged.json["disposition"] == "no_answer" and logged.json["notes"] == "try after lunch"
    refused = alice.request(
        "PUT", f"/api/v1/calls/{alice_call}/disposition", {"disposition": "bogus"}
    )
    assert refused.status == 400 and refused.json["field"] == "disposition"
    not_hers = alice.request(
        "PUT", f"/api/v1/calls/{bob_call}/disposition", {"disposition": "connected"}
    )
    assert not_hers.status == 403
    assert listed(alice, disposition="no_answer") == [alice_call]
    assert listed(alice, disposition="connected") == []
    assert listed(alice, since="2999-01-01") == []
    assert alice_call in listed(alice, until="2999-01-01", since="2000-01-01")
    assert alice.get("/api/v1/calls", since="yesterday").json["field"] == "since"
    exported = alice.get("/api/v1/calls.csv", disposition="no_answer")
    assert exported.status == 200 and exported.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in exported.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["call_id"], r["disposition"], r["notes"]) for r in rows] == [
        (alice_call, "no_answer", "try after lunch")
    ]
    # Mode and billable minutes as the JSON has them; no rate here, so no cost.
    assert (rows[0]["mode"], rows[0]["billable_minutes"], rows[0]["cost"]) == (
        call["mode"],
        str(call["billable_minutes"]),
        "",
    )
    assert alice.get("/api/v1/calls.csv", user="bob").status == 403


def test_call_history_pages(api: Callable[..., Client], server: ServerProcess) -> None:
    bob = signed_in(api, USERS[1])
    made = {failed_call(server, USERS[1], "201") for _ in range(3)}
    wait_for(
        lambda: made <= set(c["call_id"] for c in bob.get("/api/v1/calls").json["items"]),
        "bob's calls in the log",
    )
    seen: list[str] = []
    cursor = None
    while True:
        page = bob.get("/api/v1/calls", limit=2, cursor=cursor).json
        seen += [c["call_id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert made <= set(seen) and len(seen) == len(set(seen))


@covers("click_to_call")
def test_click_to_call_refusals(api: Callable[..., Client]) -> None:
    alice = signed_in(api, USERS[0])
    nobody = alice.post("/api/v1/calls", {"to": "+14045550100", "device": "phone"})
    assert nobody.status == 409 and "phone" in nobody.json["error"]
    bad = alice.post("/api/v1/calls", {"to": "555"})
    assert bad.status == 400 and bad.json["field"] == "to"
    both = alice.post("/api/v1/calls", {"to": "+14045550100", "number_id": 1})
    assert both.status == 400
    unknown = alice.post("/api/v1/calls", {"number_id": 999999})
    assert unknown.status == 404 and unknown.json["field"] == "number_id"
    wrong_device = alice.post("/api/v1/calls", {"to": "+14045550100", "device": "fax"})
    assert wrong_device.status == 400 and wrong_device.json["field"] == "device"


def test_api_needs_a_sign_in(api: Callable[..., Client]) -> None:
    anonymous = api()
    for path in ("/api/v1/people", "/api/v1/calls", "/api/v1/tokens", "/api/v1/dispositions"):
        reply = anonymous.get(path)
        assert reply.status == 401 and "Bearer" in reply.json["error"]
