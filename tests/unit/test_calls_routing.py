"""Where a call goes (voipcore.calls.routing): users, ring groups, the trunk, refusals.

The router reads a real :class:`Registrar` whose bindings are loaded with an
explicit wall-clock expiry, so "registered" is a matter of the ``wall`` passed
to :meth:`Router.route`.
"""

from __future__ import annotations

import pytest

from voipcore.calls.routing import (
    Contact,
    DialTrunk,
    Refuse,
    RingUsers,
    Router,
    contact_address,
)
from voipcore.cli import make_user
from voipcore.config import RingGroupConfig
from voipcore.dialer.numbers import CountryPolicy
from voipcore.registrar import Registrar
from voipcore.sip.digest import DigestAuthenticator
from voipcore.store import Binding, User

REALM = "test.local"
WALL = 1_700_000_000.0
USERS = {
    name: make_user(REALM, name, f"{name}-secret", extension)
    for name, extension in (("alice", "201"), ("bob", "202"), ("carol", "203"), ("dave", None))
}
SALES = RingGroupConfig(name="sales", extension="600", members=["alice", "bob", "carol"])


def binding(aor: str, contact: str, source: str, *, expires_at: float = WALL + 3600) -> Binding:
    return Binding(aor, contact, expires_at, 1.0, f"reg-{aor}", 1, source)


def make_router(
    bindings: list[Binding],
    *,
    has_trunk: bool = False,
    policy: CountryPolicy | None = None,
) -> Router:
    registrar = Registrar(REALM, DigestAuthenticator(REALM, b"k" * 32), USERS.get)
    registrar.load(bindings)
    users: dict[str, User] = dict(USERS)
    return Router(
        registrar,
        lambda: users,
        ring_groups=[SALES],
        has_trunk=has_trunk,
        default_region="US",
        policy=policy,
    )


BOB_DESK = binding("bob", "sip:bob@203.0.113.20:5060", "udp:203.0.113.20:5060")
BOB_MOBILE = binding("bob", "sip:bob@192.168.1.7:5062", "udp:198.51.100.9:40000")
ALICE = binding("alice", "sip:alice@203.0.113.10:5060", "udp:203.0.113.10:5060")
CAROL = binding("carol", "sip:carol@203.0.113.30:5060;transport=tcp", "tcp:203.0.113.30:51000")


# -- users and ring groups ---------------------------------------------------------------


@pytest.mark.parametrize("target", ["bob", "202"])
def test_user_by_name_or_extension_rings_every_registered_phone(target: str) -> None:
    route = make_router([BOB_DESK, BOB_MOBILE, ALICE]).route(target, WALL, caller="alice")
    assert route == RingUsers(
        "bob",
        [
            Contact("bob", "sip:bob@203.0.113.20:5060", ("UDP", "203.0.113.20", 5060)),
            # Behind NAT: the private Contact is reached through the REGISTER's source.
            Contact("bob", "sip:bob@192.168.1.7:5062", ("UDP", "198.51.100.9", 40000)),
        ],
    )


def test_user_without_a_live_registration_is_temporarily_unavailable() -> None:
    expired = binding("bob", "sip:bob@203.0.113.20", "udp:203.0.113.20:5060", expires_at=WALL)
    router = make_router([expired, ALICE])
    assert router.route("bob", WALL - 1, caller="alice") == RingUsers(
        "bob", [Contact("bob", "sip:bob@203.0.113.20", ("UDP", "203.0.113.20", 5060))]
    )
    # At its expiry the binding is gone (the registrar keeps only expires_at > now).
    assert router.route("bob", WALL, caller="alice") == Refuse(480, None, "unavailable")
    assert router.route("dave", WALL) == Refuse(480, None, "unavailable")


@pytest.mark.parametrize("target", ["sales", "600"])
def test_ring_group_rings_its_registered_members(target: str) -> None:
    route = make_router([ALICE, BOB_DESK, CAROL]).route(target, WALL, caller="dave")
    assert isinstance(route, RingUsers)
    assert route.name == "sales"
    assert [(c.user, c.addr) for c in route.contacts] == [
        ("alice", ("UDP", "203.0.113.10", 5060)),
        ("bob", ("UDP", "203.0.113.20", 5060)),
        ("carol", ("TCP", "203.0.113.30", 5060)),
    ]


def test_ring_group_member_calling_the_group_is_not_rung() -> None:
    route = make_router([ALICE, BOB_DESK, CAROL]).route("600", WALL, caller="bob")
    assert isinstance(route, RingUsers)
    assert [c.user for c in route.contacts] == ["alice", "carol"]


def test_ring_group_with_nobody_registered_but_the_caller_is_unavailable() -> None:
    route = make_router([BOB_DESK]).route("sales", WALL, caller="bob")
    assert route == Refuse(480, None, "unavailable")


def test_users_added_later_are_found_by_extension() -> None:
    registrar = Registrar(REALM, DigestAuthenticator(REALM, b"k" * 32), USERS.get)
    registrar.load([binding("erin", "sip:erin@203.0.113.50", "udp:203.0.113.50:5060")])
    users: dict[str, User] = dict(USERS)
    router = Router(registrar, lambda: users)
    assert router.route("205", WALL) == Refuse(404, "Not Found (205)", "failed")
    # The server swaps in a new users dict when users change.
    users = {**USERS, "erin": make_user(REALM, "erin", "erin-secret", "205")}
    route = router.route("205", WALL)
    assert isinstance(route, RingUsers) and route.name == "erin"


# -- the trunk and refusals --------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialled", "e164"),
    [
        ("4045551234", "+14045551234"),
        ("(404) 555-1234", "+14045551234"),
        ("+1 404 555 1234", "+14045551234"),
        ("14045551234", "+14045551234"),
    ],
)
def test_number_goes_to_the_trunk_in_e164(dialled: str, e164: str) -> None:
    assert make_router([], has_trunk=True).route(dialled, WALL, caller="alice") == DialTrunk(e164)


def test_allowed_foreign_country_goes_to_the_trunk() -> None:
    router = make_router([], has_trunk=True, policy=CountryPolicy(frozenset({"US", "GB"})))
    assert router.route("+44 20 7946 0000", WALL) == DialTrunk("+442079460000")


@pytest.mark.parametrize("has_trunk", [False, True])
@pytest.mark.parametrize("target", ["299", "*67", "#21#", "123456"])
def test_extension_like_target_nobody_has_is_not_found(target: str, has_trunk: bool) -> None:
    route = make_router([ALICE], has_trunk=has_trunk).route(target, WALL, caller="alice")
    assert route == Refuse(404, f"Not Found ({target})", "failed")


def test_number_without_a_trunk_is_not_found() -> None:
    route = make_router([]).route("4045551234", WALL)
    assert route == Refuse(404, "Not Found (4045551234)", "failed")


@pytest.mark.parametrize(
    ("dialled", "status", "words"),
    [
        # More digits could complete these: 484 Address Incomplete (RFC 3261 §21.4.22).
        ("4045551", 484, "missing the area code"),
        ("+1404555", 484, "too short"),
        # Nothing could: 404 (§21.4.5).
        ("+99912345678", 404, "country code 999 does not exist"),
        ("12345678901234567", 404, "too long"),
    ],
)
def test_invalid_number_is_refused_as_an_outbound_attempt(
    dialled: str, status: int, words: str
) -> None:
    route = make_router([], has_trunk=True).route(dialled, WALL, caller="alice")
    assert isinstance(route, Refuse)
    assert (route.status, route.cause, route.outbound) == (status, "invalid_number", True)
    assert route.reason is not None and words in route.reason


@pytest.mark.parametrize(
    ("dialled", "words"),
    [
        ("+44 20 7946 0000", "calls to GB (+44) are not allowed"),
        ("+1 900 225 5300", "premium-rate"),
    ],
)
def test_forbidden_destination_is_refused_with_403(dialled: str, words: str) -> None:
    route = make_router([], has_trunk=True).route(dialled, WALL, caller="alice")
    assert isinstance(route, Refuse)
    assert (route.status, route.cause, route.outbound) == (403, "rejected", True)
    assert route.reason is not None and words in route.reason
    assert len(route.reason) <= 100


def test_users_and_groups_win_over_the_trunk() -> None:
    route = make_router([BOB_DESK], has_trunk=True).route("202", WALL, caller="alice")
    assert isinstance(route, RingUsers) and route.name == "bob"


# -- contact_address: where requests for a registered contact go (NAT rule) ----------


@pytest.mark.parametrize(
    ("contact", "source", "expected"),
    [
        # Reachable as written: the Contact (third-party registration included).
        ("sip:bob@203.0.113.5:5070", "udp:203.0.113.5:5070", ("UDP", "203.0.113.5", 5070)),
        ("sip:bob@127.0.0.1:40000", "udp:127.0.0.1:39000", ("UDP", "127.0.0.1", 40000)),
        # (Only parsed, never contacted: documentation ranges count as private to Python.)
        ("sip:bob@8.8.4.4", "udp:203.0.113.5:5070", ("UDP", "8.8.4.4", 5060)),
        (
            "sip:bob@203.0.113.5:5070;transport=tcp",
            "tcp:203.0.113.5:51000",
            ("TCP", "203.0.113.5", 5070),
        ),
        # A private Contact that is where the REGISTER came from: as written.
        ("sip:bob@192.168.1.20:5060", "udp:192.168.1.20:5060", ("UDP", "192.168.1.20", 5060)),
        # Behind NAT: a private Contact that is not where the REGISTER came from.
        ("sip:bob@192.168.1.20:5060", "udp:203.0.113.5:62000", ("UDP", "203.0.113.5", 62000)),
        ("sip:bob@10.0.0.7:5060", "tcp:203.0.113.5:51000", ("TCP", "203.0.113.5", 51000)),
        ("sip:bob@[fd00::7]:5060", "udp:[2001:db8::1]:5060", ("UDP", "2001:db8::1", 5060)),
        # A host name we do not resolve, or a URI that is not SIP: the source.
        ("sip:bob@phone.example.com", "udp:203.0.113.5:5070", ("UDP", "203.0.113.5", 5070)),
        ("tel:+14045551234", "udp:203.0.113.5:5070", ("UDP", "203.0.113.5", 5070)),
    ],
)
def test_contact_address(contact: str, source: str, expected: tuple[str, str, int]) -> None:
    assert contact_address(binding("bob", contact, source)) == expected
