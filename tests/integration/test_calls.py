"""Calls between registered users through the B2BUA, media anchored, audio verified."""

from __future__ import annotations

import asyncio
import functools
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from tests.audio import assert_no_tone
from tests.harness import DEFAULT_USERS, ServerProcess, TestUser, free_udp_port, wait_for_async
from tests.rtpphone import AudioPath, RtpPhone, assert_heard
from tests.sipclient import SipClient
from tests.sipp import run_sipp, scenario, start_uas, write_users_csv
from voipcore.cli import main as cli_main
from voipcore.sdp import PCMA, PCMU, TELEPHONE_EVENT, SessionDescription, build_offer
from voipcore.sip.message import Request, Response
from voipcore.store.calls import CallLog, to_json
from voipcore.store.db import open_engine

if TYPE_CHECKING:
    from tests.integration.conftest import StartServer

pytestmark = pytest.mark.integration
DOMAIN = "test.local"
T = TypeVar("T")


async def blocking(func: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, func, *args)


def sdp_for(phone: RtpPhone) -> bytes:
    host, port = phone.address
    return build_offer(
        address=host, port=port, formats=[PCMU, TELEPHONE_EVENT], session_id=1, version=1
    ).to_bytes()


def media_target(message: Request | Response) -> tuple[str, int]:
    audio = SessionDescription.parse(message.body).audio
    assert audio is not None and audio.connection_address is not None
    return audio.connection_address, audio.port


async def next_final(client: SipClient) -> Response:
    """Skip provisional responses; return the first final one."""
    while True:
        response = await blocking(client.recv)
        if response.status >= 200:
            return response


async def call(
    caller: SipClient, target: str, phone: RtpPhone, extra: tuple[str, ...] = ()
) -> Request:
    return await blocking(
        caller.invite, "alice", "alice-secret", DOMAIN, target, sdp_for(phone), extra
    )


async def logged(server: ServerProcess, call_id: str, *, ended: bool = True) -> dict[str, Any]:
    """The call's row in the server's call log, once its end (``ended=False``: its answer)
    is committed."""
    log = CallLog(open_engine(f"sqlite:///{server.workdir / 'voipcore.db'}"))

    def row() -> dict[str, Any] | None:
        record = log.get(call_id)
        if record is None or (record.ended_at if ended else record.answered_at) is None:
            return None
        [found] = to_json([record])
        return found

    try:
        what = "ended" if ended else "answered"
        found = await wait_for_async(row, f"call {call_id} not logged as {what}", timeout=20.0)
        assert found is not None
        return found
    finally:
        log.engine.dispose()


async def ringing(
    server: ServerProcess, phone: RtpPhone, target: str = "bob", extra: tuple[str, ...] = ()
) -> tuple[SipClient, SipClient, Request, Request]:
    """Alice calls ``target`` (``extra``: header lines): both clients, her INVITE,
    and the INVITE ringing Bob's phone."""
    alice, bob = await registered(server, "alice"), await registered(server, "bob")
    invite = await call(alice, target, phone, extra)
    incoming = await blocking(bob.recv_message)
    assert isinstance(incoming, Request) and incoming.method == "INVITE"
    return alice, bob, invite, incoming


async def connected(
    server: ServerProcess,
    phone_a: RtpPhone,
    phone_b: RtpPhone,
    extra: tuple[str, ...] = (),
    granted: tuple[str, ...] = (),
) -> tuple[SipClient, SipClient, Request, Request, Response]:
    """Alice calls Bob, whose phone answers (``granted``: header lines of its 200),
    and both ACKs are through: clients, Alice's INVITE, Bob's, and Alice's 200."""
    alice, bob, invite, incoming = await ringing(server, phone_a, "bob", extra)
    await blocking(bob.answer, incoming, 200, sdp_for(phone_b), granted)
    ok = await next_final(alice)
    assert ok.status == 200
    await blocking(alice.send_raw, alice.in_dialog("ACK", invite, ok, invite.cseq.seq))
    ack = await blocking(bob.recv_message)
    assert isinstance(ack, Request) and ack.method == "ACK"
    return alice, bob, invite, incoming, ok


async def registered(server: ServerProcess, user: str) -> SipClient:
    client = SipClient("127.0.0.1", server.udp_port)
    assert (await blocking(client.register, user, f"{user}-secret", DOMAIN)).status == 200
    return client


def test_extension_call_carries_audio_both_ways_and_hangs_up(server: ServerProcess) -> None:
    async def main() -> None:
        alice, bob = await registered(server, "alice"), await registered(server, "bob")
        phone_a, phone_b = RtpPhone.open(), RtpPhone.open()
        invite = await blocking(
            alice.invite, "alice", "alice-secret", DOMAIN, "202", sdp_for(phone_a)
        )

        # Bob's phone rings: the server's own INVITE, with the server's media address.
        incoming = await blocking(bob.recv_message)
        assert isinstance(incoming, Request) and incoming.method == "INVITE"
        assert incoming.from_.uri.user == "alice"  # type: ignore[union-attr]
        assert incoming.max_forwards == 69  # one hop less than Alice's 70 (§16.6 step 3)
        to_server_b = media_target(incoming)
        await blocking(bob.answer, incoming, 180)
        await blocking(bob.answer, incoming, 200, sdp_for(phone_b))

        ringing = await blocking(alice.recv)
        while ringing.status == 100:
            ringing = await blocking(alice.recv)
        assert ringing.status == 180
        ok = await next_final(alice)
        assert ok.status == 200 and ok.to.tag is not None
        await blocking(alice.send_raw, alice.in_dialog("ACK", invite, ok, invite.cseq.seq))
        ack = await blocking(bob.recv_message)
        assert isinstance(ack, Request) and ack.method == "ACK"

        # Anchored: each phone talks to the server's address, never to the other phone.
        to_server_a = media_target(ok)
        assert to_server_a != phone_b.address and to_server_b != phone_a.address
        await assert_heard(
            AudioPath(phone_a, to_server_a, 1000, phone_b),
            AudioPath(phone_b, to_server_b, 440, phone_a),
        )

        # Alice hangs up: 200 to her BYE, and the server's BYE reaches Bob.
        await blocking(alice.send_raw, alice.in_dialog("BYE", invite, ok, invite.cseq.seq + 1))
        assert (await blocking(alice.recv)).status == 200
        bye = await blocking(bob.recv_message)
        assert isinstance(bye, Request) and bye.method == "BYE"
        await blocking(bob.answer, bye, 200)

        row = await logged(server, invite.call_id)
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
        assert row["answered_at"] and row["duration"] > 0.9 and row["codec"] == "PCMU"
        legs = {leg["leg_id"]: leg for leg in row["legs"]}
        assert legs["a"]["peer"] == "alice" and legs["b"]["peer"] == "bob"
        assert legs["a"]["packets_in"] >= 45 and legs["b"]["packets_in"] >= 45
        assert legs["a"]["mos_avg"] is not None

    asyncio.run(main())


@pytest.mark.parametrize(
    ("target", "register_bob", "status"), [("999", True, 404), ("bob", False, 480)]
)
def test_unknown_or_unregistered_callee(
    server: ServerProcess, target: str, register_bob: bool, status: int
) -> None:
    async def main() -> None:
        alice = await registered(server, "alice")
        if register_bob:
            await registered(server, "bob")
        invite = await call(alice, target, RtpPhone.open())
        assert (await next_final(alice)).status == status
        row = await logged(server, invite.call_id)
        assert row["sip_status"] == status and row["answered_at"] is None
        assert row["hangup_cause"] == ("failed" if status == 404 else "unavailable")

    asyncio.run(main())


def test_extension_added_while_running_can_be_called(server: ServerProcess) -> None:
    async def main() -> None:
        alice = await registered(server, "alice")

        async def attempt() -> int:
            invite = await call(alice, "299", RtpPhone.open())
            final = await next_final(alice)
            await blocking(alice.send_raw, alice.ack_bytes(invite, final))
            return final.status

        assert await attempt() == 404
        added = cli_main(
            ["users", "add", "dave", "--password", "dave-secret", "--extension", "299"]
            + ["--config", str(server.config_path)]
        )
        assert added == 0
        # The server reloads users every USER_REFRESH_SECONDS; then 299 is Dave, who has
        # not registered: 480 instead of 404.
        deadline = asyncio.get_running_loop().time() + 10.0
        while True:
            status = await attempt()
            if status != 404 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.5)
        assert status == 480

    asyncio.run(main())


def test_busy_callee_gives_486(server: ServerProcess) -> None:
    async def main() -> None:
        alice, bob, invite, incoming = await ringing(server, RtpPhone.open(), "bob")
        await blocking(bob.answer, incoming, 486)
        assert (await next_final(alice)).status == 486
        row = await logged(server, invite.call_id)
        assert (row["hangup_cause"], row["sip_status"]) == ("busy", 486)

    asyncio.run(main())


def test_wrong_password_is_forbidden(server: ServerProcess) -> None:
    async def main() -> None:
        alice = await registered(server, "alice")
        sdp = sdp_for(RtpPhone.open())
        await blocking(alice.invite, "alice", "wrong-password", DOMAIN, "bob", sdp)
        assert (await next_final(alice)).status == 403

    asyncio.run(main())


def test_caller_cancels_while_ringing(server: ServerProcess) -> None:
    async def main() -> None:
        alice, bob, invite, incoming = await ringing(server, RtpPhone.open(), "bob")
        await blocking(bob.answer, incoming, 180)
        await blocking(alice.send_raw, alice.cancel_bytes(invite))
        statuses: set[int] = set()
        while not {200, 487} <= statuses:
            statuses.add((await blocking(alice.recv)).status)
        # The server cancels its own INVITE to Bob's phone (§9.1).
        cancel = await blocking(bob.recv_message)
        assert isinstance(cancel, Request) and cancel.method == "CANCEL"
        await blocking(bob.answer, cancel, 200)
        await blocking(bob.answer, incoming, 487)
        row = await logged(server, invite.call_id)
        assert (row["hangup_cause"], row["hung_up_by"]) == ("cancelled", "caller")
        assert row["ringing_at"] is not None and row["answered_at"] is None

    asyncio.run(main())


def test_callee_hangs_up(server: ServerProcess) -> None:
    async def main() -> None:
        alice, bob, invite, incoming = await ringing(server, RtpPhone.open(), "bob")
        await blocking(bob.answer, incoming, 200, sdp_for(RtpPhone.open()))
        ok = await next_final(alice)
        await blocking(alice.send_raw, alice.in_dialog("ACK", invite, ok, invite.cseq.seq))
        await blocking(bob.recv_message)  # the server's ACK
        await blocking(bob.send_raw, bob.callee_bye(incoming))
        assert (await blocking(bob.recv)).status == 200
        bye = await blocking(alice.recv_message)
        assert isinstance(bye, Request) and bye.method == "BYE" and bye.call_id == invite.call_id
        row = await logged(server, invite.call_id)
        assert (row["hangup_cause"], row["hung_up_by"]) == ("normal", "callee")

    asyncio.run(main())


def test_sipp_caller_and_sipp_callee(server: ServerProcess, tmp_path: Path) -> None:
    """Two independent SIP stacks: SIPp answers our 407 and places the call; a second
    SIPp, registered as bob, rings, answers, and takes the relayed BYE."""
    uas_port, uas_media, uac_media = free_udp_port(), free_udp_port(), free_udp_port()
    uas = start_uas(
        scenario("uas_call.xml"),
        port=uas_port,
        media_port=uas_media,
        workdir=tmp_path / "uas",
        calls=1,
        timeout=20,
    )
    try:
        bob = SipClient("127.0.0.1", server.udp_port)
        contact = f"<sip:bob@127.0.0.1:{uas_port}>"
        assert bob.register("bob", "bob-secret", DOMAIN, contacts=(contact,)).status == 200
        users = write_users_csv(tmp_path / "users.csv", [("alice", "alice-secret")])
        result = run_sipp(
            scenario("uac_call.xml"),
            "127.0.0.1",
            server.udp_port,
            workdir=tmp_path,
            users_csv=users,
            keys={"domain": DOMAIN, "callee": "202"},
            auth_uri=f"202@{DOMAIN}",
            timeout=20,
            extra_args=["-mp", str(uac_media), "-d", "300"],
        )
        assert result.ok, result.describe()
        assert uas.wait(timeout=20) == 0  # the callee saw INVITE, ACK and BYE
    finally:
        if uas.poll() is None:
            uas.kill()


def test_unanswered_call_gives_480_and_cancels_the_ringing_phone(start_server: StartServer) -> None:
    server = start_server(extra_sip="ring_timeout = 1.0")

    async def main() -> None:
        alice, bob, invite, incoming = await ringing(server, RtpPhone.open(), "bob")
        await blocking(bob.answer, incoming, 180)
        assert (await next_final(alice)).status == 480
        cancel = await blocking(bob.recv_message)
        assert isinstance(cancel, Request) and cancel.method == "CANCEL"
        row = await logged(server, invite.call_id)
        assert (row["hangup_cause"], row["sip_status"]) == ("no_answer", 480)

    asyncio.run(main())


@pytest.mark.parametrize("method", ["INVITE", "UPDATE"])
def test_hold_and_resume_are_relayed_and_stop_the_audio(server: ServerProcess, method: str) -> None:
    """Hold by re-INVITE or by UPDATE (RFC 3311): relayed to Bob as a re-INVITE."""

    async def main() -> None:
        phone_a, phone_b = RtpPhone.open(), RtpPhone.open()
        alice, bob, invite, incoming, ok = await connected(server, phone_a, phone_b)
        to_server_b = media_target(incoming)

        async def reinvite(direction: str, cseq: int) -> None:
            host, port = phone_a.address
            sdp = build_offer(
                address=host,
                port=port,
                formats=[PCMU],
                session_id=1,
                version=cseq,
                direction=direction,
            ).to_bytes()
            await blocking(alice.send_raw, alice.in_dialog(method, invite, ok, cseq, sdp))
            answered = await next_final(alice)
            assert answered.status == 200
            audio = SessionDescription.parse(answered.body).audio
            assert audio is not None
            assert audio.direction == ("recvonly" if direction == "sendonly" else "sendrecv")
            if method == "INVITE":
                await blocking(alice.send_raw, alice.in_dialog("ACK", invite, ok, cseq))
            # Bob's phone is told too, with our own re-INVITE.
            relayed = await blocking(bob.recv_message)
            assert isinstance(relayed, Request) and relayed.method == "INVITE"
            relayed_audio = SessionDescription.parse(relayed.body).audio
            assert relayed_audio is not None and relayed_audio.direction == direction
            await blocking(bob.answer, relayed, 200, sdp_for(phone_b))
            ack = await blocking(bob.recv_message)
            assert isinstance(ack, Request) and ack.method == "ACK"

        await reinvite("sendonly", invite.cseq.seq + 1)
        held_from = phone_a.audio(0).size
        await phone_b.send_tone(to_server_b, 600, 0.5)  # on hold: must not reach the holder
        await reinvite("sendrecv", invite.cseq.seq + 2)
        await assert_heard(AudioPath(phone_b, to_server_b, 440, phone_a))
        # Packets go through the anchor in order: once the resumed tone is heard, anything
        # relayed during the hold would have arrived before it.
        assert_no_tone(phone_a.audio(0)[held_from:], 600)
        # Bob hangs up; the held-and-resumed call is logged as an ordinary answered call.
        await blocking(bob.send_raw, bob.callee_bye(incoming))
        row = await logged(server, invite.call_id)
        assert (row["hangup_cause"], row["hung_up_by"], row["sip_status"]) == (
            "normal",
            "callee",
            200,
        )

    asyncio.run(main())


def test_per_user_call_limit(start_server: StartServer) -> None:
    server = start_server(extra_sip="max_calls_per_user = 1")

    async def main() -> None:
        alice, bob, _, incoming = await ringing(server, RtpPhone.open(), "bob")
        await blocking(bob.answer, incoming, 180)
        second = SipClient("127.0.0.1", server.udp_port)
        invite = await blocking(
            second.invite, "alice", "alice-secret", DOMAIN, "bob", sdp_for(RtpPhone.open())
        )
        refused = await next_final(second)
        assert refused.status == 486 and "limit of 1" in refused.reason
        row = await logged(server, invite.call_id)
        assert (row["hangup_cause"], row["sip_status"], row["answered_at"]) == ("busy", 486, None)

    asyncio.run(main())


def test_delayed_offer_offer_in_200_answer_in_ack(server: ServerProcess) -> None:
    async def main() -> None:
        alice, bob = await registered(server, "alice"), await registered(server, "bob")
        phone_a, phone_b = RtpPhone.open(), RtpPhone.open()
        invite = await blocking(alice.invite, "alice", "alice-secret", DOMAIN, "bob", b"")
        assert not invite.body
        incoming = await blocking(bob.recv_message)
        assert isinstance(incoming, Request) and incoming.body  # we offered to bob
        await blocking(bob.answer, incoming, 200, sdp_for(phone_b))
        ok = await next_final(alice)
        assert ok.status == 200 and ok.body  # our offer to alice ...
        to_server_a = media_target(ok)
        # ... answered in her ACK (RFC 3261 §13.2.1).
        await blocking(
            alice.send_raw, alice.in_dialog("ACK", invite, ok, invite.cseq.seq, sdp_for(phone_a))
        )
        await assert_heard(
            AudioPath(phone_a, to_server_a, 1000, phone_b),
            AudioPath(phone_b, media_target(incoming), 440, phone_a),
        )
        await blocking(alice.send_raw, alice.in_dialog("BYE", invite, ok, invite.cseq.seq + 1))
        row = await logged(server, invite.call_id)
        assert (row["codec"], row["hangup_cause"], row["hung_up_by"]) == (
            "PCMU",
            "normal",
            "caller",
        )

    asyncio.run(main())


def test_call_without_media_is_torn_down(start_server: StartServer) -> None:
    server = start_server(extra_config="[media]\nmedia_timeout = 1.0\n")

    async def main() -> None:
        alice, bob, invite, incoming = await ringing(server, RtpPhone.open(), "bob")
        await blocking(bob.answer, incoming, 200, sdp_for(RtpPhone.open()))
        ok = await next_final(alice)
        await blocking(alice.send_raw, alice.in_dialog("ACK", invite, ok, invite.cseq.seq))
        await blocking(bob.recv_message)  # the server's ACK
        # Neither phone sends RTP: after the media timeout both get a BYE.
        bye_a, bye_b = await blocking(alice.recv_message), await blocking(bob.recv_message)
        assert isinstance(bye_a, Request) and bye_a.method == "BYE"
        assert isinstance(bye_b, Request) and bye_b.method == "BYE"
        row = await logged(server, invite.call_id)
        assert (row["hangup_cause"], row["hung_up_by"]) == ("media_timeout", "system")

    asyncio.run(main())


def test_session_timers_are_negotiated_on_both_legs(server: ServerProcess) -> None:
    """RFC 4028: the caller's interval is granted, the callee is asked for ours,
    a bodiless UPDATE refreshes one leg only, and too short an interval gets 422."""

    async def main() -> None:
        phone_a, phone_b = RtpPhone.open(), RtpPhone.open()
        timer = ("Supported: timer", "Session-Expires: 300;refresher=uac")
        granted = ("Require: timer", "Session-Expires: 1800;refresher=uas")
        alice, bob, invite, incoming, ok = await connected(server, phone_a, phone_b, timer, granted)
        assert "timer" in incoming.headers.get_all("Supported")
        assert incoming.headers.get("Session-Expires") == "1800"
        assert incoming.headers.get("Min-SE") == "90"
        assert "UPDATE" in (incoming.headers.get("Allow") or "")
        assert ok.headers.get("Session-Expires") == "300;refresher=uac"
        assert ok.headers.get("Require") == "timer"

        update = alice.in_dialog("UPDATE", invite, ok, invite.cseq.seq + 1, extra=timer)
        await blocking(alice.send_raw, update)
        refreshed = await next_final(alice)
        assert refreshed.status == 200 and not refreshed.body
        assert refreshed.headers.get("Session-Expires") == "300;refresher=uac"
        bob.sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            bob.recv_message()  # a refresh stays on its own leg

        short = ("Supported: timer", "Session-Expires: 60")
        again = await registered(server, "alice")
        await blocking(
            again.invite, "alice", "alice-secret", DOMAIN, "bob", sdp_for(phone_a), short
        )
        too_small = await next_final(again)
        assert (too_small.status, too_small.headers.get("Min-SE")) == (422, "90")

    asyncio.run(main())


def test_codec_change_by_reinvite_stays_on_its_leg_and_is_transcoded(
    server: ServerProcess,
) -> None:
    """Alice moves to PCMA mid-call: only her leg changes, the engine transcodes."""

    async def main() -> None:
        phone_a, phone_b = RtpPhone.open(), RtpPhone.open()
        alice, bob, invite, incoming, ok = await connected(server, phone_a, phone_b)
        host, port = phone_a.address
        pcma = build_offer(
            address=host, port=port, formats=[PCMA, TELEPHONE_EVENT], session_id=1, version=2
        ).to_bytes()
        cseq = invite.cseq.seq + 1
        await blocking(alice.send_raw, alice.in_dialog("INVITE", invite, ok, cseq, pcma))
        answered = await next_final(alice)
        assert answered.status == 200
        audio = SessionDescription.parse(answered.body).audio
        assert audio is not None and audio.codecs[0].name == "PCMA"
        await blocking(alice.send_raw, alice.in_dialog("ACK", invite, ok, cseq))

        to_server_a, to_server_b = media_target(answered), media_target(incoming)
        await assert_heard(
            AudioPath(phone_a, to_server_a, 1000, phone_b, pt=8, heard_pt=0),
            AudioPath(phone_b, to_server_b, 440, phone_a, pt=0, heard_pt=8),
        )
        # Bob's phone was not bothered: the next thing it hears of the call is Alice's BYE.
        await blocking(alice.send_raw, alice.in_dialog("BYE", invite, ok, cseq + 1))
        bye = await blocking(bob.recv_message)
        assert isinstance(bye, Request) and bye.method == "BYE", bye

    asyncio.run(main())


def test_ring_group_extension_rings_the_members_but_not_the_caller(
    start_server: StartServer,
) -> None:
    users = [*DEFAULT_USERS, TestUser("carol", "carol-secret", "203")]
    group = (
        '[[ring_groups]]\nname = "sales"\nextension = "600"\nmembers = ["alice", "bob", "carol"]'
    )
    server = start_server(users=users, extra_config=group)

    async def main() -> None:
        carol = await registered(server, "carol")
        alice, bob, invite, to_bob = await ringing(server, RtpPhone.open(), "600")
        to_carol = await blocking(carol.recv_message)
        assert isinstance(to_carol, Request) and to_carol.method == "INVITE"
        assert to_bob.to.uri.user == "bob" and to_carol.to.uri.user == "carol"  # type: ignore[union-attr]
        await blocking(bob.answer, to_bob, 200, sdp_for(RtpPhone.open()))
        ok = await next_final(alice)  # Alice, a member herself, only hears it ring
        assert ok.status == 200
        cancel = await blocking(carol.recv_message)
        assert isinstance(cancel, Request) and cancel.method == "CANCEL"
        await blocking(alice.send_raw, alice.in_dialog("ACK", invite, ok, invite.cseq.seq))
        await blocking(alice.send_raw, alice.in_dialog("BYE", invite, ok, invite.cseq.seq + 1))
        row = await logged(server, invite.call_id)
        legs = {leg["leg_id"]: leg for leg in row["legs"]}
        assert (row["callee_dialled"], legs["b"]["peer"]) == ("600", "bob")

    asyncio.run(main())


def test_byes_that_cross_both_get_200_and_no_second_bye(server: ServerProcess) -> None:
    async def main() -> None:
        alice, bob, invite, incoming, ok = await connected(server, RtpPhone.open(), RtpPhone.open())
        # Both hang up at once: Alice's BYE ends the call and sends ours to Bob,
        # crossing his; his finds the call just ended.
        alice.send_raw(alice.in_dialog("BYE", invite, ok, invite.cseq.seq + 1))
        bob.send_raw(bob.callee_bye(incoming))
        assert (await blocking(alice.recv)).status == 200
        statuses, byes = [], set()
        bob.sock.settimeout(0.5)
        try:
            while True:
                message = bob.recv_message()
                if isinstance(message, Request):
                    byes.add((message.method, message.cseq.seq))  # retransmissions count once
                else:
                    statuses.append(message.status)
        except TimeoutError:
            pass
        assert statuses == [200] and len(byes) == 1
        silent = alice.sock
        silent.settimeout(0.3)
        with pytest.raises(TimeoutError):
            alice.recv_message()  # no BYE for Alice: she hung up herself

    asyncio.run(main())


def test_in_dialog_options_gets_200_during_the_call_and_481_after(server: ServerProcess) -> None:
    async def main() -> None:
        alice, _, invite, _, ok = await connected(server, RtpPhone.open(), RtpPhone.open())
        cseq = invite.cseq.seq
        await blocking(alice.send_raw, alice.in_dialog("OPTIONS", invite, ok, cseq + 1))
        assert (await blocking(alice.recv)).status == 200
        await blocking(alice.send_raw, alice.in_dialog("BYE", invite, ok, cseq + 2))
        assert (await blocking(alice.recv)).status == 200
        # A phone probing its call after the server lost it learns it is gone.
        await blocking(alice.send_raw, alice.in_dialog("OPTIONS", invite, ok, cseq + 3))
        assert (await blocking(alice.recv)).status == 481

    asyncio.run(main())


@pytest.mark.parametrize("tcp_side", ["caller", "callee"])
def test_call_between_a_tcp_phone_and_a_udp_phone(server: ServerProcess, tcp_side: str) -> None:
    """Signalling for a TCP phone goes over its own connection (the one it registered on)."""

    async def main() -> None:
        def client(user: str) -> SipClient:
            tcp = (tcp_side == "caller") == (user == "alice")
            if tcp:
                return SipClient("127.0.0.1", server.tcp_port, "TCP")
            return SipClient("127.0.0.1", server.udp_port)

        alice, bob = client("alice"), client("bob")
        for user, phone in (("alice", alice), ("bob", bob)):
            assert (await blocking(phone.register, user, f"{user}-secret", DOMAIN)).status == 200
        phone_a, phone_b = RtpPhone.open(), RtpPhone.open()
        invite = await call(alice, "bob", phone_a)
        incoming = await blocking(bob.recv_message)
        assert isinstance(incoming, Request) and incoming.method == "INVITE"
        await blocking(bob.answer, incoming, 200, sdp_for(phone_b))
        ok = await next_final(alice)
        assert ok.status == 200
        await blocking(alice.send_raw, alice.in_dialog("ACK", invite, ok, invite.cseq.seq))
        ack = await blocking(bob.recv_message)
        assert isinstance(ack, Request) and ack.method == "ACK"
        await assert_heard(
            AudioPath(phone_a, media_target(ok), 1000, phone_b),
            AudioPath(phone_b, media_target(incoming), 440, phone_a),
            seconds=0.5,
        )
        await blocking(bob.send_raw, bob.callee_bye(incoming))
        bye = await blocking(alice.recv_message)
        assert isinstance(bye, Request) and bye.method == "BYE"

    asyncio.run(main())


async def registered_over_tcp(server: ServerProcess, user: str, port: int) -> None:
    """``user`` registers over a TCP connection, with a Contact at ``port`` on loopback
    (``transport=tcp``), then closes that connection."""
    phone = SipClient("127.0.0.1", server.tcp_port, "TCP")
    contact = f"<sip:{user}@127.0.0.1:{port};transport=tcp>"
    registration = await blocking(
        functools.partial(phone.register, user, f"{user}-secret", DOMAIN, contacts=(contact,))
    )
    assert registration.status == 200
    phone.close()


def test_callee_whose_tcp_connection_is_gone_is_called_on_a_new_connection(
    server: ServerProcess,
) -> None:
    """Bob registered over TCP and closed the connection: the server opens one to his
    Contact (RFC 3261 §18.1.1), on which his phone rings, answers, and hangs up."""

    async def main() -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.settimeout(20.0)
            await registered_over_tcp(server, "bob", listener.getsockname()[1])
            alice = await registered(server, "alice")
            invite = await call(alice, "bob", RtpPhone.open())
            connection, _ = await blocking(listener.accept)
        bob = SipClient("127.0.0.1", server.tcp_port, "TCP", accepted=connection)
        incoming = await blocking(bob.recv_message)
        assert isinstance(incoming, Request) and incoming.method == "INVITE"
        await blocking(bob.answer, incoming, 200, sdp_for(RtpPhone.open()))
        ok = await next_final(alice)
        assert ok.status == 200
        await blocking(alice.send_raw, alice.in_dialog("ACK", invite, ok, invite.cseq.seq))
        ack = await blocking(bob.recv_message)
        assert isinstance(ack, Request) and ack.method == "ACK"
        await blocking(alice.send_raw, alice.in_dialog("BYE", invite, ok, invite.cseq.seq + 1))
        bye = await blocking(bob.recv_message)
        assert isinstance(bye, Request) and bye.method == "BYE"
        await blocking(bob.answer, bye, 200)
        assert (await next_final(alice)).status == 200
        row = await logged(server, invite.call_id)
        assert row["sip_status"] == 200 and row["answered_at"] is not None
        bob.close()

    asyncio.run(main())


def test_callee_whose_tcp_contact_refuses_connections_fails_the_call_with_503(
    server: ServerProcess,
) -> None:
    """Bob registered over TCP and closed the connection, and nothing listens at his
    Contact: the connection the server opens is refused, so the INVITE cannot be sent,
    which counts as a 503 from his branch (RFC 3261 §8.1.3.1): Alice hears at once."""

    async def main() -> None:
        with socket.socket() as bound:  # bound, never listening: connections are refused
            bound.bind(("127.0.0.1", 0))
            await registered_over_tcp(server, "bob", bound.getsockname()[1])
            alice = await registered(server, "alice")
            invite = await call(alice, "bob", RtpPhone.open())
            final = await next_final(alice)
        assert final.status == 503, final
        await blocking(alice.send_raw, alice.ack_bytes(invite, final))
        row = await logged(server, invite.call_id)
        assert row["sip_status"] == 503 and row["answered_at"] is None

    asyncio.run(main())


def test_reinvite_without_offer_takes_the_answer_from_the_ack(server: ServerProcess) -> None:
    """Alice's phone moves its media: an offerless re-INVITE (§14.2), our offer in the 200,
    her answer with a new RTP address in the ACK; Bob's audio follows her there."""

    async def main() -> None:
        phone_b = RtpPhone.open()
        alice, bob, invite, incoming, ok = await connected(server, RtpPhone.open(), phone_b)
        cseq = invite.cseq.seq + 1
        await blocking(alice.send_raw, alice.in_dialog("INVITE", invite, ok, cseq))
        offered = await next_final(alice)
        assert offered.status == 200 and offered.body  # our offer
        moved = RtpPhone.open()
        await blocking(alice.send_raw, alice.in_dialog("ACK", invite, ok, cseq, sdp_for(moved)))
        await assert_heard(AudioPath(phone_b, media_target(incoming), 440, moved), seconds=0.5)

    asyncio.run(main())


def test_invite_with_no_hops_left_gets_483(server: ServerProcess) -> None:
    async def main() -> None:
        alice = await registered(server, "alice")
        invite = alice.request(
            "INVITE",
            "alice",
            DOMAIN,
            uri=f"sip:bob@{DOMAIN}",
            to=f"<sip:bob@{DOMAIN}>",
            headers=(f"Contact: <sip:alice@127.0.0.1:{alice.port}>",),
        )
        await blocking(alice.send_raw, invite.replace(b"Max-Forwards: 70", b"Max-Forwards: 0"))
        assert (await next_final(alice)).status == 483  # a loop ends here (§16.3)

    asyncio.run(main())


def test_no_media_ports_left_gives_503_with_retry_after(start_server: StartServer) -> None:
    low = 47000 + 4 * (free_udp_port() % 500)  # two RTP/RTCP pairs: one call's worth
    server = start_server(extra_config=f"[media]\nrtp_ports = [{low}, {low + 3}]")

    async def main() -> None:
        await ringing(server, RtpPhone.open(), "bob")  # holds both pairs while it rings
        second = SipClient("127.0.0.1", server.udp_port)
        await blocking(
            second.invite, "alice", "alice-secret", DOMAIN, "bob", sdp_for(RtpPhone.open())
        )
        refused = await next_final(second)
        assert refused.status == 503 and refused.headers.get("Retry-After") == "5"

    asyncio.run(main())


def test_shutdown_hangs_up_calls_and_logs_them(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()

    async def main() -> None:
        alice, bob, invite, _, _ = await connected(server, RtpPhone.open(), RtpPhone.open())
        ringing_alice, _, ringing_invite, _ = await ringing(server, RtpPhone.open(), "bob")
        await blocking(server.stop, signal.SIGTERM)
        # The answered call gets BYE on both legs, the ringing one 503 with Retry-After.
        for phone in (alice, bob):
            # (Bob's first phone also rang for the second call: skip that INVITE.)
            message = await blocking(phone.recv_message)
            while isinstance(message, Request) and message.method in ("INVITE", "CANCEL"):
                message = await blocking(phone.recv_message)
            assert isinstance(message, Request) and message.method == "BYE"
        refused = await next_final(ringing_alice)
        assert refused.status == 503 and refused.headers.get("Retry-After")
        for call_id in (invite.call_id, ringing_invite.call_id):
            row = await logged(server, call_id)
            assert (row["hangup_cause"], row["hung_up_by"]) == ("shutdown", "system")

    asyncio.run(main())


def test_call_up_when_the_server_crashes_stays_in_the_log(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()

    async def main() -> None:
        _, _, invite, _, _ = await connected(server, RtpPhone.open(), RtpPhone.open())
        await logged(server, invite.call_id, ended=False)  # the answer is committed
        await blocking(server.restart, signal.SIGKILL)
        row = await logged(server, invite.call_id)
        assert row["answered_at"] is not None
        assert (row["hangup_cause"], row["hung_up_by"]) == ("server_restart", "system")

    try:
        asyncio.run(main())
    finally:
        server.stop()
