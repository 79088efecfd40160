"""Pass-through calls end to end, through the REST API and the carrier stand-in.

The rep sets a pass-through number (``PUT /api/v1/settings``) and asks for a call
with ``"passthrough": true``: the server calls the rep's number through the trunk
(the stand-in answers, playing the rep's tone), plays "Press 1 to connect your
call." and, once the stand-in sends an RFC 4733 ``1`` on that leg, dials the
prospect (the stand-in answers with another tone) and bridges the two.  The call
log has both carrier legs as billable, with the cost at the test's rate, and so
has the CSV export.
"""

from __future__ import annotations

import asyncio
import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.audio import until_heard
from tests.carrier import CarrierCall, CarrierMedia, Party, TwilioCarrier
from tests.harness import ServerProcess, TestUser
from tests.integration.test_click_to_call import Rest, rest_api
from tests.integration.test_rest_api import Client, covers
from tests.integration.test_trunk import CALLER_ID, trunk_setup

pytestmark = pytest.mark.integration

#: The rep's cell phone (their pass-through number) and the prospect.
CELL, PROSPECT = "+14045550177", "+14045551234"
#: What the rep says into the call, and what the prospect does.
REP_HZ, PROSPECT_HZ = 440.0, 1000.0
#: Seconds of tone each side must hear.
SPAN = 1.0
#: ``[sip] passthrough_timeout`` here: seconds the server waits for a key.
TIMEOUT = 3.0
#: ``[trunks.twilio] rate_per_minute``: USD per billable minute per leg.
RATE = "rate_per_minute = 0.013"


@dataclass
class PassthroughServer(ServerProcess):
    """HTTPS on (the API's cookie is Secure), and a short wait for the rep's key."""

    https: bool = True
    extra_sip: str = f"passthrough_timeout = {TIMEOUT}"


def setup(tmp_path: Path) -> Any:
    """The stand-in and a server with a trunk to it, with a rate."""
    return trunk_setup(tmp_path, server_type=PassthroughServer, extra=RATE)


async def with_cell(carrier: TwilioCarrier, rest: Rest) -> None:
    """The rep's cell answers with the rep's tone; the prospect with its own; alice's
    pass-through number is the cell, typed as people do."""
    carrier.set_party(CELL, Party(media="tone", tone_hz=REP_HZ))
    carrier.set_party(PROSPECT, Party(media="tone", tone_hz=PROSPECT_HZ))
    await rest.expect(200, "PUT", "/settings", {"passthrough_number": "(404) 555-0177"})


async def rep_answers(carrier: TwilioCarrier) -> tuple[CarrierCall, CarrierMedia]:
    """The first leg rings the rep's number with the rep's caller id; the rep answers
    and hears the prompt (speech, where nothing else is heard yet)."""
    rep = await carrier.wait_for_call(CELL)
    assert rep.from_number == CALLER_ID
    assert await rep.final() == 200
    media = rep.media
    assert media is not None
    async with asyncio.timeout(10.0):
        while np.abs(media.audio().astype(np.int32)).max(initial=0) < 2000:
            await asyncio.sleep(0.05)
    # The trunk takes one new call a second: the prospect's must come after.
    await asyncio.sleep(1.0)
    assert [call.to_number for call in carrier.calls] == [CELL]
    return rep, media


async def logged(rest: Rest, call_id: str) -> dict[str, Any]:
    """The call as the API shows it once it has ended."""
    async with asyncio.timeout(20.0):
        while True:
            call: dict[str, Any] = await rest.expect(200, "GET", f"/calls/{call_id}")
            if call["ended_at"] is not None:
                return call
            await asyncio.sleep(0.1)


async def exported(rest: Rest) -> list[dict[str, str]]:
    """``GET /api/v1/calls.csv``: its rows by column name."""
    headers = {"Authorization": f"Bearer {rest.token}"}
    async with rest.session.get(rest.base + "/calls.csv", headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/csv"
        text = await response.text()
    return list(csv.DictReader(io.StringIO(text)))


def test_the_reps_phone_then_1_then_the_prospect_bridged_and_two_billable_legs(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with setup(tmp_path) as (carrier, server), rest_api(server) as rest:
            await with_cell(carrier, rest)
            started = await rest.expect(
                202, "POST", "/calls", {"to": "(404) 555-1234", "passthrough": True}
            )
            rep, rep_media = await rep_answers(carrier)

            heard_before = rep_media.audio().size
            rep_media.send_dtmf("1")
            prospect = await carrier.wait_for_call(PROSPECT)
            assert prospect.from_number == CALLER_ID
            assert await prospect.final() == 200
            assert prospect.media is not None
            prospect_media = prospect.media
            # Bridged: each hears the other's tone (the rep, after the prompt).
            await until_heard(prospect_media.audio, REP_HZ, SPAN)
            await until_heard(lambda: rep_media.audio()[heard_before:], PROSPECT_HZ, SPAN)
            assert prospect_media.dtmf_received == ""  # the rep's 1 was for us

            await carrier.hangup(prospect)
            async with asyncio.timeout(10.0):
                await rep.ended()
            assert rep.ended_by == "customer"

            call = await logged(rest, started["call_id"])
            assert (call["mode"], call["callee_e164"], call["hangup_cause"]) == (
                "passthrough",
                PROSPECT,
                "normal",
            )
            assert [
                (leg["kind"], leg["role"], leg["peer"], leg["billable"]) for leg in call["legs"]
            ] == [("trunk", "caller", CELL, True), ("trunk", "callee", PROSPECT, True)]
            # Each leg talked under a minute: one billable minute each, at 0.013.
            assert (call["billable_minutes"], call["cost"]) == (2, 0.026)
            # The export says the same.
            [row] = [r for r in await exported(rest) if r["call_id"] == started["call_id"]]
            assert (row["mode"], row["billable_minutes"], row["cost"]) == (
                "passthrough",
                "2",
                "0.026",
            )

    asyncio.run(main())


@pytest.mark.parametrize(
    ("key", "cause"), [("2", "passthrough_declined"), (None, "passthrough_timeout")]
)
def test_another_key_or_no_key_ends_the_call_without_dialling(
    tmp_path: Path, key: str | None, cause: str
) -> None:
    async def main() -> None:
        async with setup(tmp_path) as (carrier, server), rest_api(server) as rest:
            await with_cell(carrier, rest)
            started = await rest.expect(
                202, "POST", "/calls", {"to": PROSPECT, "passthrough": True}
            )
            rep, rep_media = await rep_answers(carrier)
            if key is not None:
                rep_media.send_dtmf(key)
            async with asyncio.timeout(TIMEOUT + 5.0):
                await rep.ended()
            assert rep.ended_by == "customer"

            call = await logged(rest, started["call_id"])
            assert (call["hangup_cause"], call["hung_up_by"]) == (cause, "system")
            assert [leg["peer"] for leg in call["legs"]] == [CELL]
            assert [c.to_number for c in carrier.calls] == [CELL]

    asyncio.run(main())


def test_a_prospect_with_an_extension_gets_it_as_dtmf_after_answer(tmp_path: Path) -> None:
    async def main() -> None:
        async with setup(tmp_path) as (carrier, server), rest_api(server) as rest:
            await with_cell(carrier, rest)
            started = await rest.expect(
                202, "POST", "/calls", {"to": "404-555-1234 x123", "passthrough": True}
            )
            rep, rep_media = await rep_answers(carrier)
            rep_media.send_dtmf("1")
            prospect = await carrier.wait_for_call(PROSPECT)
            assert await prospect.final() == 200
            media = prospect.media
            assert media is not None
            async with asyncio.timeout(10.0):
                while media.dtmf_received != "123":
                    await asyncio.sleep(0.05)
            await carrier.hangup(rep)
            async with asyncio.timeout(10.0):
                await prospect.ended()  # either side hanging up ends both

            call = await logged(rest, started["call_id"])
            assert (call["callee_extension"], call["mode"]) == ("123", "passthrough")

    asyncio.run(main())


@covers("get_settings", "update_settings")
def test_settings_normalise_the_number_and_refuse_one_with_an_extension(tmp_path: Path) -> None:
    async def main() -> None:
        async with setup(tmp_path) as (_, server):
            await asyncio.to_thread(check_settings, server)

    asyncio.run(main())


def check_settings(server: ServerProcess) -> None:
    """The settings operations through a client that checks replies against the
    OpenAPI document (and records them for its coverage check)."""
    document = Client(server).get("/api/v1/openapi.json").json
    client = Client(server, document=document)
    assert client.sign_in(TestUser("alice", "alice-secret")).status == 200
    blank = {
        "passthrough_number": None,
        "passthrough_available": True,
        "passthrough_legs": 2,
        "rate_per_minute": 0.013,
    }
    assert client.get("/api/v1/settings").json == blank

    saved = client.request("PUT", "/api/v1/settings", {"passthrough_number": "404.555.0177"})
    assert (saved.status, saved.json) == (200, blank | {"passthrough_number": CELL})
    assert client.get("/api/v1/settings").json["passthrough_number"] == CELL

    for typed in ("(404) 555-0177 x12", "404-555-0177 ext. 12", "+14045550177;ext=12"):
        refused = client.request("PUT", "/api/v1/settings", {"passthrough_number": typed})
        assert refused.status == 400, typed
        assert refused.json["field"] == "passthrough_number"
        assert "switchboard" in refused.json["error"]
    invalid = client.request("PUT", "/api/v1/settings", {"passthrough_number": "555"})
    assert (invalid.status, invalid.json["field"]) == (400, "passthrough_number")
    assert client.get("/api/v1/settings").json["passthrough_number"] == CELL  # unchanged

    cleared = client.request("PUT", "/api/v1/settings", {"passthrough_number": None})
    assert cleared.json == blank
    # Without a number, a pass-through call is refused in words.
    refused = client.post("/api/v1/calls", {"to": PROSPECT, "passthrough": True})
    assert refused.status == 409
    assert "pass-through number" in refused.json["error"]
    assert {"get_settings", "update_settings", "click_to_call"} <= client.exercised
