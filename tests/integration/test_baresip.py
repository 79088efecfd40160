"""baresip softphones calling each other by extension through the server, audio checked as audio."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest

from tests.audio import assert_tone
from tests.baresip import BINARY, Baresip
from tests.harness import ServerProcess
from tests.integration.test_calls import logged

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which(BINARY) is None, reason="baresip is not installed"),
]

DOMAIN = "test.local"


@asynccontextmanager
async def phones(
    server: ServerProcess, tmp_path: Path, *users: tuple[str, float] | tuple[str, float, str]
) -> AsyncIterator[list[Baresip]]:
    """Registered baresips, one per ``(user, tone Hz)``, each saying its tone into calls;
    ``(user, tone Hz, codec)`` limits that phone to one codec (``pcmu``, ``pcma``)."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                Baresip(
                    tmp_path / user,
                    user,
                    f"{user}-secret",
                    DOMAIN,
                    server.udp_port,
                    tone,
                    audio_codecs=tuple(codec),
                )
            )
            for user, tone, *codec in users
        ]


async def answered_call(alice: Baresip, bob: Baresip) -> str:
    """Alice dials 202, Bob answers: both sides established; Alice's Call-ID."""
    await alice.command("dial", "202")
    incoming = await bob.wait_event("CALL_INCOMING", "CALL_CLOSED")
    if incoming.type == "CALL_CLOSED":  # Bob's phone refused the INVITE (a 488...)
        refused = await alice.wait_event("CALL_CLOSED")
        raise AssertionError(f"Bob's phone refused: {incoming.param}; Alice got {refused.param}")
    assert incoming.param == f"sip:alice@{DOMAIN}"
    await alice.wait_event("CALL_RINGING")
    await bob.command("accept")
    established = await alice.wait_event("CALL_ESTABLISHED")
    await bob.wait_event("CALL_ESTABLISHED")
    assert established.call_id is not None
    return established.call_id


async def audio_stream(phone: Baresip) -> tuple[str, int]:
    """The SDP direction of the phone's call audio and the RTP packets it has received,
    from baresip's ``audio_debug`` (its RTCP statistics, RFC 3550 §6.4)."""
    debug = await phone.command("audio_debug")
    direction, received = re.search(r"audio dir=(\w+)", debug), re.search(r"rcvd=(\d+)", debug)
    assert direction and "RTCP Session" in debug, debug
    # No receive statistics before the first packet.
    return direction.group(1), int(received.group(1)) if received else 0


async def codecs_in_use(phone: Baresip) -> tuple[str, str]:
    """The codecs the phone's call audio is encoded in and decoded from (``audio_debug``)."""
    debug = await phone.command("audio_debug")
    encode, decode = re.search(r"encode: (\S+)", debug), re.search(r"decode: (\S+)", debug)
    assert encode and decode, debug
    return encode.group(1), decode.group(1)


async def offered_codecs(phone: Baresip) -> list[str]:
    """The audio codecs of the SDP the phone's call got from the far end, in its order
    (``callstat``'s remote formats; an incoming call's are those of the INVITE's offer)."""
    debug = await phone.command("callstat")
    audio = debug[debug.index("audio RTP/AVP") :]
    formats = audio[audio.index("remote formats:") : audio.index("local attributes:", 1)]
    names = re.findall(r"^\s+\d+ ([\w-]+)/", formats, re.MULTILINE)
    return [name for name in names if name != "telephone-event"]


async def received_at_least(phone: Baresip, count: int, timeout: float = 15.0) -> int:
    """Wait until the phone has received ``count`` RTP packets in its call; how many it has."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (received := (await audio_stream(phone))[1]) < count:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{phone.user} received {received} RTP packets, not {count}")
        await asyncio.sleep(0.02)
    return received


def test_baresip_calls_baresip_by_extension_with_audio_both_ways(
    server: ServerProcess, tmp_path: Path
) -> None:
    async def main() -> None:
        async with phones(server, tmp_path, ("alice", 1000), ("bob", 440)) as (alice, bob):
            call_id = await answered_call(alice, bob)
            # 1.5 s of 20 ms packets each way, then hang up.
            await asyncio.gather(received_at_least(alice, 75), received_at_least(bob, 75))
            await alice.command("hangup")
            assert (await alice.wait_event("CALL_CLOSED")).param == "Connection reset by user"
            # Bob's phone learns of it from the server's BYE.
            assert (await bob.wait_event("CALL_CLOSED")).param == "Connection reset by peer"

            for phone, far_tone in ((alice, 440), (bob, 1000)):
                assert_tone(await phone.received_audio(), far_tone, seconds=1.4)

            row = await logged(server, call_id)
            assert (row["direction"], row["caller"], row["callee_dialled"]) == (
                "internal",
                "alice",
                "202",
            )
            assert (row["hangup_cause"], row["hung_up_by"], row["sip_status"]) == (
                "normal",
                "caller",
                200,
            )
            assert row["answered_at"] and row["duration"] > 1.0
            legs = {leg["leg_id"]: leg for leg in row["legs"]}
            assert legs["a"]["peer"] == "alice" and legs["b"]["peer"] == "bob"
            assert legs["a"]["packets_in"] >= 50 and legs["b"]["packets_in"] >= 50

    asyncio.run(main())


def test_pcmu_only_phone_calls_pcma_only_phone_and_the_server_transcodes(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Alice's phone knows only PCMU, Bob's only PCMA: the server offers Bob every codec it
    can convert, Alice's first (RFC 3264 §5.1), so he can answer PCMA, and transcodes on its
    audio path; each phone talks and hears the other's tone in its own codec."""

    async def main() -> None:
        limited = (("alice", 1000, "pcmu"), ("bob", 440, "pcma"))
        async with phones(server, tmp_path, *limited) as (alice, bob):
            call_id = await answered_call(alice, bob)
            assert await offered_codecs(bob) == ["PCMU", "PCMA"]
            assert await codecs_in_use(alice) == ("PCMU", "PCMU")
            assert await codecs_in_use(bob) == ("PCMA", "PCMA")
            await asyncio.gather(received_at_least(alice, 75), received_at_least(bob, 75))
            # Different codecs on the two legs: both streams on the audio path, not relayed.
            assert "voipcore_media_audio_streams 2.0" in server.metrics()
            await alice.command("hangup")
            await alice.wait_event("CALL_CLOSED")
            await bob.wait_event("CALL_CLOSED")

            for phone, far_tone in ((alice, 440), (bob, 1000)):
                assert_tone(await phone.received_audio(), far_tone, seconds=1.4)

            row = await logged(server, call_id)
            assert (row["hangup_cause"], row["hung_up_by"]) == ("normal", "caller")
            legs = {leg["peer"]: leg for leg in row["legs"]}
            assert legs["alice"]["packets_in"] >= 50 and legs["bob"]["packets_in"] >= 50

    asyncio.run(main())


def test_baresip_call_to_an_unregistered_user_fails_with_480(
    server: ServerProcess, tmp_path: Path
) -> None:
    async def main() -> None:
        async with phones(server, tmp_path, ("alice", 1000)) as (alice,):
            await alice.command("dial", "202")
            closed = await alice.wait_event("CALL_CLOSED")
            assert closed.param.startswith("480 "), closed.param
            assert closed.call_id is not None
            row = await logged(server, closed.call_id)
            assert (row["sip_status"], row["hangup_cause"]) == (480, "unavailable")
            assert row["answered_at"] is None

    asyncio.run(main())


def test_baresip_hold_and_resume_reach_the_other_phone(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Alice holds: Bob's phone gets the re-INVITE (recvonly for him, sendonly for her);
    she resumes, and audio flows both ways again."""

    async def main() -> None:
        async with phones(server, tmp_path, ("alice", 1000), ("bob", 440)) as (alice, bob):
            call_id = await answered_call(alice, bob)
            await received_at_least(alice, 15)

            await alice.command("hold")
            # The server relays it as a re-INVITE: a new SDP offer at Bob's phone.
            assert (await bob.wait_event("CALL_REMOTE_SDP")).param == "offer"
            assert (await alice.wait_event("CALL_REMOTE_SDP")).param == "answer"
            assert (await audio_stream(bob))[0] == "recvonly"
            assert (await audio_stream(alice))[0] == "sendonly"
            # baresip stops sending on both sides while held, so silence here would prove
            # nothing about the server; test_calls.py holds a phone that keeps talking.

            await alice.command("resume")
            assert (await bob.wait_event("CALL_REMOTE_SDP")).param == "offer"
            assert (await alice.wait_event("CALL_REMOTE_SDP")).param == "answer"
            (dir_a, before_a), (dir_b, before_b) = (
                await audio_stream(alice),
                await audio_stream(bob),
            )
            assert dir_a == dir_b == "sendrecv"
            # Packets flow each way again (50 a second of 20 ms G.711).
            await received_at_least(alice, before_a + 40)
            await received_at_least(bob, before_b + 40)

            await alice.command("hangup")
            await bob.wait_event("CALL_CLOSED")
            row = await logged(server, call_id)
            assert (row["hangup_cause"], row["hung_up_by"]) == ("normal", "caller")

    asyncio.run(main())
