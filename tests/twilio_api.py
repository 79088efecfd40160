"""A stand-in for the parts of Twilio's REST API that trunk provisioning uses.

Resources, as documented at twilio.com/docs/sip-trunking/api and /docs/voice/sip/api:

- ``trunking.twilio.com/v1``: ``Trunks``, and per trunk ``OriginationUrls``,
  ``CredentialLists`` (associations) and ``PhoneNumbers`` (associations);
- ``api.twilio.com/2010-04-01/Accounts/{AccountSid}``: ``SIP/CredentialLists.json`` with
  their ``Credentials.json``, and ``IncomingPhoneNumbers.json`` (read only: numbers are
  bought with :meth:`FakeTwilio.add_phone_number`).

It answers as Twilio does: HTTP Basic auth with the Account SID and auth token or an API key
(401, code 20003 otherwise); form-encoded PascalCase parameters in, snake_case JSON out; v1
pages carry a ``meta`` object with an absolute ``next_page_url`` and the record ``key``, 2010
pages carry ``next_page_uri``, ``page``, ``start``... at the top level; ``PageSize`` is honoured;
errors are ``{"code", "message", "more_info", "status"}`` bodies, which twilio-python turns
into ``TwilioRestException`` with that code. It is stricter than Twilio in one way: a
parameter it does not model is refused (400) instead of ignored, so a misspelt name fails a
test rather than passing silently.

Two ways in. :class:`FakeTwilio` is a twilio-python ``HttpClient``: pass it as
``Client(sid, token, http_client=fake)`` and no socket is used. :func:`serve` puts the same
state behind ``http.server`` on loopback, and :class:`LoopbackHttpClient` sends twilio-python's
real ``requests``-based client there (twilio-python has no base-URL setting: ``edge`` and
``region`` only rewrite the ``*.twilio.com`` host name, so the client rewrites the URL and
keeps the Twilio host in the ``Host`` header).
"""

from __future__ import annotations

import base64
import email.utils
import itertools
import json
import logging
import random
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response

_log = logging.getLogger(__name__)

TRUNKING = "https://trunking.twilio.com"
API = "https://api.twilio.com"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class ErrorKind:
    """One Twilio error: HTTP status, Twilio error code, message template."""

    status: int
    code: int
    message: str


AUTHENTICATE = ErrorKind(401, 20003, "Authenticate")
NOT_FOUND = ErrorKind(404, 20404, "The requested resource {path} was not found")
# "The domain name requested is invalid, already in use or a subdomain of a domain you do not
# control" (twilio.com/docs/api/errors/21232).
INVALID_DOMAIN = ErrorKind(400, 21232, "Invalid Domain: {detail}")
# "This Termination URI (Domain) is not available" (twilio.com/docs/api/errors/21248, which
# gives no HTTP status: 400, as for 21232).
DOMAIN_TAKEN = ErrorKind(400, 21248, "Trunk Domain already taken: {domain}")
# Twilio documents the SIP credential password rule (12+ characters, a digit, mixed case) but
# not the error code it answers with; 400 is its generic "parameter did not pass validation"
# error (twilio.com/docs/api/errors/400).
WEAK_PASSWORD = ErrorKind(
    400,
    400,
    "Password must be a minimum of 12 characters, contain at least 1 digit, and have mixed case",
)
BAD_REQUEST = ErrorKind(400, 400, "{detail}")


class ApiError(Exception):
    """An error answer; :meth:`body` is the JSON Twilio sends with it."""

    def __init__(self, kind: ErrorKind, **fields: str) -> None:
        super().__init__(kind.message.format(**fields))
        self.kind = kind

    def body(self) -> dict[str, object]:
        return {
            "code": self.kind.code,
            "message": str(self),
            "more_info": f"https://www.twilio.com/docs/errors/{self.kind.code}",
            "status": self.kind.status,
        }


def bad_request(detail: str) -> ApiError:
    return ApiError(BAD_REQUEST, detail=detail)


@dataclass
class Trunk:
    sid: str
    friendly_name: str | None
    domain_name: str | None
    secure: bool
    cnam_lookup_enabled: bool
    created: datetime
    updated: datetime


@dataclass
class OriginationUrl:
    sid: str
    trunk_sid: str
    friendly_name: str
    sip_url: str
    priority: int
    weight: int
    enabled: bool
    created: datetime
    updated: datetime


@dataclass
class CredentialList:
    sid: str
    friendly_name: str
    created: datetime
    updated: datetime
    trunk_sids: dict[str, datetime] = field(default_factory=dict)
    """Trunks this list is associated with, and when."""


@dataclass
class Credential:
    sid: str
    credential_list_sid: str
    username: str
    password: str
    created: datetime
    updated: datetime


@dataclass
class PhoneNumber:
    sid: str
    phone_number: str
    friendly_name: str
    trunk_sid: str | None
    created: datetime
    updated: datetime
    trunk_associated: datetime | None = None


@dataclass(frozen=True)
class Call:
    """One request as the stand-in saw it (after authentication)."""

    method: str
    path: str
    params: dict[str, str]


@dataclass
class _Request:
    method: str
    path: str
    args: tuple[str, ...]
    query: dict[str, str]
    form: dict[str, str]

    def only(self, *names: str) -> None:
        """Refuse parameters this endpoint does not take (Twilio would ignore them)."""
        unknown = sorted(set(self.form) - set(names))
        if unknown:
            raise bad_request(f"Unknown parameter(s) {', '.join(unknown)} for {self.path}")

    def required(self, name: str) -> str:
        value = self.form.get(name)
        if value is None or value == "":
            raise bad_request(f"Missing required parameter {name} in the post body")
        return value


_Handler = Callable[["FakeTwilio", _Request], tuple[int, dict[str, object]]]
_PAGING = ("PageSize", "Page", "PageToken")
_DOMAIN = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.pstn\.twilio\.com$")
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


def _v1_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc2822(moment: datetime) -> str:
    return email.utils.format_datetime(moment)


def _boolean(name: str, text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise bad_request(f"{name} must be true or false, got {text!r}")
    return text.lower() == "true"


def _integer(name: str, text: str, low: int, high: int) -> int:
    if not text.lstrip("-").isdigit() or not low <= int(text) <= high:
        raise bad_request(f"{name} must be an integer from {low} to {high}, got {text!r}")
    return int(text)


def _ticking_clock() -> Callable[[], datetime]:
    seconds = itertools.count()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return lambda: start + timedelta(seconds=next(seconds))


class FakeTwilio(HttpClient):
    """In-memory Twilio account: trunks, SIP credential lists, phone numbers.

    Deterministic: SIDs come from ``random.Random(seed)``, timestamps from ``clock`` (by
    default one that starts at 2024-01-01T00:00:00Z and ticks a second per reading).
    """

    def __init__(
        self,
        auth_token: str = "auth-token-0123456789abcdef",
        *,
        api_keys: dict[str, str] | None = None,
        seed: int = 0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(_log, is_async=False)
        self._rng = random.Random(seed)
        self._clock = clock or _ticking_clock()
        self._lock = threading.Lock()
        self.account_sid = self.new_sid("AC")
        self.auth_token = auth_token
        self.api_keys = dict(api_keys or {})
        """API key SID -> secret, both accepted as Basic auth for this account."""
        self.trunks: dict[str, Trunk] = {}
        self.origination_urls: dict[str, OriginationUrl] = {}
        self.credential_lists: dict[str, CredentialList] = {}
        self.credentials: dict[str, Credential] = {}
        self.phone_numbers: dict[str, PhoneNumber] = {}
        self.calls: list[Call] = []

    def new_sid(self, prefix: str) -> str:
        """A 34-character SID: two-letter type prefix and 32 hex digits."""
        return f"{prefix}{self._rng.getrandbits(128):032x}"

    def add_phone_number(self, phone_number: str) -> PhoneNumber:
        """Put a number in the account, as buying or porting one does."""
        if not _E164.match(phone_number):
            raise ValueError(f"not an E.164 number: {phone_number!r}")
        now = self._clock()
        national = phone_number[-10:]
        number = PhoneNumber(
            sid=self.new_sid("PN"),
            phone_number=phone_number,
            friendly_name=f"({national[:3]}) {national[3:6]}-{national[6:]}",
            trunk_sid=None,
            created=now,
            updated=now,
        )
        self.phone_numbers[number.sid] = number
        return number

    def posts(self) -> list[Call]:
        """The requests that could have changed something."""
        return [call for call in self.calls if call.method != "GET"]

    # -- twilio-python's HttpClient interface -----------------------------------------------

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        form = {key: str(value) for key, value in (data or {}).items()}
        content_type = (headers or {}).get("Content-Type", "")
        status, body = self.handle(method, uri, params, form, content_type, auth)
        return Response(
            status, json.dumps(body) if body else "", {"Content-Type": "application/json"}
        )

    # -- the API ----------------------------------------------------------------------------

    def handle(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None,
        form: dict[str, str],
        content_type: str,
        auth: tuple[str, str] | None,
    ) -> tuple[int, dict[str, object] | None]:
        """Answer one request: ``(HTTP status, JSON body or None)``."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        query.update({key: str(value) for key, value in (params or {}).items()})
        with self._lock:
            try:
                if not self._authenticated(auth):
                    raise ApiError(AUTHENTICATE)
                handler, args = self._route(method, parts.hostname or "", parts.path)
                if method == "POST" and content_type.split(";")[0].strip() != FORM:
                    raise bad_request(f"expected {FORM}, got {content_type or 'no Content-Type'}")
                self.calls.append(Call(method, parts.path, {**query, **form}))
                return handler(self, _Request(method, parts.path, args, query, form))
            except ApiError as error:
                return error.kind.status, error.body()

    def _authenticated(self, auth: tuple[str, str] | None) -> bool:
        if auth is None:
            return False
        user, secret = auth
        if user == self.account_sid:
            return secret == self.auth_token
        return user in self.api_keys and self.api_keys[user] == secret

    def _route(self, method: str, host: str, path: str) -> tuple[_Handler, tuple[str, ...]]:
        product = host.split(".", 1)[0]
        for route_method, route_product, pattern, handler in _ROUTES:
            match = pattern.match(path)
            if match and route_method == method and route_product == product:
                args = match.groups()
                if product == "api" and args[0] != self.account_sid:
                    raise ApiError(AUTHENTICATE)
                return handler, args
        raise ApiError(NOT_FOUND, path=path)

    def _page(
        self,
        request: _Request,
        key: str,
        records: list[dict[str, object]],
        version: str,
        filters: tuple[str, ...] = (),
    ) -> tuple[int, dict[str, object]]:
        unknown = sorted(set(request.query) - {*_PAGING, *filters})
        if unknown:
            raise bad_request(f"Unknown parameter(s) {', '.join(unknown)} for {request.path}")
        size = _integer("PageSize", request.query.get("PageSize", str(DEFAULT_PAGE_SIZE)), 1, 10**6)
        size = min(size, MAX_PAGE_SIZE)
        page = _integer("Page", request.query.get("Page", "0"), 0, 10**6)
        token = request.query.get("PageToken", "")
        sids = [str(record["sid"]) for record in records]
        if token.startswith("PA") and token[2:] in sids:
            start = sids.index(token[2:]) + 1
        elif token.startswith("PB") and token[2:] in sids:
            start = max(0, sids.index(token[2:]) - size)
        elif token:
            raise bad_request(f"Invalid PageToken {token!r}")
        else:
            start = page * size
        chunk = records[start : start + size]
        kept = {k: v for k, v in request.query.items() if k in filters}

        def link(number: int, page_token: str | None) -> str:
            query: dict[str, object] = {**kept, "PageSize": size, "Page": number}
            if page_token:
                query["PageToken"] = page_token
            return f"{request.path}?{urlencode(query)}"

        following = (
            link(page + 1, f"PA{sids[start + size - 1]}") if start + size < len(sids) else None
        )
        previous = link(page - 1, f"PB{sids[start]}") if start > 0 and chunk else None
        current = link(page, token or None)
        if version == "v1":
            origin = TRUNKING
            meta: dict[str, object] = {
                "page": page,
                "page_size": size,
                "first_page_url": origin + link(0, None),
                "previous_page_url": origin + previous if previous else None,
                "url": origin + current,
                "next_page_url": origin + following if following else None,
                "key": key,
            }
            return 200, {key: chunk, "meta": meta}
        return 200, {
            key: chunk,
            "end": start + len(chunk) - 1,
            "first_page_uri": link(0, None),
            "next_page_uri": following,
            "page": page,
            "page_size": size,
            "previous_page_uri": previous,
            "start": start,
            "uri": current,
        }

    # -- trunking v1 --------------------------------------------------------------------------

    def _trunk(self, sid: str) -> Trunk:
        if sid not in self.trunks:
            raise ApiError(NOT_FOUND, path=f"/v1/Trunks/{sid}")
        return self.trunks[sid]

    def _trunk_json(self, trunk: Trunk) -> dict[str, object]:
        url = f"{TRUNKING}/v1/Trunks/{trunk.sid}"
        auth = (
            ["CREDENTIAL_LIST"]
            if any(trunk.sid in cl.trunk_sids for cl in self.credential_lists.values())
            else []
        )
        return {
            "account_sid": self.account_sid,
            "domain_name": trunk.domain_name,
            "disaster_recovery_method": None,
            "disaster_recovery_url": None,
            "friendly_name": trunk.friendly_name,
            "secure": trunk.secure,
            "recording": {"mode": "do-not-record", "trim": "do-not-trim"},
            "transfer_mode": "disable-all",
            "transfer_caller_id": "from-transferee",
            "cnam_lookup_enabled": trunk.cnam_lookup_enabled,
            "auth_type": ",".join(auth),
            "symmetric_rtp_enabled": False,
            "auth_type_set": auth,
            "date_created": _v1_time(trunk.created),
            "date_updated": _v1_time(trunk.updated),
            "sid": trunk.sid,
            "url": url,
            "links": {
                name: f"{url}/{path}"
                for name, path in (
                    ("origination_urls", "OriginationUrls"),
                    ("credential_lists", "CredentialLists"),
                    ("ip_access_control_lists", "IpAccessControlLists"),
                    ("phone_numbers", "PhoneNumbers"),
                    ("recordings", "Recording"),
                )
            },
        }

    def _apply_trunk_form(self, trunk: Trunk, request: _Request) -> None:
        request.only("FriendlyName", "DomainName", "Secure", "CnamLookupEnabled")
        form = request.form
        if "DomainName" in form:
            domain = form["DomainName"].lower()
            if not _DOMAIN.match(domain):
                raise ApiError(INVALID_DOMAIN, detail=f"{domain!r} must end with pstn.twilio.com")
            if any(t.domain_name == domain and t.sid != trunk.sid for t in self.trunks.values()):
                raise ApiError(DOMAIN_TAKEN, domain=domain)
            trunk.domain_name = domain
        if "FriendlyName" in form:
            if len(form["FriendlyName"]) > 64:
                raise bad_request("FriendlyName must be at most 64 characters")
            trunk.friendly_name = form["FriendlyName"]
        if "Secure" in form:
            trunk.secure = _boolean("Secure", form["Secure"])
        if "CnamLookupEnabled" in form:
            trunk.cnam_lookup_enabled = _boolean("CnamLookupEnabled", form["CnamLookupEnabled"])

    def list_trunks(self, request: _Request) -> tuple[int, dict[str, object]]:
        records = [self._trunk_json(trunk) for trunk in self.trunks.values()]
        return self._page(request, "trunks", records, "v1")

    def create_trunk(self, request: _Request) -> tuple[int, dict[str, object]]:
        now = self._clock()
        trunk = Trunk(self.new_sid("TK"), None, None, False, False, now, now)
        self._apply_trunk_form(trunk, request)
        self.trunks[trunk.sid] = trunk
        return 201, self._trunk_json(trunk)

    def fetch_trunk(self, request: _Request) -> tuple[int, dict[str, object]]:
        return 200, self._trunk_json(self._trunk(request.args[0]))

    def update_trunk(self, request: _Request) -> tuple[int, dict[str, object]]:
        trunk = self._trunk(request.args[0])
        self._apply_trunk_form(trunk, request)
        trunk.updated = self._clock()
        return 200, self._trunk_json(trunk)

    def _origination_json(self, url: OriginationUrl) -> dict[str, object]:
        return {
            "account_sid": self.account_sid,
            "sid": url.sid,
            "trunk_sid": url.trunk_sid,
            "weight": url.weight,
            "enabled": url.enabled,
            "sip_url": url.sip_url,
            "friendly_name": url.friendly_name,
            "priority": url.priority,
            "date_created": _v1_time(url.created),
            "date_updated": _v1_time(url.updated),
            "url": f"{TRUNKING}/v1/Trunks/{url.trunk_sid}/OriginationUrls/{url.sid}",
        }

    def _apply_origination_form(self, url: OriginationUrl, request: _Request) -> None:
        request.only("Weight", "Priority", "Enabled", "FriendlyName", "SipUrl")
        form = request.form
        if "SipUrl" in form:
            # "This must be a sip: schema" (OriginationUrl resource): no sips:, TLS is
            # asked for with ;transport=tls.
            if not form["SipUrl"].lower().startswith("sip:"):
                raise bad_request(f"SipUrl must be a sip: URI, got {form['SipUrl']!r}")
            url.sip_url = form["SipUrl"]
        if "FriendlyName" in form:
            url.friendly_name = form["FriendlyName"]
        if "Weight" in form:
            url.weight = _integer("Weight", form["Weight"], 1, 65535)
        if "Priority" in form:
            url.priority = _integer("Priority", form["Priority"], 0, 65535)
        if "Enabled" in form:
            url.enabled = _boolean("Enabled", form["Enabled"])

    def _origination(self, request: _Request) -> OriginationUrl:
        trunk_sid, sid = request.args
        url = self.origination_urls.get(sid)
        if url is None or url.trunk_sid != trunk_sid:
            raise ApiError(NOT_FOUND, path=request.path)
        return url

    def list_origination_urls(self, request: _Request) -> tuple[int, dict[str, object]]:
        trunk = self._trunk(request.args[0])
        records = [
            self._origination_json(url)
            for url in self.origination_urls.values()
            if url.trunk_sid == trunk.sid
        ]
        return self._page(request, "origination_urls", records, "v1")

    def create_origination_url(self, request: _Request) -> tuple[int, dict[str, object]]:
        trunk = self._trunk(request.args[0])
        for name in ("Weight", "Priority", "Enabled", "FriendlyName", "SipUrl"):
            request.required(name)
        now = self._clock()
        url = OriginationUrl(self.new_sid("OU"), trunk.sid, "", "", 0, 1, True, now, now)
        self._apply_origination_form(url, request)
        self.origination_urls[url.sid] = url
        return 201, self._origination_json(url)

    def fetch_origination_url(self, request: _Request) -> tuple[int, dict[str, object]]:
        return 200, self._origination_json(self._origination(request))

    def update_origination_url(self, request: _Request) -> tuple[int, dict[str, object]]:
        url = self._origination(request)
        self._apply_origination_form(url, request)
        url.updated = self._clock()
        return 200, self._origination_json(url)

    def _trunk_credential_list_json(self, trunk_sid: str, cl: CredentialList) -> dict[str, object]:
        associated = cl.trunk_sids[trunk_sid]
        return {
            "account_sid": self.account_sid,
            "sid": cl.sid,
            "trunk_sid": trunk_sid,
            "friendly_name": cl.friendly_name,
            "date_created": _v1_time(associated),
            "date_updated": _v1_time(associated),
            "url": f"{TRUNKING}/v1/Trunks/{trunk_sid}/CredentialLists/{cl.sid}",
        }

    def list_trunk_credential_lists(self, request: _Request) -> tuple[int, dict[str, object]]:
        trunk = self._trunk(request.args[0])
        records = [
            self._trunk_credential_list_json(trunk.sid, cl)
            for cl in self.credential_lists.values()
            if trunk.sid in cl.trunk_sids
        ]
        return self._page(request, "credential_lists", records, "v1")

    def associate_credential_list(self, request: _Request) -> tuple[int, dict[str, object]]:
        trunk = self._trunk(request.args[0])
        request.only("CredentialListSid")
        sid = request.required("CredentialListSid")
        cl = self.credential_lists.get(sid)
        if cl is None:
            raise bad_request(f"CredentialListSid {sid} is not a credential list of this account")
        if trunk.sid in cl.trunk_sids:
            raise bad_request(f"Credential list {sid} is already associated with trunk {trunk.sid}")
        cl.trunk_sids[trunk.sid] = self._clock()
        return 201, self._trunk_credential_list_json(trunk.sid, cl)

    def fetch_trunk_credential_list(self, request: _Request) -> tuple[int, dict[str, object]]:
        trunk_sid, sid = request.args
        cl = self.credential_lists.get(sid)
        if cl is None or trunk_sid not in cl.trunk_sids:
            raise ApiError(NOT_FOUND, path=request.path)
        return 200, self._trunk_credential_list_json(trunk_sid, cl)

    def _number_json(self, number: PhoneNumber, version: str) -> dict[str, object]:
        stamp = _v1_time if version == "v1" else _rfc2822
        api_uri = f"/2010-04-01/Accounts/{self.account_sid}/IncomingPhoneNumbers/{number.sid}"
        record: dict[str, object] = {
            "account_sid": self.account_sid,
            "address_requirements": "none",
            "api_version": "2010-04-01",
            "beta": False,
            "capabilities": {"voice": True, "sms": True, "mms": True, "fax": False},
            "date_created": stamp(number.created),
            "date_updated": stamp(number.updated),
            "friendly_name": number.friendly_name,
            "phone_number": number.phone_number,
            "sid": number.sid,
            "sms_application_sid": None,
            "sms_fallback_method": "POST",
            "sms_fallback_url": None,
            "sms_method": "POST",
            "sms_url": None,
            "status_callback": None,
            "status_callback_method": "POST",
            "trunk_sid": number.trunk_sid,
            "voice_application_sid": None,
            "voice_caller_id_lookup": False,
            "voice_fallback_method": "POST",
            "voice_fallback_url": None,
            "voice_method": "POST",
            "voice_url": None,
        }
        if version == "v1":
            url = f"{TRUNKING}/v1/Trunks/{number.trunk_sid}/PhoneNumbers/{number.sid}"
            record.update(url=url, links={"phone_number": f"{API}{api_uri}.json"})
        else:
            record.update(uri=f"{api_uri}.json", origin="twilio", status="in-use")
        return record

    def list_trunk_phone_numbers(self, request: _Request) -> tuple[int, dict[str, object]]:
        trunk = self._trunk(request.args[0])
        on_trunk = [n for n in self.phone_numbers.values() if n.trunk_sid == trunk.sid]
        on_trunk.sort(key=lambda n: n.trunk_associated or n.created)
        records = [self._number_json(number, "v1") for number in on_trunk]
        return self._page(request, "phone_numbers", records, "v1")

    def associate_phone_number(self, request: _Request) -> tuple[int, dict[str, object]]:
        trunk = self._trunk(request.args[0])
        request.only("PhoneNumberSid")
        sid = request.required("PhoneNumberSid")
        number = self.phone_numbers.get(sid)
        if number is None:
            raise bad_request(f"PhoneNumberSid {sid} is not a phone number of this account")
        # Setting a number's trunk replaces its voice URL/application and any other trunk.
        number.trunk_sid = trunk.sid
        number.trunk_associated = number.updated = self._clock()
        return 201, self._number_json(number, "v1")

    def fetch_trunk_phone_number(self, request: _Request) -> tuple[int, dict[str, object]]:
        trunk_sid, sid = request.args
        number = self.phone_numbers.get(sid)
        if number is None or number.trunk_sid != trunk_sid:
            raise ApiError(NOT_FOUND, path=request.path)
        return 200, self._number_json(number, "v1")

    # -- api 2010-04-01 -----------------------------------------------------------------------

    def _account_uri(self) -> str:
        return f"/2010-04-01/Accounts/{self.account_sid}"

    def _credential_list(self, request: _Request) -> CredentialList:
        cl = self.credential_lists.get(request.args[1])
        if cl is None:
            raise ApiError(NOT_FOUND, path=request.path)
        return cl

    def _credential_list_json(self, cl: CredentialList) -> dict[str, object]:
        uri = f"{self._account_uri()}/SIP/CredentialLists/{cl.sid}"
        return {
            "account_sid": self.account_sid,
            "date_created": _rfc2822(cl.created),
            "date_updated": _rfc2822(cl.updated),
            "friendly_name": cl.friendly_name,
            "sid": cl.sid,
            "subresource_uris": {"credentials": f"{uri}/Credentials.json"},
            "uri": f"{uri}.json",
        }

    def _friendly_name(self, request: _Request) -> str:
        name = request.required("FriendlyName")
        if len(name) > 64:
            raise bad_request("FriendlyName must be at most 64 characters")
        return name

    def list_credential_lists(self, request: _Request) -> tuple[int, dict[str, object]]:
        records = [self._credential_list_json(cl) for cl in self.credential_lists.values()]
        return self._page(request, "credential_lists", records, "2010")

    def create_credential_list(self, request: _Request) -> tuple[int, dict[str, object]]:
        request.only("FriendlyName")
        now = self._clock()
        cl = CredentialList(self.new_sid("CL"), self._friendly_name(request), now, now)
        self.credential_lists[cl.sid] = cl
        return 201, self._credential_list_json(cl)

    def fetch_credential_list(self, request: _Request) -> tuple[int, dict[str, object]]:
        return 200, self._credential_list_json(self._credential_list(request))

    def _credential(self, request: _Request) -> Credential:
        cl = self._credential_list(request)
        credential = self.credentials.get(request.args[2])
        if credential is None or credential.credential_list_sid != cl.sid:
            raise ApiError(NOT_FOUND, path=request.path)
        return credential

    def _credential_json(self, credential: Credential) -> dict[str, object]:
        # Twilio keeps only the digest hash of the password and never returns it.
        list_uri = f"{self._account_uri()}/SIP/CredentialLists/{credential.credential_list_sid}"
        return {
            "sid": credential.sid,
            "account_sid": self.account_sid,
            "credential_list_sid": credential.credential_list_sid,
            "username": credential.username,
            "date_created": _rfc2822(credential.created),
            "date_updated": _rfc2822(credential.updated),
            "uri": f"{list_uri}/Credentials/{credential.sid}.json",
        }

    @staticmethod
    def _password(request: _Request) -> str:
        password = request.required("Password")
        strong = (
            len(password) >= 12
            and any(c.isdigit() for c in password)
            and any(c.islower() for c in password)
            and any(c.isupper() for c in password)
        )
        if not strong:
            raise ApiError(WEAK_PASSWORD)
        return password

    def list_credentials(self, request: _Request) -> tuple[int, dict[str, object]]:
        cl = self._credential_list(request)
        records = [
            self._credential_json(c)
            for c in self.credentials.values()
            if c.credential_list_sid == cl.sid
        ]
        return self._page(request, "credentials", records, "2010")

    def create_credential(self, request: _Request) -> tuple[int, dict[str, object]]:
        cl = self._credential_list(request)
        request.only("Username", "Password")
        username = request.required("Username")
        if len(username) > 32:
            raise bad_request("Username must be at most 32 characters")
        if any(
            c.username == username and c.credential_list_sid == cl.sid
            for c in self.credentials.values()
        ):
            raise bad_request(f"Username {username!r} already exists in credential list {cl.sid}")
        now = self._clock()
        credential = Credential(
            self.new_sid("CR"), cl.sid, username, self._password(request), now, now
        )
        self.credentials[credential.sid] = credential
        return 201, self._credential_json(credential)

    def fetch_credential(self, request: _Request) -> tuple[int, dict[str, object]]:
        return 200, self._credential_json(self._credential(request))

    def update_credential(self, request: _Request) -> tuple[int, dict[str, object]]:
        credential = self._credential(request)
        request.only("Password")
        credential.password = self._password(request)
        credential.updated = self._clock()
        return 200, self._credential_json(credential)

    def list_incoming_numbers(self, request: _Request) -> tuple[int, dict[str, object]]:
        # Twilio matches PhoneNumber as a pattern: any number containing those digits.
        digits = re.sub(r"\D", "", request.query.get("PhoneNumber", ""))
        friendly = request.query.get("FriendlyName")
        records = [
            self._number_json(number, "2010")
            for number in self.phone_numbers.values()
            if digits in number.phone_number and friendly in (None, number.friendly_name)
        ]
        filters = ("PhoneNumber", "FriendlyName")
        return self._page(request, "incoming_phone_numbers", records, "2010", filters)

    def fetch_incoming_number(self, request: _Request) -> tuple[int, dict[str, object]]:
        number = self.phone_numbers.get(request.args[1])
        if number is None:
            raise ApiError(NOT_FOUND, path=request.path)
        return 200, self._number_json(number, "2010")


_SID = r"([A-Z]{2}[0-9a-f]{32})"
_ACCOUNT = rf"^/2010-04-01/Accounts/{_SID}"
_ROUTES: list[tuple[str, str, re.Pattern[str], _Handler]] = [
    (method, product, re.compile(pattern), handler)
    for method, product, pattern, handler in (
        ("GET", "trunking", r"^/v1/Trunks$", FakeTwilio.list_trunks),
        ("POST", "trunking", r"^/v1/Trunks$", FakeTwilio.create_trunk),
        ("GET", "trunking", rf"^/v1/Trunks/{_SID}$", FakeTwilio.fetch_trunk),
        ("POST", "trunking", rf"^/v1/Trunks/{_SID}$", FakeTwilio.update_trunk),
        (
            "GET",
            "trunking",
            rf"^/v1/Trunks/{_SID}/OriginationUrls$",
            FakeTwilio.list_origination_urls,
        ),
        (
            "POST",
            "trunking",
            rf"^/v1/Trunks/{_SID}/OriginationUrls$",
            FakeTwilio.create_origination_url,
        ),
        (
            "GET",
            "trunking",
            rf"^/v1/Trunks/{_SID}/OriginationUrls/{_SID}$",
            FakeTwilio.fetch_origination_url,
        ),
        (
            "POST",
            "trunking",
            rf"^/v1/Trunks/{_SID}/OriginationUrls/{_SID}$",
            FakeTwilio.update_origination_url,
        ),
        (
            "GET",
            "trunking",
            rf"^/v1/Trunks/{_SID}/CredentialLists$",
            FakeTwilio.list_trunk_credential_lists,
        ),
        (
            "POST",
            "trunking",
            rf"^/v1/Trunks/{_SID}/CredentialLists$",
            FakeTwilio.associate_credential_list,
        ),
        (
            "GET",
            "trunking",
            rf"^/v1/Trunks/{_SID}/CredentialLists/{_SID}$",
            FakeTwilio.fetch_trunk_credential_list,
        ),
        (
            "GET",
            "trunking",
            rf"^/v1/Trunks/{_SID}/PhoneNumbers$",
            FakeTwilio.list_trunk_phone_numbers,
        ),
        (
            "POST",
            "trunking",
            rf"^/v1/Trunks/{_SID}/PhoneNumbers$",
            FakeTwilio.associate_phone_number,
        ),
        (
            "GET",
            "trunking",
            rf"^/v1/Trunks/{_SID}/PhoneNumbers/{_SID}$",
            FakeTwilio.fetch_trunk_phone_number,
        ),
        ("GET", "api", rf"{_ACCOUNT}/SIP/CredentialLists\.json$", FakeTwilio.list_credential_lists),
        (
            "POST",
            "api",
            rf"{_ACCOUNT}/SIP/CredentialLists\.json$",
            FakeTwilio.create_credential_list,
        ),
        (
            "GET",
            "api",
            rf"{_ACCOUNT}/SIP/CredentialLists/{_SID}\.json$",
            FakeTwilio.fetch_credential_list,
        ),
        (
            "GET",
            "api",
            rf"{_ACCOUNT}/SIP/CredentialLists/{_SID}/Credentials\.json$",
            FakeTwilio.list_credentials,
        ),
        (
            "POST",
            "api",
            rf"{_ACCOUNT}/SIP/CredentialLists/{_SID}/Credentials\.json$",
            FakeTwilio.create_credential,
        ),
        (
            "GET",
            "api",
            rf"{_ACCOUNT}/SIP/CredentialLists/{_SID}/Credentials/{_SID}\.json$",
            FakeTwilio.fetch_credential,
        ),
        (
            "POST",
            "api",
            rf"{_ACCOUNT}/SIP/CredentialLists/{_SID}/Credentials/{_SID}\.json$",
            FakeTwilio.update_credential,
        ),
        (
            "GET",
            "api",
            rf"{_ACCOUNT}/IncomingPhoneNumbers\.json$",
            FakeTwilio.list_incoming_numbers,
        ),
        (
            "GET",
            "api",
            rf"{_ACCOUNT}/IncomingPhoneNumbers/{_SID}\.json$",
            FakeTwilio.fetch_incoming_number,
        ),
    )
]


# -- over real HTTP ---------------------------------------------------------------------------


def _handler_for(fake: FakeTwilio) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            auth: tuple[str, str] | None = None
            scheme, _, encoded = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() == "basic":
                user, _, secret = base64.b64decode(encoded).decode().partition(":")
                auth = (user, secret)
            url = f"https://{self.headers.get('Host', '')}{self.path}"
            content_type = self.headers.get("Content-Type") or ""
            form = dict(parse_qsl(body, keep_blank_values=True)) if body else {}
            status, answer = fake.handle(self.command, url, None, form, content_type, auth)
            payload = json.dumps(answer).encode() if answer else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            _log.debug("twilio stand-in: " + format, *args)

    return Handler


@contextmanager
def serve(fake: FakeTwilio) -> Iterator[str]:
    """Serve ``fake`` over HTTP on 127.0.0.1 (a free port); yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(fake))
    thread = threading.Thread(target=server.serve_forever, name="twilio-stand-in", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class LoopbackHttpClient(TwilioHttpClient):
    """twilio-python's real HTTP client, sent to a :func:`serve` URL instead of Twilio."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        super().__init__(timeout=timeout)
        self._base = urlsplit(base_url)

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        target = urlsplit(url)
        local = urlunsplit(target._replace(scheme=self._base.scheme, netloc=self._base.netloc))
        headers = {**(headers or {}), "Host": target.netloc}
        return super().request(method, local, params, data, headers, auth, timeout, allow_redirects)
