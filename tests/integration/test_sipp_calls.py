"""Calls through the server with SIPp as both phones: an independent SIP stack on each leg.

Alice's phone is a SIPp caller whose SDP names an :class:`RtpPhone` of the test; Bob's is
a SIPp callee with RTP echo on, which also plays a 440 Hz file encoded without our
G.711 code.  Each call is heard both ways through the anchored media: Bob's 440 Hz
reaches Alice, and Alice's 1000 Hz comes back from Bob's echo.  SIPp's scenarios say
what the test needs (media address, Call-ID) in ``events.log`` and wait for its cues.
Session timers are tested on a :class:`ClockedServer`, whose clock moves instead of waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from media.tones import RATE
from tests.audio import WINDOW, assert_no_tone, tone_report, until_heard
from tests.clocked import ClockedServer
from tests.harness import ServerProcess, free_udp_port, wait_for
from tests.integration.test_calls import blocking, logged, next_final, sdp_for
from tests.rtpphone import AudioPath, RtpPhone, assert_heard
from tests.sipclient import SipClient
from tests.sipp import (
    SippRun,
    scenario,
    send_cue,
    start_sipp,
    wait_event,
    write_users_csv,
)

if TYPE_CHECKING:
    from tests.integration.conftest import StartServer

pytestmark = pytest.mark.integration
DOMAIN = "test.local"
TRUNK_USER, TRUNK_PASSWORD = "voipcore", "Sup3rSecretPassw0rd"
#: Bob's phone speaks this (``tests/fixtures/audio/tone440.*``); Alice's says ALICE_HZ.
BOB_HZ, ALICE_HZ = 440.0, 1000.0
#: What Alice says while Bob holds the call: it must not come back from his echo.
HOLD_HZ = 700.0
BOTH_LAWS = ("tone440.pcmu", "tone440.pcma")


@dataclass
class FarEnd:
    """A SIPp on the far side of the server (Bob's phone, the carrier): its call is
    reported in ``events.log`` and moved on by the test's cues."""

    sipp: SippRun
    address: tuple[str, int]
    transport: str = "udp"
    registration: str | None = None
    """Call-ID of Bob's REGISTER, whose cue ends his SIPp; None for a plain callee."""
    call_id: str = ""
    """Call-ID of the call the server placed to the far end."""
    cues: int = 0

    @property
    def workdir(self) -> Path:
        return self.sipp.workdir

    async def answered(self) -> None:
        """Wait until the far end has answered and the server's ACK arrived."""
        [self.call_id] = await blocking(wait_event, self.workdir, "answered")

    def cue(self) -> None:
        """Let the call's scenario take its next step."""
        self.cues += 1
        send_cue(self.address, self.call_id, self.cues, self.transport)

    async def finished(self) -> None:
        """The call's scenario ran to its end, and SIPp with it."""
        if self.registration is not None:
            await blocking(wait_event, self.workdir, "ended")
            send_cue(self.address, self.registration, 1, self.transport)
        await finished(self.sipp)


async def callee(
    server: ServerProcess,
    workdir: Path,
    scenario_name: str = "echo_uas.xml",
    transport: str = "udp",
    audio: tuple[str, ...] = ("tone440.pcmu",),
) -> FarEnd:
    """Bob's SIPp registers from the port it listens on, on ``transport`` (RFC 3261 §10),
    echoes RTP, and answers his call with ``scenario_name``."""
    port = free_udp_port()
    sipp = start_sipp(
        scenario("callee_register.xml"),
        "127.0.0.1",
        server.udp_port if transport == "udp" else server.tcp_port,
        workdir=workdir,
        transport=transport,
        users_csv=write_users_csv(workdir / "bob.csv", [("bob", "bob-secret")]),
        keys={"domain": DOMAIN, "expires": "300"},
        auth_uri=DOMAIN,
        timeout=30,
        local_port=port,
        ooc_scenario=scenario(scenario_name),
        media_port=free_udp_port(),
        rtp_echo=True,
        audio=audio,
    )
    [registration] = await blocking(wait_event, workdir, "registered")
    return FarEnd(sipp, ("127.0.0.1", port), transport, registration)


def caller(
    server: ServerProcess,
    workdir: Path,
    phone: RtpPhone,
    scenario_name: str = "media_uac.xml",
    transport: str = "udp",
    callee: str = "202",
    port: int | None = None,
) -> SippRun:
    """Alice's SIPp calls ``callee`` from ``port``, its SDP naming ``phone``."""
    rtp_ip, rtp_port = phone.address
    return start_sipp(
        scenario(scenario_name),
        "127.0.0.1",
        server.udp_port if transport == "udp" else server.tcp_port,
        workdir=workdir,
        transport=transport,
        users_csv=write_users_csv(workdir / "alice.csv", [("alice", "alice-secret")]),
        keys={"domain": DOMAIN, "callee": callee, "rtp_ip": rtp_ip, "rtp_port": str(rtp_port)},
        auth_uri=f"{callee}@{DOMAIN}",
        timeout=30,
        local_port=port,
    )


async def finished(sipp: SippRun) -> None:
    """Every call of ``sipp`` ran to the end of its scenario."""
    result = await blocking(sipp.wait)
    assert result.ok, result.describe()


async def answered(workdir: Path) -> tuple[tuple[str, int], str]:
    """The server's media address in the caller's 200, and the caller's Call-ID."""
    host, port, call_id = await blocking(wait_event, workdir, "answered")
    return (host, int(port)), call_id


@asynccontextmanager
async def connected(
    alice: SippRun, phone: RtpPhone, far: FarEnd
) -> AsyncIterator[tuple[tuple[str, int], str]]:
    """The call answered at both ends and heard both ways: the server's media address for
    ``phone`` and Alice's Call-ID.  Then the far end hangs up (its last cue), and both
    SIPps must have run their scenarios to the end."""
    try:
        to_server, call_id = await answered(alice.workdir)
        await far.answered()
        await heard_both_ways(phone, to_server, far)
        yield to_server, call_id
        far.cue()
        await finished(alice)
        await far.finished()
    finally:
        alice.stop()
        far.sipp.stop()


async def heard_both_ways(phone: RtpPhone, to_server: tuple[str, int], far: FarEnd) -> None:
    """The far end speaks (SIPp plays 1 s of 440 Hz) and Alice hears it alone; once it
    has died away, Alice talks and hears her 1000 Hz back from the far end's echo: each
    way through the anchor."""
    start = phone.audio(0).size
    far.cue()
    await until_heard(lambda: phone.audio(0)[start:], BOB_HZ, 0.9)
    await died_away(phone, BOB_HZ)
    await assert_heard(AudioPath(phone, to_server, ALICE_HZ, phone))


async def died_away(phone: RtpPhone, freq: float) -> None:
    """Wait until ``phone`` hears no more ``freq``: nothing arrived for 100 ms (a relayed
    call is silent then), or the last 100 ms of audio hold none of it (the audio path
    sends frames all the time), so the next check's recording does not begin with it."""
    loop = asyncio.get_running_loop()
    count, since, deadline = -1, loop.time(), loop.time() + 10.0
    while True:
        if len(phone.received) != count:
            count, since = len(phone.received), loop.time()
        tail = phone.audio(0)[-int(WINDOW * RATE) :]
        if loop.time() - since >= WINDOW or tone_report(tail, freq).held == 0:
            return
        assert loop.time() < deadline, f"{freq:g} Hz still heard after 10 s"
        await asyncio.sleep(0.02)


def test_call_over_tcp_carries_audio_both_ways(server: ServerProcess, tmp_path: Path) -> None:
    """Both phones on TCP (RFC 3261 §18): Bob is rung over the connection he registered on."""

    async def main() -> None:
        phone = RtpPhone.open()
        bob = await callee(server, tmp_path / "bob", transport="tcp")
        alice = caller(server, tmp_path / "alice", phone, transport="tcp")
        async with connected(alice, phone, bob) as (_, call_id):
            pass
        row = await logged(server, call_id)
        assert (row["hangup_cause"], row["hung_up_by"]) == ("normal", "callee")
        assert [leg["transport"] for leg in row["legs"]] == ["tcp", "tcp"]

    asyncio.run(main())


def trunk_config(edge_port: int, password: str) -> str:
    """A Twilio trunk whose one edge is a SIPp on 127.0.0.2:``edge_port``."""
    return f"""[dialing]
default_region = "US"
[trunks.twilio]
domain = "acme.pstn.twilio.com"
edges = ["ashburn"]
edge_addresses = {{ ashburn = "127.0.0.2:{edge_port}" }}
username = "{TRUNK_USER}"
password = "{password}"
caller_id = "+14045550100"
origination_acl = ["127.0.0.2/32"]
ping_interval = 0
"""


def carrier(server: ServerProcess, workdir: Path, edge_port: int) -> FarEnd:
    """The edge: SIPp on 127.0.0.2 that accepts only TRUNK_USER / TRUNK_PASSWORD."""
    sipp = start_sipp(
        scenario("carrier_uas.xml"),
        "127.0.0.1",
        server.udp_port,
        workdir=workdir,
        keys={"username": TRUNK_USER, "password": TRUNK_PASSWORD},
        timeout=30,
        local_ip="127.0.0.2",
        local_port=edge_port,
        media_port=free_udp_port(),
        rtp_echo=True,
        audio=("tone440.pcmu",),
    )
    return FarEnd(sipp, ("127.0.0.2", edge_port))


def test_trunk_call_passes_sipps_digest_check_and_carries_audio(
    start_server: StartServer, tmp_path: Path
) -> None:
    """The carrier is SIPp: our answer to its 401 (RFC 3261 §22.2) is checked by SIPp's
    digest code, and it answers only then; the number goes out in E.164."""
    edge_port = free_udp_port()
    server = start_server(sip_trace=True, extra_config=trunk_config(edge_port, TRUNK_PASSWORD))

    async def main() -> None:
        edge = carrier(server, tmp_path / "carrier", edge_port)
        phone = RtpPhone.open()
        alice = caller(server, tmp_path / "alice", phone, callee="4045551234")
        # Only a verified digest reaches the 200, so the call being up is SIPp's verdict.
        async with connected(alice, phone, edge) as (_, call_id):
            [uri] = await blocking(wait_event, edge.workdir, "uri")
            assert uri == "sip:+14045551234@acme.pstn.ashburn.twilio.com"
        row = await logged(server, call_id)
        assert (row["direction"], row["callee_e164"]) == ("outbound", "+14045551234")
        assert (row["hangup_cause"], row["hung_up_by"]) == ("normal", "callee")

    asyncio.run(main())


def test_trunk_call_with_a_wrong_password_is_refused_by_sipp(
    start_server: StartServer, tmp_path: Path
) -> None:
    """SIPp's digest check rejects a wrong password with 403, and the phone is told."""
    edge_port = free_udp_port()
    server = start_server(sip_trace=True, extra_config=trunk_config(edge_port, "Wr0ngPassw0rd!!"))

    async def main() -> None:
        edge = carrier(server, tmp_path / "carrier", edge_port)
        try:
            phone = SipClient("127.0.0.1", server.udp_port)
            sdp = sdp_for(RtpPhone.open())
            invite = await blocking(
                phone.invite, "alice", "alice-secret", DOMAIN, "4045551234", sdp
            )
            await blocking(wait_event, edge.workdir, "rejected")
            failure = await next_final(phone)
            await finished(edge.sipp)
        finally:
            edge.sipp.stop()
        assert failure.status == 403, failure
        row = await logged(server, invite.call_id)
        assert row["answered_at"] is None and row["sip_status"] == 403

    asyncio.run(main())


def test_callee_changes_codec_by_reinvite_and_is_transcoded(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Bob's SIPp re-INVITEs offering PCMA only (RFC 3264 §8.3.2): the server answers PCMA on
    his leg, Alice's stays PCMU (her SIPp would fail on a re-INVITE), and the audio is
    transcoded both ways: Bob's A-law 440 Hz reaches her as PCMU, her echo comes back."""

    async def main() -> None:
        phone = RtpPhone.open()
        bob = await callee(server, tmp_path / "bob", "reinvite_uas.xml", audio=BOTH_LAWS)
        alice = caller(server, tmp_path / "alice", phone)
        async with connected(alice, phone, bob) as (to_server, _):
            bob.cue()
            await blocking(wait_event, bob.workdir, "reinvited")
            await heard_both_ways(phone, to_server, bob)
            assert {received.packet.payload_type for received in phone.received} == {0}

    asyncio.run(main())


def test_caller_cancels_while_the_callee_plays_early_media(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Bob's SIPp rings with early media (183 with SDP), Alice hears her echo through it,
    then cancels (RFC 3261 §9): 487 for her, CANCEL/487/ACK for Bob, and the anchor is
    gone, so what she still sends reaches no one although Bob's echo is still up."""

    async def main() -> None:
        phone = RtpPhone.open()
        bob = await callee(server, tmp_path / "bob", "cancel_uas.xml")
        alice_port = free_udp_port()
        alice = caller(server, tmp_path / "alice", phone, "cancel_uac.xml", port=alice_port)
        try:
            host, port, call_id = await blocking(wait_event, alice.workdir, "early")
            to_server = (host, int(port))
            await assert_heard(AudioPath(phone, to_server, ALICE_HZ, phone))
            send_cue(("127.0.0.1", alice_port), call_id, 1)
            await finished(alice)
            await blocking(wait_event, bob.workdir, "ended")
            await blocking(wait_for, lambda: no_media(server), "media left after the CANCEL")
            start = phone.audio(0).size
            await phone.send_tone(to_server, ALICE_HZ, 0.5)
            await died_away(phone, ALICE_HZ)
            assert_no_tone(phone.audio(0)[start:], ALICE_HZ)
            await bob.finished()
        finally:
            alice.stop()
            bob.sipp.stop()
        row = await logged(server, call_id)
        assert (row["hangup_cause"], row["hung_up_by"]) == ("cancelled", "caller")

    asyncio.run(main())


def no_media(server: ServerProcess) -> bool:
    """The server carries no call and no RTP stream (its /metrics)."""
    text = server.metrics()
    return "voipcore_calls 0.0" in text and "voipcore_media_streams 0.0" in text


def test_callee_holds_and_resumes_by_update(server: ServerProcess, tmp_path: Path) -> None:
    """Bob's SIPp, told that UPDATE is allowed, holds the call by UPDATE with a=sendonly and
    resumes it with a=sendrecv (RFC 3311 §5.1, RFC 3264 §8.4).  The server answers each and
    relays it to Alice's SIPp as a re-INVITE; the anchor follows: held, Bob's tone still
    reaches Alice but her voice no longer reaches him (his echo stays silent); resumed, her
    echo is heard again."""

    async def main() -> None:
        phone = RtpPhone.open()
        bob = await callee(server, tmp_path / "bob", "hold_uas.xml")
        alice = caller(server, tmp_path / "alice", phone, "hold_uac.xml")
        async with connected(alice, phone, bob) as (to_server, _):
            await died_away(phone, ALICE_HZ)
            start = phone.audio(0).size
            bob.cue()  # hold; Bob's SIPp plays its tone once the server has answered
            for workdir in (bob.workdir, alice.workdir):
                await blocking(wait_event, workdir, "held")
            await until_heard(lambda: phone.audio(0)[start:], BOB_HZ, 0.9)
            await phone.send_tone(to_server, HOLD_HZ, 1.0)
            bob.cue()  # resume
            for workdir in (bob.workdir, alice.workdir):
                await blocking(wait_event, workdir, "resumed")
            await died_away(phone, BOB_HZ)
            await assert_heard(AudioPath(phone, to_server, ALICE_HZ, phone))
            assert_no_tone(phone.audio(0)[start:], HOLD_HZ)

    asyncio.run(main())


@pytest.fixture
def clocked(tmp_path: Path) -> Iterator[ClockedServer]:
    """The server in this process, with the shortest session interval (RFC 4028 §4)."""
    server = ClockedServer(tmp_path / "server", extra_sip="session_expires = 90").start()
    yield server
    server.stop()


def test_server_refreshes_phones_without_session_timers(
    clocked: ClockedServer, tmp_path: Path
) -> None:
    """Neither SIPp knows session timers, so the server refreshes both legs at half the 90 s
    interval (RFC 4028 §7.2, §10): Bob's by UPDATE, which his Allow lists (§7.4), Alice's
    by re-INVITE offering the unchanged session (RFC 3264 §8: the same o= line).  Each
    answers 200, so the call outlives its first interval (a second refresh, not a BYE)
    and its audio still goes both ways through the anchor after each refresh."""

    async def main() -> None:
        phone = RtpPhone.open()
        bob = await callee(clocked, tmp_path / "bob", "refresh_uas.xml")
        alice = caller(clocked, tmp_path / "alice", phone, "refresh_uac.xml")
        async with connected(alice, phone, bob) as (to_server, call_id):
            origin = await blocking(wait_event, alice.workdir, "origin")
            for refresh in ("refresh1", "refresh2"):
                clocked.advance(46)
                assert await blocking(wait_event, alice.workdir, refresh) == origin
                await blocking(wait_event, bob.workdir, refresh)
                await assert_heard(AudioPath(phone, to_server, ALICE_HZ, phone))
        row = await logged(clocked, call_id)
        assert (row["hangup_cause"], row["hung_up_by"]) == ("normal", "callee")

    asyncio.run(main())
