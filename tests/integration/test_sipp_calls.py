"""Calls through the server with SIPp as both phones: an independent SIP stack on each leg.

Alice's phone is a SIPp caller whose SDP names an :class:`RtpPhone` of the test; Bob's is
a SIPp callee with RTP echo on, which also plays a 440 Hz file encoded without our
G.711 code.  Each call is heard both ways through the anchored media: Bob's 440 Hz
reaches Alice, and Alice's 1000 Hz comes back from Bob's echo.  SIPp's scenarios say
what the test needs (media address, Call-ID) in ``events.log`` and wait for its cues.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.audio import until_heard
from tests.harness import ServerProcess, free_udp_port
from tests.integration.test_calls import blocking, logged
from tests.rtpphone import AudioPath, RtpPhone, assert_heard
from tests.sipp import (
    SippRun,
    scenario,
    send_cue,
    start_sipp,
    wait_event,
    write_users_csv,
)

pytestmark = pytest.mark.integration
DOMAIN = "test.local"
#: Bob's phone speaks this (``tests/fixtures/audio/tone440.*``); Alice's says ALICE_HZ.
BOB_HZ, ALICE_HZ = 440.0, 1000.0


@dataclass
class Callee:
    """Bob's phone: a SIPp that registers and takes his call out of call (``-oocsf``),
    moved on by the test's cues."""

    sipp: SippRun
    port: int
    transport: str
    registration: str = ""
    """Call-ID of the REGISTER: the cue to it ends SIPp."""
    call_id: str = ""
    """Call-ID of the call the server placed to Bob."""
    cues: int = 0

    @property
    def workdir(self) -> Path:
        return self.sipp.workdir

    async def answered(self) -> None:
        """Wait until the callee has answered and the server's ACK arrived."""
        [self.call_id] = await blocking(wait_event, self.workdir, "answered")

    def cue(self) -> None:
        """Let the call's scenario take its next step."""
        self.cues += 1
        send_cue(self.port, self.call_id, self.cues, self.transport)

    async def finished(self) -> None:
        """The call's scenario ran to its end; then the phone goes away."""
        await blocking(wait_event, self.workdir, "ended")
        send_cue(self.port, self.registration, 1, self.transport)
        await finished(self.sipp)


async def callee(
    server: ServerProcess,
    workdir: Path,
    scenario_name: str = "echo_uas.xml",
    transport: str = "udp",
    audio: tuple[str, ...] = ("tone440.pcmu",),
) -> Callee:
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
    bob = Callee(sipp, port, transport)
    [bob.registration] = await blocking(wait_event, workdir, "registered")
    return bob


def caller(
    server: ServerProcess,
    workdir: Path,
    phone: RtpPhone,
    scenario_name: str = "media_uac.xml",
    transport: str = "udp",
    callee: str = "202",
) -> SippRun:
    """Alice's SIPp calls ``callee``, its SDP naming ``phone``."""
    host, port = phone.address
    return start_sipp(
        scenario(scenario_name),
        "127.0.0.1",
        server.udp_port if transport == "udp" else server.tcp_port,
        workdir=workdir,
        transport=transport,
        users_csv=write_users_csv(workdir / "alice.csv", [("alice", "alice-secret")]),
        keys={"domain": DOMAIN, "callee": callee, "rtp_ip": host, "rtp_port": str(port)},
        auth_uri=f"{callee}@{DOMAIN}",
        timeout=30,
    )


async def finished(sipp: SippRun) -> None:
    """Every call of ``sipp`` ran to the end of its scenario."""
    result = await blocking(sipp.wait)
    assert result.ok, result.describe()


async def answered(workdir: Path) -> tuple[tuple[str, int], str]:
    """The server's media address in the caller's 200, and the caller's Call-ID."""
    host, port, call_id = await blocking(wait_event, workdir, "answered")
    return (host, int(port)), call_id


async def heard_both_ways(phone: RtpPhone, to_server: tuple[str, int], bob: Callee) -> None:
    """Bob speaks (SIPp plays 1 s of 440 Hz) and Alice hears it alone; then Alice talks
    and hears her 1000 Hz back from Bob's echo: each way through the anchor."""
    start = phone.audio(0).size
    bob.cue()
    await until_heard(lambda: phone.audio(0)[start:], BOB_HZ, 0.9)
    await assert_heard(AudioPath(phone, to_server, ALICE_HZ, phone))


def test_call_over_tcp_carries_audio_both_ways(server: ServerProcess, tmp_path: Path) -> None:
    """Both phones on TCP (RFC 3261 §18): Bob is rung over the connection he registered on."""

    async def main() -> None:
        phone = RtpPhone.open()
        bob = await callee(server, tmp_path / "bob", transport="tcp")
        alice = caller(server, tmp_path / "alice", phone, transport="tcp")
        try:
            to_server, call_id = await answered(tmp_path / "alice")
            await bob.answered()
            await heard_both_ways(phone, to_server, bob)
            bob.cue()  # Bob hangs up; Alice's SIPp answers the relayed BYE
            await finished(alice)
            await bob.finished()
        finally:
            alice.stop()
            bob.sipp.stop()
        row = await logged(server, call_id)
        assert (row["hangup_cause"], row["hung_up_by"]) == ("normal", "callee")
        assert [leg["transport"] for leg in row["legs"]] == ["tcp", "tcp"]

    asyncio.run(main())
