"""Calls to the phone network through the Twilio trunk (the carrier is the stand-in)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

from media import g711
from media.tones import CALL_PROGRESS
from tests.audio import until_heard
from tests.carrier import CarrierCall, Party, TwilioCarrier
from tests.harness import DEFAULT_USERS, ServerProcess, TestUser, wait_for_async
from tests.integration.test_calls import (
    blocking,
    logged,
    media_target,
    next_final,
    registered,
    sdp_for,
)
from tests.integration.test_carrier import FRAMES, hear_each_other
from tests.rtpphone import RtpPhone
from voipcore.sdp import PCMA, TELEPHONE_EVENT, SessionDescription, build_offer
from voipcore.sip.message import Request

pytestmark = pytest.mark.integration
DOMAIN = "test.local"
TRUNK_USER, TRUNK_PASSWORD = "voipcore", "Sup3rSecretPassw0rd"
CALLER_ID = "+14045550100"
#: Bob has his own number (a verified caller ID of the account).
BOB_CALLER_ID = "+14045550199"
ACCOUNT_SID = "AC" + "0" * 32


@asynccontextmanager
async def trunk_setup(
    tmp_path: Path,
    edges: tuple[str, ...] = ("ashburn", "umatilla"),
    acl: str = "127.0.0.2/32",
    extra: str = "",
    down: tuple[str, ...] = (),
    server_type: type[ServerProcess] = ServerProcess,
) -> AsyncIterator[tuple[TwilioCarrier, ServerProcess]]:
    """The carrier stand-in and a server with a trunk to it (``server_type``: a
    ClockedServer for tests that drive the server in-process)."""
    # The carrier has its own loopback address: phones (127.0.0.1) must not look like Twilio.
    carrier = TwilioCarrier(
        trunk="acme",
        host="127.0.0.2",
        edges=edges,
        credentials={TRUNK_USER: TRUNK_PASSWORD},
        account_sid=ACCOUNT_SID,
        caller_ids=(CALLER_ID, BOB_CALLER_ID),
        cps=1,
        default=Party(media="tone", tone_hz=1000),
    )
    await carrier.start()
    for edge in down:
        carrier.set_edge_down(edge)
    addresses = ", ".join(f'{edge} = "127.0.0.2:{carrier.address(edge)[1]}"' for edge in edges)
    edge_list = ", ".join(f'"{edge}"' for edge in edges)
    alice, bob = DEFAULT_USERS
    server = server_type(
        tmp_path,
        users=[alice, TestUser(bob.username, bob.password, bob.extension, BOB_CALLER_ID)],
        extra_config=f"""[dialing]
default_region = "US"
[trunks.twilio]
domain = "acme.pstn.twilio.com"
edges = [{edge_list}]
username = "{TRUNK_USER}"
password = "{TRUNK_PASSWORD}"
caller_id = "{CALLER_ID}"
cps = 1
failover_timeout = 1.0
edge_addresses = {{ {addresses} }}
origination_acl = ["{acl}"]
account_sid = "{ACCOUNT_SID}"
dids = {{ "+14045550100" = "alice", "+14045550101" = "sales" }}
{extra}
[[ring_groups]]
name = "sales"
members = ["alice", "bob"]
""",
    )
    await blocking(server.start)
    try:
        yield carrier, server
    finally:
        server.stop()
        await carrier.stop()


class Dialled(NamedTuple):
    """An answered call a phone made through the server."""

    call_id: str
    "The Call-ID of the phone's INVITE."
    media: tuple[str, int]
    "Where the phone sends RTP: the server's address for the call (anchored media)."


async def dial(server: ServerProcess, user: str, number: str, phone: RtpPhone) -> Dialled:
    client = await registered(server, user)
    sdp = sdp_for(phone)
    invite = await blocking(client.invite, user, f"{user}-secret", DOMAIN, number, sdp)
    ok = await next_final(client)
    assert ok.status == 200, ok
    await blocking(client.send_raw, client.in_dialog("ACK", invite, ok, invite.cseq.seq))
    return Dialled(invite.call_id, media_target(ok))


async def originate(carrier: TwilioCarrier, server: ServerProcess, did: str) -> CarrierCall:
    """Twilio delivers a call from +12025550123 to ``did`` at the server."""
    return await carrier.call(
        "+12025550123",
        did,
        ("127.0.0.1", server.udp_port),
        headers={"X-Twilio-AccountSid": ACCOUNT_SID},
    )


def edge_rtt(server: ServerProcess, edge: str) -> float | None:
    """The round-trip time of ``edge``'s last OPTIONS ping, None until one is measured."""
    pattern = rf'voipcore_trunk_edge_rtt_seconds{{edge="{edge}"}} (\S+)'
    found = re.search(pattern, server.metrics())
    return None if found is None else float(found.group(1))


def test_outbound_call_uses_e164_digest_caller_id_and_carries_audio(tmp_path: Path) -> None:
    async def main() -> None:
        async with trunk_setup(tmp_path) as (carrier, server):
            phone = RtpPhone.open()
            call_id, to_server = await dial(server, "alice", "4045551234", phone)
            call = await carrier.wait_for_call("+14045551234")
            # Twilio's termination rules: E.164 Request-URI on the edge's trunk domain,
            # digest answered (407 first), an owned caller ID.
            assert call.request_uri == "sip:+14045551234@acme.pstn.ashburn.twilio.com"
            assert call.from_number == CALLER_ID
            assert call.statuses[:1] == [407] and 200 in call.statuses
            # Alice's 440 Hz reaches the PSTN and the carrier's 1000 Hz reaches her,
            # through the anchored media.
            await hear_each_other(phone, to_server, call)
            await carrier.hangup(call)
            row = await logged(server, call_id)
            assert (row["direction"], row["callee_e164"], row["callee_dialled"]) == (
                "outbound",
                "+14045551234",
                "4045551234",
            )
            legs = {leg["leg_id"]: leg for leg in row["legs"]}
            assert legs["b"]["edge"] == "ashburn" and legs["b"]["billable"] is True
            assert legs["a"]["billable"] is False

    asyncio.run(main())


@pytest.mark.parametrize(
    ("number", "status", "reason"),
    [
        ("40455512", 484, "too short"),  # 8 digits: not a US number yet
        ("+442071838750", 403, "GB"),  # a real London number, but only US is allowed
    ],
)
def test_bad_or_forbidden_numbers_never_reach_the_trunk(
    tmp_path: Path, number: str, status: int, reason: str
) -> None:
    async def main() -> None:
        async with trunk_setup(tmp_path) as (carrier, server):
            alice = await registered(server, "alice")
            sdp = sdp_for(RtpPhone.open())
            invite = await blocking(alice.invite, "alice", "alice-secret", DOMAIN, number, sdp)
            final = await next_final(alice)
            assert final.status == status and reason in final.reason
            assert carrier.calls == []
            row = await logged(server, invite.call_id)
            assert row["direction"] == "outbound" and row["sip_status"] == status

    asyncio.run(main())


def test_failover_to_the_next_edge_when_one_is_down(tmp_path: Path) -> None:
    async def main() -> None:
        async with trunk_setup(tmp_path) as (carrier, server):
            carrier.set_edge_down("ashburn")
            call_id = (await dial(server, "alice", "4045551234", RtpPhone.open())).call_id
            call = await carrier.wait_for_call("+14045551234")
            assert call.edge == "umatilla"
            assert call.request_uri == "sip:+14045551234@acme.pstn.umatilla.twilio.com"
            assert [d.edge for d in carrier.dropped][:1] == ["ashburn"]
            await carrier.hangup(call)
            legs = {leg["leg_id"]: leg for leg in (await logged(server, call_id))["legs"]}
            assert legs["b"]["edge"] == "umatilla"

    asyncio.run(main())


def test_call_starts_are_paced_to_the_trunk_cps(tmp_path: Path) -> None:
    async def main() -> None:
        async with trunk_setup(tmp_path) as (carrier, server):
            call_ids = await asyncio.gather(
                dial(server, "alice", "4045551234", RtpPhone.open()),
                dial(server, "bob", "4045551235", RtpPhone.open()),
            )
            calls = [
                await carrier.wait_for_call("+14045551234"),
                await carrier.wait_for_call("+14045551235"),
            ]
            # Twilio would answer 503 past 1 CPS; we waited for the next slot instead.
            assert all(503 not in c.statuses for c in calls)
            starts = sorted(c.attempts[0].at for c in calls)
            assert starts[1] - starts[0] >= 0.95
            for c in calls:
                await carrier.hangup(c)
            for call_id, _ in call_ids:
                row = await logged(server, call_id)
                assert (row["direction"], row["hung_up_by"]) == ("outbound", "callee")

    asyncio.run(main())


def test_inbound_call_from_the_trunk_rings_the_did_owner(tmp_path: Path) -> None:
    async def main() -> None:
        async with trunk_setup(tmp_path) as (carrier, server):
            alice, phone = await registered(server, "alice"), RtpPhone.open()
            inbound = await originate(carrier, server, "+14045550100")
            ringing = await blocking(alice.recv_message)
            assert isinstance(ringing, Request) and ringing.method == "INVITE"
            assert ringing.from_.uri.user == "+12025550123"  # type: ignore[union-attr]
            await blocking(alice.answer, ringing, 200, sdp_for(phone))
            assert await inbound.final() == 200
            await hear_each_other(phone, media_target(ringing), inbound)
            await carrier.hangup(inbound)
            row = await logged(server, inbound.call_id)
            assert (row["direction"], row["caller"], row["callee_dialled"], row["user"]) == (
                "inbound",
                "+12025550123",
                "+14045550100",
                "alice",
            )

    asyncio.run(main())


def test_inbound_call_from_outside_the_acl_is_refused(tmp_path: Path) -> None:
    async def main() -> None:
        async with trunk_setup(tmp_path, acl="192.0.2.0/24") as (carrier, server):
            await registered(server, "alice")
            inbound = await originate(carrier, server, "+14045550100")
            assert await inbound.final() == 403
            row = await logged(server, inbound.call_id)
            assert (row["direction"], row["hangup_cause"], row["sip_status"]) == (
                "inbound",
                "rejected",
                403,
            )
            assert "voipcore_trunk_origination_refused_total 1.0" in server.metrics()

    asyncio.run(main())


def test_early_media_ringback_reaches_the_caller_before_the_answer(tmp_path: Path) -> None:
    ringback = CALL_PROGRESS["ringback"]
    on = ringback.cadence[0]

    async def main() -> None:
        async with trunk_setup(tmp_path) as (carrier, server):
            # Silent once answered: all the phone hears is what the carrier played ringing.
            party = Party(ring=on + 0.4, early_media=True, media="silence")
            carrier.set_party("+14045551234", party)
            alice = await registered(server, "alice")
            phone = RtpPhone.open()
            invite = await blocking(
                alice.invite, "alice", "alice-secret", DOMAIN, "4045551234", sdp_for(phone)
            )
            progress = await blocking(alice.recv)
            while progress.status == 100:
                progress = await blocking(alice.recv)
            assert progress.status == 183 and progress.body  # our SDP, for early media
            ok = await next_final(alice)
            assert ok.status == 200 and ok.body == progress.body  # one offer, one answer
            assert len(phone.received) >= FRAMES  # a second of early media before the answer
            await blocking(alice.send_raw, alice.in_dialog("ACK", invite, ok, invite.cseq.seq))
            # US ringback (440 + 480 Hz) for the whole of its first on-span.
            await until_heard(lambda: phone.audio(0), ringback.freqs, on)
            await carrier.hangup(await carrier.wait_for_call("+14045551234"))

    asyncio.run(main())


def test_options_pings_route_calls_around_a_dead_edge(tmp_path: Path) -> None:
    async def main() -> None:
        pings = "ping_interval = 1.0\nping_timeout = 0.5"
        async with trunk_setup(tmp_path, extra=pings, down=("ashburn",)) as (carrier, server):
            # One round of pings: ashburn silent, umatilla answers.
            await wait_for_async(
                lambda: (
                    'voipcore_trunk_edge_up{edge="ashburn"} 0.0' in server.metrics()
                    and edge_rtt(server, "umatilla") is not None
                ),
                lambda: f"no ping round seen yet:\n{server.metrics()}",
            )
            await dial(server, "alice", "4045551234", RtpPhone.open())
            call = await carrier.wait_for_call("+14045551234")
            assert call.edge == "umatilla"
            # Straight there: no INVITE was spent on the dead edge.
            assert [d for d in carrier.dropped if d.request and d.request.method == "INVITE"] == []
            assert 'voipcore_trunk_edge_up{edge="umatilla"} 1.0' in server.metrics()
            await carrier.hangup(call)

    asyncio.run(main())


def test_users_own_caller_id_goes_out_on_the_trunk(tmp_path: Path) -> None:
    async def main() -> None:
        async with trunk_setup(tmp_path) as (carrier, server):
            await dial(server, "bob", "4045551234", RtpPhone.open())
            call = await carrier.wait_for_call("+14045551234")
            assert call.from_number == BOB_CALLER_ID and call.caller_id_verified
            await carrier.hangup(call)

    asyncio.run(main())


def test_inbound_call_to_a_ring_group_did_rings_every_member(tmp_path: Path) -> None:
    async def main() -> None:
        async with trunk_setup(tmp_path) as (carrier, server):
            alice, bob = await registered(server, "alice"), await registered(server, "bob")
            phone = RtpPhone.open()
            inbound = await originate(carrier, server, "+14045550101")
            to_alice = await blocking(alice.recv_message)
            to_bob = await blocking(bob.recv_message)
            assert isinstance(to_alice, Request) and to_alice.method == "INVITE"
            assert isinstance(to_bob, Request) and to_bob.method == "INVITE"
            await blocking(bob.answer, to_bob, 200, sdp_for(phone))
            assert await inbound.final() == 200
            cancel = await blocking(alice.recv_message)  # the other phone stops ringing
            assert isinstance(cancel, Request) and cancel.method == "CANCEL"
            await hear_each_other(phone, media_target(to_bob), inbound)
            await carrier.hangup(inbound)
            row = await logged(server, inbound.call_id)
            assert (row["direction"], row["callee_dialled"], row["user"]) == (
                "inbound",
                "+14045550101",
                "bob",
            )

    asyncio.run(main())


def test_calls_go_to_the_live_edge_with_the_shortest_round_trip(tmp_path: Path) -> None:
    async def main() -> None:
        pings = "ping_interval = 0.5\nping_timeout = 0.4"
        async with trunk_setup(tmp_path, extra=pings) as (carrier, server):
            carrier.set_edge_latency("ashburn", 0.15)  # preferred, but far away today
            await wait_for_async(
                lambda: (
                    (edge_rtt(server, "ashburn") or 0.0) >= 0.15
                    and edge_rtt(server, "umatilla") is not None
                ),
                lambda: f"no ping measured ashburn's latency yet:\n{server.metrics()}",
            )
            await dial(server, "alice", "4045551234", RtpPhone.open())
            call = await carrier.wait_for_call("+14045551234")
            assert call.edge == "umatilla"
            await carrier.hangup(call)

    asyncio.run(main())


def test_trunk_is_offered_pcmu_then_pcma_and_a_pcma_phone_is_transcoded(tmp_path: Path) -> None:
    async def main() -> None:
        async with trunk_setup(tmp_path) as (carrier, server):
            alice, phone = await registered(server, "alice"), RtpPhone.open()
            host, port = phone.address
            pcma_only = build_offer(
                address=host, port=port, formats=[PCMA, TELEPHONE_EVENT], session_id=1, version=1
            ).to_bytes()
            invite = await blocking(
                alice.invite, "alice", "alice-secret", DOMAIN, "4045551234", pcma_only
            )
            ok = await next_final(alice)
            assert ok.status == 200
            await blocking(alice.send_raw, alice.in_dialog("ACK", invite, ok, invite.cseq.seq))
            call = await carrier.wait_for_call("+14045551234")
            offered = SessionDescription.parse(call.invite.body).audio
            assert offered is not None
            assert [f.name for f in offered.codecs] == ["PCMU", "PCMA", "telephone-event"]
            assert call.media is not None and call.media.payload_type == g711.PCMU
            # Transcoded both ways: the carrier's 1000 Hz in PCMU reaches Alice's phone as
            # PCMA, and her 440 Hz in PCMA reaches the carrier as PCMU.
            await hear_each_other(phone, media_target(ok), call, g711.PCMA)
            assert {r.packet.payload_type for r in call.media.received} == {g711.PCMU}
            await carrier.hangup(call)

    asyncio.run(main())
