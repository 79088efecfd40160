"""Registrar: the location service of RFC 3261 §10.3, sans-I/O.

:meth:`Registrar.register` takes a parsed REGISTER, where it came from and
the wall-clock ``now``, and returns the response plus the binding changes to
persist *before* the response is sent.  Bindings live in memory for lookups
and are loaded from the store at start-up so a restart loses none.
"""

from __future__ import annotations

import functools
import heapq
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import formatdate

from voipcore.sip.digest import AuthResult, Credentials, DigestAuthenticator
from voipcore.sip.errors import SipParseError
from voipcore.sip.message import Request, Response, make_response, parse_uint
from voipcore.sip.uri import NameAddr, SipUri, parse_uri, uri_equivalent
from voipcore.store import Binding, BindingChange, User

UserLookup = Callable[[str], User | None]


@dataclass(slots=True)
class RegisterResult:
    """What a REGISTER produced: the reply and the changes to persist first."""

    response: Response
    changes: list[BindingChange]


def _format_contact(binding: Binding, now: float) -> str:
    remaining = max(0, int(binding.expires_at - now + 0.5))
    q = "" if binding.q == 1.0 else f";q={binding.q:g}"
    return f"<{binding.contact}>;expires={remaining}{q}"


class Registrar:
    """Bindings of address-of-record (username) to contacts, with digest auth."""

    def __init__(
        self,
        domain: str,
        authenticator: DigestAuthenticator,
        users: UserLookup,
        *,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 3600,
        max_contacts: int = 10,
    ) -> None:
        self.domain = domain.lower()
        self.auth = authenticator
        self.users = users
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.max_contacts = max_contacts
        self._bindings: dict[str, dict[str, Binding]] = {}
        self._expiry: list[tuple[float, str, str]] = []
        self._count = 0

    def __len__(self) -> int:
        """Live bindings."""
        return self._count

    def load(self, bindings: Iterable[Binding]) -> None:
        """Install bindings read from the store at start-up."""
        for binding in bindings:
            self._put(binding)

    def lookup(self, username: str, now: float) -> list[Binding]:
        """Live contacts of ``username``, highest q first (§16.6 target set)."""
        current = self._bindings.get(username, {})
        live = [b for b in current.values() if b.expires_at > now]
        return sorted(live, key=lambda b: -b.q)

    def expire(self, now: float) -> list[BindingChange]:
        """Remove bindings whose time is up; returns the removals to persist."""
        removed: list[BindingChange] = []
        heap = self._expiry
        while heap and heap[0][0] <= now:
            expires_at, aor, contact = heapq.heappop(heap)
            current = self._bindings.get(aor)
            binding = current.get(contact) if current else None
            # Refreshed bindings left stale heap entries behind: skip those.
            if current is not None and binding is not None and binding.expires_at == expires_at:
                self._drop(binding)
                removed.append((binding, True))
        return removed

    def next_expiry(self) -> float | None:
        """When :meth:`expire` next has work, if ever."""
        return self._expiry[0][0] if self._expiry else None

    def register(self, request: Request, source: str, now: float) -> RegisterResult:
        """Process a REGISTER per RFC 3261 §10.3 steps 1-8."""
        try:
            return self._register(request, source, now)
        except SipParseError as exc:
            return RegisterResult(make_response(request, exc.status, _short(exc.reason)), [])

    def _register(self, request: Request, source: str, now: float) -> RegisterResult:
        to_uri = request.to.uri
        if not isinstance(to_uri, SipUri) or to_uri.user is None:
            return self._reply(request, 404, "Not Found (To must be sip:user@domain)")
        if not self._serves(to_uri.host):
            return self._reply(request, 404, "Not Found (domain not served here)")
        username = to_uri.user_unescaped or ""

        denied = self._authenticate(request, username, now)
        if denied is not None:
            return RegisterResult(denied, [])

        contacts = request.contacts
        if not contacts:
            return self._ok(request, username, now)
        if any(c == "*" for c in contacts):
            return self._remove_all(request, username, now)
        return self._update(request, username, contacts, source, now)

    def _authenticate(self, request: Request, username: str, now: float) -> Response | None:
        """§10.3 steps 3-4 with digest (§22, RFC 7616): None when authorised."""
        result = self.authorize(request, now)
        if isinstance(result, Response):
            return result
        if result != username:
            return make_response(request, 403, "Forbidden (user may not register this address)")
        return None

    def authorize(self, request: Request, now: float, *, proxy: bool = False) -> Response | str:
        """Check ``request``'s digest credentials (§22, RFC 7616).

        Returns the authenticated username, or the response to send: a 401
        (407 with ``proxy``, for INVITE and other requests we route, §22.3)
        challenge, 403 for bad credentials, 400 for a mismatched digest-uri.
        """
        header = "Proxy-Authorization" if proxy else "Authorization"
        creds = None
        for value in request.headers.get_all(header):
            candidate = Credentials.parse(value)
            if candidate.realm == self.auth.realm:
                creds = candidate
                break
        if creds is None:
            return self._challenge(request, now, stale=False, proxy=proxy)
        user = self.users(creds.username)
        ha1 = (
            user.ha1(creds.algorithm)
            if user is not None and user.realm == self.auth.realm
            else None
        )
        if not _digest_uri_matches(creds.uri, request):
            return make_response(
                request, 400, "Bad Request (digest uri does not match the Request-URI)"
            )
        result = self.auth.verify(creds, request.method, ha1, now)
        if result is AuthResult.STALE:
            return self._challenge(request, now, stale=True, proxy=proxy)
        if result in (AuthResult.REPLAY, AuthResult.MISMATCH):
            return self._challenge(request, now, stale=False, proxy=proxy)
        if result is not AuthResult.OK:
            return make_response(request, 403, "Forbidden (bad credentials)")
        return creds.username

    def _challenge(self, request: Request, now: float, *, stale: bool, proxy: bool) -> Response:
        response = make_response(request, 407 if proxy else 401)
        header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        for challenge in self.auth.challenges(now, stale=stale):
            response.headers.add(header, str(challenge))
        return response

    def _update(
        self,
        request: Request,
        username: str,
        contacts: list[NameAddr | str],
        source: str,
        now: float,
    ) -> RegisterResult:
        header_expires = request.headers.get("Expires")
        default = (
            parse_uint(header_expires, "Expires", 2**32 - 1)
            if header_expires is not None
            else self.default_expires
        )
        current = dict(self._bindings.get(username, {}))
        call_id = request.call_id
        cseq = request.cseq.seq
        user_agent = request.headers.get("User-Agent", "") or ""
        changes: list[BindingChange] = []
        for contact in contacts:
            assert isinstance(contact, NameAddr)
            expires_param = contact.params.get("expires")
            expires = (
                parse_uint(expires_param, "Contact expires", 2**32 - 1)
                if expires_param is not None
                else default
            )
            if 0 < expires < self.min_expires:
                response = make_response(request, 423)
                response.headers.add("Min-Expires", str(self.min_expires))
                return RegisterResult(response, [])
            expires = min(expires, self.max_expires)
            key = str(contact.uri)
            existing = current.get(key)
            if existing is not None and existing.call_id == call_id and cseq <= existing.cseq:
                return self._reply(request, 400, "Bad Request (CSeq not higher than the binding's)")
            if expires == 0:
                if existing is not None:
                    del current[key]
                    changes.append((existing, True))
                continue
            binding = Binding(
                aor=username,
                contact=key,
                expires_at=now + expires,
                q=_q_value(contact),
                call_id=call_id,
                cseq=cseq,
                source=source,
                user_agent=user_agent,
            )
            current[key] = binding
            changes.append((binding, False))
        if len(current) > self.max_contacts:
            return self._reply(request, 503, "Service Unavailable (too many registered contacts)")
        for binding, remove in changes:
            if remove:
                self._drop(binding)
            else:
                self._put(binding)
        return RegisterResult(self._ok(request, username, now).response, changes)

    def _remove_all(self, request: Request, username: str, now: float) -> RegisterResult:
        """``Contact: *`` with ``Expires: 0`` (§10.2.2, §10.3 step 6)."""
        if len(request.contacts) != 1 or (request.headers.get("Expires") or "").strip() != "0":
            return self._reply(request, 400, "Bad Request (Contact: * needs Expires: 0 alone)")
        current = self._bindings.get(username, {})
        call_id, cseq = request.call_id, request.cseq.seq
        if any(b.call_id == call_id and cseq <= b.cseq for b in current.values()):
            return self._reply(request, 400, "Bad Request (CSeq not higher than the binding's)")
        changes: list[BindingChange] = [(b, True) for b in current.values()]
        for binding, _ in changes:
            self._drop(binding)
        return RegisterResult(self._ok(request, username, now).response, changes)

    def _ok(self, request: Request, username: str, now: float) -> RegisterResult:
        response = make_response(request, 200)
        for binding in self.lookup(username, now):
            response.headers.add("Contact", _format_contact(binding, now))
        response.headers.add("Date", _http_date(int(now)))
        return RegisterResult(response, [])

    def _reply(self, request: Request, status: int, reason: str) -> RegisterResult:
        return RegisterResult(make_response(request, status, reason), [])

    def _serves(self, host: str) -> bool:
        host = host.lower()
        if host == self.domain or host == "localhost":
            return True
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return True

    def _put(self, binding: Binding) -> None:
        current = self._bindings.setdefault(binding.aor, {})
        self._count += binding.contact not in current
        current[binding.contact] = binding
        heapq.heappush(self._expiry, (binding.expires_at, binding.aor, binding.contact))
        # Each refresh leaves its old entry behind until it would have expired;
        # rebuild when those outnumber the live ones, so memory follows bindings.
        if len(self._expiry) > 2 * len(self) + 1024:
            self._expiry = [
                (b.expires_at, b.aor, b.contact)
                for current in self._bindings.values()
                for b in current.values()
            ]
            heapq.heapify(self._expiry)

    def _drop(self, binding: Binding) -> None:
        current = self._bindings.get(binding.aor)
        if current is not None and current.pop(binding.contact, None) is not None:
            self._count -= 1
            if not current:
                del self._bindings[binding.aor]


@functools.lru_cache(maxsize=4)
def _http_date(second: int) -> str:
    """The Date header value (RFC 3261 §20.17), formatted once per second."""
    return formatdate(second, usegmt=True)


def _digest_uri_matches(digest_uri: str, request: Request) -> bool:
    """RFC 7616 §3.4.6: the digest-uri must be the Request-URI, compared as SIP URIs."""
    if digest_uri == request.uri_text:
        return True
    try:
        return uri_equivalent(parse_uri(digest_uri), request.uri)
    except SipParseError:
        return False


def _q_value(contact: NameAddr) -> float:
    text = contact.params.get("q")
    if text is None:
        return 1.0
    try:
        q = float(text)
    except ValueError:
        raise SipParseError(f"bad q value {text!r}") from None
    if not 0.0 <= q <= 1.0:
        raise SipParseError(f"q value out of range: {text}")
    return q


def _short(reason: str) -> str:
    return reason if len(reason) <= 80 else reason[:77] + "..."
