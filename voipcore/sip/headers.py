"""SIP header collection and the small grammar pieces shared by header parsers.

RFC 3261 §7.3: header names are case-insensitive, a header may appear several
times, and list-valued headers may also carry several comma-separated values
in one line; the order of same-named headers is significant (Via, Route).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from voipcore.sip.errors import SipParseError

#: Compact forms, RFC 3261 §7.3.3 and §20 (plus the registered RFC 3265/3515/4028 ones).
COMPACT_FORMS: dict[str, str] = {
    "v": "Via",
    "f": "From",
    "t": "To",
    "i": "Call-ID",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "o": "Event",
    "u": "Allow-Events",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
}

_CANONICAL: dict[str, str] = {
    name.lower(): name
    for name in (
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Authentication-Info",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Error-Info",
        "Expires",
        "From",
        "In-Reply-To",
        "Max-Forwards",
        "Min-Expires",
        "MIME-Version",
        "Organization",
        "Priority",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "Reason",
        "Record-Route",
        "Reply-To",
        "Require",
        "Retry-After",
        "Route",
        "Server",
        "Subject",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
        "Event",
        "Allow-Events",
        "Refer-To",
        "Referred-By",
        "Session-Expires",
    )
}

#: Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1); the
#: authentication headers are not: their commas separate parameters.
LIST_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "alert-info",
        "allow",
        "call-info",
        "contact",
        "content-encoding",
        "content-language",
        "error-info",
        "in-reply-to",
        "proxy-require",
        "record-route",
        "require",
        "route",
        "supported",
        "unsupported",
        "via",
        "warning",
        "allow-events",
    }
)

TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")

# Character-class checks run as compiled regular expressions: on the parse hot
# path they are several times faster than per-character Python loops.
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
#: Unquoted parameter values: token, host (incl. ``[IPv6]``) and URI paramchar;
#: whitespace, quotes and the separators ``;,=<>`` are never part of one.
_PVALUE_RE = re.compile(r"[^\s\";,=<>]+")
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)
# One ``;name[=value]`` with the LWS RFC 3261 §25.1 allows around ``;`` and ``=``.
_PARAM_RE = re.compile(
    r'[ \t]*;[ \t]*([^\s;=",]*)[ \t]*(?:=[ \t]*(?:"((?:[^"\\]|\\.)*)"|([^\s;",]*)))?[ \t]*',
    re.DOTALL,
)

#: Generic parameters in their usual form on the wire: no LWS, no quoted values.
#: Text that matches is what :func:`parse_params` accepts, and it splits at ``;``.
PLAIN_PARAMS = r"(?:;[A-Za-z0-9\-.!%*_+`'~]+(?:=[^\s\";,=<>]+)?)*"
_PLAIN_PARAMS_RE = re.compile(PLAIN_PARAMS)

#: Spelling of header names already seen (raw name -> canonical name).  Bounded so
#: that a peer sending random names cannot grow it without limit.
_NAME_CACHE: dict[str, str] = {}
_NAME_CACHE_MAX = 2048


def canonical_name(name: str) -> str:
    """Expand compact forms and give a header name its conventional spelling."""
    cached = _NAME_CACHE.get(name)
    if cached is not None:
        return cached
    lower = name.lower()
    if len(lower) == 1 and lower in COMPACT_FORMS:
        result = COMPACT_FORMS[lower]
    else:
        result = _CANONICAL.get(lower) or "-".join(p.capitalize() for p in name.split("-"))
    if len(_NAME_CACHE) < _NAME_CACHE_MAX and _TOKEN_RE.fullmatch(name):
        _NAME_CACHE[name] = result
    return result


def header_name(raw: str) -> str:
    """Validate a header field name as received (a token, §7.3.1) and canonicalize it."""
    cached = _NAME_CACHE.get(raw)
    if cached is not None:
        return cached
    if not _TOKEN_RE.fullmatch(raw):
        raise SipParseError(f"bad header name {raw!r}")
    return canonical_name(raw)


def parse_header_lines(lines: Iterable[str]) -> list[tuple[str, str]]:
    """Split header lines into (canonical name, value) pairs (RFC 3261 §7.3.1).

    Values lose the LWS around them; a line starting with SP or HTAB continues
    the previous one and is joined to it by one SP (folding).
    """
    items: list[tuple[str, str]] = []
    append = items.append
    known = _NAME_CACHE.get
    for line in lines:
        raw, colon, value = line.partition(":")
        name = known(raw)
        if name is None or not colon:
            c0 = line[:1]
            if c0 == " " or c0 == "\t":
                if not items:
                    raise SipParseError("continuation line before the first header")
                name, value = items[-1]
                more = line.strip(" \t")
                items[-1] = (name, f"{value} {more}" if value and more else value or more)
                continue
            if not raw or not colon:
                raise SipParseError(f"header line without a name: {line[:40]!r}")
            name = header_name(raw.rstrip(" \t"))
        append((name, value.strip(" \t")))
    return items


def is_token(text: str) -> bool:
    """True if ``text`` is a non-empty RFC 3261 §25.1 token."""
    return _TOKEN_RE.fullmatch(text) is not None


def split_list(value: str) -> list[str]:
    """Split a header value at commas that are outside quotes and ``<>`` (§7.3.1)."""
    if "," not in value:
        stripped = value.strip()
        return [stripped] if stripped else []
    if '"' not in value and "<" not in value:
        parts = [p.strip() for p in value.split(",")]
    else:
        parts = []
        start = 0
        quoted = False
        angle = False
        i = 0
        n = len(value)
        while i < n:
            c = value[i]
            if quoted:
                if c == "\\":
                    i += 1
                elif c == '"':
                    quoted = False
            elif c == '"':
                quoted = True
            elif c == "<":
                angle = True
            elif c == ">":
                angle = False
            elif c == "," and not angle:
                parts.append(value[start:i].strip())
                start = i + 1
            i += 1
        if quoted:
            raise SipParseError(f"unterminated quoted string in {value!r}")
        parts.append(value[start:].strip())
    if any(not p for p in parts):
        raise SipParseError(f"empty element in list {value!r}")
    return parts


def read_quoted(text: str, start: int) -> tuple[str, int]:
    """Read a quoted-string starting at ``text[start] == '"'`` (RFC 3261 §25.1).

    Returns the unescaped content (quoted-pairs resolved) and the index just
    past the closing quote.
    """
    i = start + 1
    n = len(text)
    while True:
        close = text.find('"', i)
        if close == -1:
            raise SipParseError(f"unterminated quoted string in {text!r}")
        backslash = text.find("\\", i, close)
        if backslash == -1:
            break
        if backslash + 1 >= n:
            raise SipParseError(f"unterminated quoted string in {text!r}")
        # A quoted-pair: the next character (which may be '"') is literal.
        i = backslash + 2
    return unescape_pairs(text[start + 1 : close]), close + 1


def unescape_pairs(content: str) -> str:
    """Resolve the quoted-pairs (``\\x`` stands for ``x``) of a quoted-string's content."""
    return _QUOTED_PAIR_RE.sub(r"\1", content) if "\\" in content else content


def quote(text: str) -> str:
    """Render ``text`` as a quoted-string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_params(text: str, *, lower_names: bool = True) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` generic parameters (RFC 3261 §25.1 generic-param).

    ``text`` starts at the first ``;`` (or is empty).  Quoted values are kept
    unescaped.  Names are folded to lower case, as parameter names compare
    case-insensitively.  LWS is allowed around ``;`` and ``=``.
    """
    if lower_names and _PLAIN_PARAMS_RE.fullmatch(text):
        return split_plain_params(text)
    params: dict[str, str | None] = {}
    if '"' not in text and " " not in text and "\t" not in text:
        # Fast path: no LWS and no quoted strings, the common case on the wire.
        parts = text.split(";")
        if parts[0]:
            raise SipParseError(f"expected ';' before parameter in {text!r}")
        for part in parts[1:]:
            name, sep, raw = part.partition("=")
            if not _TOKEN_RE.fullmatch(name):
                raise SipParseError(_bad_name(name, text))
            if sep and not _PVALUE_RE.fullmatch(raw):
                raise SipParseError(f"bad value for parameter {name!r} in {text!r}")
            params[name.lower() if lower_names else name] = raw if sep else None
        return params
    pos = 0
    n = len(text)
    match = _PARAM_RE.match
    while pos < n:
        m = match(text, pos)
        if m is None:
            if not text[pos:].strip(" \t"):
                break
            raise SipParseError(f"expected ';' before parameter in {text!r}")
        name = m.group(1)
        if not _TOKEN_RE.fullmatch(name):
            raise SipParseError(_bad_name(name, text))
        quoted, plain = m.group(2), m.group(3)
        value: str | None
        if quoted is not None:
            value = unescape_pairs(quoted)
        elif plain is not None:
            if not _PVALUE_RE.fullmatch(plain):
                raise SipParseError(f"bad value for parameter {name!r} in {text!r}")
            value = plain
        else:
            value = None
        params[name.lower() if lower_names else name] = value
        pos = m.end()
    return params


def split_plain_params(text: str) -> dict[str, str | None]:
    """Split parameters that match :data:`PLAIN_PARAMS`; names are lower-cased."""
    params: dict[str, str | None] = {}
    if text:
        for part in text[1:].split(";"):
            name, sep, value = part.partition("=")
            params[name.lower()] = value if sep else None
    return params


def _bad_name(name: str, text: str) -> str:
    if not name:
        return f"empty parameter (stray ';') in {text!r}"
    return f"bad parameter name {name!r} in {text!r}"


def format_params(params: dict[str, str | None]) -> str:
    """Render parameters as ``;name=value`` (quoting values that are not tokens)."""
    out: list[str] = []
    for name, value in params.items():
        if value is None:
            out.append(f";{name}")
        elif _UNQUOTED_RE.fullmatch(value):
            out.append(f";{name}={value}")
        else:
            out.append(f";{name}={quote(value)}")
    return "".join(out)


# Tokens, and the IPv6 references and ports of received/maddr parameters.
_UNQUOTED_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~\[\]:]+")


class Headers:
    """Ordered, case-insensitive, multi-valued header collection (RFC 3261 §7.3).

    Each entry is one header line as received (after unfolding); names are
    stored in canonical form so compact and long forms are the same header.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(canonical_name(n), _checked(v)) for n, v in items]

    @classmethod
    def _from_canonical(cls, items: list[tuple[str, str]]) -> Headers:
        """Adopt ``items`` whose names are already canonical (the parser's path)."""
        new = cls.__new__(cls)
        new._items = items
        return new

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        key = canonical_name(name)
        for n, v in self._items:
            if n == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order, list headers split at their commas."""
        key = canonical_name(name)
        split = key.lower() in LIST_HEADERS
        out: list[str] = []
        for n, v in self._items:
            if n == key:
                if split:
                    out.extend(split_list(v))
                else:
                    out.append(v)
        return out

    def add(self, name: str, value: str) -> None:
        """Append a header line."""
        self._items.append((canonical_name(name), _checked(value)))

    def prepend(self, name: str, value: str) -> None:
        """Insert a header line before all others (e.g. a new top Via)."""
        self._items.insert(0, (canonical_name(name), _checked(value)))

    def set(self, name: str, value: str) -> None:
        """Replace every line of ``name`` by one line holding ``value``."""
        key = canonical_name(name)
        _checked(value)
        for idx, (n, _) in enumerate(self._items):
            if n == key:
                self._items[idx] = (key, value)
                self._items = [
                    item for j, item in enumerate(self._items) if j <= idx or item[0] != key
                ]
                return
        self._items.append((key, value))

    def replace_first(self, name: str, value: str) -> None:
        """Replace the first value of ``name``, e.g. the top Via (RFC 3261 §18.2.1).

        A comma-separated line keeps its other values; raises KeyError when
        there is no ``name`` line.
        """
        key = canonical_name(name)
        _checked(value)
        items = self._items
        for idx, (n, v) in enumerate(items):
            if n == key:
                if "," in v and key.lower() in LIST_HEADERS:
                    value = ", ".join([value, *split_list(v)[1:]])
                items[idx] = (key, value)
                return
        raise KeyError(name)

    def remove(self, name: str) -> None:
        """Delete every line of ``name``."""
        key = canonical_name(name)
        self._items = [item for item in self._items if item[0] != key]

    def copy(self) -> Headers:
        """A shallow copy."""
        new = Headers()
        new._items = list(self._items)
        return new


def _checked(value: str) -> str:
    # A CR or LF in a value would let it inject header lines when serialized.
    if "\r" in value or "\n" in value:
        raise ValueError(f"header value contains CR or LF: {value!r}")
    return value
