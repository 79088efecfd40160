"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966) and name-addr (§20.10)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from voipcore.sip.errors import SipParseError
from voipcore.sip.headers import (
    PLAIN_PARAMS,
    format_params,
    parse_params,
    quote,
    read_quoted,
    split_plain_params,
)

# RFC 3261 §25.1 character classes, as compiled expressions (hot path).
_HOST_RE = re.compile(r"[A-Za-z0-9\-.]+")
# user = 1*( unreserved / escaped / user-unreserved )
_USER_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()%&=+$,;?/]+")
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," ); ':' tolerated.
_PASSWORD_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()%&=+$,:]*")
# uri-parameters: ";" pname ["=" pvalue], paramchar = param-unreserved / unreserved / escaped
_PARAMS_RE = re.compile(r"(?:;[A-Za-z0-9\-_.!~*'()%\[\]/:&+$=]*)+")
# headers: hname "=" hvalue joined by "&"; hnv-unreserved / unreserved / escaped
_HEADER_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()%\[\]/?:+$]+=[A-Za-z0-9\-_.!~*'()%\[\]/?:+$]*")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_ILLEGAL_RE = re.compile(r"[\s<>\"]")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# tel: global-number-digits / local-number-digits with visual separators (RFC 3966 §3).
_TEL_RE = re.compile(r"\+?[0-9A-Fa-f*#\-.()pw]*[0-9A-Fa-f*#][0-9A-Fa-f*#\-.()pw]*")
# display-name = *(token LWS) / quoted-string; the unquoted form is tokens and LWS.
_TOKENS_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+(?:[ \t]+[A-Za-z0-9\-.!%*_+`'~]+)*")
# The common shape, recognised in one step: [user@]host[:port][;params] with no
# password, no escapes, no IPv6 and no headers.  Anything else takes the general path.
_SIP_FAST = (
    r"(?:([A-Za-z0-9\-_.!~*'()&=+$,]+)@)?([A-Za-z0-9\-.]+)(?::(?P<port>[0-9]{1,5}))?"
    r"((?:;[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+(?:=[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+)?)*)"
)
_SIP_FAST_RE = re.compile(_SIP_FAST)
# The common name-addr likewise: a quoted (no escapes) or token display name,
# ``<sip:...>`` in the fast form above and plain generic parameters.
_NAME_ADDR_FAST_RE = re.compile(
    r'(?:"([^"\\]*)"[ \t]*|([A-Za-z0-9\-.!%*_+`\'~]+(?:[ \t]+[A-Za-z0-9\-.!%*_+`\'~]+)*)[ \t]*)?'
    rf"<(sips?):{_SIP_FAST}>({PLAIN_PARAMS})"
)


def _unescape(text: str) -> str:
    if "%" not in text:
        return text
    if _BAD_ESCAPE_RE.search(text):
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
    if not _HOST_RE.fullmatch(text):
        raise SipParseError(f"bad character in host {text!r}")
    return text


def parse_port(text: str) -> int:
    """Validate a port number (1-5 digits, at most 65535)."""
    if not text.isdigit() or not text.isascii() or len(text) > 5 or int(text) > 65535:
        raise SipParseError(f"bad port {text!r}")
    return int(text)


def _split_uri_params(ptext: str) -> dict[str, str | None]:
    # ptext is known to be well formed: ';'-separated pname[=pvalue].
    params: dict[str, str | None] = {}
    for part in ptext[1:].split(";"):
        name, sep, value = part.partition("=")
        params[name.lower()] = value if sep else None
    return params


def _parse_uri_params(ptext: str) -> dict[str, str | None]:
    """uri-parameters (§19.1.1, §25.1): ``;pname[=pvalue]``, both 1*paramchar."""
    if not _PARAMS_RE.fullmatch(ptext):
        raise SipParseError(f"bad URI parameters {ptext!r}")
    for part in ptext[1:].split(";"):
        name, sep, value = part.partition("=")
        if not name or (sep and not value) or "=" in value:
            raise SipParseError(f"bad URI parameter {part!r} in {ptext!r}")
        _unescape(name)
        _unescape(value)
    return _split_uri_params(ptext)


def _format_uri_params(params: dict[str, str | None]) -> str:
    # URI parameters are kept as written (escapes included): never quoted.
    if not params:
        return ""
    return "".join([f";{k}" if v is None else f";{k}={v}" for k, v in params.items()])


@dataclass(slots=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI, RFC 3261 §19.1.1.

    ``user``, ``password``, parameter names and values and ``headers`` are kept
    as written, %HH escapes included, so a URI re-serializes octet for octet;
    :attr:`user_unescaped` and :attr:`unescaped_params` give the decoded forms
    that comparisons use (§19.1.4).
    """

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    scheme: str = "sip"
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        user = self.user
        if user is not None:
            password = "" if self.password is None else ":" + self.password
            user = f"{user}{password}@"
        port = "" if self.port is None else f":{self.port}"
        text = f"{self.scheme}:{user or ''}{self.host}{port}{_format_uri_params(self.params)}"
        if self.headers:
            text += "?" + "&".join(f"{k}={v}" for k, v in self.headers.items())
        return text

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
    def unescaped_params(self) -> dict[str, str | None]:
        """URI parameters with %HH escapes decoded once, names lower-cased (§19.1.4).

        RFC 4475 §3.1.1.3: ``;%6C%72`` is the ``lr`` parameter, and
        ``n%61me=v%61lue%25%34%31`` is ``name=value%41`` (decoding is never recursive).
        """
        return {
            _unescape(k).lower(): None if v is None else _unescape(v)
            for k, v in self.params.items()
        }

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
        return f"tel:{self.number}{_format_uri_params(self.params)}"


@dataclass(slots=True)
class AbsoluteUri:
    """A URI of another scheme, kept as opaque text (RFC 3261 §25.1 absoluteURI)."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


Uri = SipUri | TelUri | AbsoluteUri


def parse_uri(text: str) -> Uri:
    """Parse a URI; SIP/SIPS/tel are parsed fully, other schemes kept opaque.

    The scheme is compared case-insensitively and stored lower-cased.
    """
    colon = text.find(":")
    if colon <= 0:
        raise SipParseError(f"URI without scheme: {text!r}")
    scheme_text = text[:colon]
    if not _SCHEME_RE.fullmatch(scheme_text):
        raise SipParseError(f"bad URI scheme {scheme_text!r} in {text!r}")
    scheme = scheme_text.lower()
    rest = text[colon + 1 :]
    if _ILLEGAL_RE.search(rest):
        raise SipParseError(f"whitespace, quote or angle bracket inside URI {text!r}")
    if scheme == "sip" or scheme == "sips":
        return _parse_sip(scheme, rest)
    if scheme == "tel":
        return _parse_tel(rest)
    if not rest:
        raise SipParseError(f"empty URI {text!r}")
    return AbsoluteUri(scheme, rest)


def _parse_sip(scheme: str, rest: str) -> SipUri:
    fast = _SIP_FAST_RE.fullmatch(rest)
    if fast is not None:
        return _fast_sip(scheme, *fast.groups())
    return _parse_sip_general(scheme, rest)


def _fast_sip(
    scheme: str, user: str | None, host: str, port_text: str | None, ptext: str
) -> SipUri:
    """The SIP URI of a :data:`_SIP_FAST` match."""
    port = _fast_port(port_text)
    return SipUri(host, user, None, port, scheme, _split_uri_params(ptext) if ptext else {})


def _fast_port(text: str | None) -> int | None:
    """The port of a :data:`_SIP_FAST` match (1 to 5 digits), which must fit 16 bits."""
    if text is None:
        return None
    port = int(text)
    if port > 65535:
        raise SipParseError(f"bad port {text!r}")
    return port


def _parse_sip_general(scheme: str, rest: str) -> SipUri:
    # '@' cannot appear unescaped after the userinfo (not in host, params or
    # headers), while the user part may hold ';', '?' and '/' (RFC 4475
    # §3.1.1.2, §3.1.1.9): the first '@' ends the userinfo.
    user = password = None
    at = rest.find("@")
    if at != -1:
        userinfo, rest = rest[:at], rest[at + 1 :]
        colon = userinfo.find(":")
        if colon != -1:
            user, password = userinfo[:colon], userinfo[colon + 1 :]
            if not _PASSWORD_RE.fullmatch(password):
                raise SipParseError(f"bad character in URI password {password!r}")
            _unescape(password)
        else:
            user = userinfo
        if not user or not _USER_RE.fullmatch(user):
            raise SipParseError(f"bad URI user part {user!r}")
        _unescape(user)
    headers: dict[str, str] = {}
    qmark = rest.find("?")
    if qmark != -1:
        for item in rest[qmark + 1 :].split("&"):
            if not _HEADER_RE.fullmatch(item):
                raise SipParseError(f"bad URI header {item!r}")
            name, _, value = item.partition("=")
            _unescape(value)
            headers[name] = value
        rest = rest[:qmark]
    semi = rest.find(";")
    params: dict[str, str | None] = {}
    if semi != -1:
        ptext = rest[semi:]
        params = _parse_uri_params(ptext)
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
    number, sep, ptext = rest.partition(";")
    if not _TEL_RE.fullmatch(number):
        raise SipParseError(f"bad tel URI number {number!r}")
    return TelUri(number, _parse_uri_params(";" + ptext) if sep else {})


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
    ``;`` is a header parameter, never a URI parameter, and a URI holding a
    comma, question mark or semicolon must be in ``<>`` (RFC 3261 §20.10).
    Whitespace is not allowed inside ``<>`` (LAQUOT/RAQUOT, §25.1).
    """
    fast = _NAME_ADDR_FAST_RE.fullmatch(text)
    if fast is not None:
        return _fast_name_addr(*fast.groups())
    text = text.strip()
    if not text:
        raise SipParseError("empty address")
    display: str | None = None
    if text[0] == '"':
        display, end = read_quoted(text, 0)
        text = text[end:].lstrip()
        if not text.startswith("<"):
            raise SipParseError(f"display name must be followed by <URI>, got {text!r}")
    lt = text.find("<")
    if lt != -1:
        if display is None and lt > 0:
            raw = text[:lt].rstrip()
            if not _TOKENS_RE.fullmatch(raw):
                raise SipParseError(
                    f"display name {raw!r} has characters that need a quoted string"
                )
            display = " ".join(raw.split())
        gt = text.find(">", lt)
        if gt == -1:
            raise SipParseError(f"unterminated <URI> in {text!r}")
        inner = text[lt + 1 : gt]
        if inner != inner.strip():
            raise SipParseError(f"whitespace inside <> around the URI in {text!r}")
        return NameAddr(parse_uri(inner), display, parse_params(text[gt + 1 :]))
    if ">" in text:
        raise SipParseError(f"stray '>' in {text!r}")
    semi = text.find(";")
    uri_text, ptext = (text, "") if semi == -1 else (text[:semi].rstrip(" \t"), text[semi:])
    for c in " \t,?":
        if c in uri_text:
            raise SipParseError(
                f"a URI containing {c!r} must be enclosed in <> (RFC 3261 §20.10): {text!r}"
            )
    return NameAddr(parse_uri(uri_text), None, parse_params(ptext))


def _fast_name_addr(
    quoted: str | None,
    tokens: str | None,
    scheme: str,
    user: str | None,
    host: str,
    port_text: str | None,
    uri_params: str,
    params: str,
) -> NameAddr:
    """The name-addr of a :data:`_NAME_ADDR_FAST_RE` match."""
    display = quoted if tokens is None else " ".join(tokens.split())
    uri = _fast_sip(scheme, user, host, port_text, uri_params)
    return NameAddr(uri, display, split_plain_params(params))


def check_name_addr(text: str) -> None:
    """Raise :class:`SipParseError` where :func:`parse_name_addr` would, building nothing.

    The usual form is recognised in one step, so validating an address that
    is never used costs little.
    """
    fast = _NAME_ADDR_FAST_RE.fullmatch(text)
    if fast is None:
        parse_name_addr(text)
    else:
        _fast_port(fast.group("port"))


#: Parameters that make two SIP URIs differ even when only one has them (§19.1.4).
_SIGNIFICANT_PARAMS = ("user", "ttl", "method", "maddr")


def uri_equivalent(a: Uri, b: Uri) -> bool:
    """SIP URI comparison per RFC 3261 §19.1.4; other schemes compare as text.

    User parts compare case-sensitively after unescaping, hosts and parameter
    values case-insensitively; a parameter present in only one URI is ignored
    unless it is user, ttl, method or maddr; URI headers must all match.
    """
    if not isinstance(a, SipUri) or not isinstance(b, SipUri):
        return str(a) == str(b)
    if (
        a.scheme != b.scheme
        or a.user_unescaped != b.user_unescaped
        or a.password != b.password
        or a.host.lower() != b.host.lower()
        or a.port != b.port
    ):
        return False
    for name in a.params.keys() | b.params.keys():
        in_a, in_b = name in a.params, name in b.params
        if in_a and in_b:
            if (a.params[name] or "").lower() != (b.params[name] or "").lower():
                return False
        elif name in _SIGNIFICANT_PARAMS:
            return False
    return a.headers == b.headers
