"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760).

Sans-I/O: the caller parses headers, looks up stored HA1 values and passes
``now`` explicitly.  The server side (:class:`DigestAuthenticator`) issues
self-validating nonces, so challenging needs no storage; only the nonce-counts
of nonces in use are remembered, in a bounded table.  MD5 and SHA-256 are
supported, with their ``-sess`` variants and ``qop`` ``auth`` / ``auth-int``
on the client side; the server offers SHA-256 then MD5 with ``qop=auth``.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import itertools
import math
import os
import re
import struct
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from voipcore.sip.errors import SipParseError
from voipcore.sip.headers import is_token, quote, read_quoted, unescape_pairs

#: Algorithms the server challenges with, in order (RFC 8760 §2.4: SHA-256 first).
ALGORITHMS: tuple[str, ...] = ("SHA-256", "MD5")

#: Every algorithm this module computes (RFC 7616 §3.4.2), by lower-case name.
_CANONICAL_ALGORITHMS = {
    name.lower(): name for name in ("MD5", "MD5-sess", "SHA-256", "SHA-256-sess")
}
_HASHES: dict[str, Callable[[bytes], hashlib._Hash]] = {
    "md5": hashlib.md5,
    "sha-256": hashlib.sha256,
}

_HEX = frozenset("0123456789abcdefABCDEF")

_NONCE_HEAD = struct.Struct(">qQ")  # issue time in milliseconds, salt
_NONCE_MAC_LEN = 16
_NONCE_LEN = _NONCE_HEAD.size + _NONCE_MAC_LEN

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_AUTH_PARAM = rf'({_TOKEN})[ \t]*=[ \t]*(?:"([^"\\]*(?:\\.[^"\\]*)*)"|({_TOKEN}))'
# The usual shape, ``scheme param, param...``: the scheme, then each parameter
# with what follows it up to the next one (a comma, or the end).
_AUTH_SCHEME_RE = re.compile(rf"({_TOKEN})[ \t]+")
_AUTH_PIECE_RE = re.compile(rf"([ \t]*{_AUTH_PARAM}[ \t]*(?:,|$))", re.DOTALL)


def _canonical_algorithm(name: str) -> str:
    """Known algorithm names in their registered spelling, others unchanged."""
    return _CANONICAL_ALGORITHMS.get(name.lower(), name)


def _is_sess(algorithm: str) -> bool:
    return algorithm.lower().endswith("-sess")


def _hash(algorithm: str, data: str | bytes) -> str:
    """``H(data)`` as lower-case hex for ``algorithm`` (RFC 7616 §3.4.2)."""
    base = algorithm.lower().removesuffix("-sess")
    try:
        new = _HASHES[base]
    except KeyError:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}") from None
    return new(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def compute_ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """``H(username:realm:password)``, the value a user database stores (RFC 7616 §3.4.2).

    For ``-sess`` algorithms this is still the stored secret; the per-session
    key ``H(HA1:nonce:cnonce)`` is derived by :func:`expected_response`.
    """
    return _hash(algorithm, f"{username}:{realm}:{password}")


def expected_response(
    ha1: str,
    method: str,
    uri: str,
    nonce: str,
    *,
    algorithm: str,
    qop: str | None,
    nc: str | None,
    cnonce: str | None,
    body: bytes = b"",
) -> str:
    """The ``response`` value for a request (RFC 7616 §3.4.1-3.4.3, RFC 3261 §22.4).

    ``ha1`` is :func:`compute_ha1`'s value; ``body`` only matters for
    ``qop=auth-int``.  Raises ``ValueError`` for an unsupported algorithm or
    qop, or when ``nc``/``cnonce`` are missing where they are needed.
    """
    if _is_sess(algorithm):
        if cnonce is None:
            raise ValueError(f"{algorithm} needs a cnonce")
        ha1 = _hash(algorithm, f"{ha1}:{nonce}:{cnonce}")
    if qop == "auth-int":
        ha2 = _hash(algorithm, f"{method}:{uri}:{_hash(algorithm, body)}")
    else:
        ha2 = _hash(algorithm, f"{method}:{uri}")
    if qop is None:
        # RFC 2069 compatibility, allowed by RFC 3261 §22.4.
        return _hash(algorithm, f"{ha1}:{nonce}:{ha2}")
    if qop not in ("auth", "auth-int"):
        raise ValueError(f"unsupported qop {qop!r}")
    if nc is None or cnonce is None:
        raise ValueError(f"qop={qop} needs nc and cnonce")
    return _hash(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """Split a challenge or credentials value into its scheme and parameters.

    Grammar of RFC 7235 §2.1 / RFC 3261 §25.1: ``scheme name=value, ...``
    where a value is a token or a quoted-string (commas allowed inside).
    Parameter names are lower-cased and quoted values unescaped; a repeated
    parameter is an error (RFC 7616 §3.3 allows each at most once).
    """
    text = value.strip()
    scheme = _AUTH_SCHEME_RE.match(text)
    if scheme is not None:
        rest = text[scheme.end() :]
        found = _AUTH_PIECE_RE.findall(rest)
        # The pieces cover the whole list only if nothing was skipped between them.
        if found and sum(len(piece[0]) for piece in found) == len(rest):
            params = {
                name.lower(): token or unescape_pairs(quoted) for _, name, quoted, token in found
            }
            if len(params) == len(found):
                return scheme.group(1), params
    return _parse_auth_params(value, text)


def _parse_auth_params(value: str, text: str) -> tuple[str, dict[str, str]]:
    """:func:`parse_auth_params` for any form, with the error that names the problem."""
    n = len(text)
    i = 0
    while i < n and text[i] not in " \t":
        i += 1
    scheme = text[:i]
    if not is_token(scheme):
        raise SipParseError(f"bad authentication scheme in {value!r}")
    params: dict[str, str] = {}
    expect_comma = False
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            return scheme, params
        if text[i] == ",":
            # Empty list elements are allowed (RFC 7230 §7 #rule).
            i += 1
            expect_comma = False
            continue
        if expect_comma:
            raise SipParseError(f"expected ',' between parameters at {text[i:]!r}")
        j = i
        while j < n and text[j] not in "=, \t":
            j += 1
        name = text[i:j]
        if not is_token(name):
            raise SipParseError(f"bad parameter name {name!r} in {value!r}")
        i = j
        while i < n and text[i] in " \t":
            i += 1
        if i >= n or text[i] != "=":
            raise SipParseError(f"parameter {name!r} has no value")
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            param, i = read_quoted(text, i)
        else:
            j = i
            while j < n and text[j] not in ", \t":
                j += 1
            param = text[i:j]
            if not is_token(param):
                raise SipParseError(f"bad value for parameter {name!r}")
            i = j
        key = name.lower()
        if key in params:
            raise SipParseError(f"parameter {key!r} appears twice")
        params[key] = param
        expect_comma = True


def _parse_digest(value: str) -> dict[str, str]:
    scheme, params = parse_auth_params(value)
    if scheme.lower() != "digest":
        raise SipParseError(f"authentication scheme {scheme!r} is not Digest")
    return params


def _require(params: dict[str, str], name: str) -> str:
    try:
        return params[name]
    except KeyError:
        raise SipParseError(f"Digest parameter {name!r} is missing") from None


def _token_or_quoted(text: str) -> str:
    return text if is_token(text) else quote(text)


@dataclass(frozen=True, slots=True)
class Challenge:
    """A ``WWW-Authenticate`` / ``Proxy-Authenticate`` Digest value (RFC 7616 §3.3)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    #: Offered qop options; empty for an RFC 2069 style challenge.
    qop: tuple[str, ...] = ("auth",)
    opaque: str | None = None
    #: The previous nonce was valid but expired: retry without asking the user.
    stale: bool = False

    @classmethod
    def parse(cls, value: str) -> Challenge:
        """Parse a header value; unknown parameters are ignored (RFC 7616 §3.3)."""
        params = _parse_digest(value)
        qop: tuple[str, ...] = ()
        if "qop" in params:
            qop = tuple(q.strip() for q in params["qop"].split(",") if q.strip())
            if not qop or not all(is_token(q) for q in qop):
                raise SipParseError(f"bad qop options {params['qop']!r}")
        return cls(
            realm=_require(params, "realm"),
            nonce=_require(params, "nonce"),
            algorithm=_canonical_algorithm(params.get("algorithm", "MD5")),
            qop=qop,
            opaque=params.get("opaque"),
            # Anything but a case-insensitive "true" means false (RFC 7616 §3.3).
            stale=params.get("stale", "").lower() == "true",
        )

    def __str__(self) -> str:
        parts = [f"realm={quote(self.realm)}", f"nonce={quote(self.nonce)}"]
        if self.opaque is not None:
            parts.append(f"opaque={quote(self.opaque)}")
        if self.stale:
            parts.append("stale=true")
        parts.append(f"algorithm={_token_or_quoted(self.algorithm)}")
        if self.qop:
            parts.append(f"qop={quote(','.join(self.qop))}")
        return "Digest " + ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Credentials:
    """An ``Authorization`` / ``Proxy-Authorization`` Digest value (RFC 7616 §3.4)."""

    username: str
    realm: str
    nonce: str
    #: The digest-uri: the Request-URI as the client sent it (RFC 3261 §22.4).
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    #: Nonce-count, eight hex digits; present with ``qop``.
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None

    @classmethod
    def parse(cls, value: str) -> Credentials:
        """Parse a header value; ``qop`` requires ``nc`` and ``cnonce`` (RFC 7616 §3.4)."""
        params = _parse_digest(value)
        qop = params.get("qop")
        nc = params.get("nc")
        cnonce = params.get("cnonce")
        if qop is not None and (nc is None or cnonce is None):
            raise SipParseError(f"qop={qop} without nc and cnonce")
        if nc is not None and _parse_nc(nc) is None:
            raise SipParseError(f"nonce-count {nc!r} is not 8 hex digits")
        return cls(
            username=_require(params, "username"),
            realm=_require(params, "realm"),
            nonce=_require(params, "nonce"),
            uri=_require(params, "uri"),
            response=_require(params, "response"),
            algorithm=_canonical_algorithm(params.get("algorithm", "MD5")),
            qop=qop,
            nc=nc,
            cnonce=cnonce,
            opaque=params.get("opaque"),
        )

    def __str__(self) -> str:
        parts = [
            f"username={quote(self.username)}",
            f"realm={quote(self.realm)}",
            f"nonce={quote(self.nonce)}",
            f"uri={quote(self.uri)}",
            f"response={quote(self.response)}",
            f"algorithm={_token_or_quoted(self.algorithm)}",
        ]
        if self.cnonce is not None:
            parts.append(f"cnonce={quote(self.cnonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={quote(self.opaque)}")
        if self.qop is not None:
            parts.append(f"qop={_token_or_quoted(self.qop)}")
        if self.nc is not None:
            parts.append(f"nc={_token_or_quoted(self.nc)}")
        return "Digest " + ", ".join(parts)


def answer_challenge(
    challenge: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int = 1,
    body: bytes = b"",
) -> Credentials:
    """Build the credentials answering ``challenge`` (RFC 3261 §22.2-22.3, RFC 7616 §3.4).

    Prefers ``qop=auth``, falls back to ``auth-int`` (hashing ``body``), and
    sends no qop to an RFC 2069 style challenge.  ``cnonce`` should come from
    ``secrets``; ``nc`` counts requests sent with this nonce.  Raises
    ``ValueError`` when the challenge's algorithm or qop is unsupported.
    """
    qop: str | None = None
    if challenge.qop:
        qop = next((q for q in ("auth", "auth-int") if q in challenge.qop), None)
        if qop is None:
            raise ValueError(f"no supported qop in {challenge.qop!r}")
    nc_text = f"{nc:08x}" if qop is not None else None
    sent_cnonce = cnonce if qop is not None or _is_sess(challenge.algorithm) else None
    ha1 = compute_ha1(username, challenge.realm, password, challenge.algorithm)
    response = expected_response(
        ha1,
        method,
        uri,
        challenge.nonce,
        algorithm=challenge.algorithm,
        qop=qop,
        nc=nc_text,
        cnonce=sent_cnonce,
        body=body,
    )
    return Credentials(
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=response,
        algorithm=challenge.algorithm,
        qop=qop,
        nc=nc_text,
        cnonce=sent_cnonce,
        opaque=challenge.opaque,
    )


class AuthResult(enum.Enum):
    """Outcome of :meth:`DigestAuthenticator.verify` and what the server answers."""

    #: Authenticated.
    OK = "ok"
    #: Right password, but the nonce expired or is no longer tracked: challenge
    #: again with ``stale=true`` so the client retries silently (RFC 7616 §3.3).
    STALE = "stale"
    #: Forged nonce, wrong response or unknown user: 403 (RFC 3261 §22.4).
    INVALID = "invalid"
    #: Nonce-count did not increase: a replayed request (RFC 7616 §3.4).
    REPLAY = "replay"
    #: Realm, digest-uri, algorithm or qop is not what was challenged.
    MISMATCH = "mismatch"


class DigestAuthenticator:
    """Server side: stateless HMAC nonces + a bounded table of nonce-counts.

    A nonce is ``base64url(issued_ms | salt | HMAC-SHA256(secret, issued_ms |
    salt | realm)[:16])``, the salt a counter that makes each nonce unique, so
    any nonce this server issued (with this secret) can be checked and dated
    without storage (RFC 7616 §3.3 and §5.4).  The last nonce-count of each
    nonce used with ``qop=auth`` is kept in an LRU table of at most
    ``max_tracked_nonces`` entries; a nonce evicted from it while still fresh,
    or any older one, is answered ``STALE`` rather than trusted again, so
    eviction never opens a replay window.
    """

    __slots__ = (
        "realm",
        "algorithms",
        "_ttl_ms",
        "_max_tracked",
        "_counts",
        "_evicted_ms",
        "_realm_bytes",
        "_salts",
        "_inner",
        "_outer",
    )

    def __init__(
        self,
        realm: str,
        secret: bytes,
        *,
        nonce_ttl: float = 300.0,
        max_tracked_nonces: int = 100_000,
        algorithms: Sequence[str] = ALGORITHMS,
    ) -> None:
        if nonce_ttl <= 0 or max_tracked_nonces < 1:
            raise ValueError("nonce_ttl and max_tracked_nonces must be positive")
        unknown = [a for a in algorithms if a not in ALGORITHMS]
        if unknown or not algorithms:
            raise ValueError(f"algorithms must be some of {', '.join(ALGORITHMS)}")
        self.realm = realm
        #: Offered in this order of preference (RFC 8760 §2.4).
        self.algorithms = tuple(algorithms)
        self._realm_bytes = realm.encode("utf-8")
        # Nonces need to be unique, not unpredictable (the MAC makes them
        # unforgeable): a counter from a random start avoids a getrandom() call
        # per nonce, and the start keeps restarts from reusing values.
        self._salts = itertools.count(int.from_bytes(os.urandom(7)))
        # HMAC (RFC 2104) with its two keyed pads hashed once, not per nonce.
        key = secret if len(secret) <= 64 else hashlib.sha256(secret).digest()
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key.ljust(64, b"\0")))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key.ljust(64, b"\0")))
        self._ttl_ms = nonce_ttl * 1000.0
        self._max_tracked = max_tracked_nonces
        #: nonce -> (issue time in ms, last nonce-count), least recently used first.
        self._counts: OrderedDict[str, tuple[int, int]] = OrderedDict()
        #: Newest issue time among evicted entries; older nonces cannot be tracked.
        self._evicted_ms: int | None = None

    def challenges(self, now: float, *, stale: bool = False) -> list[Challenge]:
        """One challenge per offered algorithm, most preferred first, each with a fresh nonce."""
        return [
            Challenge(self.realm, self._new_nonce(now), algorithm, ("auth",), None, stale)
            for algorithm in self.algorithms
        ]

    def verify(
        self,
        creds: Credentials,
        method: str,
        ha1: str | None,
        now: float,
        *,
        request_uri: str | None = None,
    ) -> AuthResult:
        """Check ``creds`` for a request (RFC 3261 §22.4, RFC 7616 §3.4).

        ``ha1`` is the stored :func:`compute_ha1` value for ``creds.username``
        and ``creds.algorithm``, or ``None`` for an unknown user.  With
        ``request_uri`` the digest-uri must equal it.
        """
        if (
            creds.realm != self.realm
            or creds.algorithm not in self.algorithms
            or creds.qop not in (None, "auth")
            or (request_uri is not None and creds.uri != request_uri)
        ):
            return AuthResult.MISMATCH
        issued_ms = self._check_nonce(creds.nonce)
        if issued_ms is None or ha1 is None:
            return AuthResult.INVALID
        nc = None
        if creds.qop is not None:
            nc = _parse_nc(creds.nc)
            if nc is None or creds.cnonce is None:
                return AuthResult.INVALID
        expected = expected_response(
            ha1,
            method,
            creds.uri,
            creds.nonce,
            algorithm=creds.algorithm,
            qop=creds.qop,
            nc=creds.nc,
            cnonce=creds.cnonce,
        )
        if not hmac.compare_digest(expected.encode(), creds.response.lower().encode()):
            return AuthResult.INVALID
        if not 0 <= now * 1000.0 - issued_ms <= self._ttl_ms:
            return AuthResult.STALE
        if nc is None:
            return AuthResult.OK
        return self._advance_count(creds.nonce, issued_ms, nc)

    def _new_nonce(self, now: float) -> str:
        head = _NONCE_HEAD.pack(math.floor(now * 1000.0), next(self._salts))
        return _b64(head + self._mac(head))

    def _mac(self, head: bytes) -> bytes:
        """HMAC-SHA256(secret, head | realm), truncated."""
        inner = self._inner.copy()
        inner.update(head + self._realm_bytes)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:_NONCE_MAC_LEN]

    def _check_nonce(self, nonce: str) -> int | None:
        """The issue time of a nonce this server made, or ``None`` if forged."""
        try:
            raw = base64.urlsafe_b64decode(nonce.encode("ascii") + b"=")
        except (UnicodeEncodeError, binascii.Error):
            return None
        # Re-encoding rejects non-canonical spellings of the same bytes.
        if len(raw) != _NONCE_LEN or _b64(raw) != nonce:
            return None
        head, mac = raw[:-_NONCE_MAC_LEN], raw[-_NONCE_MAC_LEN:]
        if not hmac.compare_digest(mac, self._mac(head)):
            return None
        issued_ms: int = _NONCE_HEAD.unpack_from(head)[0]
        return issued_ms

    def _advance_count(self, nonce: str, issued_ms: int, nc: int) -> AuthResult:
        entry = self._counts.get(nonce)
        if entry is None:
            if self._evicted_ms is not None and issued_ms <= self._evicted_ms:
                return AuthResult.STALE
        elif nc <= entry[1]:
            return AuthResult.REPLAY
        self._counts[nonce] = (issued_ms, nc)
        self._counts.move_to_end(nonce)
        while len(self._counts) > self._max_tracked:
            _, (evicted_ms, _) = self._counts.popitem(last=False)
            if self._evicted_ms is None or evicted_ms > self._evicted_ms:
                self._evicted_ms = evicted_ms
        return AuthResult.OK


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _parse_nc(nc: str | None) -> int | None:
    if nc is None or len(nc) != 8 or not set(nc) <= _HEX:
        return None
    return int(nc, 16)
