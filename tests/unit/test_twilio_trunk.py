"""Which Twilio edge a call tries first (OPTIONS ping health and RTT)."""

from __future__ import annotations

import pytest

from voipcore.config import TwilioTrunkConfig
from voipcore.trunks.twilio import TwilioTrunk


def trunk(health: dict[str, tuple[bool, float | None]]) -> TwilioTrunk:
    config = TwilioTrunkConfig(
        domain="acme.pstn.twilio.com",
        edges=["ashburn", "umatilla", "dublin"],
        username="voipcore",
        password="Sup3rSecretPassw0rd",
    )
    result = TwilioTrunk(config)
    result.health.update(health)
    return result


@pytest.mark.parametrize(
    ("health", "order"),
    [
        ({}, ["ashburn", "umatilla", "dublin"]),  # nothing measured: preference order
        # Within 20 ms of the fastest: still preference order.
        (
            {"ashburn": (True, 0.030), "umatilla": (True, 0.015), "dublin": (True, 0.090)},
            ["ashburn", "umatilla", "dublin"],
        ),
        # Clearly slower preferred edge: the faster one first, the rest by RTT.
        (
            {"ashburn": (True, 0.150), "umatilla": (True, 0.010), "dublin": (True, 0.090)},
            ["umatilla", "dublin", "ashburn"],
        ),
        # Down edges last, unmeasured ones after measured live ones.
        (
            {"ashburn": (False, None), "dublin": (True, 0.080)},
            ["dublin", "umatilla", "ashburn"],
        ),
    ],
)
def test_ordered_edges(health: dict[str, tuple[bool, float | None]], order: list[str]) -> None:
    assert trunk(health).ordered_edges() == order
