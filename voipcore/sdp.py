"""SDP session descriptions (RFC 8866, formerly RFC 4566) and offer/answer (RFC 3264).

The model types the lines it understands and keeps every attribute, known or
not, in its original order, so a parsed description is re-emitted faithfully.
Typed views (:attr:`MediaDescription.codecs`, :attr:`~MediaDescription.direction`,
:attr:`~MediaDescription.rtcp_address`, ...) are computed from that attribute
list.  The functions at the end are what a B2BUA anchoring media needs:
:func:`negotiate`, :func:`build_offer`, :func:`build_answer`, :func:`rewrite`,
the direction rules for answers and hold, and :func:`to_engine_codecs`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise

#: The media direction attributes (RFC 8866 §6.7); absent means sendrecv.
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
#: Transport protocols the media engine terminates itself (RFC 3551, RFC 4585).
PLAIN_RTP = frozenset({"RTP/AVP", "RTP/AVPF"})
#: Payload formats that carry no voice of their own (RFC 4733 events, RFC 3389 comfort noise).
AUXILIARY = frozenset({"telephone-event", "cn"})

_LINE_RE = re.compile(r"[a-z]=")
_DIGITS_RE = re.compile(r"[0-9]+")
_BANDWIDTH_RE = re.compile(r"([A-Za-z0-9\-_.]+):([0-9]+)")
_RTPMAP_RE = re.compile(r"([0-9]{1,3}) +([^/\s]+)/([0-9]+)(?:/([0-9]+))?")
_SESSION_ONLY = frozenset("vosuepzrt")


class SdpError(ValueError):
    """A description that breaks the RFC 8866 §9 grammar, or an offer that cannot be answered."""


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _port(text: str) -> int | None:
    if not _DIGITS_RE.fullmatch(text) or int(text) > 65535:
        return None
    return int(text)


@dataclass(frozen=True, slots=True)
class Format:
    """One RTP payload format: ``a=rtpmap`` (RFC 8866 §6.6) with its ``a=fmtp`` (§6.15)."""

    payload_type: int
    name: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None

    @property
    def key(self) -> tuple[str, int, int]:
        """What makes two formats the same codec; encoding names ignore case (RFC 3264 §6.1)."""
        return self.name.lower(), self.clock_rate, self.channels

    @property
    def encoding(self) -> str:
        """The ``a=rtpmap`` value after the payload type: ``name/rate[/channels]``."""
        if self.channels == 1:
            return f"{self.name}/{self.clock_rate}"
        return f"{self.name}/{self.clock_rate}/{self.channels}"


#: RFC 3551 §6 tables 4 and 5: payload types usable without ``a=rtpmap``.
STATIC_FORMATS: dict[int, Format] = {
    f.payload_type: f
    for f in (
        Format(0, "PCMU", 8000),
        Format(3, "GSM", 8000),
        Format(4, "G723", 8000),
        Format(5, "DVI4", 8000),
        Format(6, "DVI4", 16000),
        Format(7, "LPC", 8000),
        Format(8, "PCMA", 8000),
        Format(9, "G722", 8000),
        Format(10, "L16", 44100, 2),
        Format(11, "L16", 44100),
        Format(12, "QCELP", 8000),
        Format(13, "CN", 8000),
        Format(14, "MPA", 90000),
        Format(15, "G728", 8000),
        Format(16, "DVI4", 11025),
        Format(17, "DVI4", 22050),
        Format(18, "G729", 8000),
        Format(25, "CelB", 90000),
        Format(26, "JPEG", 90000),
        Format(28, "nv", 90000),
        Format(31, "H261", 90000),
        Format(32, "MPV", 90000),
        Format(33, "MP2T", 90000),
        Format(34, "H263", 90000),
    )
}
PCMU = STATIC_FORMATS[0]
PCMA = STATIC_FORMATS[8]
#: RFC 4733 §7.1.1 DTMF events 0-15 plus flash (16), on the usual dynamic type.
TELEPHONE_EVENT = Format(101, "telephone-event", 8000, fmtp="0-16")
#: Opus as browsers offer it: always ``opus/48000/2`` in SDP (RFC 7587 §7).
OPUS = Format(111, "opus", 48000, 2, fmtp="minptime=10;useinbandfec=1")
#: The transport of WebRTC media: ICE, DTLS-SRTP, RTCP feedback (RFC 8829 §5.1.2).
WEBRTC_PROTO = "UDP/TLS/RTP/SAVPF"


def parse_rtpmap(value: str) -> Format:
    """``a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]`` (RFC 8866 §6.6)."""
    match = _RTPMAP_RE.fullmatch(value)
    if match is None or int(match[1]) > 127 or int(match[3]) == 0 or match[4] == "0":
        raise SdpError(f"bad a=rtpmap {'a=rtpmap:' + value!r}")
    channels = int(match[4]) if match[4] else 1
    return Format(int(match[1]), match[2], int(match[3]), channels)


def parse_fmtp(value: str) -> tuple[str, str]:
    """``a=fmtp:<format> <parameters>`` (RFC 8866 §6.15) as (format, parameters).

    A missing parameter string is tolerated as empty.
    """
    fmt, _, params = value.partition(" ")
    if not fmt:
        raise SdpError(f"bad a=fmtp {'a=fmtp:' + value!r}")
    return fmt, params.strip()


def parse_rtcp(value: str) -> tuple[int, str | None]:
    """``a=rtcp:<port> [<nettype> <addrtype> <address>]`` (RFC 3605 §2.1) as (port, address)."""
    parts = value.split()
    port = _port(parts[0]) if parts else None
    if port is None or len(parts) not in (1, 4):
        raise SdpError(f"bad a=rtcp {'a=rtcp:' + value!r}")
    return port, parts[3] if len(parts) == 4 else None


def _parse_ptime(name: str, value: str | None) -> int:
    if value is None or not _DIGITS_RE.fullmatch(value) or int(value) == 0:
        raise SdpError(f"bad a={name} {'a=' + str(Attribute(name, value))!r}")
    return int(value)


@dataclass(frozen=True, slots=True)
class Attribute:
    """``a=<name>[:<value>]`` (RFC 8866 §5.13); ``value`` is None for a property attribute."""

    name: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Attribute:
        """Parse what follows ``a=``, checking the attributes this module interprets."""
        name, colon, value = text.partition(":")
        if not name or " " in name:
            raise SdpError(f"bad attribute {'a=' + text!r}")
        attribute = cls(name, value if colon else None)
        attribute.check()
        return attribute

    def check(self) -> None:
        """Raise :class:`SdpError` if an attribute this module reads is malformed."""
        if self.name in ("rtpmap", "fmtp", "rtcp") and self.value is None:
            raise SdpError(f"bad a={self.name} {'a=' + str(self)!r}")
        if self.name == "rtpmap" and self.value is not None:
            parse_rtpmap(self.value)
        elif self.name == "fmtp" and self.value is not None:
            parse_fmtp(self.value)
        elif self.name == "rtcp" and self.value is not None:
            parse_rtcp(self.value)
        elif self.name in ("ptime", "maxptime"):
            _parse_ptime(self.name, self.value)

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`` (RFC 8866 §5.2)."""

    username: str
    session_id: int
    session_version: int
    nettype: str
    addrtype: str
    address: str

    @classmethod
    def parse(cls, value: str) -> Origin:
        """Parse what follows ``o=``; sess-id and sess-version must be decimal."""
        parts = value.split()
        if (
            len(parts) != 6
            or not _DIGITS_RE.fullmatch(parts[1])
            or not _DIGITS_RE.fullmatch(parts[2])
        ):
            raise SdpError(f"bad o= line {'o=' + value!r}")
        return cls(parts[0], int(parts[1]), int(parts[2]), parts[3], parts[4], parts[5])

    @classmethod
    def of(cls, username: str, session_id: int, session_version: int, address: str) -> Origin:
        """An ``IN IP4``/``IN IP6`` origin for ``address``."""
        return cls(username, session_id, session_version, "IN", _addrtype(address), address)

    def bumped(self) -> Origin:
        """The same session with sess-version + 1, for a changed re-offer (RFC 3264 §8)."""
        return replace(self, session_version=self.session_version + 1)

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (RFC 8866 §5.7)."""

    nettype: str
    addrtype: str
    address: str

    @classmethod
    def parse(cls, value: str) -> Connection:
        """Parse what follows ``c=``."""
        parts = value.split()
        if len(parts) != 3:
            raise SdpError(f"bad c= line {'c=' + value!r}")
        return cls(parts[0], parts[1], parts[2])

    @classmethod
    def of(cls, address: str) -> Connection:
        """An ``IN IP4``/``IN IP6`` connection to ``address``."""
        return cls("IN", _addrtype(address), address)

    @property
    def host(self) -> str:
        """The address without a multicast ``/ttl`` or ``/count`` suffix."""
        return self.address.split("/", 1)[0]

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """``b=<bwtype>:<bandwidth>`` (RFC 8866 §5.8), e.g. ``AS:64`` or ``TIAS:64000``."""

    type: str
    value: int

    @classmethod
    def parse(cls, value: str) -> Bandwidth:
        """Parse what follows ``b=``."""
        match = _BANDWIDTH_RE.fullmatch(value)
        if match is None:
            raise SdpError(f"bad b= line {'b=' + value!r}")
        return cls(match[1], int(match[2]))

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


@dataclass(slots=True)
class Timing:
    """``t=<start> <stop>`` (RFC 8866 §5.9) and its ``r=`` repeat lines, kept verbatim."""

    start: int = 0
    stop: int = 0
    repeats: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, value: str) -> Timing:
        """Parse what follows ``t=``."""
        parts = value.split()
        if len(parts) != 2 or not all(_DIGITS_RE.fullmatch(part) for part in parts):
            raise SdpError(f"bad t= line {'t=' + value!r}")
        return cls(int(parts[0]), int(parts[1]))


def _direction(attributes: Iterable[Attribute]) -> str | None:
    return next((a.name for a in attributes if a.name in DIRECTIONS and a.value is None), None)


@dataclass(slots=True)
class MediaDescription:
    """One ``m=`` section (RFC 8866 §5.14) with its ``i= c= b= k= a=`` lines.

    ``fmts`` are the ``<fmt>`` tokens as written: payload type numbers for RTP
    protocols.  Session-level defaults (``c=``, direction) come from
    :attr:`session`, which the owning :class:`SessionDescription` sets.
    """

    kind: str
    port: int
    proto: str
    fmts: list[str]
    port_count: int | None = None
    info: str | None = None
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = field(default_factory=list)
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    session: SessionDescription | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def parse_media_line(cls, value: str) -> MediaDescription:
        """Parse what follows ``m=``: ``<media> <port>[/<count>] <proto> <fmt> ...``."""
        parts = value.split()
        if len(parts) >= 4:
            port_text, slash, count_text = parts[1].partition("/")
            port = _port(port_text)
            if port is not None and (not slash or _DIGITS_RE.fullmatch(count_text)):
                media = cls(parts[0], port, parts[2], parts[3:], int(count_text) if slash else None)
                if not media.is_rtp or all(
                    _DIGITS_RE.fullmatch(fmt) and int(fmt) <= 127 for fmt in media.fmts
                ):
                    return media
        raise SdpError(f"bad m= line {'m=' + value!r}")

    @property
    def is_rtp(self) -> bool:
        """Whether ``fmts`` are RTP payload types (RTP/AVP, RTP/SAVP, UDP/TLS/RTP/SAVPF, ...)."""
        return "RTP/" in self.proto

    def attribute(self, name: str) -> str | None:
        """The value of the first ``a=<name>:<value>``, or None."""
        return next((a.value for a in self.attributes if a.name == name), None)

    def has(self, name: str) -> bool:
        """Whether an attribute called ``name`` is present."""
        return any(a.name == name for a in self.attributes)

    @property
    def codecs(self) -> list[Format]:
        """The payload formats in offer order (preference), from a=rtpmap or RFC 3551 §6.

        A dynamic payload type without ``a=rtpmap`` is unusable and left out.
        """
        if not self.is_rtp:
            return []
        rtpmaps: dict[int, Format] = {}
        fmtps: dict[str, str] = {}
        for a in self.attributes:
            if a.name == "rtpmap" and a.value is not None:
                mapped = parse_rtpmap(a.value)
                rtpmaps.setdefault(mapped.payload_type, mapped)
            elif a.name == "fmtp" and a.value is not None:
                fmt, params = parse_fmtp(a.value)
                fmtps.setdefault(str(int(fmt)) if _DIGITS_RE.fullmatch(fmt) else fmt, params)
        formats = []
        for token in self.fmts:
            pt = int(token)
            known = rtpmaps.get(pt) or STATIC_FORMATS.get(pt)
            if known is not None:
                formats.append(replace(known, fmtp=fmtps.get(str(pt)) or None))
        return formats

    @property
    def direction(self) -> str:
        """sendrecv/sendonly/recvonly/inactive: media level, else session level (RFC 8866 §6.7)."""
        own = _direction(self.attributes)
        if own is None and self.session is not None:
            own = _direction(self.session.attributes)
        return own or "sendrecv"

    @property
    def effective_connection(self) -> Connection | None:
        """The media-level ``c=``, else the session-level one (RFC 8866 §5.7)."""
        if self.connection is None and self.session is not None:
            return self.session.connection
        return self.connection

    @property
    def connection_address(self) -> str | None:
        """Where to send RTP (with :attr:`port`); None if no ``c=`` applies."""
        connection = self.effective_connection
        return connection.host if connection is not None else None

    @property
    def rtcp_mux(self) -> bool:
        """Whether ``a=rtcp-mux`` is present (RFC 5761 §5.1.1)."""
        return self.has("rtcp-mux")

    @property
    def rtcp_address(self) -> tuple[str, int] | None:
        """Where the peer takes RTCP, or None for a disabled stream.

        ``a=rtcp`` wins (RFC 3605 §2.1), then the RTP port under ``a=rtcp-mux``
        (RFC 5761 §5.1.3), then the RTP port + 1 (RFC 3550 §11).
        """
        address = self.connection_address
        if self.port == 0 or address is None:
            return None
        value = self.attribute("rtcp")
        if value is not None:
            port, rtcp_address = parse_rtcp(value)
            return rtcp_address or address, port
        return address, self.port if self.rtcp_mux else self.port + 1

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in milliseconds (RFC 8866 §6.4)."""
        value = self.attribute("ptime")
        return None if value is None else _parse_ptime("ptime", value)

    @property
    def maxptime(self) -> int | None:
        """``a=maxptime`` in milliseconds (RFC 8866 §6.5)."""
        value = self.attribute("maxptime")
        return None if value is None else _parse_ptime("maxptime", value)

    def lines(self) -> list[str]:
        """The section's lines in RFC 8866 §5 order, without line ends."""
        port = self.port if self.port_count is None else f"{self.port}/{self.port_count}"
        lines = [f"m={self.kind} {port} {self.proto} {' '.join(self.fmts)}"]
        if self.info is not None:
            lines.append(f"i={self.info}")
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines += [f"b={b}" for b in self.bandwidths]
        if self.key is not None:
            lines.append(f"k={self.key}")
        lines += [f"a={a}" for a in self.attributes]
        return lines

    def __str__(self) -> str:
        return "\r\n".join(self.lines()) + "\r\n"


@dataclass(slots=True)
class SessionDescription:
    """A session description (RFC 8866 §5): session-level lines then ``m=`` sections.

    Construction points each section's :attr:`MediaDescription.session` here;
    copy with :func:`copy.deepcopy` rather than :func:`dataclasses.replace`,
    which would move the sections to the new object.
    """

    origin: Origin
    name: str = "-"
    info: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=list)
    time_zones: str | None = None
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)

    def __post_init__(self) -> None:
        for media in self.media:
            media.session = self

    @classmethod
    def parse(cls, data: str | bytes) -> SessionDescription:
        """Parse a description; LF-only line ends and trailing whitespace are tolerated.

        Lines of the session section may come in any order; ``v=0`` must be
        first and ``o=`` and ``s=`` present (RFC 8866 §5).  Every problem
        raises :class:`SdpError` naming the line.
        """
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SdpError(f"not UTF-8 at octet {exc.start}") from None
        lines = [
            (number, line.rstrip())
            for number, line in enumerate(data.split("\n"), start=1)
            if line.strip()
        ]
        if not lines:
            raise SdpError("empty session description")
        number, first = lines[0]
        if first != "v=0":
            raise SdpError(f"line {number}: expected 'v=0' first, got {first!r}")
        for number, line in lines:
            if not _LINE_RE.match(line):
                raise SdpError(f"line {number}: not a <type>=<value> line {line!r}")
        starts = [i for i, (_, line) in enumerate(lines) if line[0] == "m"] + [len(lines)]
        session = _parse_session(lines[1 : starts[0]])
        for start, end in pairwise(starts):
            media = _parse_media(lines[start:end])
            if media.port != 0 and media.connection is None and session.connection is None:
                number, line = lines[start]
                raise SdpError(f"line {number}: no c= for {line!r} at media or session level")
            media.session = session
            session.media.append(media)
        return session

    @property
    def direction(self) -> str | None:
        """The session-level direction attribute, if any (RFC 8866 §6.7)."""
        return _direction(self.attributes)

    @property
    def audio(self) -> MediaDescription | None:
        """The first enabled (non-zero port) audio section."""
        return next((m for m in self.media if m.kind == "audio" and m.port != 0), None)

    def lines(self) -> list[str]:
        """All lines in RFC 8866 §5 order, without line ends."""
        lines = ["v=0", f"o={self.origin}", f"s={self.name or ' '}"]
        for prefix, value in (("i", self.info), ("u", self.uri)):
            if value is not None:
                lines.append(f"{prefix}={value}")
        lines += [f"e={email}" for email in self.emails]
        lines += [f"p={phone}" for phone in self.phones]
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines += [f"b={b}" for b in self.bandwidths]
        for timing in self.timings:
            lines.append(f"t={timing.start} {timing.stop}")
            lines += [f"r={repeat}" for repeat in timing.repeats]
        for prefix, value in (("z", self.time_zones), ("k", self.key)):
            if value is not None:
                lines.append(f"{prefix}={value}")
        lines += [f"a={a}" for a in self.attributes]
        for media in self.media:
            lines += media.lines()
        return lines

    def __str__(self) -> str:
        return "\r\n".join(self.lines()) + "\r\n"

    def to_bytes(self) -> bytes:
        """The description as a message body: UTF-8 with CRLF line ends."""
        return str(self).encode("utf-8")

    def __bytes__(self) -> bytes:
        return self.to_bytes()


_Lines = list[tuple[int, str]]


def _parse_session(lines: _Lines) -> SessionDescription:
    origin: Origin | None = None
    name: str | None = None
    single: dict[str, str] = {}
    emails: list[str] = []
    phones: list[str] = []
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = []
    timings: list[Timing] = []
    attributes: list[Attribute] = []
    for number, line in lines:
        kind, value = line[0], line[2:]
        try:
            if (
                kind == "v"
                or (kind == "o" and origin is not None)
                or (kind == "s" and name is not None)
                or (kind == "c" and connection is not None)
                or (kind in "iuzk" and kind in single)
            ):
                raise SdpError(f"duplicate {kind}= line {line!r}")
            if kind == "o":
                origin = Origin.parse(value)
            elif kind == "s":
                name = value
            elif kind in "iuzk":
                single[kind] = value
            elif kind == "e":
                emails.append(value)
            elif kind == "p":
                phones.append(value)
            elif kind == "c":
                connection = Connection.parse(value)
            elif kind == "b":
                bandwidths.append(Bandwidth.parse(value))
            elif kind == "t":
                timings.append(Timing.parse(value))
            elif kind == "r":
                if not timings:
                    raise SdpError(f"r= line before any t= line {line!r}")
                timings[-1].repeats.append(value)
            elif kind == "a":
                attributes.append(Attribute.parse(value))
            else:
                raise SdpError(f"unknown line type {line!r}")
        except SdpError as exc:
            raise SdpError(f"line {number}: {exc}") from None
    if origin is None:
        raise SdpError("missing o= line")
    if name is None:
        raise SdpError("missing s= line")
    return SessionDescription(
        origin,
        name,
        info=single.get("i"),
        uri=single.get("u"),
        emails=emails,
        phones=phones,
        connection=connection,
        bandwidths=bandwidths,
        timings=timings,
        time_zones=single.get("z"),
        key=single.get("k"),
        attributes=attributes,
    )


def _parse_media(lines: _Lines) -> MediaDescription:
    number, first = lines[0]
    try:
        media = MediaDescription.parse_media_line(first[2:])
    except SdpError as exc:
        raise SdpError(f"line {number}: {exc}") from None
    for number, line in lines[1:]:
        kind, value = line[0], line[2:]
        try:
            if kind in _SESSION_ONLY:
                raise SdpError(f"{kind}= line not allowed in a media section {line!r}")
            if (
                (kind == "i" and media.info is not None)
                or (kind == "c" and media.connection is not None)
                or (kind == "k" and media.key is not None)
            ):
                raise SdpError(f"duplicate {kind}= line {line!r}")
            if kind == "i":
                media.info = value
            elif kind == "c":
                media.connection = Connection.parse(value)
            elif kind == "b":
                media.bandwidths.append(Bandwidth.parse(value))
            elif kind == "k":
                media.key = value
            elif kind == "a":
                media.attributes.append(Attribute.parse(value))
            else:
                raise SdpError(f"unknown line type {line!r}")
        except SdpError as exc:
            raise SdpError(f"line {number}: {exc}") from None
    return media


def negotiate(offer: MediaDescription, supported: Iterable[Format]) -> list[Format]:
    """The formats an answer may list (RFC 3264 §6.1); empty means 488 Not Acceptable Here.

    Formats match by encoding name (case-insensitive), clock rate and channels;
    the result keeps the offerer's order of preference and payload type
    numbers.  Its fmtp is ours where we set one (what we can receive, e.g.
    telephone-event ``0-16``), else the offerer's.  Telephone-event and comfort
    noise alone are no common codec.
    """
    if offer.port == 0:
        return []
    ours: dict[tuple[str, int, int], Format] = {}
    for local in supported:
        ours.setdefault(local.key, local)
    answer = []
    for offered in offer.codecs:
        mine = ours.get(offered.key)
        if mine is not None:
            fmtp = mine.fmtp if mine.fmtp is not None else offered.fmtp
            answer.append(replace(offered, fmtp=fmtp))
    if all(f.name.lower() in AUXILIARY for f in answer):
        return []
    return answer


_ANSWER_DIRECTION = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
_HOLD = {"sendrecv": "sendonly", "recvonly": "inactive"}
_RESUME = {"sendonly": "sendrecv", "inactive": "recvonly"}


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise SdpError(f"unknown direction {direction!r}")


def answer_direction(offered: str) -> str:
    """The widest direction an answer may take for an offered one (RFC 3264 §6.1)."""
    _check_direction(offered)
    return _ANSWER_DIRECTION[offered]


def hold_direction(current: str, hold: bool) -> str:
    """Our direction after putting the peer on hold or taking it off (RFC 3264 §8.4).

    Holding stops our receiving (sendrecv→sendonly, recvonly→inactive);
    resuming restores it (sendonly→sendrecv, inactive→recvonly).
    """
    _check_direction(current)
    table = _HOLD if hold else _RESUME
    return table.get(current, current)


def _audio_section(
    port: int,
    formats: Sequence[Format],
    direction: str,
    ptime: int | None,
    rtcp_mux: bool,
    proto: str = "RTP/AVP",
) -> MediaDescription:
    _check_direction(direction)
    if not 0 < port < 65535:
        raise SdpError(f"bad RTP port {port}: RTCP needs port + 1")
    if not formats:
        raise SdpError("no formats for the audio stream")
    attributes = _format_attributes(formats)
    if ptime is not None:
        attributes.append(Attribute("ptime", str(ptime)))
    attributes.append(Attribute("rtcp", str(port + 1)))
    if rtcp_mux:
        attributes.append(Attribute("rtcp-mux"))
    attributes.append(Attribute(direction))
    fmts = [str(f.payload_type) for f in formats]
    return MediaDescription("audio", port, proto, fmts, attributes=attributes)


def _format_attributes(formats: Iterable[Format]) -> list[Attribute]:
    attributes = []
    for f in formats:
        attributes.append(Attribute("rtpmap", f"{f.payload_type} {f.encoding}"))
        if f.fmtp is not None:
            attributes.append(Attribute("fmtp", f"{f.payload_type} {f.fmtp}"))
    return attributes


def build_offer(
    *,
    address: str,
    port: int,
    formats: Sequence[Format],
    session_id: int,
    version: int,
    direction: str = "sendrecv",
    ptime: int | None = None,
    rtcp_mux: bool = False,
    username: str = "-",
    session_name: str = "-",
) -> SessionDescription:
    """An offer (RFC 3264 §5) of one RTP/AVP audio stream at ``address:port``.

    Every format gets an ``a=rtpmap`` (static ones too), RTCP is offered on
    ``port + 1`` (RFC 3605) and the direction is always written.
    """
    return SessionDescription(
        Origin.of(username, session_id, version, address),
        session_name,
        connection=Connection.of(address),
        timings=[Timing()],
        media=[_audio_section(port, formats, direction, ptime, rtcp_mux)],
    )


def _answerable(offer: SessionDescription) -> int | None:
    return next(
        (
            index
            for index, m in enumerate(offer.media)
            if m.kind == "audio" and m.port != 0 and m.proto in PLAIN_RTP
        ),
        None,
    )


def build_answer(
    offer: SessionDescription,
    *,
    address: str,
    port: int,
    formats: Sequence[Format],
    session_id: int,
    version: int,
    direction: str | None = None,
    ptime: int | None = None,
    rtcp_mux: bool = False,
    username: str = "-",
    session_name: str = "-",
) -> SessionDescription:
    """An answer (RFC 3264 §6) with one ``m=`` line per offered one.

    The first enabled audio stream over plain RTP (:data:`PLAIN_RTP`) is
    accepted with ``formats`` (normally :func:`negotiate`'s result) at
    ``address:port``; every other stream is rejected with port 0, keeping its
    formats.  ``direction`` defaults to :func:`answer_direction` of the
    offered one; ``a=rtcp-mux`` is echoed when offered and ``rtcp_mux`` is set.
    No stream to accept, or no formats, raises :class:`SdpError`: answer 488.
    """
    index = _answerable(offer)
    if index is None:
        raise SdpError("no audio stream over RTP/AVP in the offer; answer 488")
    if not formats:
        raise SdpError("no common format; answer 488")
    media = []
    for i, offered in enumerate(offer.media):
        if i != index:
            media.append(MediaDescription(offered.kind, 0, offered.proto, list(offered.fmts)))
            continue
        chosen = direction or answer_direction(offered.direction)
        mux = rtcp_mux and offered.rtcp_mux
        media.append(_audio_section(port, formats, chosen, ptime, mux, offered.proto))
    return SessionDescription(
        Origin.of(username, session_id, version, address),
        session_name,
        connection=Connection.of(address),
        timings=[Timing()],
        media=media,
    )


def _restrict(media: MediaDescription, formats: Sequence[Format]) -> None:
    kept = {str(f.payload_type) for f in formats}
    position: int | None = None
    attributes: list[Attribute] = []
    for a in media.attributes:
        if a.name in ("rtpmap", "fmtp"):
            position = len(attributes) if position is None else position
            continue
        if a.name == "rtcp-fb" and a.value is not None:
            target = a.value.split(" ", 1)[0]
            if target != "*" and target not in kept:
                continue
        attributes.append(a)
    position = 0 if position is None else position
    attributes[position:position] = _format_attributes(formats)
    media.attributes = attributes
    media.fmts = [str(f.payload_type) for f in formats]


def rewrite(
    sdp: SessionDescription,
    *,
    address: str,
    port: int,
    formats: Sequence[Format] | None = None,
    session_version: int | None = None,
) -> SessionDescription:
    """A copy of ``sdp`` with its media anchored at ``address:port`` (the B2BUA's media relay).

    The o= address and every ``c=`` become ``address``; the first enabled
    audio stream gets ``port`` and any ``a=rtcp`` becomes ``port + 1``; other
    enabled streams are disabled with port 0 (RFC 3264 §8.2), since only audio
    is relayed.  sess-version becomes ``session_version``, or the old one + 1.
    ``formats``, if given, replace the audio formats: their a=rtpmap/fmtp
    lines are regenerated in place and a=rtcp-fb for dropped types removed.
    All other attributes are kept in order.
    """
    out = copy.deepcopy(sdp)
    audio = out.audio
    if audio is None:
        raise SdpError("no enabled audio stream to anchor")
    version = out.origin.session_version + 1 if session_version is None else session_version
    out.origin = replace(
        out.origin, session_version=version, addrtype=_addrtype(address), address=address
    )
    connection = Connection.of(address)
    if out.connection is not None or audio.connection is None:
        out.connection = connection
    for media in out.media:
        if media.connection is not None:
            media.connection = connection
        if media is not audio:
            media.port = 0
    audio.port = port
    audio.attributes = [
        Attribute("rtcp", str(port + 1)) if a.name == "rtcp" else a for a in audio.attributes
    ]
    if formats is not None:
        _restrict(audio, formats)
    return out


def bump_version(sdp: SessionDescription) -> SessionDescription:
    """A copy with sess-version + 1: a changed re-offer must bump it (RFC 3264 §8)."""
    out = copy.deepcopy(sdp)
    out.origin = out.origin.bumped()
    return out


def is_refresh(previous: SessionDescription, current: SessionDescription) -> bool:
    """Whether ``current`` repeats ``previous`` unchanged (same o= line, RFC 3264 §8)."""
    return current.origin == previous.origin


@dataclass(frozen=True, slots=True)
class WebRtcOffer:
    """What a browser's offer says about its transport (RFC 8839 §5.4, RFC 8122 §5)."""

    ufrag: str
    pwd: str
    fingerprints: list[tuple[str, str]]
    """``(hash function, fingerprint)`` pairs of the browser's DTLS certificate."""
    mid: str | None
    """The audio section's ``a=mid`` (RFC 8843 §7.1): echoed in the answer."""


def webrtc_offer(offer: SessionDescription) -> WebRtcOffer:
    """The ICE credentials and DTLS fingerprints of a browser's audio section.

    They may sit in the section or at session level (RFC 8839 §5.4); the
    browser must be able to take the DTLS client role (``a=setup`` actpass or
    active, RFC 5763 §5) and multiplex RTCP (RFC 8834 §5.1.1).
    """
    audio = offer.audio
    if audio is None or audio.proto != WEBRTC_PROTO:
        raise SdpError(f"no audio stream over {WEBRTC_PROTO} in the offer")

    def value(name: str) -> str | None:
        found = audio.attribute(name)
        return found if found is not None else offer_attribute(offer, name)

    ufrag, pwd = value("ice-ufrag"), value("ice-pwd")
    if not ufrag or not pwd:
        raise SdpError("the offer has no a=ice-ufrag / a=ice-pwd")
    prints = [a.value for a in audio.attributes if a.name == "fingerprint" and a.value]
    prints = prints or [a.value for a in offer.attributes if a.name == "fingerprint" and a.value]
    fingerprints = []
    for text in prints:
        algorithm, _, fingerprint = text.partition(" ")
        fingerprints.append((algorithm.lower(), fingerprint.strip().upper()))
    if not fingerprints:
        raise SdpError("the offer has no a=fingerprint")
    if (value("setup") or "actpass") not in ("actpass", "active"):
        raise SdpError("the browser must take the DTLS client role (a=setup:actpass or active)")
    if not audio.rtcp_mux:
        raise SdpError("the offer does not multiplex RTCP (a=rtcp-mux)")
    return WebRtcOffer(ufrag, pwd, fingerprints, audio.attribute("mid"))


def offer_attribute(sdp: SessionDescription, name: str) -> str | None:
    """A session-level ``a=<name>:<value>``, or None."""
    return next((a.value for a in sdp.attributes if a.name == name), None)


def build_webrtc_answer(
    offer: SessionDescription,
    *,
    address: str,
    port: int,
    formats: Sequence[Format],
    session_id: int,
    version: int,
    ice: tuple[str, str],
    fingerprint: tuple[str, str],
    direction: str | None = None,
) -> SessionDescription:
    """Our answer to a browser: one audio section, ICE-lite, DTLS server, rtcp-mux.

    ``ice`` is our (ufrag, pwd) and ``fingerprint`` our certificate's (hash,
    value).  We are ICE-lite with one host candidate (RFC 8445 §2.5, RFC 8839
    §5.1), the DTLS server (``a=setup:passive``, RFC 5763 §5), and bundle the
    one section (RFC 8843).  Other sections are rejected with port 0.
    """
    audio = offer.audio
    if audio is None or audio.proto != WEBRTC_PROTO:
        raise SdpError(f"no audio stream over {WEBRTC_PROTO} in the offer")
    if not formats:
        raise SdpError("no common format; answer 488")
    mid = audio.attribute("mid")
    section = _audio_section(
        port, formats, direction or answer_direction(audio.direction), None, True, WEBRTC_PROTO
    )
    # With rtcp-mux the a=rtcp line names the RTP port itself (RFC 5761 §5.1.3).
    section.attributes = [
        Attribute("rtcp", str(port)) if a.name == "rtcp" else a for a in section.attributes
    ]
    section.connection = Connection.of(address)
    section.attributes += [
        *([Attribute("mid", mid)] if mid is not None else []),
        Attribute("ice-ufrag", ice[0]),
        Attribute("ice-pwd", ice[1]),
        Attribute("fingerprint", f"{fingerprint[0]} {fingerprint[1]}"),
        Attribute("setup", "passive"),
        Attribute("candidate", f"1 1 udp 2130706431 {address} {port} typ host"),
        Attribute("end-of-candidates"),
    ]
    media = [
        section if m is audio else MediaDescription(m.kind, 0, m.proto, list(m.fmts))
        for m in offer.media
    ]
    attributes = [Attribute("ice-lite")]
    if mid is not None:
        attributes.insert(0, Attribute("group", f"BUNDLE {mid}"))
    return SessionDescription(
        Origin.of("-", session_id, version, address),
        "-",
        timings=[Timing()],
        attributes=attributes,
        media=media,
    )


def to_engine_codecs(formats: Iterable[Format]) -> list[dict[str, int | str]]:
    """Formats as the media control protocol's ``codecs`` list (``{"pt", "name", "rate"}``)."""
    return [{"pt": f.payload_type, "name": f.name, "rate": f.clock_rate} for f in formats]
