"""Dialog timers over time (RFC 4028 session timers, §14.1 glare): the server's clock is
moved, not waited for."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clocked import ClockedServer
from tests.integration.test_calls import (
    blocking,
    connected,
    logged,
    next_final,
    ringing,
    sdp_for,
)
from tests.rtpphone import RtpPhone
from tests.sipclient import SipClient
from voipcore.sdp import PCMU, SessionDescription, build_offer
from voipcore.sip.message import Request, Response

pytestmark = pytest.mark.integration
DOMAIN = "test.local"


@pytest.fixture
def clocked(tmp_path: Path) -> Iterator[ClockedServer]:
    # No RTP flows in these calls: keep the media timeout out of the way.
    server = ClockedServer(tmp_path, extra_config="[media]\nmedia_timeout = 100000\n").start()
    yield server
    server.stop()


async def expect(client: SipClient, method: str) -> Request:
    message = await blocking(client.recv_message)
    assert isinstance(message, Request) and message.method == method, message
    return message


def sent_before_answer(client: SipClient) -> list[Request | Response]:
    """What the server sent ``client`` before it answered an OPTIONS from the same socket.

    The answer coming first proves the server had sent nothing there when it answered,
    with no timeout that a slow server would pass vacuously."""
    probe = uuid.uuid4().hex
    client.send_raw(
        client.request("OPTIONS", "probe", DOMAIN).replace(client.call_id.encode(), probe.encode())
    )
    before = []
    while not isinstance(message := client.recv_message(), Response) or message.call_id != probe:
        before.append(message)
    assert message.status == 200, message
    return before


def silent(client: SipClient) -> None:
    """The server has sent ``client`` nothing so far."""
    assert sent_before_answer(client) == []


def test_caller_that_stops_refreshing_is_hung_up(clocked: ClockedServer) -> None:
    async def main() -> None:
        timer = ("Supported: timer", "Session-Expires: 90;refresher=uac")
        # Bob's phone knows timers and grants no expiry on its leg.
        alice, bob, invite, _, ok = await connected(
            clocked, RtpPhone.open(), RtpPhone.open(), timer, ("Supported: timer",)
        )
        assert ok.headers.get("Session-Expires") == "90;refresher=uac"

        clocked.advance(55)  # (the checks take real time too: 5 s to spare)
        silent(alice)
        # Alice never refreshed: the session ends min(32, 90 / 3) s before 90 s.
        clocked.advance(6)
        await blocking(alice.answer, await expect(alice, "BYE"), 200)
        await blocking(bob.answer, await expect(bob, "BYE"), 200)
        row = await logged(clocked, invite.call_id)
        assert (row["hangup_cause"], row["hung_up_by"]) == ("session_expired", "system")

    asyncio.run(main())


def test_phones_without_timer_support_are_refreshed_until_one_is_gone(
    clocked: ClockedServer,
) -> None:
    async def main() -> None:
        phone_b = RtpPhone.open()
        allow = ("Allow: INVITE, ACK, CANCEL, BYE, UPDATE",)
        alice, bob, invite, incoming, ok = await connected(clocked, RtpPhone.open(), phone_b, allow)
        # We refresh Alice's leg ourselves, and she need not know the extension.
        assert ok.headers.get("Session-Expires") == "1800;refresher=uas"
        assert ok.headers.get("Require") is None

        for round_ in (1, 2):
            clocked.advance(900)
            # Alice allows UPDATE: a bodiless one.  Bob does not: a re-INVITE
            # offering the unchanged session (RFC 3264 §8: same version).
            update = await expect(alice, "UPDATE")
            assert not update.body
            assert update.headers.get("Session-Expires") == "1800;refresher=uac"
            reinvite = await expect(bob, "INVITE")
            assert reinvite.body == incoming.body
            await blocking(alice.answer, update, 200)
            if round_ == 1:
                await blocking(bob.answer, reinvite, 200, sdp_for(phone_b))
                await expect(bob, "ACK")
        # Round 2: Bob's phone has forgotten the call.
        await blocking(bob.answer, reinvite, 481)
        await blocking(alice.answer, await expect(alice, "BYE"), 200)
        row = await logged(clocked, invite.call_id)
        assert (row["hangup_cause"], row["hung_up_by"]) == ("session_expired", "system")

    asyncio.run(main())


def test_callee_that_wants_a_longer_interval_gets_it_and_is_refreshed(
    clocked: ClockedServer,
) -> None:
    async def main() -> None:
        phone_b = RtpPhone.open()
        # Alice refreshes her own leg, rarely.
        timer = ("Supported: timer", "Session-Expires: 7200;refresher=uac")
        alice, bob, invite, first = await ringing(clocked, RtpPhone.open(), "bob", timer)
        await blocking(bob.answer, first, 422, b"", ("Min-SE: 3600",))
        await expect(bob, "ACK")
        # Asked again at Bob's Min-SE (RFC 4028 §7.3): same call, next CSeq.
        retry = await expect(bob, "INVITE")
        assert (retry.call_id, retry.cseq.seq) == (first.call_id, first.cseq.seq + 1)
        assert retry.headers.get("Session-Expires") == "3600"
        assert retry.headers.get("Min-SE") == "3600"
        granted = ("Require: timer", "Session-Expires: 3600;refresher=uac")
        await blocking(bob.answer, retry, 200, sdp_for(phone_b), granted)
        ok = await next_final(alice)
        assert ok.status == 200
        await blocking(alice.send_raw, alice.in_dialog("ACK", invite, ok, invite.cseq.seq))
        await expect(bob, "ACK")

        clocked.advance(1795)
        silent(bob)
        clocked.advance(6)  # half of 3600 s: our refresh, as Bob's 2xx named us (uac)
        refresh = await expect(bob, "INVITE")
        assert refresh.headers.get("Session-Expires") == "3600;refresher=uac"

    asyncio.run(main())


def test_relayed_hold_that_meets_glare_is_sent_again(clocked: ClockedServer) -> None:
    """Bob's phone answers our relayed re-INVITE with 491 (it was changing the session
    too): we try again after 2.1-4 s, as the owner of that leg's Call-ID (§14.1)."""

    async def main() -> None:
        phone_a = RtpPhone.open()
        alice, bob, invite, incoming, ok = await connected(clocked, phone_a, RtpPhone.open())
        host, port = phone_a.address
        hold = build_offer(
            address=host, port=port, formats=[PCMU], session_id=1, version=2, direction="sendonly"
        ).to_bytes()
        cseq = invite.cseq.seq + 1
        await blocking(alice.send_raw, alice.in_dialog("INVITE", invite, ok, cseq, hold))
        assert (await next_final(alice)).status == 200
        await blocking(alice.send_raw, alice.in_dialog("ACK", invite, ok, cseq))
        first = await expect(bob, "INVITE")
        assert clocked.loop is not None
        refused = clocked.loop.time()
        await blocking(bob.answer, first, 491)
        await expect(bob, "ACK")
        clocked.advance(1.5)
        early = sent_before_answer(bob)
        # A retry before the probe's answer is too early, unless this machine was so slow
        # that 2.1 s of the server's clock had passed by then anyway.
        assert not early or clocked.loop.time() - refused >= 2.1, early
        if not early:
            clocked.advance(2.6)  # 4.1 s: past the latest retry
        again = early[0] if early else await expect(bob, "INVITE")
        assert isinstance(again, Request) and again.method == "INVITE", again
        audio = SessionDescription.parse(again.body).audio
        assert audio is not None and audio.direction == "sendonly"
        assert again.cseq.seq > first.cseq.seq

    asyncio.run(main())


def test_accept_mode_times_only_the_phones_that_ask(tmp_path: Path) -> None:
    """``session_timers = "accept"``: a phone without timer support (a SIPp scenario, say)
    is never sent a refresh; one that supports them still gets its interval."""
    server = ClockedServer(
        tmp_path,
        extra_sip='session_timers = "accept"',
        extra_config="[media]\nmedia_timeout = 100000\n",
    ).start()

    async def main() -> None:
        alice, bob, _, _, ok = await connected(server, RtpPhone.open(), RtpPhone.open())
        assert ok.headers.get("Session-Expires") is None
        server.advance(1000)  # past half of the 1800 s we would otherwise refresh at
        silent(alice)
        silent(bob)
        timer = ("Supported: timer", "Session-Expires: 600;refresher=uac")
        _, _, _, _, timed = await connected(server, RtpPhone.open(), RtpPhone.open(), timer)
        assert timed.headers.get("Session-Expires") == "600;refresher=uac"

    try:
        asyncio.run(main())
    finally:
        server.stop()
