"""Call transfer through the server: REFER (RFC 3515), Replaces (RFC 3891), sipfrag NOTIFY.

Every phone talks only to the server (a B2BUA).  The transferor A is in a call with B and
puts B on hold; its REFER names the target: a user, an extension or a number on the trunk
(blind), or A's own call with the target to replace (attended, RFC 5589 §7).  The server
answers 202, reports the transfer's progress to A in NOTIFYs of the implicit subscription
(``Event: refer``, ``message/sipfrag`` bodies: ``SIP/2.0 100 Trying``, then the target's
final status line, the last one ``Subscription-State: terminated;reason=noresource``),
hangs A up once the target answers, takes B off hold and connects B with the target.
A failed transfer leaves A's call with B as it was.

A is SIPp (``refer_uac.xml``, media at the test's :class:`RtpPhone`) or baresip (its
``transfer`` command); B and the target are SIPp phones that register and answer
(``refer_party_uas.xml``), with media at the test's RTP sockets, so their audio is
checked both ways whatever re-INVITEs the server sends them.  The carrier stand-in is
the target on the trunk.
"""

from __future__ import annotations

import asyncio
import shutil
import urllib.parse
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.audio import assert_no_tone, until_heard
from tests.baresip import BINARY, Baresip
from tests.carrier import CarrierCall
from tests.harness import (
    DEFAULT_USERS,
    ServerProcess,
    TestUser,
    free_udp_port,
    metric,
    wait_for_async,
)
from tests.integration.test_calls import blocking, logged
from tests.integration.test_trunk import trunk_setup
from tests.rtpphone import AudioPath, RtpPhone, assert_heard
from tests.sipp import (
    SippRun,
    events,
    scenario,
    send_cue,
    sipp_available,
    start_sipp,
    write_users_csv,
)

if TYPE_CHECKING:
    from tests.integration.conftest import StartServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sipp_available(), reason="SIPp is not installed"),
]

DOMAIN = "test.local"
USERS = [*DEFAULT_USERS, TestUser("carol", "carol-secret", "203")]
#: What each party says: A (the transferor), B (the transferee), C (the target).
ALICE_HZ, BOB_HZ, CAROL_HZ = 700.0, 440.0, 1000.0
#: The carrier stand-in's party plays this (its default).
PSTN_HZ = 1000.0
PSTN_NUMBER = "+14045551234"
Address = tuple[str, int]


def sipp_failure(run: SippRun) -> str:
    """What went wrong in ``run``: its result once it has exited, else its error log."""
    if run.proc.poll() is not None:
        return run.wait().describe()
    errors = run.workdir / "errors.log"
    return f"logs in {run.workdir}\n" + (errors.read_text()[-2000:] if errors.exists() else "")


async def reported(run: SippRun, name: str, timeout: float = 15.0) -> list[str]:
    """The words of ``run``'s first ``name`` event, once reported; fails at once with what
    SIPp counted if it ended first (an unexpected response aborts its call)."""

    def found() -> list[str] | None:
        lines = events(run.workdir, name)
        if lines:
            return lines[0]
        if run.proc.poll() is not None:
            raise AssertionError(f"SIPp ended before reporting {name!r}: {sipp_failure(run)}")
        return None

    return await wait_for_async(
        found, lambda: f"SIPp never reported {name!r}: {sipp_failure(run)}", timeout
    )


async def finished(run: SippRun) -> None:
    """``run`` went through its scenario to the end."""
    result = await blocking(run.wait)
    assert result.ok, result.describe()


@dataclass
class Phone:
    """A registered SIPp phone (B or C): ``refer_party_uas.xml`` answers its call, any
    number of re-INVITEs, and its audio is :attr:`rtp`."""

    user: str
    sipp: SippRun
    address: Address
    registration: str
    rtp: RtpPhone
    call_id: str = ""

    @property
    def workdir(self) -> Path:
        return self.sipp.workdir

    async def answered(self) -> None:
        """Wait until the phone has answered its call and the server's ACK came."""
        self.call_id = (await reported(self.sipp, "answered"))[2]

    def offers(self) -> list[tuple[Address, str]]:
        """The server's media address and direction in each offer so far, in order: the
        INVITE's, then each re-INVITE's (by CSeq: the event lines may come in any order)."""
        [(host, port, _)] = events(self.workdir, "answered")
        reinvites = sorted(events(self.workdir, "reinvite"), key=lambda words: int(words[3]))
        return [((host, int(port)), "sendrecv")] + [
            ((h, int(p)), direction) for h, p, direction, _ in reinvites
        ]

    def media(self) -> Address:
        """Where the phone sends its audio now: the address of the server's latest offer."""
        return self.offers()[-1][0]

    async def offered(self, *directions: str, timeout: float = 15.0) -> None:
        """Wait until the re-INVITEs the phone took offered these directions, one after
        the other, the last one latest (repeats count once: a re-INVITE may also just move
        the media)."""
        want = list(directions)

        def seen() -> bool:
            taken = [direction for _, direction in self.offers()[1:]]
            changes = [d for i, d in enumerate(taken) if i == 0 or taken[i - 1] != d]
            return changes[-len(want) :] == want

        await wait_for_async(
            seen,
            lambda: f"{self.user} took re-INVITEs {self.offers()[1:]}, not ending {want}",
            timeout,
        )

    def hang_up(self) -> None:
        """The phone sends BYE (its cue)."""
        send_cue(self.address, self.call_id, 1)

    async def finished(self) -> None:
        """The call is over at the phone; its SIPp stops."""
        await reported(self.sipp, "ended")
        send_cue(self.address, self.registration, 1)
        await finished(self.sipp)


def user_sipp(
    server: ServerProcess,
    workdir: Path,
    scenario_name: str,
    user: str,
    rtp: RtpPhone,
    port: int,
    auth_uri: str,
    keys: dict[str, str],
    ooc_scenario: str | None = None,
) -> SippRun:
    """``user``'s SIPp with ``scenario_name``, from ``port``, its SDP naming ``rtp``
    (keywords ``rtp_ip``, ``rtp_port``, ``domain`` and ``keys``)."""
    return start_sipp(
        scenario(scenario_name),
        "127.0.0.1",
        server.udp_port,
        workdir=workdir,
        users_csv=write_users_csv(workdir / "user.csv", [(user, f"{user}-secret")]),
        keys={"domain": DOMAIN, "rtp_ip": rtp.address[0], "rtp_port": str(rtp.address[1]), **keys},
        auth_uri=auth_uri,
        timeout=60,
        local_port=port,
        ooc_scenario=None if ooc_scenario is None else scenario(ooc_scenario),
    )


async def phone(
    server: ServerProcess, workdir: Path, user: str, scenario_name: str = "refer_party_uas.xml"
) -> Phone:
    """``user``'s SIPp registers from the port it listens on; its calls run
    ``scenario_name`` with media at a new :class:`RtpPhone`."""
    rtp, port = RtpPhone.open(), free_udp_port()
    sipp = user_sipp(
        server,
        workdir,
        "callee_register.xml",
        user,
        rtp,
        port,
        DOMAIN,
        {"expires": "300"},
        ooc_scenario=scenario_name,
    )
    [registration] = await reported(sipp, "registered")
    return Phone(user, sipp, ("127.0.0.1", port), registration, rtp)


@dataclass
class Caller:
    """Alice's SIPp calling through the server with media at :attr:`rtp`: the transferor
    (``refer_uac.xml``), her consultation call (``refer_consult_uac.xml``)..."""

    sipp: SippRun
    port: int
    rtp: RtpPhone
    call_id: str = ""
    media: Address = ("", 0)
    """Where the phone sends its audio: the server's address in its 200."""
    cues: int = 0

    async def answered(self) -> list[str]:
        """Wait for the call's 200; the rest of the ``answered`` event's words."""
        host, port, self.call_id, *rest = await reported(self.sipp, "answered")
        self.media = (host, int(port))
        return rest

    def cue(self, *headers: str) -> None:
        """Let the scenario take its next step (``headers``: lines the CUE carries)."""
        self.cues += 1
        send_cue(("127.0.0.1", self.port), self.call_id, self.cues, headers=headers)

    async def hold(self) -> None:
        """Re-INVITE with a=sendonly, answered recvonly or inactive (RFC 3264 §8.4)."""
        self.cue()
        await reported(self.sipp, "held")

    async def refer(self, refer_to: str) -> None:
        """REFER in the call's dialog with this ``Refer-To``; wait for its 202."""
        self.cue(f"X-Refer-To: {refer_to}")
        await reported(self.sipp, "accepted")

    async def notified(self) -> list[tuple[int, str]]:
        """Wait for the NOTIFY of the transfer's outcome (a final sipfrag status); every
        NOTIFY's sipfrag status and Subscription-State, sorted by status."""

        def final() -> list[tuple[int, str]] | None:
            found = sorted((int(status), state) for status, state in events(self.workdir, "notify"))
            if found and found[-1][0] >= 200:
                return found
            if self.sipp.proc.poll() is not None:
                raise AssertionError(f"no final NOTIFY: {sipp_failure(self.sipp)}")
            return None

        return await wait_for_async(
            final, lambda: f"no final NOTIFY: {sipp_failure(self.sipp)}", timeout=20.0
        )

    @property
    def workdir(self) -> Path:
        return self.sipp.workdir


def caller(
    server: ServerProcess, workdir: Path, scenario_name: str, callee: str, user: str = "alice"
) -> Caller:
    """``user``'s SIPp calls ``callee`` with ``scenario_name`` from a port of its own."""
    rtp, port = RtpPhone.open(), free_udp_port()
    auth_uri = f"{callee}@{DOMAIN}"
    sipp = user_sipp(server, workdir, scenario_name, user, rtp, port, auth_uri, {"callee": callee})
    return Caller(sipp, port, rtp)


def stop(*runs: SippRun) -> None:
    """Kill what still runs (a failed test's cleanup)."""
    for run in runs:
        run.stop()


def assert_transfer_notified(notifies: list[tuple[int, str]], final: int) -> None:
    """RFC 3515 §2.4.4-2.4.7: the first NOTIFY says 100 Trying with the subscription
    active, the last gives the target's ``final`` status and terminates it."""
    assert notifies[0][0] == 100 and notifies[0][1].startswith("active;expires="), notifies
    assert notifies[-1] == (final, "terminated;reason=noresource"), notifies
    assert [status for status, _ in notifies].count(final) == 1, notifies


def media_streams(server: ServerProcess) -> float:
    """RTP streams the server's media engine carries (its /metrics)."""
    return metric(server.metrics(), "voipcore_media_streams")


async def streams_left(server: ServerProcess, count: int) -> None:
    """Wait until the server carries ``count`` RTP streams: the transferor's are gone."""
    await wait_for_async(
        lambda: media_streams(server) == count,
        lambda: f"the server carries {media_streams(server)} RTP streams, not {count}",
    )


async def cut_off(transferors: Iterable[Caller], check: Awaitable[None]) -> None:
    """Run ``check`` (B and the target talking): meanwhile the server sends the
    transferors nothing.  They keep quiet: a port the server released may be taken by
    any process on the machine at once (tests running side by side), and one that
    latches onto the first source it hears would answer a transferor still talking."""
    before = [(transferor, len(transferor.rtp.received)) for transferor in transferors]
    await check
    for transferor, count in before:
        assert len(transferor.rtp.received) == count, "the server still sends to the transferor"


async def talk(bob: Phone, target: Phone) -> None:
    """B and the target hear each other, each tone alone (nobody else's on top)."""
    starts = bob.rtp.audio(0).size, target.rtp.audio(0).size
    await assert_heard(
        AudioPath(bob.rtp, bob.media(), BOB_HZ, target.rtp),
        AudioPath(target.rtp, target.media(), CAROL_HZ, bob.rtp),
    )
    assert_no_tone(bob.rtp.audio(0)[starts[0] :], ALICE_HZ)
    assert_no_tone(target.rtp.audio(0)[starts[1] :], ALICE_HZ)


def legs_by_peer(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {leg["peer"]: leg for leg in row["legs"]}


async def transferred(server: ServerProcess, bob: Phone, *transferor: Caller) -> None:
    """The transfer went through: the NOTIFYs at the REFER's sender (the first of
    ``transferor``) end with 200, the server hung up each of the transferor's calls, Bob
    was taken off hold, and the server carries only his stream and the target's."""
    assert_transfer_notified(await transferor[0].notified(), 200)
    for call in transferor:
        await reported(call.sipp, "ended")  # the server's BYE
        await finished(call.sipp)
    await bob.offered("sendonly", "sendrecv")
    await streams_left(server, 2)


async def in_call(alice: Caller, bob: Phone) -> None:
    """Alice and Bob hear each other, each tone alone."""
    await assert_heard(
        AudioPath(alice.rtp, alice.media, ALICE_HZ, bob.rtp),
        AudioPath(bob.rtp, bob.media(), BOB_HZ, alice.rtp),
    )


async def held_call(alice: Caller, bob: Phone) -> None:
    """Alice's call is answered by Bob, they hear each other (so silence later is the
    server's doing), and she puts him on hold: his phone is offered sendonly."""
    await alice.answered()
    await bob.answered()
    await in_call(alice, bob)
    await alice.hold()
    await bob.offered("sendonly")


# -- blind transfer -------------------------------------------------------------


@pytest.mark.skipif(shutil.which(BINARY) is None, reason="baresip is not installed")
def test_baresip_transfers_its_held_callee_to_a_user(
    start_server: StartServer, tmp_path: Path
) -> None:
    """Alice's baresip calls Bob, holds him and transfers him to carol with its
    ``transfer`` command (REFER with ``Refer-To: sip:carol@test.local``, no angle
    brackets).  baresip hangs up itself on the final NOTIFY's 200; Bob comes off hold and
    he and Carol hear each other; the call log keeps Alice's leg, transferred to carol."""
    server = start_server(users=USERS, sip_trace=True)

    async def main() -> None:
        bob = await phone(server, tmp_path / "bob", "bob")
        carol = await phone(server, tmp_path / "carol", "carol")
        try:
            async with Baresip(
                tmp_path / "alice", "alice", "alice-secret", DOMAIN, server.udp_port, ALICE_HZ
            ) as alice:
                await alice.command("dial", "202")
                established = await alice.wait_event("CALL_ESTABLISHED", timeout=10)
                assert established.call_id is not None
                call_id = established.call_id
                await bob.answered()
                # Alice's voice reaches Bob: her silence later is the transfer's doing.
                await until_heard(lambda: bob.rtp.audio(0), ALICE_HZ, 0.5)

                await alice.command("hold")
                assert (await alice.wait_event("CALL_REMOTE_SDP")).param == "answer"
                await bob.offered("sendonly")
                await alice.command("transfer", f"sip:carol@{DOMAIN}")
                outcome = await alice.wait_event("CALL_CLOSED", "TRANSFER_FAILED", timeout=20)
                assert outcome.type == "CALL_CLOSED", f"transfer failed: {outcome.param}"

            await carol.answered()
            await bob.offered("sendonly", "sendrecv")
            await streams_left(server, 2)
            await talk(bob, carol)
            bob.hang_up()
            await bob.finished()
            await carol.finished()
        finally:
            stop(bob.sipp, carol.sipp)

        row = await logged(server, call_id)
        legs = legs_by_peer(row)
        assert set(legs) == {"alice", "bob", "carol"}, row["legs"]
        assert legs["alice"]["transferred_to"] == "carol"
        assert legs["carol"]["answered_at"] is not None
        assert legs["bob"]["transferred_to"] is None

    asyncio.run(main())


#: A ring group whose only registered member is Carol (Dave never registers).
SUPPORT = '[[ring_groups]]\nname = "support"\nextension = "610"\nmembers = ["carol", "dave"]\n'


@pytest.mark.parametrize("target", ["carol", "203", "610"], ids=["name", "extension", "group"])
def test_blind_transfer_to_a_user_or_extension(
    start_server: StartServer, tmp_path: Path, target: str
) -> None:
    """Alice's SIPp talks with Bob, holds him, and REFERs him to ``target`` (carol by name,
    by extension, or the ring group she answers for): 202, NOTIFY 100 Trying (active),
    NOTIFY 200 OK (terminated), then the server's BYE.  Bob's phone is taken off hold by a
    re-INVITE; Bob and Carol hear each other, Alice's tone is not in what they hear, and
    the server sends her nothing: her media stream is gone."""
    server = start_server(users=USERS, sip_trace=True, extra_config=SUPPORT)

    async def main() -> None:
        bob = await phone(server, tmp_path / "bob", "bob")
        carol = await phone(server, tmp_path / "carol", "carol")
        alice = caller(server, tmp_path / "alice", "refer_uac.xml", "202")
        try:
            await held_call(alice, bob)

            await alice.refer(f"<sip:{target}@{DOMAIN}>")
            await transferred(server, bob, alice)
            await carol.answered()
            await cut_off([alice], talk(bob, carol))
            bob.hang_up()
            await bob.finished()
            await carol.finished()
        finally:
            stop(alice.sipp, bob.sipp, carol.sipp)

        row = await logged(server, alice.call_id)
        legs = legs_by_peer(row)
        assert set(legs) == {"alice", "bob", "carol"}, row["legs"]
        assert legs["alice"]["transferred_to"] == "carol"
        assert legs["alice"]["ended_at"] is not None
        assert legs["carol"]["answered_at"] is not None

    asyncio.run(main())


def test_blind_transfer_to_a_number_on_the_trunk(tmp_path: Path) -> None:
    """Alice REFERs Bob to a US number as dialled (4045551234): the server calls it on the
    trunk in E.164, and once the carrier's party answers, Bob hears its tone and the
    carrier hears Bob's; the call log shows the transfer to the number and the carrier leg."""

    async def main() -> None:
        async with trunk_setup(tmp_path) as (carrier, server):
            bob = await phone(server, tmp_path / "bob", "bob")
            alice = caller(server, tmp_path / "alice", "refer_uac.xml", "202")
            try:
                await held_call(alice, bob)

                await alice.refer(f"<sip:4045551234@{DOMAIN}>")
                pstn = await carrier.wait_for_call(PSTN_NUMBER)
                assert pstn.request_uri == f"sip:{PSTN_NUMBER}@acme.pstn.ashburn.twilio.com"
                await transferred(server, bob, alice)
                await cut_off([alice], hear_the_pstn(bob, pstn))
                bob.hang_up()
                await bob.finished()
                await pstn.ended()
            finally:
                stop(alice.sipp, bob.sipp)

            row = await logged(server, alice.call_id)
            legs = legs_by_peer(row)
            assert set(legs) == {"alice", "bob", PSTN_NUMBER}, row["legs"]
            assert legs["alice"]["transferred_to"] == PSTN_NUMBER
            assert legs[PSTN_NUMBER]["billable"] is True
            assert legs[PSTN_NUMBER]["edge"] == "ashburn"
            assert legs[PSTN_NUMBER]["answered_at"] is not None

    asyncio.run(main())


async def hear_the_pstn(bob: Phone, pstn: CarrierCall) -> None:
    """Bob talks into the transferred call: the carrier's party hears his tone alone, and
    he hears the party's, alone."""
    media = pstn.media
    assert media is not None
    heard_by_pstn, heard_by_bob = media.audio().size, bob.rtp.audio(0).size
    await bob.rtp.send_tone(bob.media(), BOB_HZ, 1.0)
    await until_heard(lambda: media.audio()[heard_by_pstn:], BOB_HZ, 1.0)
    await until_heard(lambda: bob.rtp.audio(0)[heard_by_bob:], PSTN_HZ, 1.0)
    assert_no_tone(bob.rtp.audio(0)[heard_by_bob:], ALICE_HZ)


@pytest.mark.parametrize(
    ("target", "status"),
    [("carol", 486), ("carol", 480), ("nobody", 404)],
    ids=["busy", "unregistered", "unknown"],
)
def test_failed_blind_transfer_keeps_the_call(
    start_server: StartServer, tmp_path: Path, target: str, status: int
) -> None:
    """The target is busy (its phone answers 486), not registered (480) or no user at
    all (404): the last NOTIFY carries that status line and ends the subscription, the
    server does not hang Alice up, and when she takes Bob off hold they hear each other."""
    server = start_server(users=USERS, sip_trace=True)

    async def main() -> None:
        bob = await phone(server, tmp_path / "bob", "bob")
        carol = None
        if status == 486:
            carol = await phone(server, tmp_path / "carol", "carol", "refer_busy_uas.xml")
        alice = caller(server, tmp_path / "alice", "refer_uac.xml", "202")
        try:
            await held_call(alice, bob)

            await alice.refer(f"<sip:{target}@{DOMAIN}>")
            assert_transfer_notified(await alice.notified(), status)
            if carol is not None:
                await reported(carol.sipp, "busy")
            alice.cue()  # resume
            await reported(alice.sipp, "resumed")
            await bob.offered("sendonly", "sendrecv")
            await in_call(alice, bob)
            alice.cue()  # hang up
            await finished(alice.sipp)
            await bob.finished()
            if carol is not None:
                send_cue(carol.address, carol.registration, 1)
                await finished(carol.sipp)
        finally:
            stop(alice.sipp, bob.sipp, *([carol.sipp] if carol else []))

        row = await logged(server, alice.call_id)
        legs = legs_by_peer(row)
        assert (row["hangup_cause"], row["hung_up_by"]) == ("normal", "caller")
        assert legs["alice"]["transferred_to"] is None
        assert legs["bob"]["ended_at"] is not None

    asyncio.run(main())


def test_refer_without_refer_to_is_refused_with_400(
    start_server: StartServer, tmp_path: Path
) -> None:
    """A REFER must carry exactly one Refer-To (RFC 3515 §2.4.1): 400, and the call goes
    on, heard both ways."""
    server = start_server(users=USERS, sip_trace=True)

    async def main() -> None:
        bob = await phone(server, tmp_path / "bob", "bob")
        alice = caller(server, tmp_path / "alice", "refer_bad_uac.xml", "202")
        try:
            await alice.answered()
            await bob.answered()
            alice.cue()
            await reported(alice.sipp, "refused")
            await in_call(alice, bob)
            alice.cue()  # hang up
            await finished(alice.sipp)
            await bob.finished()
        finally:
            stop(alice.sipp, bob.sipp)
        row = await logged(server, alice.call_id)
        assert (row["hangup_cause"], row["hung_up_by"]) == ("normal", "caller")

    asyncio.run(main())


# -- attended transfer ----------------------------------------------------------


def replaces(call_id: str, to_tag: str, from_tag: str) -> str:
    """A Replaces header (RFC 3891 §6.1) escaped for a URI's headers (RFC 3261 §19.1.1)."""
    return urllib.parse.quote(f"{call_id};to-tag={to_tag};from-tag={from_tag}", safe="")


def test_attended_transfer_replaces_the_consultation_call(
    start_server: StartServer, tmp_path: Path
) -> None:
    """Alice holds Bob, calls Carol and talks with her, then REFERs Bob to Carol with
    Replaces naming her dialog with the server in the second call (its Call-ID, the
    server's tag as to-tag, hers as from-tag; RFC 3891 §3).  202, NOTIFY 100 then 200,
    and the server hangs up both of Alice's dialogs; Bob (taken off hold) and Carol hear
    each other, and the server sends Alice nothing on either call: both her streams are
    gone."""
    server = start_server(users=USERS, sip_trace=True)

    async def main() -> None:
        bob = await phone(server, tmp_path / "bob", "bob")
        carol = await phone(server, tmp_path / "carol", "carol")
        first = caller(server, tmp_path / "alice1", "refer_uac.xml", "202")
        second: Caller | None = None
        try:
            await held_call(first, bob)

            second = caller(server, tmp_path / "alice2", "refer_consult_uac.xml", "203")
            from_tag, to_tag = await second.answered()
            await carol.answered()
            await assert_heard(
                AudioPath(second.rtp, second.media, ALICE_HZ, carol.rtp),
                AudioPath(carol.rtp, carol.media(), CAROL_HZ, second.rtp),
            )

            target = replaces(second.call_id, to_tag, from_tag)
            await first.refer(f"<sip:carol@{DOMAIN}?Replaces={target}>")
            await transferred(server, bob, first, second)
            media = bob.media(), carol.media()
            await cut_off([first, second], talk(bob, carol))
            # No late re-INVITE moved either phone while the check ran.
            assert (bob.media(), carol.media()) == media
            bob.hang_up()
            await bob.finished()
            await carol.finished()
        finally:
            stop(first.sipp, bob.sipp, carol.sipp, *([second.sipp] if second else []))

        assert second is not None
        held, consulted = await logged(server, first.call_id), await logged(server, second.call_id)
        legs = legs_by_peer(held)
        assert {"alice", "bob"} <= set(legs), held["legs"]
        assert legs["alice"]["transferred_to"] == "carol"
        carol_legs = [
            leg for row in (held, consulted) for leg in row["legs"] if leg["peer"] == "carol"
        ]
        assert carol_legs and all(leg["answered_at"] for leg in carol_legs), carol_legs

    asyncio.run(main())
