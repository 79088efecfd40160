"""SIP header collection and the small grammar pieces shared by header parsers.

RFC 3261 §7.3: header names are case-insensitive, a header may appear several
times, and list-valued headers may also carry several comma-separated values
in one line; the order of same-named headers is significant (Via, Route).
"""

from __future__ import annotations

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

TOKEN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)


def canonical_name(name: str) -> str:
    """Expand compact forms and give a header name its conventional spelling."""
    lower = name.lower()
    if len(lower) == 1 and lower in COMPACT_FORMS:
        return COMPACT_FORMS[lower]
    return _CANONICAL.get(lower) or "-".join(p.capitalize() for p in name.split("-"))


def is_token(text: str) -> bool:
    """True if ``text`` is a non-empty RFC 3261 §25.1 token."""
    return bool(text) and all(c in TOKEN_CHARS for c in text)


def split_list(value: str) -> list[str]:
    """Split a header value at commas that are outside quotes and ``<>``."""
    if "," not in value:
        stripped = value.strip()
        return [stripped] if stripped else []
    parts: list[str] = []
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
        raise SipParseError("unterminated quoted string")
    parts.append(value[start:].strip())
    if any(not p for p in parts):
        raise SipParseError(f"empty element in list {value!r}")
    return parts


def read_quoted(text: str, start: int) -> tuple[str, int]:
    """Read a quoted-string starting at ``text[start] == '"'`` (RFC 3261 §25.1).

    Returns the unescaped content and the index just past the closing quote.
    """
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 >= n:
                break
            out.append(text[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise SipParseError("unterminated quoted string")


def quote(text: str) -> str:
    """Render ``text`` as a quoted-string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_params(text: str, *, lower_names: bool = True) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` generic parameters (RFC 3261 §25.1 generic-param).

    ``text`` starts at the first ``;`` (or is empty).  Quoted values are kept
    unescaped.  Names are folded to lower case, as parameter names compare
    case-insensitively.
    """
    params: dict[str, str | None] = {}
    i = 0
    n = len(text)
    while i < n:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        if text[i] != ";":
            raise SipParseError(f"expected ';' before parameter in {text!r}")
        i += 1
        j = i
        while j < n and text[j] not in "=;":
            j += 1
        name = text[i:j].strip()
        if not is_token(name):
            raise SipParseError(f"bad parameter name {name!r}")
        value: str | None = None
        i = j
        if i < n and text[i] == "=":
            i += 1
            while i < n and text[i] in " \t":
                i += 1
            if i < n and text[i] == '"':
                value, i = read_quoted(text, i)
            else:
                j = i
                while j < n and text[j] != ";":
                    j += 1
                value = text[i:j].strip()
                if not value or " " in value:
                    raise SipParseError(f"bad value for parameter {name!r}")
                i = j
        params[name.lower() if lower_names else name] = value
    return params


def format_params(params: dict[str, str | None]) -> str:
    """Render parameters as ``;name=value`` (quoting values that are not tokens)."""
    out: list[str] = []
    for name, value in params.items():
        if value is None:
            out.append(f";{name}")
        elif is_token(value) or _is_host_like(value):
            out.append(f";{name}={value}")
        else:
            out.append(f";{name}={quote(value)}")
    return "".join(out)


def _is_host_like(value: str) -> bool:
    # IPv6 references and ports appear unquoted in received/maddr parameters.
    return all(c in TOKEN_CHARS or c in "[]:" for c in value)


class Headers:
    """Ordered, case-insensitive, multi-valued header collection (RFC 3261 §7.3).

    Each entry is one header line as received (after unfolding); names are
    stored in canonical form so compact and long forms are the same header.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(canonical_name(n), v) for n, v in items]

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
        self._items.append((canonical_name(name), value))

    def prepend(self, name: str, value: str) -> None:
        """Insert a header line before all others (e.g. a new top Via)."""
        self._items.insert(0, (canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every line of ``name`` by one line holding ``value``."""
        key = canonical_name(name)
        for idx, (n, _) in enumerate(self._items):
            if n == key:
                self._items[idx] = (key, value)
                self._items = [
                    item for j, item in enumerate(self._items) if j <= idx or item[0] != key
                ]
                return
        self._items.append((key, value))

    def remove(self, name: str) -> None:
        """Delete every line of ``name``."""
        key = canonical_name(name)
        self._items = [item for item in self._items if item[0] != key]

    def copy(self) -> Headers:
        """A shallow copy."""
        new = Headers()
        new._items = list(self._items)
        return new
