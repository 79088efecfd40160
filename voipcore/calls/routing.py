"""Where a call goes: a user, a ring group, the trunk, or nowhere (a refusal).

:meth:`Router.route` is a pure decision: it reads the users, ring groups,
registrations (as of ``now``) and the dialling policy, and returns
:class:`RingUsers`, :class:`DialTrunk` or :class:`Refuse`.  The call layer
does the ringing.  The same decision serves a phone's INVITE, a call the
server originates, a leg added to a running call and a transfer target.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from voipcore.config import RingGroupConfig
from voipcore.dialer.numbers import (
    CountryPolicy,
    ForbiddenDestination,
    InvalidNumber,
    is_extension_like,
    normalize,
)
from voipcore.registrar import Registrar
from voipcore.sip.errors import SipParseError
from voipcore.sip.transaction import Address
from voipcore.sip.uri import SipUri, parse_uri
from voipcore.store import Binding, User


@dataclass(frozen=True, slots=True)
class Contact:
    """One registered phone of a user: its Contact URI and where to send to it."""

    user: str
    uri: str
    addr: Address


#: Where a user is rung: registered phones, signed-in dialer pages, or both at once.
Device = Literal["any", "phone", "browser"]


@dataclass(frozen=True, slots=True)
class RingUsers:
    """Ring every registered phone of these users at once (RFC 3261 §16.7 forking)."""

    name: str
    """The user or ring group called."""
    contacts: list[Contact]
    browsers: list[str] = field(default_factory=list)
    """Users rung on their signed-in dialer pages too."""

    def on(self, device: Device) -> RingUsers | None:
        """Only the phones, only the pages, or both; None when that leaves nothing."""
        contacts = [] if device == "browser" else self.contacts
        browsers = [] if device == "phone" else self.browsers
        if not contacts and not browsers:
            return None
        return RingUsers(self.name, contacts, browsers)


def unreachable(name: str, device: Device) -> str:
    """Why ``name`` cannot be rung on ``device``, in words for a rep."""
    if device == "phone":
        return f"{name} has no registered phone"
    if device == "browser":
        return f"{name} has no dialer page open"
    return f"{name} has neither a registered phone nor a dialer page open"


@dataclass(frozen=True, slots=True)
class DialTrunk:
    """Call a number on the phone network through the trunk."""

    e164: str


@dataclass(frozen=True, slots=True)
class Refuse:
    """Turn the call away with this final response."""

    status: int
    reason: str | None
    cause: str
    """The call log's hangup cause."""
    outbound: bool = False
    """The target was a number (logged as an outbound attempt)."""


Route = RingUsers | DialTrunk | Refuse


class Router:
    """Routing decisions for one server's users, ring groups and trunk."""

    def __init__(
        self,
        registrar: Registrar,
        users: Callable[[], dict[str, User]],
        *,
        ring_groups: Sequence[RingGroupConfig] = (),
        has_trunk: bool = False,
        default_region: str = "US",
        policy: CountryPolicy | None = None,
        browsers: Callable[[str], bool] = lambda user: False,
    ) -> None:
        self.registrar = registrar
        #: Whether a user has a signed-in dialer page (rung like a phone).
        self.browsers = browsers
        self.users = users
        self.ring_groups = ring_groups
        self.has_trunk = has_trunk
        self.default_region = default_region
        self.policy = policy or CountryPolicy(frozenset({default_region}))
        #: Users by extension, built from the users dict it was made from (the
        #: server swaps in a new dict when users change).
        self._extensions: tuple[dict[str, User] | None, dict[str, User]] = (None, {})

    def route(self, target: str, wall: float, *, caller: str | None = None) -> Route:
        """Where a call to ``target`` (name, extension, group or number) goes at ``wall``."""
        found = self.target(target)
        if found is not None:
            name, members = found
            if len(members) > 1 and caller is not None:
                members = [m for m in members if m != caller]  # a member calling the group
            contacts = [
                Contact(member, binding.contact, contact_address(binding))
                for member in members
                for binding in self.registrar.lookup(member, wall)
            ]
            browsers = [member for member in members if self.browsers(member)]
            if not contacts and not browsers:
                return Refuse(480, None, "unavailable")
            return RingUsers(name, contacts, browsers)
        if not self.has_trunk or is_extension_like(target):
            return Refuse(404, f"Not Found ({target})", "failed")
        try:
            number = normalize(target, self.default_region)
            self.policy.check(number)
        except InvalidNumber as exc:
            return Refuse(exc.sip_status, short(str(exc)), "invalid_number", outbound=True)
        except ForbiddenDestination as exc:
            return Refuse(403, short(str(exc)), "rejected", outbound=True)
        return DialTrunk(number.e164)

    def target(self, name: str) -> tuple[str, list[str]] | None:
        """The user (by name or extension) or ring group called ``name``: its name
        and the usernames to ring."""
        user = self.find_user(name)
        if user is not None:
            return user.username, [user.username]
        group = next((g for g in self.ring_groups if name in (g.name, g.extension)), None)
        return None if group is None else (group.name, list(group.members))

    def find_user(self, target: str) -> User | None:
        """The user whose name or extension is ``target``."""
        users = self.users()
        user = users.get(target)
        if user is not None:
            return user
        indexed, by_extension = self._extensions
        if indexed is not users:
            by_extension = {u.extension: u for u in users.values() if u.extension is not None}
            self._extensions = (users, by_extension)
        return by_extension.get(target)


def short(text: str) -> str:
    """A reason phrase of sensible length."""
    return text if len(text) <= 100 else text[:97] + "..."


def _address(source: str) -> Address:
    """``udp:host:port`` as stored in a binding → a transport address."""
    transport, rest = source.split(":", 1)
    host, _, port = rest.rpartition(":")
    return (transport.upper(), host.strip("[]"), int(port))


def contact_address(binding: Binding) -> Address:
    """Where to send requests for a registered contact.

    The Contact URI, unless the phone is behind NAT: a private Contact address
    other than the address the REGISTER came from (or a host name, which we do
    not resolve) means the contact is unreachable as written, so requests go to
    the registration's source, which the NAT keeps open (RFC 3581, RFC 5626 §5).
    """
    source = _address(binding.source)
    try:
        uri = parse_uri(binding.contact)
        if not isinstance(uri, SipUri):
            return source
        host = uri.host.strip("[]")
        ip = ipaddress.ip_address(host)
    except (SipParseError, ValueError):
        return source
    if host != source[1] and (ip.is_private and not ip.is_loopback):
        return source
    transport = uri.params.get("transport") or source[0]
    return (transport.upper(), host, uri.port or 5060)
