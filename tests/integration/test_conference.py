"""A three-party conference over real sockets: a browser, a phone and the trunk.

Alice's dialer page (the aiortc stand-in) calls Bob's baresip; through the REST API
Alice invites a number, which the carrier stand-in answers.  Each party says its own
tone (440, 700 and 1100 Hz, apart so each stands out): each hears the other two and
never itself.  Bob is removed; Alice and the number talk on.  The call log keeps all
three legs with their join and leave times.  Then from the page's socket: Alice
invites Carol, whose dialer page answers, and hangs up herself; Bob and Carol talk on.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.audio import assert_no_tone, assert_tone, until_heard
from tests.baresip import BINARY, Baresip
from tests.carrier import Party
from tests.harness import DEFAULT_USERS, ServerProcess, TestUser, wait_for_async
from tests.integration.test_click_to_call import HttpsServer
from tests.integration.test_rest_api import Client, Reply, covers
from tests.integration.test_trunk import DOMAIN, trunk_setup
from tests.webpage import PageClient

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which(BINARY) is None, reason="baresip is not installed"),
]

ALICE_HZ, BOB_HZ, CAROL_HZ = 440.0, 700.0, 1100.0
#: The number invited, answered by the carrier stand-in with CAROL_HZ.
CAROL = "+14045550100"
OPERATIONS = {"invite_participant", "list_participants", "remove_participant"}
#: Loudest a party's own tone may come back to it.  Everyone talks all along, and the
#: other two tones through G.711 and the mixer leave intermodulation a little energy
#: near any frequency (1100 - 700 = 400 Hz, by 440); an echo of one's own voice would
#: be at talking level, about -10 dBFS.
OWN_TONE_DBFS = -35.0


def clients(server: ServerProcess) -> tuple[Client, Client]:
    """Alice and Bob signed in to the REST API, each reply checked against the document."""
    document = Client(server).get("/api/v1/openapi.json").json
    signed_in = []
    for user in (TestUser("alice", "alice-secret"), TestUser("bob", "bob-secret")):
        client = Client(server, document=document)
        assert client.sign_in(user).status == 200
        signed_in.append(client)
    return signed_in[0], signed_in[1]


async def ask(call: Callable[..., Reply], path: str, *args: Any, status: int, **kwargs: Any) -> Any:
    """A REST call off the event loop (the page's and the carrier's audio run on it)."""
    reply = await asyncio.to_thread(call, path, *args, **kwargs)
    assert reply.status == status, (path, reply.status, reply.text)
    return reply.json if reply.text else None


async def parties(page: PageClient, call: str, states: dict[str, str]) -> list[dict[str, Any]]:
    """The page's latest ``participants`` for ``call`` once its parties' states (by
    peer) are ``states``."""

    def latest() -> list[dict[str, Any]] | None:
        told = [m for m in page.messages if m.get("type") == "participants"]
        if not told or told[-1]["call"] != call:
            return None
        found: list[dict[str, Any]] = told[-1]["parties"]
        return found if {p["peer"]: p["state"] for p in found} == states else None

    return await wait_for_async(latest, lambda: f"no participants {states} in {page.messages}")


@covers(*OPERATIONS)
def test_three_parties_each_hear_the_other_two_and_two_talk_on_when_one_leaves(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with (
            trunk_setup(tmp_path, server_type=HttpsServer) as (carrier, server),
            Baresip(tmp_path / "bob", "bob", "bob-secret", DOMAIN, server.udp_port, BOB_HZ) as bob,
            PageClient(f"https://127.0.0.1:{server.https_port}", "alice", "alice-secret") as page,
        ):
            carrier.set_party(CAROL, Party(media="tone", tone_hz=CAROL_HZ))
            alice, other = await asyncio.to_thread(clients, server)
            call = await page.dial("bob", ALICE_HZ)
            await bob.wait_event("CALL_INCOMING")
            await bob.command("accept")
            await page.wait("answered", call=call)
            participants = f"/api/v1/calls/{call}/participants"

            refused = await ask(alice.post, participants, {"to": "+1 404 555"}, status=400)
            assert refused["field"] == "to"
            nowhere = await ask(alice.post, participants, {"to": "299"}, status=409)
            assert "299" in nowhere["error"]
            twice = await ask(alice.post, participants, {"to": "202"}, status=409)
            assert twice["error"] == "bob is already in this call."
            await ask(other.post, participants, {"to": CAROL}, status=403)
            await ask(other.request, "DELETE", f"{participants}/a", status=403)
            await ask(alice.post, "/api/v1/calls/w-nope/participants", {"to": CAROL}, status=404)

            invited = await ask(alice.post, participants, {"to": "(404) 555-0100"}, status=202)
            assert invited == {"leg_id": "c"}
            remote = await carrier.wait_for_call(CAROL)
            assert await remote.final() == 200
            media = remote.media
            assert media is not None
            told = await parties(
                page, call, {"alice": "connected", "bob": "connected", CAROL: "connected"}
            )
            assert [(p["leg_id"], p["kind"], p["role"]) for p in told] == [
                ("a", "browser", "caller"),
                ("b", "phone", "callee"),
                ("c", "trunk", "colleague"),
            ]

            # Everyone hears the other two, and not themselves.
            since, start = len(page.heard[call]), len(media.audio())
            await until_heard(lambda: page.audio(call, since)[0], (BOB_HZ, CAROL_HZ), 1.5)
            assert_no_tone(page.audio(call, since)[0], ALICE_HZ, max_level_dbfs=OWN_TONE_DBFS)
            await until_heard(lambda: media.audio()[start:], (ALICE_HZ, BOB_HZ), 1.5)
            assert_no_tone(media.audio()[start:], CAROL_HZ, max_level_dbfs=OWN_TONE_DBFS)

            listed = await ask(alice.get, participants, status=200)
            assert listed["owner"] == "alice"
            assert [(p["peer"], p["state"]) for p in listed["items"]] == [
                ("alice", "connected"),
                ("bob", "connected"),
                (CAROL, "connected"),
            ]
            assert all(p["joined_at"] and p["left_at"] is None for p in listed["items"])

            # Bob is taken out; Alice and the number talk on.
            await ask(alice.request, "DELETE", f"{participants}/b", status=204)
            await bob.wait_event("CALL_CLOSED")
            heard_by_bob = await bob.received_audio()
            assert_tone(heard_by_bob[-12000:], (ALICE_HZ, CAROL_HZ), 1.0)
            assert_no_tone(heard_by_bob, BOB_HZ, max_level_dbfs=OWN_TONE_DBFS)
            await parties(page, call, {"alice": "connected", "bob": "left", CAROL: "connected"})
            since, start = len(page.heard[call]), len(media.audio())
            await until_heard(lambda: page.audio(call, since)[0], CAROL_HZ, 1.5)
            await until_heard(lambda: media.audio()[start:], ALICE_HZ, 1.5)
            left = await ask(alice.get, participants, status=200)
            assert [p["state"] for p in left["items"]] == ["connected", "left", "connected"]

            await page.send({"type": "hangup", "call": call})
            await page.wait("ended", call=call)
            async with asyncio.timeout(10.0):
                await remote.ended()
            await ask(alice.post, participants, {"to": CAROL}, status=404)

            row: dict[str, Any] = {"ended_at": None}
            async with asyncio.timeout(10.0):
                while not row["ended_at"]:
                    await asyncio.sleep(0.1)
                    row = await ask(alice.get, f"/api/v1/calls/{call}", status=200)
            legs = row["legs"]
            assert [(leg["kind"], leg["role"], leg["peer"]) for leg in legs] == [
                ("browser", "caller", "alice"),
                ("phone", "callee", "bob"),
                ("trunk", "colleague", CAROL),
            ]
            assert all(leg["answered_at"] and leg["ended_at"] for leg in legs)
            assert legs[1]["ended_at"] < min(legs[0]["ended_at"], legs[2]["ended_at"])
            assert legs[2]["answered_at"] > legs[1]["answered_at"]
            assert alice.exercised | other.exercised >= OPERATIONS

    asyncio.run(main())


def test_a_colleagues_page_invited_from_the_page_joins_and_talks_on_when_the_owner_leaves(
    tmp_path: Path,
) -> None:
    users = [*DEFAULT_USERS, TestUser("carol", "carol-secret", "203")]
    server = HttpsServer(tmp_path, users=users).start()
    base = f"https://127.0.0.1:{server.https_port}"

    async def main() -> None:
        async with (
            Baresip(tmp_path / "bob", "bob", "bob-secret", DOMAIN, server.udp_port, BOB_HZ) as bob,
            PageClient(base, "alice", "alice-secret") as alice,
            PageClient(base, "carol", "carol-secret") as carol,
        ):
            call = await alice.dial("202", ALICE_HZ)
            await bob.wait_event("CALL_INCOMING")
            await bob.command("accept")
            await alice.wait("answered", call=call)
            await alice.send({"type": "invite", "ref": "i1", "call": call})
            assert (await alice.wait("error"))["message"] == "to: expected a str"
            await carol.send({"type": "invite", "ref": "i2", "call": call, "to": "203"})
            refused = await carol.wait("error", ref="i2")
            assert refused["message"] == "Only the call's owner or an admin may invite into it."

            await alice.send({"type": "invite", "ref": "i3", "call": call, "to": "carol"})
            incoming = await carol.wait("incoming", call=call)
            assert incoming["from"]["number"] == "alice"  # who invites her
            await carol.answer(call, CAROL_HZ)
            everyone = {"alice": "connected", "bob": "connected", "carol": "connected"}
            told = await parties(carol, call, everyone)
            assert [(p["kind"], p["role"]) for p in told] == [
                ("browser", "caller"),
                ("phone", "callee"),
                ("browser", "colleague"),
            ]
            await parties(alice, call, everyone)
            # A page that reconnects is told the parties again, after its hello.
            told_before = sum(m["type"] == "participants" for m in carol.messages)
            await carol.reconnect()
            await wait_for_async(
                lambda: sum(m["type"] == "participants" for m in carol.messages) > told_before,
                "the reconnected page was not told the parties",
            )
            *_, latest = (m for m in carol.messages if m["type"] == "participants")
            assert (latest["owner"], latest["parties"]) == ("alice", told)
            heard_by_alice, heard_by_carol = len(alice.heard[call]), len(carol.heard[call])
            await until_heard(lambda: alice.audio(call, heard_by_alice)[0], (BOB_HZ, CAROL_HZ), 1.5)
            await until_heard(lambda: carol.audio(call, heard_by_carol)[0], (ALICE_HZ, BOB_HZ), 1.5)

            # The owner hangs up: Bob and Carol stay connected.
            await alice.send({"type": "hangup", "call": call})
            await alice.wait("ended", call=call)
            await parties(carol, call, {"alice": "left", "bob": "connected", "carol": "connected"})
            since = len(carol.heard[call])
            await until_heard(lambda: carol.audio(call, since)[0], BOB_HZ, 1.5)
            await carol.send({"type": "hangup", "call": call})
            await bob.wait_event("CALL_CLOSED", timeout=10.0)
            assert_tone((await bob.received_audio())[-8000:], CAROL_HZ, 0.8)

    try:
        asyncio.run(main())
    finally:
        server.stop()
