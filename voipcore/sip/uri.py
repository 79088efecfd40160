"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966) and name-addr (§20.10)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import unquote

from voipcore.sip.errors import SipParseError
from voipcore.sip.headers import format_params, parse_params, quote, read_quoted

_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")
# RFC 3261 §25.1 user / password characters (unreserved, escaped, user-unreserved).
_USER_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    "-_.!~*'()%&=+$,;?/"
)
_PASSWORD_CHARS = (_USER_CHARS - frozenset(";?/")) | frozenset(":")
_PARAM_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    "-_.!~*'()%[]/:&+$"
)
_HEADER_CHARS = _PARAM_CHARS | frozenset("?=")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")


def _unescape(text: str) -> str:
    if "%" not in text:
        return text
    for i, c in enumerate(text):
        if c == "%":
            hexpart = text[i + 1 : i + 3]
            if len(hexpart) != 2 or any(h not in "0123456789abcdefABCDEF" for h in hexpart):
                raise SipParseError(f"bad escape sequence in {text!r}")
    return unquote(text)


def parse_host(text: str) -> str:
    """Validate a host (hostname, IPv4 address or ``[IPv6]`` reference)."""
    if not text:
        raise SipParseError("empty host")
    if text[0] == "[":
        if text[-1] != "]":
            raise SipParseError(f"bad IPv6 reference {text!r}")
        try:
            ipaddress.IPv6Address(text[1:-1])
        except ValueError as exc:
            raise SipParseError(f"bad IPv6 address {text!r}") from exc
        return text
    if not all(c in _HOST_CHARS for c in text):
        raise SipParseError(f"bad character in host {text!r}")
    return text


def parse_port(text: str) -> int:
    """Validate a port number (1-5 digits, at most 65535)."""
    if not text.isdigit() or len(text) > 5 or int(text) > 65535:
        raise SipParseError(f"bad port {text!r}")
    return int(text)


@dataclass(slots=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI, RFC 3261 §19.1.1."""

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    scheme: str = "sip"
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(format_params(self.params))
        if self.headers:
            out.append("?" + "&".join(f"{k}={v}" for k, v in self.headers.items()))
        return "".join(out)

    @property
    def transport(self) -> str:
        """The transport parameter, upper-cased; TLS for ``sips``, else UDP."""
        value = self.params.get("transport")
        if value:
            return value.upper()
        return "TLS" if self.scheme == "sips" else "UDP"

    @property
    def user_unescaped(self) -> str | None:
        """The user part with %HH escapes decoded, for comparisons (§19.1.4)."""
        return None if self.user is None else _unescape(self.user)

    @property
    def address_of_record(self) -> str:
        """``scheme:user@host`` with the host lower-cased: the key of a registration."""
        user = self.user_unescaped
        host = self.host.lower()
        return f"{self.scheme}:{user}@{host}" if user is not None else f"{self.scheme}:{host}"


@dataclass(slots=True)
class TelUri:
    """A ``tel:`` URI, RFC 3966."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict)
    scheme: str = "tel"

    def __str__(self) -> str:
        return f"tel:{self.number}{format_params(self.params)}"


@dataclass(slots=True)
class AbsoluteUri:
    """A URI of another scheme, kept as opaque text (RFC 3261 §25.1 absoluteURI)."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


Uri = SipUri | TelUri | AbsoluteUri


def parse_uri(text: str) -> Uri:
    """Parse a URI; SIP/SIPS/tel are parsed fully, other schemes kept opaque."""
    colon = text.find(":")
    if colon <= 0:
        raise SipParseError(f"URI without scheme: {text!r}")
    scheme = text[:colon].lower()
    if not text[0].isalpha() or not all(c in _SCHEME_CHARS for c in scheme):
        raise SipParseError(f"bad URI scheme in {text!r}")
    rest = text[colon + 1 :]
    if any(c in " \t\r\n<>\"" for c in rest):
        raise SipParseError(f"illegal character in URI {text!r}")
    if scheme in ("sip", "sips"):
        return _parse_sip(scheme, rest)
    if scheme == "tel":
        return _parse_tel(rest)
    if not rest:
        raise SipParseError(f"empty URI {text!r}")
    return AbsoluteUri(scheme, rest)


def _parse_sip(scheme: str, rest: str) -> SipUri:
    at = rest.find("@")
    qmark = rest.find("?")
    user = password = None
    if at != -1 and (qmark == -1 or at < qmark):
        userinfo, rest = rest[:at], rest[at + 1 :]
        if ":" in userinfo:
            user, password = userinfo.split(":", 1)
            if not all(c in _PASSWORD_CHARS for c in password):
                raise SipParseError(f"bad character in URI password {password!r}")
        else:
            user = userinfo
        if not user or not all(c in _USER_CHARS for c in user):
            raise SipParseError(f"bad URI user part {user!r}")
        _unescape(user)
    headers: dict[str, str] = {}
    qmark = rest.find("?")
    if qmark != -1:
        for item in rest[qmark + 1 :].split("&"):
            name, sep, value = item.partition("=")
            if not name or not sep or not all(c in _HEADER_CHARS for c in item):
                raise SipParseError(f"bad URI header {item!r}")
            headers[name] = value
        rest = rest[:qmark]
    semi = rest.find(";")
    params: dict[str, str | None] = {}
    if semi != -1:
        ptext = rest[semi:]
        if not all(c in _PARAM_CHARS or c in ";=" for c in ptext):
            raise SipParseError(f"bad character in URI parameters {ptext!r}")
        params = parse_params(ptext)
        rest = rest[:semi]
    port: int | None = None
    if rest.startswith("["):
        close = rest.find("]")
        if close == -1:
            raise SipParseError(f"bad IPv6 reference in {rest!r}")
        host, tail = rest[: close + 1], rest[close + 1 :]
        if tail:
            if tail[0] != ":":
                raise SipParseError(f"junk after IPv6 reference {tail!r}")
            port = parse_port(tail[1:])
    else:
        host, sep, port_text = rest.partition(":")
        if sep:
            port = parse_port(port_text)
    return SipUri(
        host=parse_host(host),
        user=user,
        password=password,
        port=port,
        scheme=scheme,
        params=params,
        headers=headers,
    )


def _parse_tel(rest: str) -> TelUri:
    number, _, ptext = rest.partition(";")
    if not number or not all(c in "0123456789+-.()*#ABCDabcdpw" for c in number):
        raise SipParseError(f"bad tel URI number {number!r}")
    return TelUri(number, parse_params(";" + ptext) if ptext else {})


@dataclass(slots=True)
class NameAddr:
    """A From/To/Contact/Route value: optional display name, URI, header params (§20.10)."""

    uri: Uri
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (§19.3)."""
        return self.params.get("tag")

    def __str__(self) -> str:
        name = ""
        if self.display_name is not None:
            name = quote(self.display_name) + " "
        return f"{name}<{self.uri}>{format_params(self.params)}"


def parse_name_addr(text: str) -> NameAddr:
    """Parse ``name-addr`` or ``addr-spec`` followed by header parameters.

    In the ``addr-spec`` form (no angle brackets) everything after the first
    ``;`` is a header parameter, never a URI parameter (RFC 3261 §20.10).
    """
    text = text.strip()
    if not text:
        raise SipParseError("empty address")
    display: str | None = None
    if text[0] == '"':
        display, end = read_quoted(text, 0)
        text = text[end:].lstrip()
        if not text.startswith("<"):
            raise SipParseError("display name must be followed by <URI>")
    lt = text.find("<")
    if lt != -1:
        if display is None and lt > 0:
            display = " ".join(text[:lt].split())
            if any(c in display for c in '<>"@;,'):
                raise SipParseError(f"bad unquoted display name {display!r}")
        gt = text.find(">", lt)
        if gt == -1:
            raise SipParseError(f"unterminated <URI> in {text!r}")
        uri = parse_uri(text[lt + 1 : gt].strip())
        return NameAddr(uri, display, parse_params(text[gt + 1 :]))
    if ">" in text:
        raise SipParseError(f"stray '>' in {text!r}")
    semi = text.find(";")
    uri_text, ptext = (text, "") if semi == -1 else (text[:semi], text[semi:])
    if any(c in uri_text for c in " \t,?"):
        raise SipParseError(f"URI with spaces, commas or '?' must be in <>: {text!r}")
    return NameAddr(parse_uri(uri_text.strip()), None, parse_params(ptext))
