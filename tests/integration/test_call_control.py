"""The call-control API (``Server.calls``) over real sockets: the server dials phones and
the trunk, adds and removes parties, and the audio is checked as audio.

The server runs in this process (:class:`ClockedServer`, its clock left alone) so a test
can call :class:`~voipcore.calls.manager.CallManager` on the server's loop with
:meth:`ClockedServer.control`; the phones are :class:`SipClient` sockets with an
:class:`RtpPhone` each, the trunk the carrier stand-in.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from media.dtmf import DtmfEnd
from media.tones import RATE
from tests.audio import WINDOW, assert_no_tone, until_heard
from tests.clocked import ClockedServer
from tests.harness import DEFAULT_USERS, TestUser, wait_for_async
from tests.integration.test_calls import (
    blocking,
    connected,
    logged,
    media_target,
    registered,
    sdp_for,
)
from tests.integration.test_carrier import hear_each_other
from tests.integration.test_session_timers import expect, silent
from tests.integration.test_trunk import CALLER_ID, trunk_setup
from tests.rtpphone import AudioPath, RtpPhone, assert_heard
from tests.sipclient import SipClient
from voipcore.calls.manager import CallError
from voipcore.calls.model import CallEvent
from voipcore.sip.message import Request

pytestmark = pytest.mark.integration

#: Samples below this magnitude (-54 dBFS) are silence.
SILENCE = 64
USERS = [*DEFAULT_USERS, TestUser("carol", "carol-secret", "203")]


@pytest.fixture
def clocked(tmp_path: Path) -> Iterator[ClockedServer]:
    """voipcore in this process with alice, bob and carol."""
    server = ClockedServer(tmp_path, users=USERS).start()
    yield server
    server.stop()


class Events:
    """A call's subscriber: keeps what the server's thread tells it for the test's."""

    def __init__(self) -> None:
        self._seen: list[CallEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: CallEvent) -> None:
        with self._lock:
            self._seen.append(event)

    @property
    def seen(self) -> list[tuple[str, str | None]]:
        """(name, leg) of each event so far, in order."""
        with self._lock:
            return [(event.name, event.leg) for event in self._seen]

    async def wait(self, name: str, leg: str | None = None) -> CallEvent:
        """The first ``name`` event (about ``leg``, when given), once it has come."""

        def found() -> CallEvent | None:
            with self._lock:
                return next(
                    (e for e in self._seen if e.name == name and (leg is None or e.leg == leg)),
                    None,
                )

        return await wait_for_async(found, lambda: f"no {name} event for {leg}: {self.seen}")


async def answer(client: SipClient, phone: RtpPhone) -> tuple[Request, tuple[str, int]]:
    """The server's INVITE rings ``client``'s phone, which answers it (180, then 200 with
    ``phone``'s SDP) and gets the ACK: the INVITE, and where to send RTP (the server's)."""
    invite = await expect(client, "INVITE")
    await blocking(client.answer, invite, 180)
    await blocking(client.answer, invite, 200, sdp_for(phone))
    message = await blocking(client.recv_message)
    # A slow answer may cross a retransmission of the INVITE (RFC 3261 §17.1.1.2).
    while isinstance(message, Request) and message.method == "INVITE":
        message = await blocking(client.recv_message)
    assert isinstance(message, Request) and message.method == "ACK", message
    return invite, media_target(invite)


async def hang_up(client: SipClient, invite: Request) -> None:
    """The phone the server's ``invite`` reached sends BYE and gets 200."""
    await blocking(client.send_raw, client.callee_bye(invite))
    response = await blocking(client.recv)
    assert (response.status, response.cseq.method) == (200, "BYE"), response


async def hung_up(client: SipClient) -> None:
    """The server's BYE reaches ``client``, which answers 200."""
    await blocking(client.answer, await expect(client, "BYE"), 200)


def legs_of(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    legs: list[dict[str, Any]] = row["legs"]
    return {leg["leg_id"]: leg for leg in legs}


@dataclass(frozen=True, slots=True)
class Talker:
    """One party of a conference: its phone, where it sends RTP, and its tone."""

    phone: RtpPhone
    dest: tuple[str, int]
    freq: float

    def recording(self, since: int) -> npt.NDArray[np.int16]:
        return self.phone.audio(0)[since:]

    def quiet(self) -> bool:
        """The last 100 ms this phone heard were silence (the engine sends it even so)."""
        last = self.phone.audio(0)[-round(WINDOW * RATE) :].astype(np.int32)
        return last.size > 0 and int(np.abs(last).max()) < SILENCE


async def assert_conference(*talkers: Talker, seconds: float = 1.0) -> None:
    """Each hears every other tone together and never its own (mix-minus).

    First everyone talks at once, as :func:`assert_heard` does: until each hears the
    others, then for ``seconds`` more, which each must hear, both tones loud, that long.
    Then each talks alone: the others hear it, and it hears nothing of itself (with the
    others silent, a window that ends a tone cannot smear into its frequency)."""

    def others(talker: Talker) -> tuple[float, ...]:
        return tuple(t.freq for t in talkers if t is not talker)

    starts = [t.phone.audio(0).size for t in talkers]
    voices = [asyncio.create_task(t.phone.send_tone(t.dest, t.freq)) for t in talkers]
    try:
        for talker, start in zip(talkers, starts, strict=True):
            await until_heard(partial(talker.recording, start), others(talker), 2 * WINDOW)
        marks = [t.phone.audio(0).size for t in talkers]
    finally:
        for voice in voices:
            voice.cancel()
        await asyncio.gather(*voices, return_exceptions=True)
    # The two tones a party hears come through two jitter buffers, so they overlap a
    # little less than each lasts: each talks two windows longer than is checked.
    span = seconds + 2 * WINDOW
    await asyncio.gather(*(t.phone.send_tone(t.dest, t.freq, span) for t in talkers))
    for talker, mark in zip(talkers, marks, strict=True):
        await until_heard(partial(talker.recording, mark), others(talker), seconds)

    for speaker in talkers:
        await wait_for_async(
            lambda: all(t.quiet() for t in talkers), "the conference did not fall silent"
        )
        marks = [t.phone.audio(0).size for t in talkers]
        # A little longer than checked: the tone starts and ends inside a window.
        await speaker.phone.send_tone(speaker.dest, speaker.freq, seconds / 2 + 2 * WINDOW)
        for talker, mark in zip(talkers, marks, strict=True):
            if talker is not speaker:
                await until_heard(partial(talker.recording, mark), speaker.freq, seconds / 2)
        assert_no_tone(speaker.recording(marks[talkers.index(speaker)]), speaker.freq)


def test_originate_rings_the_first_phone_then_the_second_and_bridges_them(
    clocked: ClockedServer,
) -> None:
    """originate("alice", "bob"): Alice's phone rings with Bob shown as the caller; once
    she answers, Bob's rings; both answered, each hears the other."""

    async def main() -> None:
        alice, bob = await registered(clocked, "alice"), await registered(clocked, "bob")
        phone_a, phone_b = RtpPhone.open(), RtpPhone.open()
        events = Events()
        call_id = clocked.control(
            lambda calls: calls.originate("alice", "bob", user="alice", listener=events).id
        )

        to_a = await expect(alice, "INVITE")
        assert to_a.from_.uri.user == "bob"  # type: ignore[union-attr]
        silent(bob)  # nobody dials Bob before Alice answers
        await blocking(alice.answer, to_a, 180)
        assert (await events.wait("ringing")).leg == "a"
        await blocking(alice.answer, to_a, 200, sdp_for(phone_a))
        await expect(alice, "ACK")
        await events.wait("answered", "a")

        to_b, server_b = await answer(bob, phone_b)
        assert to_b.from_.uri.user == "alice"  # type: ignore[union-attr]
        await events.wait("answered", "b")
        assert [name for name, _ in events.seen] == ["ringing", "answered", "ringing", "answered"]

        await assert_heard(
            AudioPath(phone_a, media_target(to_a), 440, phone_b),
            AudioPath(phone_b, server_b, 660, phone_a),
        )
        await hang_up(alice, to_a)
        await hung_up(bob)
        assert (await events.wait("ended")).data["cause"] == "normal"

        row = await logged(clocked, call_id)
        assert (row["direction"], row["caller"], row["callee_dialled"], row["user"]) == (
            "internal",
            "alice",
            "bob",
            "alice",
        )
        assert (row["hangup_cause"], row["hung_up_by"]) == ("normal", "caller")
        legs = legs_of(row)
        assert [(leg["role"], leg["peer"], leg["kind"]) for leg in legs.values()] == [
            ("caller", "alice", "phone"),
            ("callee", "bob", "phone"),
        ]
        for leg in legs.values():
            assert leg["answered_at"] and leg["ended_at"] and leg["sip_status"] == 200
            assert leg["packets_in"] >= 45 and not leg["billable"]

    asyncio.run(main())


def test_originate_from_a_phone_to_a_number_on_the_trunk(tmp_path: Path) -> None:
    """originate("alice", "4045551234"): once Alice answers the server dials the carrier
    with Twilio's rules (E.164 Request-URI on the edge's domain, digest, owned caller ID)."""

    async def main() -> None:
        async with trunk_setup(tmp_path, server_type=ClockedServer) as (carrier, server):
            assert isinstance(server, ClockedServer)
            alice, phone = await registered(server, "alice"), RtpPhone.open()
            events = Events()
            call_id = server.control(
                lambda calls: calls.originate("alice", "4045551234", user="alice").id
            )
            server.control(lambda calls: calls.subscribe(call_id, events))
            _, to_server = await answer(alice, phone)

            call = await carrier.wait_for_call("+14045551234")
            assert call.request_uri == "sip:+14045551234@acme.pstn.ashburn.twilio.com"
            assert call.from_number == CALLER_ID
            await events.wait("answered", "b")
            assert call.statuses[:1] == [407] and 200 in call.statuses
            await hear_each_other(phone, to_server, call)  # 440 Hz out, the carrier's 1000 in

            await carrier.hangup(call)
            await hung_up(alice)
            await events.wait("ended")
            row = await logged(server, call_id)
            assert (row["direction"], row["callee_e164"], row["callee_dialled"]) == (
                "outbound",
                "+14045551234",
                "4045551234",
            )
            assert (row["hangup_cause"], row["hung_up_by"]) == ("normal", "callee")
            a, b = legs_of(row).values()
            assert (a["kind"], a["role"], a["peer"], a["billable"]) == (
                "phone",
                "caller",
                "alice",
                False,
            )
            assert (b["kind"], b["role"], b["peer"], b["billable"], b["edge"]) == (
                "trunk",
                "callee",
                "+14045551234",
                True,
                "ashburn",
            )
            assert a["answered_at"] and b["answered_at"]

    asyncio.run(main())


def test_originate_whose_first_party_is_busy_dials_nobody_else(clocked: ClockedServer) -> None:
    async def main() -> None:
        alice, bob = await registered(clocked, "alice"), await registered(clocked, "bob")
        events = Events()
        call_id = clocked.control(
            lambda calls: calls.originate("alice", "bob", user="alice", listener=events).id
        )
        await blocking(alice.answer, await expect(alice, "INVITE"), 486)
        await expect(alice, "ACK")
        assert (await events.wait("leg_failed", "a")).data["status"] == 486
        assert (await events.wait("ended")).data["cause"] == "busy"

        row = await logged(clocked, call_id)
        assert (row["hangup_cause"], row["sip_status"], row["answered_at"]) == ("busy", 486, None)
        [leg] = row["legs"]  # Bob was never dialled
        assert (leg["peer"], leg["sip_status"], leg["answered_at"]) == ("alice", 486, None)
        silent(bob)
        assert clocked.control(lambda calls: call_id in calls.calls) is False

    asyncio.run(main())


def test_originate_to_an_unknown_first_party_raises_404(clocked: ClockedServer) -> None:
    with pytest.raises(CallError) as refused:
        clocked.control(lambda calls: calls.originate("999", "bob", user="alice"))
    assert refused.value.status == 404
    assert clocked.control(lambda calls: len(calls.calls)) == 0


def test_originate_whose_second_party_routes_nowhere_hangs_up_the_first(
    clocked: ClockedServer,
) -> None:
    async def main() -> None:
        alice = await registered(clocked, "alice")
        events = Events()
        call_id = clocked.control(
            lambda calls: calls.originate("alice", "999", user="alice", listener=events).id
        )
        await answer(alice, RtpPhone.open())
        failed = await events.wait("leg_failed")
        assert (failed.leg, failed.data["status"]) == (None, 404)
        await hung_up(alice)
        await events.wait("ended")
        row = await logged(clocked, call_id)
        assert (row["hangup_cause"], row["hung_up_by"]) == ("failed", "system")
        assert len(row["legs"]) == 1

    asyncio.run(main())


@pytest.mark.parametrize("leaves_by", ["remove_leg", "bye"])
def test_third_party_added_hears_both_and_the_two_stay_when_it_leaves(
    clocked: ClockedServer, leaves_by: str
) -> None:
    """Alice calls Bob; add_leg brings Carol in: everyone hears the other two and not
    themselves.  Carol leaves (removed, or she hangs up): Alice and Bob talk on."""

    async def main() -> None:
        phone_a, phone_b, phone_c = RtpPhone.open(), RtpPhone.open(), RtpPhone.open()
        alice, bob, invite, to_bob, ok = await connected(clocked, phone_a, phone_b)
        carol = await registered(clocked, "carol")
        call_id, events = invite.call_id, Events()
        clocked.control(lambda calls: calls.subscribe(call_id, events))

        leg = clocked.control(lambda calls: calls.add_leg(call_id, "carol").id)
        assert leg == "c"
        to_carol, server_c = await answer(carol, phone_c)
        assert to_carol.from_.uri.user == "alice"  # type: ignore[union-attr]
        await events.wait("answered", "c")
        server_a, server_b = media_target(ok), media_target(to_bob)
        await assert_conference(
            Talker(phone_a, server_a, 440),
            Talker(phone_b, server_b, 660),
            Talker(phone_c, server_c, 880),
        )

        if leaves_by == "remove_leg":
            clocked.control(lambda calls: calls.remove_leg(call_id, "c"))
            await hung_up(carol)
        else:
            await hang_up(carol, to_carol)
        left = await events.wait("leg_left", "c")
        assert left.data["cause"] == ("removed" if leaves_by == "remove_leg" else "normal")
        states = clocked.control(
            lambda calls: [(leg.id, leg.state.value) for leg in calls.calls[call_id].legs]
        )
        assert states == [("a", "answered"), ("b", "answered"), ("c", "ended")]
        await assert_heard(
            AudioPath(phone_a, server_a, 440, phone_b),
            AudioPath(phone_b, server_b, 660, phone_a),
        )

        await blocking(alice.send_raw, alice.in_dialog("BYE", invite, ok, invite.cseq.seq + 1))
        assert (await blocking(alice.recv)).status == 200
        await hung_up(bob)
        await events.wait("ended")
        row = await logged(clocked, call_id)
        assert (row["hangup_cause"], row["hung_up_by"]) == ("normal", "caller")
        legs = legs_of(row)
        assert [(leg["role"], leg["peer"]) for leg in legs.values()] == [
            ("caller", "alice"),
            ("callee", "bob"),
            ("colleague", "carol"),
        ]
        assert all(leg["answered_at"] for leg in legs.values())
        # Carol left while Alice and Bob talked on.
        assert legs["c"]["ended_at"] < legs["a"]["ended_at"]
        assert legs["c"]["ended_at"] < legs["b"]["ended_at"]
        assert legs["c"]["packets_in"] >= 45

    asyncio.run(main())


def test_remove_leg_of_a_two_party_call_ends_it(clocked: ClockedServer) -> None:
    async def main() -> None:
        alice, bob, invite, _, _ = await connected(clocked, RtpPhone.open(), RtpPhone.open())
        events = Events()
        clocked.control(lambda calls: calls.subscribe(invite.call_id, events))
        clocked.control(lambda calls: calls.remove_leg(invite.call_id, "b"))
        await hung_up(bob)
        await hung_up(alice)  # one party left: the call is over
        assert (await events.wait("leg_left", "b")).data["cause"] == "removed"
        await events.wait("ended")
        row = await logged(clocked, invite.call_id)
        assert (row["hangup_cause"], row["hung_up_by"]) == ("removed", "system")

    asyncio.run(main())


def test_tone_and_digits_sent_to_one_party_and_its_digits_reported(clocked: ClockedServer) -> None:
    """play() and send_dtmf() reach only the leg named; a party's RFC 4733 key press
    reaches the subscriber as a dtmf event of its leg."""

    async def main() -> None:
        phone_a, phone_b = RtpPhone.open(), RtpPhone.open()
        _, _, invite, to_bob, ok = await connected(clocked, phone_a, phone_b)
        call_id, events = invite.call_id, Events()
        clocked.control(lambda calls: calls.subscribe(call_id, events))
        server_a, server_b = media_target(ok), media_target(to_bob)
        # Both ways carry audio, so what one side does not hear below proves something.
        await assert_heard(
            AudioPath(phone_a, server_a, 440, phone_b),
            AudioPath(phone_b, server_b, 660, phone_a),
            seconds=0.5,
        )

        marks = phone_a.audio(0).size, phone_b.audio(0).size
        clocked.control(lambda calls: calls.play(call_id, "a", tone=[1000], duration=1.0))
        await until_heard(lambda: phone_a.audio(0)[marks[0] :], 1000, 0.9)
        assert_no_tone(phone_b.audio(0)[marks[1] :], 1000)

        clocked.control(lambda calls: calls.send_dtmf(call_id, "b", "42#"))

        def digits() -> str:
            return "".join(e.digit for e in phone_b.dtmf_events() if isinstance(e, DtmfEnd))

        await wait_for_async(lambda: digits() == "42#", lambda: f"Bob got {digits()!r}")
        assert not any(isinstance(e, DtmfEnd) for e in phone_a.dtmf_events())

        await phone_a.send_dtmf(server_a, "7")
        pressed = await events.wait("dtmf", "a")
        assert pressed.data["digit"] == "7"

    asyncio.run(main())
