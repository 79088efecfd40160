"""Where the call layer sends requests for a registered contact (NAT rule)."""

from __future__ import annotations

import pytest

from voipcore.calls.routing import contact_address
from voipcore.store import Binding


def binding(contact: str, source: str) -> Binding:
    return Binding("bob", contact, 2e9, 1.0, "c", 1, source)


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
        # Behind NAT: a private Contact that is not where the REGISTER came from.
        ("sip:bob@192.168.1.20:5060", "udp:203.0.113.5:62000", ("UDP", "203.0.113.5", 62000)),
        ("sip:bob@10.0.0.7:5060", "tcp:203.0.113.5:51000", ("TCP", "203.0.113.5", 51000)),
        # A host name we do not resolve: the source.
        ("sip:bob@phone.example.com", "udp:203.0.113.5:5070", ("UDP", "203.0.113.5", 5070)),
    ],
)
def test_contact_address(contact: str, source: str, expected: tuple[str, str, int]) -> None:
    assert contact_address(binding(contact, source)) == expected
