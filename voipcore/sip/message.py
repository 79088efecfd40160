"""SIP messages: model, parser and serializer (RFC 3261 §7, §20, §25).

The parser takes one message as bytes.  The body is split off once, at the
first empty line, and kept as bytes; Content-Length decides its length
(RFC 3261 §18.3).  The headers that every layer relies on (Via, From, To,
Call-ID, CSeq, Max-Forwards, Content-Length) are validated while parsing, so a
message that gets past :func:`parse_message` can be answered.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

from voipcore.sip.errors import SipParseError
from voipcore.sip.headers import (
    PLAIN_PARAMS,
    Headers,
    format_params,
    parse_header_lines,
    parse_params,
    split_list,
    split_plain_params,
)
from voipcore.sip.uri import (
    NameAddr,
    SipUri,
    Uri,
    check_name_addr,
    parse_host,
    parse_name_addr,
    parse_port,
    parse_uri,
)

SIP_VERSION = "SIP/2.0"
#: RFC 3261 §8.1.1.7: branch IDs of RFC 3261 elements start with this cookie.
MAGIC_COOKIE = "z9hG4bK"
MAX_MESSAGE_SIZE = 65536

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
}

_MAX_CSEQ = 2**32 - 1

#: Methods of RFC 3261 and its registered extensions.  A request whose method
#: is none of these and whose CSeq method differs gets 501 rather than 400
#: (RFC 4475 §3.1.2.18: an unknown method is the more useful diagnosis).
KNOWN_METHODS = frozenset(
    {
        "ACK",
        "BYE",
        "CANCEL",
        "INFO",
        "INVITE",
        "MESSAGE",
        "NOTIFY",
        "OPTIONS",
        "PRACK",
        "PUBLISH",
        "REFER",
        "REGISTER",
        "SUBSCRIBE",
        "UPDATE",
    }
)

#: Headers a message may carry only once (RFC 3261 §7.3.1, §20): a second
#: value would make the transaction, dialog or body ambiguous.
SINGLE_VALUE_HEADERS = frozenset(
    {"Call-ID", "CSeq", "From", "To", "Max-Forwards", "Content-Length", "Content-Type"}
)
#: Headers every request and response must carry (§8.1.1).  Max-Forwards is
#: required of RFC 3261 senders but absent from RFC 2543 ones, which must still
#: be accepted (RFC 4475 §3.4.1), so it is not enforced here.
REQUIRED_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# callid = word [ "@" word ] (§25.1)
_CALL_ID_RE = re.compile(
    r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+(?:@[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+)?"
)
# sent-protocol LWS sent-by *( SEMI via-params ): LWS is allowed around each '/'.
_VIA_RE = re.compile(
    r"[ \t]*([^\s/;]+)[ \t]*/[ \t]*([^\s/;]+)[ \t]*/[ \t]*([^\s/;]+)[ \t]+([^;]+?)[ \t]*(;.*)?",
    re.DOTALL,
)
# The usual Via in one step: no LWS beyond the one SP, a hostname or IPv4 address.
_VIA_FAST_RE = re.compile(
    r"SIP/2\.0/([A-Za-z0-9\-.!%*_+`'~]+) ([A-Za-z0-9\-.]+)(?::([0-9]{1,5}))?"
    rf"({PLAIN_PARAMS})"
)


@dataclass(slots=True)
class Via:
    """One Via value (RFC 3261 §20.42): ``SIP/2.0/UDP host:port;params``."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        """The branch parameter (§8.1.1.7)."""
        return self.params.get("branch")

    @property
    def has_rfc3261_branch(self) -> bool:
        """True if the branch is an RFC 3261 one: the magic cookie *and* an identifier.

        A bare ``z9hG4bK`` (RFC 4475 §3.2.1) claims RFC 3261 semantics but
        identifies nothing; the transaction layer may reject it with 400 or
        fall back to RFC 2543 matching.
        """
        branch = self.params.get("branch")
        return branch is not None and len(branch) > 7 and branch.startswith(MAGIC_COOKIE)

    @property
    def received(self) -> str | None:
        """The received parameter: the source address a server saw (§18.2.1)."""
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The rport value filled in by a server (RFC 3581 §4), else None."""
        value = self.params.get("rport")
        return int(value) if value else None

    @property
    def sent_by(self) -> tuple[str, int | None]:
        """(host, port) as the sender wrote them."""
        return self.host, self.port

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"


def parse_via(text: str) -> Via:
    """Parse one Via value; LWS is allowed around ``/``, ``:``, ``;`` and ``=`` (§7.3.1)."""
    fast = _VIA_FAST_RE.fullmatch(text)
    if fast is not None:
        return _fast_via(text, *fast.groups())
    m = _VIA_RE.fullmatch(text)
    if m is None:
        raise SipParseError(f"bad Via {text!r}")
    proto, version, transport, sent_by, ptext = m.groups()
    if proto.upper() != "SIP" or version != "2.0":
        raise SipParseError(f"bad Via protocol {proto}/{version} in {text!r}")
    transport = transport.upper()
    if not _TOKEN_RE.fullmatch(transport):
        raise SipParseError(f"bad Via transport in {text!r}")
    port: int | None = None
    if sent_by.startswith("["):
        close = sent_by.find("]")
        if close == -1:
            raise SipParseError(f"bad Via sent-by {sent_by!r}")
        host, tail = sent_by[: close + 1], sent_by[close + 1 :].strip()
        if tail:
            if tail[0] != ":":
                raise SipParseError(f"bad Via sent-by {sent_by!r}")
            port = parse_port(tail[1:].strip())
    else:
        host, colon, port_text = sent_by.partition(":")
        host = host.rstrip()
        if colon:
            port = parse_port(port_text.strip())
    params = parse_params(ptext) if ptext else {}
    if params:
        _check_via_params(params, text)
    return Via(transport, parse_host(host), port, params)


def _fast_via(text: str, transport: str, host: str, port_text: str | None, ptext: str) -> Via:
    """The Via of a :data:`_VIA_FAST_RE` match."""
    params = split_plain_params(ptext)
    if params:
        _check_via_params(params, text)
    port = None if port_text is None else parse_port(port_text)
    return Via(transport.upper(), host, port, params)


def _check_via_params(params: dict[str, str | None], text: str) -> None:
    """via-ttl / via-maddr / via-received / via-branch / response-port (§25.1, RFC 3581)."""
    if "branch" in params and params["branch"] is None:
        raise SipParseError(f"Via branch without a value in {text!r}")
    received = params.get("received")
    if received is not None:
        try:
            ipaddress.ip_address(received[1:-1] if received.startswith("[") else received)
        except ValueError:
            raise SipParseError(f"Via received is not an IP address: {received!r}") from None
    maddr = params.get("maddr")
    if maddr is not None:
        parse_host(maddr)
    rport = params.get("rport")
    if rport is not None:
        parse_port(rport)
    ttl = params.get("ttl")
    if ttl is not None:
        parse_uint(ttl, "Via ttl", 255)


@dataclass(slots=True, frozen=True)
class CSeq:
    """CSeq (§20.16): sequence number and method."""

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(text: str) -> CSeq:
    """Parse CSeq; the number must fit 32 bits unsigned (§8.1.1.5, RFC 4475 §3.1.2.4)."""
    parts = text.split()
    if len(parts) != 2 or not _TOKEN_RE.fullmatch(parts[1]):
        raise SipParseError(f"bad CSeq {text!r}")
    return CSeq(parse_uint(parts[0], "CSeq number", _MAX_CSEQ), parts[1])


def parse_call_id(text: str) -> str:
    """Check a Call-ID: ``word [ "@" word ]`` (§25.1, §20.8)."""
    if not _CALL_ID_RE.fullmatch(text):
        raise SipParseError(f"bad Call-ID header {text[:80]!r}")
    return text


def parse_uint(text: str, name: str, maximum: int) -> int:
    """Parse a decimal header value (ASCII digits only) bounded by ``maximum``."""
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        raise SipParseError(f"bad {name} {text!r}")
    # Leading zeros are legal (RFC 4475 §3.1.1.1) and int() refuses strings
    # of thousands of digits: no maximum here has more than 20.
    digits = (text.lstrip("0") or "0") if text[0] == "0" else text
    if len(digits) > 20 or (value := int(digits)) > maximum:
        raise SipParseError(f"{name} out of range: {text[:40]}")
    return value


_T = TypeVar("_T")


class _cached(Generic[_T]):
    """:class:`functools.cached_property` without its lock (taken on every first use in 3.11).

    The value goes into the instance ``__dict__``, where later reads find it.
    """

    def __init__(self, func: Callable[[Any], _T]) -> None:
        self._func = func
        self._name = func.__name__
        self.__doc__ = func.__doc__

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _cached[_T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> _T: ...

    def __get__(self, instance: object, owner: type | None = None) -> _T | _cached[_T]:
        if instance is None:
            return self
        value = instance.__dict__[self._name] = self._func(instance)
        return value


class Message:
    """What requests and responses share: headers, body and typed accessors."""

    __slots__ = ("headers", "body", "__dict__")

    headers: Headers
    body: bytes

    @_cached
    def vias(self) -> list[Via]:
        """Every Via value, topmost first."""
        return [parse_via(v) for v in self.headers.get_all("Via")]

    @property
    def via(self) -> Via:
        """The topmost Via."""
        return self.vias[0]

    @_cached
    def from_(self) -> NameAddr:
        """The From header."""
        return parse_name_addr(self._required("From"))

    @_cached
    def to(self) -> NameAddr:
        """The To header."""
        return parse_name_addr(self._required("To"))

    @property
    def call_id(self) -> str:
        """The Call-ID header."""
        return self._required("Call-ID")

    @_cached
    def cseq(self) -> CSeq:
        """The CSeq header."""
        return parse_cseq(self._required("CSeq"))

    @_cached
    def contacts(self) -> list[NameAddr | str]:
        """Contact values; ``"*"`` stays a plain string (§10.2.2)."""
        out: list[NameAddr | str] = []
        for value in self.headers.get_all("Contact"):
            out.append("*" if value == "*" else parse_name_addr(value))
        return out

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (§20.22), or None when absent (RFC 2543 senders)."""
        value = self.headers.get("Max-Forwards")
        return None if value is None else parse_uint(value, "Max-Forwards", 255)

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value

    def invalidate(self) -> None:
        """Forget parsed header values (after editing ``headers``, or to save memory).

        They are parsed again on next use.  Messages that transactions keep for
        32 s would otherwise hold dozens of small objects each for the cyclic
        garbage collector to walk.
        """
        self.__dict__.clear()

    def _serialize(self, start_line: str) -> bytes:
        lines = [start_line]
        for name, value in self.headers:
            if name != "Content-Length":
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


class Request(Message):
    """A SIP request (§7.1)."""

    __slots__ = ("method", "uri_text")

    def __init__(
        self,
        method: str,
        uri: str | Uri,
        headers: Headers | None = None,
        body: bytes = b"",
    ) -> None:
        self.method = method
        self.uri_text = str(uri)
        self.headers = headers if headers is not None else Headers()
        self.body = body
        if not isinstance(uri, str):
            self.__dict__["uri"] = uri

    @_cached
    def uri(self) -> Uri:
        """The parsed Request-URI."""
        return parse_uri(self.uri_text)

    def __bytes__(self) -> bytes:
        return self._serialize(f"{self.method} {self.uri_text} {SIP_VERSION}")

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri_text}>"


class Response(Message):
    """A SIP response (§7.2)."""

    __slots__ = ("status", "reason")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | None = None,
        body: bytes = b"",
    ) -> None:
        self.status = status
        self.reason = REASON_PHRASES.get(status, "Unknown") if reason is None else reason
        self.headers = headers if headers is not None else Headers()
        self.body = body

    def __bytes__(self) -> bytes:
        return self._serialize(f"{SIP_VERSION} {self.status} {self.reason}")

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def _find_body_start(data: bytes) -> tuple[int, int]:
    """Index of the empty line ending the headers, and where the body begins.

    CRLF is the terminator RFC 3261 §7 requires; bare LF is tolerated.
    """
    end = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n", 0, len(data) if end == -1 else end)
    if lf != -1:
        return lf, lf + 2
    if end != -1:
        return end, end + 4
    return -1, -1


def _header_lines(head: str, crlf: bool) -> list[str]:
    """Split the header section into physical lines; no bare CR or LF may remain."""
    if crlf:
        lines = head.split("\r\n")
        if head.count("\n") != len(lines) - 1 or head.count("\r") != len(lines) - 1:
            raise SipParseError("bare CR or LF inside the header section")
        return lines
    lines = [line[:-1] if line.endswith("\r") else line for line in head.split("\n")]
    if any("\r" in line for line in lines):
        raise SipParseError("bare CR inside the header section")
    return lines


def parse_message(data: bytes, *, stream: bool = False) -> Request | Response:
    """Parse one SIP message (RFC 3261 §7, §18.3, §25).

    On datagrams a missing Content-Length means "the rest of the packet" and
    bytes beyond it are discarded; fewer bytes than it announces is an error.
    On streams the caller frames by Content-Length and passes exactly one
    message (see :class:`StreamFramer`).  The headers every layer relies on are
    checked here, so a message that parses can be answered; the error's
    ``status`` is the response to send (400, 416, 501, 505, 513).
    """
    if len(data) > MAX_MESSAGE_SIZE:
        raise SipParseError("message too large", 513)
    if data[:1] in (b"\r", b"\n"):
        # §7.5: CRLFs before the start-line are ignored.
        data = data.lstrip(b"\r\n")
    head_end, body_start = _find_body_start(data)
    if head_end == -1:
        raise SipParseError("no empty line after the headers")
    try:
        head = data[:head_end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"header section is not UTF-8 (octet {exc.start})") from exc
    lines = _header_lines(head, body_start - head_end == 4)

    items = parse_header_lines(lines[1:])
    headers = Headers._from_canonical(items)

    start = lines[0]
    msg: Request | Response
    if start[:4].upper() == "SIP/":
        msg = _parse_status_line(start, headers)
    else:
        msg = _parse_request_line(start, headers)

    first: dict[str, str] = {}
    vias: list[str] = []
    contacts: list[str] = []
    for name, value in items:
        if name in SINGLE_VALUE_HEADERS:
            if name in first:
                raise SipParseError(_duplicate(name, items))
            first[name] = value
        elif name == "Via":
            vias.append(value)
        elif name == "Contact":
            contacts.append(value)
        elif name == "Expires" and name not in first:
            first[name] = value

    body = data[body_start:]
    length_text = first.get("Content-Length")
    if length_text is not None:
        length = parse_uint(length_text, "Content-Length", MAX_MESSAGE_SIZE)
        if len(body) < length:
            raise SipParseError(
                f"Content-Length {length} exceeds the {len(body)} octets of body received"
            )
        body = body[:length]
    elif stream:
        raise SipParseError("Content-Length is required on stream transports")
    msg.body = body

    _validate(msg, first, vias, contacts)
    return msg


def _duplicate(name: str, items: list[tuple[str, str]]) -> str:
    values = [v for n, v in items if n == name]
    if name == "Content-Length":
        return f"conflicting Content-Length headers ({', '.join(values)}): framing is lost"
    return f"{name} header appears {len(values)} times; it takes a single value"


def _parse_status_line(line: str, headers: Headers) -> Response:
    """Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (§7.2)."""
    version, _, rest = line.partition(" ")
    if version.upper() != SIP_VERSION:
        raise SipParseError(f"unsupported SIP version {version!r}", 505)
    code, _, reason = rest.partition(" ")
    if len(code) != 3 or not code.isdigit() or not code.isascii() or code[0] not in "123456":
        raise SipParseError(f"bad status code {code[:20]!r} in the Status-Line")
    return Response(int(code), reason, headers)


def _parse_request_line(line: str, headers: Headers) -> Request:
    """Request-Line = Method SP Request-URI SP SIP-Version (§7.1), one SP each."""
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError(_request_line_problem(line, parts))
    method, uri_text, version = parts
    if not _TOKEN_RE.fullmatch(method):
        raise SipParseError(f"bad method {method[:40]!r} in the Request-Line")
    if version.upper() != SIP_VERSION:
        if version[:4].upper() == "SIP/":
            raise SipParseError(f"unsupported SIP version {version!r}", 505)
        raise SipParseError(f"bad SIP-Version {version[:20]!r} in the Request-Line")
    if uri_text.startswith("<"):
        raise SipParseError(f"Request-URI must not be enclosed in <>: {uri_text[:80]!r}")
    try:
        uri = parse_uri(uri_text)
    except SipParseError as exc:
        raise SipParseError(f"bad Request-URI: {exc.reason}") from None
    if isinstance(uri, SipUri) and uri.headers:
        # §19.1.1 Table 1: headers are not allowed in a Request-URI (RFC 4475 §3.1.2.11).
        raise SipParseError(
            f"escaped headers are not allowed in the Request-URI: {uri_text[:80]!r}"
        )
    request = Request(method, uri_text, headers)
    request.__dict__["uri"] = uri
    return request


def _request_line_problem(line: str, parts: list[str]) -> str:
    shown = line[:80]
    if line != line.rstrip(" \t"):
        return f"trailing whitespace after the SIP-Version in the Request-Line {shown!r}"
    if not line or line[0] in " \t":
        return f"leading whitespace in the Request-Line {shown!r}"
    if "" in parts or "\t" in line:
        return f"more than one SP between Request-Line elements in {shown!r}"
    if len(parts) > 3:
        return f"whitespace inside the Request-URI in the Request-Line {shown!r}"
    return f"bad Request-Line {shown!r}: expected 'Method SP Request-URI SP SIP-Version'"


def _validate(
    msg: Request | Response, first: dict[str, str], vias: list[str], contacts: list[str]
) -> None:
    """Check the headers every transaction and dialog relies on (§8.1.1, §8.2).

    From and Contact are checked here and parsed on first use: a REGISTER
    that is challenged never parses its From or Contact.
    """
    cseq_text = first.get("CSeq")
    if not (vias and cseq_text and first.get("From") and first.get("To") and first.get("Call-ID")):
        missing = [n for n in REQUIRED_HEADERS if not (vias if n == "Via" else first.get(n))]
        raise SipParseError(f"missing required header(s): {', '.join(missing)}")
    try:
        parsed_vias = [
            parse_via(v) for line in vias for v in (split_list(line) if "," in line else (line,))
        ]
    except SipParseError as exc:
        raise SipParseError(f"bad Via header: {exc.reason}") from None
    try:
        check_name_addr(first["From"])
    except SipParseError as exc:
        raise SipParseError(f"bad From header: {exc.reason}") from None
    try:
        # Every request handler and every response built reads To: parse it once.
        to = parse_name_addr(first["To"])
    except SipParseError as exc:
        raise SipParseError(f"bad To header: {exc.reason}") from None
    parse_call_id(first["Call-ID"])
    try:
        cseq = parse_cseq(cseq_text)
    except SipParseError as exc:
        raise SipParseError(f"bad CSeq header: {exc.reason}") from None
    max_forwards = first.get("Max-Forwards")
    if max_forwards is not None:
        parse_uint(max_forwards, "Max-Forwards", 255)
    expires = first.get("Expires")
    if expires is not None:
        parse_uint(expires, "Expires", 2**32 - 1)
    try:
        for value in contacts:
            for item in split_list(value) if "," in value else (value,):
                if item != "*":
                    check_name_addr(item)
    except SipParseError as exc:
        raise SipParseError(f"bad Contact header: {exc.reason}") from None
    cache = msg.__dict__
    cache["vias"] = parsed_vias
    cache["cseq"] = cseq
    cache["to"] = to
    if isinstance(msg, Request):
        if cseq.method != msg.method and not (msg.method == "ACK" and cseq.method == "INVITE"):
            if msg.method not in KNOWN_METHODS:
                raise SipParseError(
                    f"unknown method {msg.method} (and CSeq method {cseq.method} "
                    "does not match it)",
                    501,
                )
            raise SipParseError(
                f"CSeq method {cseq.method} does not match request method {msg.method}"
            )
        scheme = msg.uri.scheme
        if scheme != "sip" and scheme != "sips" and scheme != "tel":
            written = msg.uri_text.partition(":")[0]
            raise SipParseError(f"unsupported URI scheme {written!r} in the Request-URI", 416)


class StreamFramer:
    """Frames SIP messages on a byte stream by Content-Length (RFC 3261 §18.3).

    Sans-I/O: :meth:`feed` takes received bytes and returns complete messages
    as bytes.  RFC 5626 keep-alives (a CRLF pair between messages, §3.5.1) are
    counted in :attr:`pings` so the transport can answer each with a CRLF; a
    lone CRLF (a pong, or one before a start-line, RFC 3261 §7.5) is dropped.
    """

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self._max_size = max_size
        self._scanned = 0
        self._total = -1
        self.pings = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return every complete message now in the buffer.

        Raises :class:`SipParseError` (status 513) when a message grows past the
        size limit, or 400 when its framing cannot be recovered (no, several or a
        bad Content-Length); the caller then closes the connection.
        """
        buf = self._buffer
        buf += data
        out: list[bytes] = []
        while True:
            if self._total < 0:
                if buf[:1] == b"\r":
                    if buf.startswith(b"\r\n\r\n"):
                        self.pings += 1
                        del buf[:4]
                        continue
                    if len(buf) > 2 and buf.startswith(b"\r\n") and buf[2] != 13:
                        del buf[:2]
                        continue
                    if len(buf) < 4:
                        return out
                head_end = buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
                if head_end == -1:
                    self._scanned = len(buf)
                    if len(buf) > self._max_size:
                        raise SipParseError("message headers exceed the size limit", 513)
                    return out
                total = head_end + 4 + _content_length(bytes(buf[:head_end]))
                if total > self._max_size:
                    raise SipParseError(f"message of {total} octets exceeds the size limit", 513)
                self._total = total
            if len(buf) < self._total:
                return out
            out.append(bytes(buf[: self._total]))
            del buf[: self._total]
            self._total = -1
            self._scanned = 0


def _content_length(head: bytes) -> int:
    """The one Content-Length of a header section (compact ``l`` and folding allowed)."""
    values: list[bytes] = []
    in_length = False
    for line in head.split(b"\r\n")[1:]:
        if line[:1] in (b" ", b"\t"):
            if in_length:
                values[-1] += b" " + line
            continue
        name, colon, value = line.partition(b":")
        in_length = bool(colon) and name.strip().lower() in (b"content-length", b"l")
        if in_length:
            values.append(value)
    if not values:
        raise SipParseError("Content-Length is required on stream transports")
    if len(values) > 1:
        shown = ", ".join(v.strip().decode("ascii", "replace") for v in values)
        raise SipParseError(f"conflicting Content-Length headers ({shown}): framing is lost")
    text = values[0].decode("ascii", "replace")
    return parse_uint(text, "Content-Length", MAX_MESSAGE_SIZE)


def make_response(
    request: Request, status: int, reason: str | None = None, *, to_tag: str | None = None
) -> Response:
    """Build a response to ``request`` per RFC 3261 §8.2.6.

    Via (all values, in order), From, Call-ID and CSeq are copied; To is copied
    and, if it has no tag yet, gets ``to_tag`` or one derived from the request
    so every response to it carries the same tag (never on 100 Trying, §8.2.6.2).
    A 100 Trying copies the request's Timestamp (§8.2.6.1).
    """
    copied: dict[str, list[str]] = {"Via": [], "From": [], "To": [], "Call-ID": [], "CSeq": []}
    timestamp: str | None = None
    for name, value in request.headers:
        bucket = copied.get(name)
        if bucket is not None:
            bucket.append(value)
        elif name == "Timestamp" and timestamp is None:
            timestamp = value
    to = copied["To"]
    if status > 100 and to and request.to.tag is None:
        to[0] = f"{to[0]};tag={to_tag or response_tag(request)}"
    items = [(name, value) for name, values in copied.items() for value in values]
    if status == 100 and timestamp is not None:
        items.append(("Timestamp", timestamp))
    response = Response(status, reason, Headers._from_canonical(items))
    # Via and CSeq are the request's, verbatim: share their parses rather than
    # redo them when the transaction layer looks the response's transaction up.
    cache = request.__dict__
    for key in ("vias", "cseq"):
        parsed = cache.get(key)
        if parsed is not None:
            response.__dict__[key] = parsed
    return response


def response_tag(request: Request) -> str:
    """A To tag that is the same for every response to ``request`` (§8.2.6.2, §19.3).

    Derived from Call-ID, From (which holds the From tag) and branch, so a
    retransmitted request gets the same tag without the server keeping state.
    """
    return stable_tag(request.call_id, request._required("From"), request.via.branch or "")


def stable_tag(*parts: str) -> str:
    """A short tag that depends only on ``parts``."""
    return hashlib.blake2s("|".join(parts).encode(), digest_size=6).hexdigest()
