"""SIP messages: model, parser and serializer (RFC 3261 §7, §20, §25).

The parser takes one message as bytes.  The body is split off once, at the
first empty line, and kept as bytes; Content-Length decides its length
(RFC 3261 §18.3).  The headers that every layer relies on (Via, From, To,
Call-ID, CSeq, Max-Forwards, Content-Length) are validated while parsing, so a
message that gets past :func:`parse_message` can be answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from voipcore.sip.errors import SipParseError
from voipcore.sip.headers import Headers, format_params, is_token, parse_params
from voipcore.sip.uri import NameAddr, Uri, parse_host, parse_name_addr, parse_port, parse_uri

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
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
}

_MAX_CSEQ = 2**31 - 1


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
    def sent_by(self) -> tuple[str, int | None]:
        """(host, port) as the sender wrote them."""
        return self.host, self.port

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"


def parse_via(text: str) -> Via:
    """Parse one Via value; whitespace is allowed around ``/`` (§7.3.1)."""
    proto, sep, rest = text.partition("/")
    version, sep2, rest = rest.partition("/")
    if not sep or not sep2:
        raise SipParseError(f"bad Via {text!r}")
    if proto.strip().upper() != "SIP" or version.strip() != "2.0":
        raise SipParseError(f"bad Via protocol in {text!r}")
    rest = rest.lstrip()
    i = 0
    while i < len(rest) and rest[i] not in " \t":
        i += 1
    transport = rest[:i].upper()
    if not is_token(transport):
        raise SipParseError(f"bad Via transport in {text!r}")
    rest = rest[i:].strip()
    semi = rest.find(";")
    sent_by, ptext = (rest, "") if semi == -1 else (rest[:semi], rest[semi:])
    sent_by = sent_by.strip()
    port: int | None = None
    if sent_by.startswith("["):
        close = sent_by.find("]")
        host, tail = sent_by[: close + 1], sent_by[close + 1 :].strip()
        if tail:
            if tail[0] != ":":
                raise SipParseError(f"bad Via sent-by {sent_by!r}")
            port = parse_port(tail[1:].strip())
    else:
        host, colon, port_text = sent_by.partition(":")
        host = host.strip()
        if colon:
            port = parse_port(port_text.strip())
    params = parse_params(ptext)
    for key in ("received", "maddr"):
        value = params.get(key)
        if value is not None:
            parse_host(value)
    return Via(transport, parse_host(host), port, params)


@dataclass(slots=True, frozen=True)
class CSeq:
    """CSeq (§20.16): sequence number and method."""

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(text: str) -> CSeq:
    """Parse CSeq; the number must fit 31 bits (§8.1.1.5)."""
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit() or not is_token(parts[1]):
        raise SipParseError(f"bad CSeq {text!r}")
    seq = int(parts[0])
    if seq > _MAX_CSEQ:
        raise SipParseError(f"CSeq number too large: {parts[0]}")
    return CSeq(seq, parts[1])


def parse_uint(text: str, name: str, maximum: int) -> int:
    """Parse a decimal header value bounded by ``maximum``."""
    text = text.strip()
    if not text.isdigit():
        raise SipParseError(f"bad {name} {text!r}")
    value = int(text)
    if value > maximum:
        raise SipParseError(f"{name} out of range: {text}")
    return value


class Message:
    """What requests and responses share: headers, body and typed accessors."""

    __slots__ = ("headers", "body", "__dict__")

    headers: Headers
    body: bytes

    @cached_property
    def vias(self) -> list[Via]:
        """Every Via value, topmost first."""
        return [parse_via(v) for v in self.headers.get_all("Via")]

    @property
    def via(self) -> Via:
        """The topmost Via."""
        return self.vias[0]

    @cached_property
    def from_(self) -> NameAddr:
        """The From header."""
        return parse_name_addr(self._required("From"))

    @cached_property
    def to(self) -> NameAddr:
        """The To header."""
        return parse_name_addr(self._required("To"))

    @property
    def call_id(self) -> str:
        """The Call-ID header."""
        return self._required("Call-ID")

    @cached_property
    def cseq(self) -> CSeq:
        """The CSeq header."""
        return parse_cseq(self._required("CSeq"))

    @cached_property
    def contacts(self) -> list[NameAddr | str]:
        """Contact values; ``"*"`` stays a plain string (§10.2.2)."""
        out: list[NameAddr | str] = []
        for value in self.headers.get_all("Contact"):
            out.append("*" if value == "*" else parse_name_addr(value))
        return out

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value

    def invalidate(self) -> None:
        """Forget parsed header values after ``headers`` were edited."""
        for key in ("vias", "from_", "to", "cseq", "contacts"):
            self.__dict__.pop(key, None)

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

    @cached_property
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


def _split_header_lines(head: str) -> list[str]:
    """Split the header section into logical lines, unfolding continuations (§7.3.1)."""
    raw = head.split("\r\n") if "\r\n" in head else head.split("\n")
    lines: list[str] = []
    for line in raw:
        if line[:1] in (" ", "\t"):
            if not lines:
                raise SipParseError("continuation line before the first header")
            lines[-1] = lines[-1].rstrip() + " " + line.strip()
        else:
            lines.append(line)
    return lines


def _find_body_start(data: bytes) -> tuple[int, int]:
    """Index of the empty line ending the headers, and where the body begins."""
    end = data.find(b"\r\n\r\n")
    if end != -1:
        return end, end + 4
    end = data.find(b"\n\n")
    if end != -1:
        return end, end + 2
    return -1, -1


def parse_message(data: bytes, *, stream: bool = False) -> Request | Response:
    """Parse one SIP message.

    On datagrams a missing Content-Length means "the rest of the packet" and
    bytes beyond it are discarded; fewer bytes than it announces is an error
    (RFC 3261 §18.3).  On streams the caller frames by Content-Length and
    passes exactly one message (see :class:`StreamFramer`).
    """
    if len(data) > MAX_MESSAGE_SIZE:
        raise SipParseError("message too large", 513)
    head_end, body_start = _find_body_start(data)
    if head_end == -1:
        raise SipParseError("no empty line after the headers")
    try:
        head = data[:head_end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("headers are not UTF-8") from exc
    lines = _split_header_lines(head)
    start = lines[0]
    headers = Headers()
    for line in lines[1:]:
        colon = line.find(":")
        if colon <= 0:
            raise SipParseError(f"header line without a name: {line[:40]!r}")
        name = line[:colon].rstrip(" \t")
        if not is_token(name):
            raise SipParseError(f"bad header name {name!r}")
        headers.add(name, line[colon + 1 :].strip(" \t"))

    body = data[body_start:]
    length_text = headers.get("Content-Length")
    if length_text is not None:
        length = parse_uint(length_text, "Content-Length", MAX_MESSAGE_SIZE)
        if len(body) < length:
            raise SipParseError(
                f"Content-Length {length} exceeds the {len(body)} bytes of body received"
            )
        body = body[:length]
    elif stream:
        raise SipParseError("Content-Length is required on stream transports")

    msg: Request | Response
    if start.startswith(SIP_VERSION + " ") or start.upper().startswith("SIP/"):
        msg = _parse_status_line(start, headers, body)
    else:
        msg = _parse_request_line(start, headers, body)
    _validate(msg)
    return msg


def _parse_status_line(line: str, headers: Headers, body: bytes) -> Response:
    version, _, rest = line.partition(" ")
    if version != SIP_VERSION:
        raise SipParseError(f"unsupported SIP version {version!r}", 505)
    code, _, reason = rest.partition(" ")
    if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
        raise SipParseError(f"bad status code {code!r}")
    return Response(int(code), reason, headers, body)


def _parse_request_line(line: str, headers: Headers, body: bytes) -> Request:
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError(f"bad request line {line[:60]!r}")
    method, uri_text, version = parts
    if not is_token(method):
        raise SipParseError(f"bad method {method!r}")
    if version != SIP_VERSION:
        if version.upper().startswith("SIP/"):
            raise SipParseError(f"unsupported SIP version {version!r}", 505)
        raise SipParseError(f"bad request line {line[:60]!r}")
    request = Request(method, uri_text, headers, body)
    uri = request.uri
    if uri.scheme not in ("sip", "sips", "tel"):
        raise SipParseError(f"unsupported URI scheme {uri.scheme!r}", 416)
    return request


def _validate(msg: Request | Response) -> None:
    """Check the headers every transaction and dialog relies on (§8.1.1)."""
    if not msg.headers.get_all("Via"):
        raise SipParseError("missing Via header")
    _ = msg.vias, msg.from_, msg.to, msg.cseq
    if not msg.call_id:
        raise SipParseError("empty Call-ID")
    if isinstance(msg, Request):
        max_forwards = msg.headers.get("Max-Forwards")
        if max_forwards is not None:
            parse_uint(max_forwards, "Max-Forwards", 255)
        if msg.cseq.method != msg.method and not (
            msg.method == "ACK" and msg.cseq.method == "INVITE"
        ):
            raise SipParseError(
                f"CSeq method {msg.cseq.method} does not match request method {msg.method}"
            )
    expires = msg.headers.get("Expires")
    if expires is not None:
        parse_uint(expires, "Expires", 2**32 - 1)


class StreamFramer:
    """Frames SIP messages on a byte stream by Content-Length (RFC 3261 §18.3).

    Sans-I/O: :meth:`feed` takes received bytes and returns complete messages
    as bytes.  RFC 5626 keep-alives (a lone CRLF pair between messages) are
    counted in :attr:`pings` so the transport can answer them with a CRLF.
    """

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self._max_size = max_size
        self.pings = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return every complete message now in the buffer.

        Raises :class:`SipParseError` (413-style) when a message grows past the
        size limit or its framing cannot be recovered; the caller then closes
        the connection.
        """
        buf = self._buffer
        buf += data
        out: list[bytes] = []
        while True:
            if buf.startswith(b"\r\n\r\n"):
                self.pings += 1
                del buf[:4]
                continue
            if buf.startswith(b"\r\n") and len(buf) > 2 and buf[2] != 13:
                del buf[:2]
                continue
            head_end = buf.find(b"\r\n\r\n")
            if head_end == -1:
                if len(buf) > self._max_size:
                    raise SipParseError("message headers exceed the size limit", 513)
                return out
            length = _content_length(bytes(buf[:head_end]))
            total = head_end + 4 + length
            if total > self._max_size:
                raise SipParseError("message exceeds the size limit", 513)
            if len(buf) < total:
                return out
            out.append(bytes(buf[:total]))
            del buf[:total]


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"content-length", b"l"):
            text = value.strip().decode("ascii", "replace")
            return parse_uint(text, "Content-Length", MAX_MESSAGE_SIZE)
    raise SipParseError("Content-Length is required on stream transports")


def make_response(
    request: Request, status: int, reason: str | None = None, *, to_tag: str | None = None
) -> Response:
    """Build a response to ``request`` per RFC 3261 §8.2.6.2.

    Via, From, Call-ID and CSeq are copied; To is copied and gets ``to_tag``
    if it has none yet (never on 100 Trying).
    """
    headers = Headers()
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for line_name, value in request.headers:
            if line_name == name:
                headers.add(name, value)
    if to_tag and status > 100 and request.to.tag is None:
        headers.set("To", f"{request.headers.get('To')};tag={to_tag}")
    return Response(status, reason, headers)
