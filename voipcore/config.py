"""voipcore configuration: TOML validated by pydantic.

Every error names the key that is wrong (``sip.listen[1]: ...``) so an
operator can fix the file without reading code.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Media imports nothing from voipcore: the HOST:PORT parser lives with its control addresses.
from media.control import parse_host_port as parse_host_port
from media.workers import worker_addresses

TRANSPORTS = ("udp", "tcp")


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the key."""


@dataclass(frozen=True, slots=True)
class ListenSpec:
    """One ``transport:host:port`` listen address (port 0 picks a free port)."""

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


def parse_listen(text: str) -> ListenSpec:
    """Parse ``udp:HOST:PORT`` / ``tcp:HOST:PORT``."""
    transport, sep, rest = text.partition(":")
    if not sep or transport.lower() not in TRANSPORTS:
        raise ValueError(f"expected one of {', '.join(TRANSPORTS)} then :HOST:PORT, got {text!r}")
    host, port = parse_host_port(rest)
    return ListenSpec(transport.lower(), host, port)


@dataclass(frozen=True, slots=True)
class Route:
    """Where the default route leaves this host."""

    address: str
    """Our address on it: the source address the kernel picks."""
    interface: str | None
    """The interface holding that address, if known."""


#: Family (AF_INET or AF_INET6) → the default route of that family, None without one.
RouteLookup = Callable[[socket.AddressFamily], Route | None]

#: Documentation addresses (RFC 5737, RFC 3849): routed as any public one, never answered.
_ROUTE_PROBES = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}
#: Linux ``SIOCGIFADDR``: an interface's IPv4 address.
_SIOCGIFADDR = 0x8915


def default_route(family: socket.AddressFamily) -> Route | None:
    """The default route of ``family``, None without one (a namespace with only loopback).

    ``connect()`` on a UDP socket only consults the routing table: no packet is sent.
    """
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((_ROUTE_PROBES[family], 9))
            address = str(sock.getsockname()[0]).partition("%")[0]
    except OSError:
        return None
    return Route(address, _interface_holding(address))


def _interface_holding(address: str) -> str | None:
    """The interface with ``address``, for the start-up log (Linux; None if not found)."""
    packed = ipaddress.ip_address(address).packed
    if len(packed) == 16:
        with contextlib.suppress(OSError):
            for line in Path("/proc/net/if_inet6").read_text().splitlines():
                fields = line.split()
                if bytes.fromhex(fields[0]) == packed:
                    return fields[-1]
        return None
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            with contextlib.suppress(OSError):  # an interface without IPv4
                ifreq = fcntl.ioctl(sock, _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
                if ifreq[20:24] == packed:  # struct ifreq: name[16], sockaddr_in
                    return name
    return None


@dataclass(frozen=True, slots=True)
class Advertised:
    """The address phones are given for media, and why (for the start-up log)."""

    address: str
    reason: str
    loopback_only: bool
    """Loopback while the media sockets listen wider: other machines cannot reach it."""


def advertise_address(
    host: str, advertise: str | None, route: RouteLookup = default_route
) -> Advertised:
    """The address for SDP ``c=`` (RFC 4566 §5.7), and for Via and Contact when SIP
    listens on a wildcard (RFC 3261 §18.1.1, §8.1.1.8).

    A wildcard ``host`` names no address: a phone on the LAN reaches the one on the
    interface of the default route of the wildcard's family; loopback without one.
    """
    listen = ipaddress.ip_address(host)
    if advertise:
        address, reason = advertise, "from [media] advertise"
    elif not listen.is_unspecified:
        address, reason = host, "the host [media] listens on"
    elif found := route(socket.AF_INET6 if listen.version == 6 else socket.AF_INET):
        address = found.address
        reason = f"the address of the default-route interface {found.interface or ''}".rstrip()
    else:
        address = "::1" if listen.version == 6 else "127.0.0.1"
        reason = "no default route: loopback"
    loopback_only = ipaddress.ip_address(address).is_loopback and not listen.is_loopback
    return Advertised(address, reason, loopback_only)


Dscp = Annotated[int, Field(ge=0, le=63, description="DSCP code point (EF=46, CS3=24)")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SipConfig(_Section):
    """``[sip]``: listeners, domain (digest realm) and registration bounds (RFC 3261 §10)."""

    listen: list[ListenSpec]
    domain: str = Field(min_length=1)
    min_expires: int = Field(60, ge=1)
    max_expires: int = Field(3600, ge=1)
    default_expires: int = Field(3600, ge=1)
    max_contacts: int = Field(10, ge=1)
    nonce_ttl: float = Field(300.0, gt=0)
    digest_algorithms: list[str] = ["MD5"]
    tcp_idle_timeout: float = Field(600.0, gt=0)
    ring_timeout: float = Field(60.0, gt=0)
    max_calls_per_user: int = Field(4, ge=1)
    #: RFC 4028 session interval asked of both legs of every call, and our Min-SE.
    session_expires: int = Field(1800, ge=90)
    min_se: int = Field(90, ge=90)
    #: "always": every leg gets a session timer, and we refresh phones without timer
    #: support; "accept": only phones that support them (scripted UAs such as SIPp
    #: scenarios do not expect our refresh re-INVITEs).
    session_timers: Literal["always", "accept"] = "always"
    #: Seconds a pass-through call waits for the rep to press 1 on their own phone.
    passthrough_timeout: float = Field(15.0, gt=0)

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, value: Any) -> list[ListenSpec]:
        if not isinstance(value, list) or not value:
            raise ValueError('must be a non-empty list like ["udp:0.0.0.0:5060"]')
        return [v if isinstance(v, ListenSpec) else parse_listen(str(v)) for v in value]

    @field_validator("digest_algorithms")
    @classmethod
    def _algorithms(cls, value: list[str]) -> list[str]:
        if not value or len(set(value)) != len(value) or not set(value) <= {"MD5", "SHA-256"}:
            raise ValueError('must list "MD5" and/or "SHA-256" once each, preferred first')
        return value

    @model_validator(mode="after")
    def _bounds(self) -> SipConfig:
        if not self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError("need min_expires <= default_expires <= max_expires")
        if self.min_se > self.session_expires:
            raise ValueError("need min_se <= session_expires (RFC 4028 §5)")
        return self


#: URI schemes of ICE servers: STUN (RFC 7064) and TURN (RFC 7065).
ICE_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


class IceServer(_Section):
    """``[[http.ice_servers]]``: a STUN or TURN server for the browser (WebRTC RTCIceServer)."""

    urls: list[str] = Field(min_length=1)
    username: str | None = None
    credential: str | None = None

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.lower().startswith(ICE_SCHEMES):
                raise ValueError(f"{url!r} must start with one of {', '.join(ICE_SCHEMES)}")
        return value

    @model_validator(mode="after")
    def _turn_credentials(self) -> IceServer:
        # RTCPeerConnection throws InvalidAccessError for a TURN URL without both (WebRTC 1.0).
        turn = any(url.lower().startswith("turn") for url in self.urls)
        if turn and (self.username is None or self.credential is None):
            raise ValueError("a turn: or turns: URL needs username and credential")
        return self


class HttpConfig(_Section):
    """``[http]``: the REST API, web dialer and /metrics listener, plain and HTTPS."""

    listen: str
    tls_listen: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    session_hours: float = Field(12.0, gt=0)
    ice_servers: list[IceServer] = []

    @field_validator("listen", "tls_listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_host_port(value)
        return value

    @field_validator("tls_cert", "tls_key")
    @classmethod
    def _file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _cert_and_key(self) -> HttpConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_cert"
            raise ValueError(f"tls_cert and tls_key go together: {missing} is missing")
        return self


class MediaConfig(_Section):
    """``[media]``: RTP addresses, port range and worker processes (0 = in-process engine)."""

    rtp_ports: tuple[int, int] = (20000, 30000)
    workers: int = Field(0, ge=0, le=256)
    host: str = "0.0.0.0"
    advertise: str | None = None
    media_timeout: float = Field(60.0, gt=0)
    #: How signalling reaches its workers: "unix", "tcp:HOST:PORT" or "udp:HOST:PORT".
    control: str = "unix"
    #: Codecs for browser (WebRTC) legs, preferred first: PCMU, PCMA, opus.
    browser_codecs: tuple[str, ...] = ("PCMU", "PCMA", "opus")

    @field_validator("browser_codecs")
    @classmethod
    def _browser_codecs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = {"PCMU", "PCMA", "OPUS"}
        unknown = [name for name in value if name.upper() not in known]
        if unknown or not value:
            raise ValueError(f"expected some of PCMU, PCMA, opus; got {list(value)!r}")
        return value

    @field_validator("control")
    @classmethod
    def _control(cls, value: str, info: ValidationInfo) -> str:
        worker_addresses(value, info.data.get("workers", 0), "")
        return value

    @field_validator("host", "advertise")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"must be an IP address, got {value!r}") from None
        return value

    @cached_property
    def advertisement(self) -> Advertised:
        """:func:`advertise_address` for this section, resolved once (not per SDP)."""
        return advertise_address(self.host, self.advertise, default_route)

    @property
    def advertised(self) -> str:
        """The address put in SDP (:attr:`advertisement`)."""
        return self.advertisement.address

    @field_validator("rtp_ports")
    @classmethod
    def _ports(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 1024 <= low < high <= 65535:
            raise ValueError("must be [LOW, HIGH] with 1024 <= LOW < HIGH <= 65535")
        return value


class QosConfig(_Section):
    """``[qos]``: DSCP code points for signalling and media (RFC 4594 classes)."""

    sip_dscp: Dscp = 24
    media_dscp: Dscp = 46


class StoreConfig(_Section):
    """``[store]``: where users, registrations and the call log live.

    Only SQLite for now; the store's queries are dialect-neutral, so a PostgreSQL
    URL is a matter of accepting it here (and installing a driver).
    """

    url: str = "sqlite:///voipcore.db"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith("sqlite:///"):
            raise ValueError("only sqlite:///PATH is supported, e.g. sqlite:///voipcore.db")
        if value == "sqlite:///":
            raise ValueError("sqlite URL needs a path, e.g. sqlite:///voipcore.db")
        return value

    @property
    def sqlite_path(self) -> str:
        """The database path (``:memory:`` allowed)."""
        return self.url.removeprefix("sqlite:///")

    @property
    def data_dir(self) -> Path:
        """The directory of the database file, where other state files go too
        (the working directory for ``:memory:``)."""
        path = self.sqlite_path
        return Path() if path == ":memory:" else Path(path).parent


class RecordingConfig(_Section):
    """``[recording]``: whether calls are recorded, the consent beep, how long files stay."""

    policy: Literal["never", "always", "rep"] = "rep"
    """``never``; ``always`` (from the answer, pausable, not stoppable); ``rep`` decides."""
    announce: Literal["none", "beep"] = "beep"
    """``beep``: every party hears a short tone when recording starts or resumes."""
    retention_days: int = Field(default=90, ge=1)
    """Files older than this many days are deleted."""
    directory: Path | None = None
    """Where the files go; None: ``recordings/`` beside the store."""

    def path(self, store: StoreConfig) -> Path:
        """The directory recordings are written to."""
        return self.directory if self.directory is not None else store.data_dir / "recordings"


class UserConfig(_Section):
    """``[[users]]``: an account seeded into the store at start-up."""

    username: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._~+-]+$")
    password: str | None = Field(None, min_length=4)
    extension: str | None = Field(None, pattern=r"^[0-9*#]+$")
    display_name: str | None = None
    caller_id: str | None = None
    """E.164 number this user's trunk calls show; default: the trunk's ``caller_id``."""
    role: Literal["admin", "rep"] = "rep"
    """An admin sees every user's calls and manages the team's data; a rep, their own."""

    @field_validator("caller_id")
    @classmethod
    def _caller_id(cls, value: str | None) -> str | None:
        return None if value is None else _e164(value)


class RingGroupConfig(_Section):
    """``[[ring_groups]]``: users rung together (every registered phone of every
    member in parallel, first answer wins), by extension or from a DID."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._~+-]+$")
    extension: str | None = Field(None, pattern=r"^[0-9*#]+$")
    members: list[str] = Field(min_length=1)


#: Twilio's edge locations, usable as ``{name}.pstn.{edge}.twilio.com``.
TWILIO_EDGES = (
    "ashburn",
    "umatilla",
    "dublin",
    "frankfurt",
    "singapore",
    "tokyo",
    "sao-paulo",
    "sydney",
)


def _e164(value: str) -> str:
    from voipcore.dialer.numbers import InvalidNumber, normalize

    try:
        number = normalize(value, None)
    except InvalidNumber as exc:
        raise ValueError(f"{value!r} is not an E.164 number: {exc}") from None
    if number.e164 != value:
        raise ValueError(f"{value!r} must be written in E.164, as {number.e164}")
    return value


#: Twilio's SIP signalling addresses, one /30 per region (Twilio's "IP addresses" page for
#: Elastic SIP Trunking): inbound calls are accepted from these only, unless overridden.
TWILIO_SIGNALLING = [
    "54.172.60.0/30",
    "54.244.51.0/30",
    "54.171.127.192/30",
    "35.156.191.128/30",
    "54.65.63.192/30",
    "54.169.127.128/30",
    "54.252.254.64/30",
    "177.71.206.192/30",
]


class TwilioTrunkConfig(_Section):
    """``[trunks.twilio]``: a Twilio Elastic SIP trunk (termination and origination)."""

    domain: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*\.pstn\.twilio\.com$")
    edges: list[str] = ["ashburn"]
    username: str = Field(min_length=1)
    password: str = Field(min_length=12)
    caller_id: str | None = None
    cps: float = Field(1.0, gt=0)
    secure: bool = False
    friendly_name: str = "voipcore"
    origination_uri: str | None = None
    dids: dict[str, str] = {}
    outbound_proxy: str | None = None
    edge_addresses: dict[str, str] = {}
    failover_timeout: float = Field(2.0, gt=0)
    ping_interval: float = Field(30.0, ge=0)
    ping_timeout: float = Field(2.0, gt=0)
    origination_acl: list[str] = TWILIO_SIGNALLING
    account_sid: str | None = Field(None, pattern=r"^AC[0-9a-f]{32}$")
    auth_token: str | None = None
    api_key_sid: str | None = Field(None, pattern=r"^SK[0-9a-f]{32}$")
    api_key_secret: str | None = None
    #: USD per billable minute per leg (Twilio bills each answered leg by the minute,
    #: rounded up), for the call log's estimated cost; None: no estimate.
    rate_per_minute: Decimal | None = Field(None, gt=0, max_digits=12, decimal_places=6)

    @field_validator("edges")
    @classmethod
    def _edges(cls, value: list[str]) -> list[str]:
        unknown = [edge for edge in value if edge not in TWILIO_EDGES]
        if unknown or not value:
            raise ValueError(f"edges must be some of {', '.join(TWILIO_EDGES)}; got {unknown}")
        return value

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        # Twilio's credential rule: at least 12 characters, a digit, upper and lower case.
        if not (any(c.isdigit() for c in value) and value.lower() != value != value.upper()):
            raise ValueError("Twilio needs a digit, an upper- and a lower-case letter in it")
        return value

    @field_validator("origination_uri")
    @classmethod
    def _origination_uri(cls, value: str | None) -> str | None:
        # Twilio's OriginationUrl "must be a sip: schema": it refuses sips:.
        if value is not None and not value.lower().startswith("sip:"):
            raise ValueError(
                f"{value!r}: Twilio routes inbound calls to sip: URIs only (not sips:); "
                "for TLS write sip:HOST;transport=tls"
            )
        return value

    @field_validator("outbound_proxy")
    @classmethod
    def _proxy(cls, value: str | None) -> str | None:
        if value is not None:
            parse_host_port(value)
        return value

    @field_validator("origination_acl")
    @classmethod
    def _acl(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network)
            except ValueError:
                raise ValueError(
                    f"{network!r} is not an address range like 54.172.60.0/30"
                ) from None
        return value

    @field_validator("edge_addresses")
    @classmethod
    def _edge_addresses(cls, value: dict[str, str]) -> dict[str, str]:
        for edge, address in value.items():
            if edge not in TWILIO_EDGES:
                raise ValueError(f"unknown edge {edge!r}")
            parse_host_port(address)
        return value

    @field_validator("caller_id")
    @classmethod
    def _caller_id(cls, value: str | None) -> str | None:
        return None if value is None else _e164(value)

    @field_validator("dids")
    @classmethod
    def _dids(cls, value: dict[str, str]) -> dict[str, str]:
        for did in value:
            _e164(did)
        return value


class DialingConfig(_Section):
    """``[dialing]``: how dialled numbers become E.164, and where calls may go."""

    default_region: str = "US"
    allowed_countries: list[str] | None = None
    allow_premium: bool = False

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        from voipcore.dialer.numbers import validate_region

        return validate_region(value)

    @field_validator("allowed_countries")
    @classmethod
    def _countries(cls, value: list[str] | None) -> list[str] | None:
        from voipcore.dialer.numbers import validate_region

        return None if value is None else [validate_region(code) for code in value]

    @property
    def countries(self) -> frozenset[str]:
        """Allowed destination countries; by default the default region's only."""
        return frozenset(self.allowed_countries or [self.default_region])


class TrunksConfig(_Section):
    """``[trunks]``: carrier trunks."""

    twilio: TwilioTrunkConfig | None = None


class Config(_Section):
    """The whole file."""

    sip: SipConfig
    http: HttpConfig
    media: MediaConfig = Field(default_factory=MediaConfig)
    qos: QosConfig = Field(default_factory=QosConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    trunks: TrunksConfig = Field(default_factory=TrunksConfig)
    dialing: DialingConfig = Field(default_factory=DialingConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    users: list[UserConfig] = []
    ring_groups: list[RingGroupConfig] = []

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: set[str] = set()
        for user in self.users:
            if user.username in seen:
                raise ValueError(f"duplicate username {user.username!r} in [[users]]")
            seen.add(user.username)
        extensions = {u.extension for u in self.users if u.extension}
        for group in self.ring_groups:
            if group.name in seen:
                raise ValueError(f"ring group name {group.name!r} is already a user or group")
            if group.extension in extensions:
                raise ValueError(f"ring group {group.name!r}: extension {group.extension} is taken")
            seen.add(group.name)
            if group.extension:
                extensions.add(group.extension)
        return self


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config; :class:`ConfigError` names each bad key."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling)"
            problems.append(f"{_key_path(err['loc'])}: {msg}")
        raise ConfigError(f"{path}: " + "; ".join(problems)) from None
