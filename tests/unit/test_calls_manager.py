"""The call manager (voipcore.calls.manager) with in-memory phones, engine and clock.

Every test drives a :class:`CallManager` the way the server does: parsed SIP
messages through ``on_request``/``on_response``/``on_ack``, the media engine's
events through its subscription, time through a fake :class:`Runtime` whose
clock only moves when the test advances it.  Routing is real: a Router over a
Registrar with bindings for each phone.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from voipcore.calls.manager import CallError, CallManager, CallSettings
from voipcore.calls.model import Call, CallEvent, LegState
from voipcore.calls.routing import Router
from voipcore.cli import make_user
from voipcore.registrar import Registrar
from voipcore.sdp import SessionDescription
from voipcore.sip.dialog import Dialog, create_cancel
from voipcore.sip.digest import DigestAuthenticator
from voipcore.sip.message import Request, Response
from voipcore.store import Binding, User
from voipcore.store.calls import CallRecord

from .fakes import (
    DOMAIN,
    ENGINE_HOST,
    FakeMedia,
    FakeRuntime,
    FakeService,
    Phone,
    contact,
    sdp,
    via,
    wire_request,
)

RING_TIMEOUT = 30.0
USERS = {
    name: make_user(DOMAIN, name, f"{name}-secret", extension)
    for name, extension in (("alice", "201"), ("bob", "202"), ("carol", "203"), ("dave", "204"))
}


class Bench:
    """One server's call manager and the phones around it.

    Alice and Carol have one phone each, Bob two (desk and mobile); Dave is a
    user with nothing registered.
    """

    def __init__(self, settings: CallSettings) -> None:
        self.runtime = FakeRuntime()
        self.service = FakeService()
        self.media = FakeMedia()
        self.alice = Phone("alice", ("UDP", "203.0.113.10", 5060), "alice-secret")
        self.desk = Phone("bob", ("UDP", "203.0.113.20", 5060), "bob-secret")
        self.mobile = Phone("bob", ("UDP", "203.0.113.21", 5062), "bob-secret")
        self.carol = Phone("carol", ("UDP", "203.0.113.30", 5060), "carol-secret")
        registrar = Registrar(DOMAIN, DigestAuthenticator(DOMAIN, b"k" * 32), USERS.get)
        wall = self.runtime.wall()
        registrar.load(
            Binding(p.user, p.contact, wall + 3600, 1.0, f"reg-{i}", 1, p.source)
            for i, p in enumerate((self.alice, self.desk, self.mobile, self.carol))
        )
        users: dict[str, User] = dict(USERS)
        self.records: list[CallRecord] = []
        self.manager = CallManager(
            self.service,
            self.media,
            Router(registrar, lambda: users),
            self.runtime,
            via=via,
            contact=contact,
            record=self.records.append,
            settings=settings,
        )

    # -- what phones send ------------------------------------------------------------

    def call(self, phone: Phone, target: str) -> Request:
        """``phone`` calls ``target``: its INVITE is challenged (407) and sent again
        with credentials (RFC 3261 §22.3); returns the second one."""
        first = phone.invite(target)
        self.request(phone, first)
        challenge = self.service.responses[-1]
        assert challenge.status == 407
        invite = phone.authorized(first, challenge)
        self.request(phone, invite)
        return invite

    def request(self, phone: Phone, request: Request) -> None:
        self.manager.on_request(request, phone.addr, self.runtime.now())
        self.runtime.run()

    def respond(self, response: Response, to: Request) -> None:
        """The phone's ``response`` to our request ``to``."""
        self.manager.on_response(response, self.service.key_of(to), self.runtime.now())
        self.runtime.run()

    def ack(self, ack: Request) -> None:
        self.manager.on_ack(ack)
        self.runtime.run()

    # -- what the server sent ------------------------------------------------------------

    def invite_to(self, phone: Phone) -> Request:
        [invite] = self.service.requests("INVITE", phone.addr)
        return invite

    def answers_to(self, request: Request) -> list[Response]:
        """Our responses to ``request`` (same transaction), in order."""
        return [
            r
            for r in self.service.responses
            if r.via.branch == request.via.branch and r.cseq.method == request.method
        ]

    def final(self, request: Request) -> Response:
        return [r for r in self.answers_to(request) if r.status >= 200][-1]

    # -- whole steps -----------------------------------------------------------------------

    def answer(
        self, phone: Phone, invite: Request, *, tag: str, port: int = 5000
    ) -> tuple[Response, Dialog]:
        """``phone`` answers our ``invite`` with 200 and its SDP."""
        ok = phone.reply(invite, 200, tag=tag, body=phone.sdp(port))
        self.respond(ok, invite)
        return ok, phone.callee_dialog(invite, ok)

    def connect(self) -> tuple[Call, Request, Dialog, Dialog]:
        """Alice calls Bob, his desk phone answers, Alice ACKs: the call, Alice's
        INVITE, and Alice's and the desk's dialogs."""
        invite = self.call(self.alice, "bob")
        _, desk_dialog = self.answer(self.desk, self.invite_to(self.desk), tag="desk")
        ok = self.final(invite)
        assert ok.status == 200
        alice_dialog = self.alice.caller_dialog(invite, ok)
        self.ack(self.alice.ack(alice_dialog, invite))
        return self.manager.calls[invite.call_id], invite, alice_dialog, desk_dialog

    def ended_record(self) -> CallRecord:
        record = self.records[-1]
        assert record.ended_at is not None
        return record


@pytest.fixture
def bench() -> Iterator[Bench]:
    bench = Bench(CallSettings(ring_timeout=RING_TIMEOUT))
    yield bench
    assert not bench.runtime.tasks, "work spawned and never run"


def audio_of(message: Request | Response) -> tuple[str | None, int]:
    audio = SessionDescription.parse(message.body).audio
    assert audio is not None
    return audio.connection_address, audio.port


# -- a phone's call to a user ----------------------------------------------------------------


def test_invite_to_a_registered_user_forks_to_each_of_the_users_phones(bench: Bench) -> None:
    invite = bench.call(bench.alice, "bob")
    assert [r.status for r in bench.answers_to(invite)] == [100]
    desk, mobile = bench.invite_to(bench.desk), bench.invite_to(bench.mobile)
    assert (desk.uri_text, mobile.uri_text) == (bench.desk.contact, bench.mobile.contact)
    # One leg: our own Call-ID (not Alice's), a From tag per branch (§8.2.2.2).
    assert desk.call_id == mobile.call_id != invite.call_id
    assert desk.from_.tag != mobile.from_.tag
    assert desk.max_forwards == mobile.max_forwards == 69
    # Media anchored: the phones are offered the engine's address, Alice's codecs first.
    call_id = invite.call_id
    assert audio_of(desk) == audio_of(mobile) == (ENGINE_HOST, bench.media.port(call_id, "b"))
    assert b"203.0.113.10" not in desk.body
    desk_audio = SessionDescription.parse(desk.body).audio
    assert desk_audio is not None
    assert [f.name for f in desk_audio.codecs] == ["PCMU", "PCMA", "telephone-event"]
    [alice_stream, bob_stream] = bench.media.of("offer")
    assert alice_stream["leg"] == "a"
    assert alice_stream["remote"] == {"host": "203.0.113.10", "port": 4000}
    assert bob_stream["leg"] == "b" and "remote" not in bob_stream


def test_first_200_wins_the_other_branch_is_cancelled_and_the_caller_answered(
    bench: Bench,
) -> None:
    invite = bench.call(bench.alice, "bob")
    desk, mobile = bench.invite_to(bench.desk), bench.invite_to(bench.mobile)
    bench.respond(bench.mobile.reply(mobile, 180, tag="mobile"), mobile)
    assert [r.status for r in bench.answers_to(invite)] == [100, 180]

    bench.answer(bench.desk, desk, tag="desk", port=6000)

    [ack] = bench.service.requests("ACK", bench.desk.addr)
    assert (ack.cseq.seq, ack.to.tag, ack.uri_text) == (1, "desk", bench.desk.contact)
    [cancel] = bench.service.requests("CANCEL", bench.mobile.addr)
    assert cancel.via.branch == mobile.via.branch and cancel.cseq.seq == mobile.cseq.seq
    assert not bench.service.requests("CANCEL", bench.desk.addr)
    # The caller's 200 carries the engine's address for its own leg, never the desk's.
    ok = bench.final(invite)
    assert ok.status == 200 and ok.to.tag
    assert audio_of(ok) == (ENGINE_HOST, bench.media.port(invite.call_id, "a"))
    assert b"203.0.113.20" not in ok.body
    # The engine relays: Bob's leg points at the desk's RTP.
    [bob_answer] = bench.media.of("answer")
    assert bob_answer["leg"] == "b"
    assert bob_answer["remote"] == {"host": "203.0.113.20", "port": 6000}
    call = bench.manager.calls[invite.call_id]
    assert [leg.state for leg in call.legs] == [LegState.ANSWERED, LegState.ANSWERED]
    assert call.legs[1].addr == bench.desk.addr

    # The cancelled phone's 487 changes nothing.
    bench.respond(bench.mobile.reply(mobile, 487, tag="mobile"), mobile)
    assert invite.call_id in bench.manager.calls


def test_a_second_200_from_the_losing_branch_is_acked_and_hung_up(bench: Bench) -> None:
    bench.call(bench.alice, "bob")
    desk, mobile = bench.invite_to(bench.desk), bench.invite_to(bench.mobile)
    bench.answer(bench.desk, desk, tag="desk")
    responses = len(bench.service.responses)
    # The mobile answered before our CANCEL reached it: that dialog is ACKed and
    # ended at once (RFC 3261 §13.2.2.4, §15).
    bench.answer(bench.mobile, mobile, tag="mobile")
    [ack] = bench.service.requests("ACK", bench.mobile.addr)
    [bye] = bench.service.requests("BYE", bench.mobile.addr)
    assert ack.to.tag == bye.to.tag == "mobile"
    assert not bench.service.requests("BYE", bench.desk.addr)
    assert len(bench.service.responses) == responses


def test_ring_timeout_cancels_every_branch_and_gives_the_caller_480(bench: Bench) -> None:
    invite = bench.call(bench.alice, "bob")
    desk, mobile = bench.invite_to(bench.desk), bench.invite_to(bench.mobile)
    bench.respond(bench.desk.reply(desk, 180, tag="desk"), desk)

    bench.runtime.advance(RING_TIMEOUT - 1)
    assert not bench.service.requests("CANCEL")
    assert [r.status for r in bench.answers_to(invite)] == [100, 180]

    bench.runtime.advance(1)
    assert [c.via.branch for c in bench.service.requests("CANCEL")] == [
        desk.via.branch,
        mobile.via.branch,
    ]
    assert bench.final(invite).status == 480
    assert invite.call_id not in bench.manager.calls
    assert bench.media.of("delete") == [{"call_id": invite.call_id}]
    record = bench.ended_record()
    assert (record.hangup_cause, record.sip_status, record.hung_up_by) == (
        "no_answer",
        480,
        "system",
    )


def test_busy_everywhere_gives_the_caller_486(bench: Bench) -> None:
    invite = bench.call(bench.alice, "bob")
    desk, mobile = bench.invite_to(bench.desk), bench.invite_to(bench.mobile)
    bench.respond(bench.desk.reply(desk, 486, tag="desk"), desk)
    assert [r.status for r in bench.answers_to(invite)] == [100]  # the mobile still rings
    bench.respond(bench.mobile.reply(mobile, 404, tag="mobile"), mobile)
    assert bench.final(invite).status == 486
    assert bench.ended_record().hangup_cause == "busy"


def test_caller_cancel_while_ringing_cancels_the_branches(bench: Bench) -> None:
    invite = bench.call(bench.alice, "bob")
    cancel = wire_request(create_cancel(invite))
    bench.request(bench.alice, cancel)
    assert bench.final(cancel).status == 200
    assert bench.final(invite).status == 487
    assert len(bench.service.requests("CANCEL")) == 2
    assert bench.ended_record().hangup_cause == "cancelled"


def test_delayed_offer_gets_our_offer_in_the_200_and_its_answer_from_the_ack(
    bench: Bench,
) -> None:
    first = bench.alice.invite("bob", body=b"")
    bench.request(bench.alice, first)
    invite = bench.alice.authorized(first, bench.service.responses[-1])
    bench.request(bench.alice, invite)
    desk = bench.invite_to(bench.desk)
    # The desk answers with PCMA only: our offer to Alice leads with it (§13.2.1).
    ok_from_desk = bench.desk.reply(
        desk, 200, tag="desk", body=sdp(bench.desk.host, 6000, (8, 101))
    )
    bench.respond(ok_from_desk, desk)
    ok = bench.final(invite)
    assert ok.status == 200
    offer = SessionDescription.parse(ok.body).audio
    assert offer is not None
    assert [f.name for f in offer.codecs] == ["PCMA", "telephone-event", "PCMU"]
    assert (offer.connection_address, offer.port) == (
        ENGINE_HOST,
        bench.media.port(invite.call_id, "a"),
    )
    assert not [a for a in bench.media.of("answer") if a["leg"] == "a"]

    alice = bench.alice.caller_dialog(invite, ok)
    bench.ack(bench.alice.ack(alice, invite, sdp(bench.alice.host, 4002, (8, 101))))

    [alice_answer] = [a for a in bench.media.of("answer") if a["leg"] == "a"]
    assert alice_answer["remote"] == {"host": "203.0.113.10", "port": 4002}
    assert [c["name"] for c in alice_answer["codecs"]] == ["PCMA", "telephone-event"]


def test_user_with_nothing_registered_is_temporarily_unavailable(bench: Bench) -> None:
    invite = bench.call(bench.alice, "dave")
    assert bench.final(invite).status == 480
    assert not bench.service.sent
    assert bench.records[-1].hangup_cause == "unavailable"


# -- hanging up --------------------------------------------------------------------------


def test_caller_bye_ends_the_call_and_byes_the_callee(bench: Bench) -> None:
    call, invite, alice, _ = bench.connect()
    bench.service.clear()

    bye = bench.alice.request(alice, "BYE")
    bench.request(bench.alice, bye)

    assert bench.final(bye).status == 200
    [callee_bye] = bench.service.requests("BYE", bench.desk.addr)
    assert len(bench.service.sent) == 1
    assert callee_bye.call_id == call.legs[1].sip_call_id
    assert callee_bye.to.tag == "desk" and callee_bye.uri_text == bench.desk.contact
    assert call.ended and invite.call_id not in bench.manager.calls
    assert bench.media.of("delete") == [{"call_id": call.id}]
    record = bench.ended_record()
    assert (record.hung_up_by, record.hangup_cause, record.sip_status) == ("caller", "normal", 200)
    assert [(leg.leg_id, leg.role, leg.peer, leg.sip_status) for leg in record.legs] == [
        ("a", "caller", "alice", 200),
        ("b", "callee", "bob", 200),
    ]
    assert all(leg.answered_at and leg.ended_at for leg in record.legs)


def test_callee_bye_ends_the_call_and_byes_the_caller(bench: Bench) -> None:
    call, invite, _, desk = bench.connect()
    bench.service.clear()
    bye = bench.desk.request(desk, "BYE")
    bench.request(bench.desk, bye)
    assert bench.final(bye).status == 200
    [caller_bye] = bench.service.requests("BYE", bench.alice.addr)
    assert caller_bye.call_id == invite.call_id and caller_bye.from_.tag == call.legs[0].tag
    assert bench.ended_record().hung_up_by == "callee"


def test_bye_for_no_call_is_481_and_one_crossing_ours_is_200(bench: Bench) -> None:
    _, _, alice, desk = bench.connect()
    stray = Phone("mallory", ("UDP", "198.51.100.66", 5060))
    unknown = bench.alice.request(alice, "BYE")
    unknown.headers.set("Call-ID", "nobody@198.51.100.66")
    bench.request(stray, unknown)
    assert bench.final(unknown).status == 481
    # Both hang up at once: the desk's BYE arrives after Alice's ended the call.
    bench.request(bench.alice, bench.alice.request(alice, "BYE"))
    late = bench.desk.request(desk, "BYE")
    bench.request(bench.desk, late)
    assert bench.final(late).status == 200


# -- the 2xx to the caller until its ACK (RFC 3261 §13.3.1.4) ----------------------------


def answered_without_ack(bench: Bench) -> tuple[Request, float]:
    invite = bench.call(bench.alice, "bob")
    bench.answer(bench.desk, bench.invite_to(bench.desk), tag="desk")
    assert bench.final(invite).status == 200
    return invite, bench.runtime.now()


def ok_times(bench: Bench, invite: Request, answered: float) -> list[float]:
    """When our 200 to ``invite`` went out, in seconds after the first."""
    return [
        t - answered
        for r, t in zip(bench.service.responses, bench.service.response_times, strict=True)
        if r.status == 200 and r.via.branch == invite.via.branch
    ]


def test_200_to_the_caller_is_retransmitted_until_the_ack(bench: Bench) -> None:
    invite, answered = answered_without_ack(bench)
    first = bench.final(invite)
    bench.runtime.advance(3.6)
    oks = [r for r in bench.answers_to(invite) if r.status == 200]
    # From T1, doubling towards T2: 0.5, 1, 2 s apart.
    assert ok_times(bench, invite, answered) == [0.0, 0.5, 1.5, 3.5]
    assert all(bytes(ok) == bytes(first) for ok in oks)

    alice = bench.alice.caller_dialog(invite, first)
    bench.ack(bench.alice.ack(alice, invite))
    bench.runtime.advance(60)
    assert len([r for r in bench.answers_to(invite) if r.status == 200]) == 4
    assert not bench.service.requests("BYE")
    assert invite.call_id in bench.manager.calls


def test_no_ack_in_32_seconds_hangs_the_caller_up(bench: Bench) -> None:
    invite, answered = answered_without_ack(bench)
    bench.runtime.advance(31.75)
    # T2 = 4 s caps the interval (§13.3.1.4).
    assert ok_times(bench, invite, answered) == [
        0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5
    ]  # fmt: skip
    assert not bench.service.requests("BYE")

    bench.runtime.advance(0.25)  # 64*T1 = 32 s after the first 200

    assert [b.call_id for b in bench.service.requests("BYE", bench.alice.addr)] == [invite.call_id]
    assert len(bench.service.requests("BYE", bench.desk.addr)) == 1
    assert invite.call_id not in bench.manager.calls
    assert bench.ended_record().hangup_cause == "failed"


# -- the call-control API ------------------------------------------------------------------


def test_originate_dials_the_second_party_only_after_the_first_answers(bench: Bench) -> None:
    events: list[CallEvent] = []
    call = bench.manager.originate("bob", "carol", user="alice", listener=events.append)
    bench.runtime.run()
    desk, mobile = bench.invite_to(bench.desk), bench.invite_to(bench.mobile)
    # Bob's phone shows whom he is about to be put through to.
    assert desk.from_.uri == mobile.from_.uri
    assert str(desk.from_.uri) == f"sip:carol@{DOMAIN}"
    assert not bench.service.requests("INVITE", bench.carol.addr)

    bench.respond(bench.desk.reply(desk, 180, tag="desk"), desk)
    assert not bench.service.requests("INVITE", bench.carol.addr)

    bench.answer(bench.desk, desk, tag="desk")
    assert len(bench.service.requests("CANCEL", bench.mobile.addr)) == 1
    carol = bench.invite_to(bench.carol)
    assert carol.call_id != desk.call_id
    assert audio_of(carol) == (ENGINE_HOST, bench.media.port(call.id, "b"))

    bench.answer(bench.carol, carol, tag="carol")
    [carol_ack] = bench.service.requests("ACK", bench.carol.addr)
    assert carol_ack.to.tag == "carol"
    assert [(leg.id, leg.peer, leg.state) for leg in call.legs] == [
        ("a", "bob", LegState.ANSWERED),
        ("b", "carol", LegState.ANSWERED),
    ]
    assert [(e.name, e.leg) for e in events] == [
        ("ringing", "a"),
        ("answered", "a"),
        ("answered", "b"),
    ]


def test_originate_to_nowhere_raises(bench: Bench) -> None:
    with pytest.raises(CallError) as refused:
        bench.manager.originate("dave", "carol", user="alice")
    assert refused.value.status == 480
    assert not bench.manager.calls and not bench.service.sent


def three_party(bench: Bench) -> tuple[Call, Dialog, Dialog, Dialog]:
    """Alice and Bob in a call, Carol added: the call and each party's dialog."""
    call, _, alice, desk = bench.connect()
    leg = bench.manager.add_leg(call.id, "carol")
    bench.runtime.run()
    carol_invite = bench.invite_to(bench.carol)
    assert str(carol_invite.from_.uri) == f"sip:alice@{DOMAIN}"
    _, carol = bench.answer(bench.carol, carol_invite, tag="carol", port=7000)
    assert leg.id == "c" and leg.answered
    return call, alice, desk, carol


def test_add_leg_makes_a_three_party_call(bench: Bench) -> None:
    call, _, _, _ = three_party(bench)
    assert [leg.id for leg in call.live_legs()] == ["a", "b", "c"]
    assert [a["leg"] for a in bench.media.of("offer")] == ["a", "b", "c"]
    [_, carol_answer] = bench.media.of("answer")
    assert carol_answer["leg"] == "c"
    assert carol_answer["remote"] == {"host": "203.0.113.30", "port": 7000}
    assert bench.service.requests("ACK", bench.carol.addr)


def test_bye_from_one_of_three_leaves_the_other_two_up(bench: Bench) -> None:
    call, _, desk, _ = three_party(bench)
    bench.service.clear()

    bye = bench.desk.request(desk, "BYE")
    bench.request(bench.desk, bye)

    assert bench.final(bye).status == 200
    assert not bench.service.requests("BYE")
    assert bench.media.of("delete") == [{"call_id": call.id, "leg": "b"}]
    assert call.id in bench.manager.calls and not call.ended
    assert [leg.id for leg in call.live_legs()] == ["a", "c"]
    assert call.legs[1].media == {"packets_in": 50, "leg": "b"}


def test_remove_leg_byes_that_party_only(bench: Bench) -> None:
    call, _, _, _ = three_party(bench)
    bench.service.clear()
    bench.manager.remove_leg(call.id, "c")
    bench.runtime.run()
    assert [s.addr for s in bench.service.sent] == [bench.carol.addr]
    assert bench.media.of("delete") == [{"call_id": call.id, "leg": "c"}]
    assert [leg.id for leg in call.live_legs()] == ["a", "b"]


def test_end_byes_everyone(bench: Bench) -> None:
    call, _, _, _ = three_party(bench)
    bench.service.clear()
    bench.manager.end(call.id)
    bench.runtime.run()
    addrs = {s.addr for s in bench.service.sent if s.request.method == "BYE"}
    assert addrs == {bench.alice.addr, bench.desk.addr, bench.carol.addr}
    assert bench.media.of("delete")[-1] == {"call_id": call.id}
    assert [leg.leg_id for leg in bench.ended_record().legs] == ["a", "b", "c"]
    with pytest.raises(CallError):
        bench.manager.end(call.id)


def test_a_leg_added_that_fails_leaves_the_call_up(bench: Bench) -> None:
    call, _, _, _ = bench.connect()
    events: list[CallEvent] = []
    bench.manager.subscribe(call.id, events.append)
    bench.manager.add_leg(call.id, "carol")
    bench.runtime.run()
    carol = bench.invite_to(bench.carol)
    bench.service.clear()
    bench.respond(bench.carol.reply(carol, 486, tag="carol"), carol)
    assert not bench.service.sent and not bench.service.responses
    assert [(e.name, e.leg, e.data) for e in events] == [("leg_failed", "c", {"status": 486})]
    assert [leg.id for leg in call.live_legs()] == ["a", "b"] and not call.ended
    assert call.legs[2].status == 486


def test_add_leg_to_nobody_raises(bench: Bench) -> None:
    call, _, _, _ = bench.connect()
    with pytest.raises(CallError) as refused:
        bench.manager.add_leg(call.id, "dave")
    assert refused.value.status == 480
    with pytest.raises(CallError) as missing:
        bench.manager.add_leg("no-such-call", "carol")
    assert missing.value.status == 404


def test_media_timeout_on_a_leg_hangs_the_call_up(bench: Bench) -> None:
    call, invite, _, _ = bench.connect()
    bench.service.clear()
    bench.media.emit({"event": "media_timeout", "call_id": call.id, "leg": "b"})
    bench.runtime.run()
    assert {s.addr for s in bench.service.sent if s.request.method == "BYE"} == {
        bench.alice.addr,
        bench.desk.addr,
    }
    assert invite.call_id not in bench.manager.calls
    record = bench.ended_record()
    assert (record.hangup_cause, record.hung_up_by) == ("media_timeout", "system")


def test_dtmf_from_the_engine_reaches_a_subscriber(bench: Bench) -> None:
    call, _, _, _ = bench.connect()
    events: list[CallEvent] = []
    bench.manager.subscribe(call.id, events.append)
    bench.media.emit(
        {"event": "dtmf", "call_id": call.id, "leg": "a", "digit": "5", "duration": 0.16}
    )
    assert events == [CallEvent("dtmf", call.id, "a", {"digit": "5", "duration": 0.16})]


def test_quality_warnings_reach_a_subscriber_and_samples_do_not(bench: Bench) -> None:
    call, _, _, _ = bench.connect()
    events: list[CallEvent] = []
    bench.manager.subscribe(call.id, events.append)
    base = {"call_id": call.id, "leg": "b"}
    bench.media.emit({"event": "quality", **base, "mos": 4.2, "jitter": 0.01, "loss": 0.0})
    bench.media.emit(
        {"event": "quality_warning", **base, "name": "jitter", "value": 0.045, "threshold": 0.03}
    )
    assert events == [
        CallEvent("quality_warning", call.id, "b", {"metric": "jitter", "value": 0.045})
    ]


def test_play_and_send_dtmf_go_to_the_engine_for_one_leg(bench: Bench) -> None:
    call, _, _, _ = bench.connect()
    bench.runtime.spawn(bench.manager.play(call.id, "b", tone=[440], duration=1.0))
    bench.runtime.spawn(bench.manager.send_dtmf(call.id, "a", "12#"))
    bench.runtime.run()
    assert bench.media.of("play") == [
        {"call_id": call.id, "leg": "b", "tone": [440], "duration": 1.0}
    ]
    assert bench.media.of("dtmf") == [
        {"call_id": call.id, "leg": "a", "digits": "12#", "duration": 0.1}
    ]
    with pytest.raises(CallError):
        bench.manager.subscribe("no-such-call", lambda event: None)
