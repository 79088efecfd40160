"""Browser legs of the call manager (voipcore.calls.manager ``page_*``, voipcore.calls.browser).

A signed-in dialer page is a party like a phone: it places calls with a WebRTC
offer and is rung in parallel with its user's phones, the first answer
winning.  The bench is the call manager's (in-memory phones, engine and
clock) with the engine answering browser legs' ``webrtc`` offers and the
router ringing users who have a :class:`FakePage` open.  The page's SDP is
what Chrome sends for an audio-only call (test_sdp's ``CHROME_OFFER``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from voipcore.calls.browser import Pages
from voipcore.calls.manager import CallError, CallManager, CallSettings
from voipcore.calls.model import Call, Leg, LegState
from voipcore.calls.routing import Router
from voipcore.sdp import SessionDescription
from voipcore.sip.dialog import Dialog
from voipcore.sip.message import Request

from .fakes import ENGINE_HOST, FakePage, WebRtcMedia, contact, via
from .test_calls_manager import Bench
from .test_sdp import CHROME_OFFER

T = TypeVar("T")

RING_TIMEOUT = 30.0
#: The page's DTLS fingerprint and ICE ufrag in :data:`CHROME_OFFER`.
BROWSER_FINGERPRINT = "49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2:7D:62:C9:9A"
BROWSER_UFRAG = "Oyef"


def chrome_offer(*, drop: str = "", replace: tuple[str, str] = ("", "")) -> str:
    """:data:`CHROME_OFFER` without the lines starting with ``drop``, ``replace``d."""
    lines = CHROME_OFFER.split("\r\n")
    if drop:
        lines = [line for line in lines if not line.startswith(drop)]
    return "\r\n".join(lines).replace(*replace)


class BrowserBench(Bench):
    """The call manager's bench with browsers: the router rings the users who have a
    page open, and the engine sets up WebRTC streams."""

    def __init__(self, settings: CallSettings) -> None:
        super().__init__(settings)
        self.media = WebRtcMedia()
        self.pages = Pages()
        plain = self.manager.router
        self.manager = CallManager(
            self.service,
            self.media,
            Router(plain.registrar, plain.users, browsers=self.pages.online),
            self.runtime,
            via=via,
            contact=contact,
            record=self.records.append,
            settings=settings,
            pages=self.pages,
        )

    def open_page(self, user: str) -> FakePage:
        page = FakePage(user)
        self.manager.page_opened(page)
        return page

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Await one of the manager's ``page_*`` coroutines, then the work it spawned
        (also when it raised)."""
        try:
            return asyncio.run(work)
        finally:
            self.runtime.run()

    def dial(self, page: FakePage, to: str, *, extension: str = "") -> Call:
        return self.run(self.manager.page_dial(page, to, CHROME_OFFER, extension=extension))

    def page_connect(self, page: FakePage) -> tuple[Call, Request, Dialog]:
        """``page`` calls Carol (203) and her phone answers: the call, our INVITE to
        her and her dialog."""
        call = self.dial(page, "203")
        invite = self.invite_to(self.carol)
        _, dialog = self.answer(self.carol, invite, tag="carol")
        return call, invite, dialog

    def leg_of(self, call: Call, kind: str) -> Leg:
        [leg] = [leg for leg in call.legs if leg.kind == kind]
        return leg


@pytest.fixture
def bench() -> Iterator[BrowserBench]:
    bench = BrowserBench(CallSettings(ring_timeout=RING_TIMEOUT))
    yield bench
    assert not bench.runtime.tasks, "work spawned and never run"


def without_call(message: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in message.items() if key != "call"}


# -- a page places a call -----------------------------------------------------------------------


def test_page_dialling_a_phone_gets_its_answer_before_the_phone_is_invited(
    bench: BrowserBench,
) -> None:
    page = bench.open_page("alice")

    call = asyncio.run(bench.manager.page_dial(page, "203", CHROME_OFFER, ref=7))

    # The answer is out, nothing rings yet: ICE and DTLS start while the INVITE goes.
    assert not bench.service.requests("INVITE")
    [dialling] = page.sent
    assert (dialling["type"], dialling["ref"], dialling["call"]) == ("dialling", 7, call.id)
    page_leg = bench.leg_of(call, "browser")
    port = bench.media.port(call.id, page_leg.id)
    answer_text = str(dialling["sdp"])
    answer = SessionDescription.parse(answer_text)
    audio = answer.audio
    assert audio is not None
    assert (audio.proto, audio.port, audio.connection_address) == (
        "UDP/TLS/RTP/SAVPF",
        port,
        ENGINE_HOST,
    )
    assert audio.codecs[0].name == "PCMU"  # G.711 first: no transcoding to a phone
    assert "opus" not in [c.name for c in audio.codecs[:1]]
    for line in (
        "a=ice-lite",
        "a=setup:passive",
        "a=rtcp-mux",
        "a=mid:0",
        f"a=ice-ufrag:{WebRtcMedia.UFRAG}",
        f"a=ice-pwd:{WebRtcMedia.PWD}",
        f"a=fingerprint:sha-256 {WebRtcMedia.FINGERPRINT}",
        f"a=candidate:1 1 udp 2130706431 {ENGINE_HOST} {port} typ host",
    ):
        assert line in answer_text.splitlines(), line
    # The engine got the browser's ICE and DTLS parameters for its stream.
    [stream] = bench.media.of("offer")
    assert stream["leg"] == page_leg.id
    assert stream["webrtc"] == {
        "ufrag": BROWSER_UFRAG,
        "fingerprints": [("sha-256", BROWSER_FINGERPRINT)],
    }

    bench.runtime.run()

    invite = bench.invite_to(bench.carol)
    assert str(invite.from_.uri) == "sip:alice@test.local"
    offered = SessionDescription.parse(invite.body).audio
    assert offered is not None and offered.codecs[0].name == "PCMU"
    assert page.types() == ["dialling"]


def test_the_phone_ringing_and_answering_is_told_to_the_page(bench: BrowserBench) -> None:
    page = bench.open_page("alice")
    call = bench.dial(page, "203")
    invite = bench.invite_to(bench.carol)

    bench.respond(bench.carol.reply(invite, 180, tag="carol"), invite)
    assert without_call(page.sent[-1]) == {"type": "ringing"}
    assert page.sent[-1]["call"] == call.id
    assert bench.manager.page_calls(page) == [
        {"call": call.id, "state": "dialling", "peer": "carol", "direction": "outgoing"}
    ]

    bench.answer(bench.carol, invite, tag="carol")

    assert without_call(page.sent[-1]) == {"type": "answered", "peer": "carol"}
    assert page.types() == ["dialling", "ringing", "answered"]
    assert call.answered_at is not None
    assert [leg.state for leg in call.legs] == [LegState.ANSWERED, LegState.ANSWERED]
    [ack] = bench.service.requests("ACK", bench.carol.addr)
    assert ack.to.tag == "carol"


def test_page_hangup_byes_the_phone_and_tells_the_page(bench: BrowserBench) -> None:
    page = bench.open_page("alice")
    call, _, _ = bench.page_connect(page)

    bench.manager.page_hangup(page, call.id)
    bench.runtime.run()

    [bye] = bench.service.requests("BYE", bench.carol.addr)
    assert bye.to.tag == "carol"
    assert without_call(page.sent[-1]) == {"type": "ended", "cause": "normal"}
    assert call.id not in bench.manager.calls
    record = bench.ended_record()
    assert (record.hangup_cause, record.hung_up_by) == ("normal", "caller")


def test_the_phone_hanging_up_ends_the_call_on_the_page(bench: BrowserBench) -> None:
    page = bench.open_page("alice")
    call, _, dialog = bench.page_connect(page)

    bench.request(bench.carol, bench.carol.request(dialog, "BYE"))

    assert without_call(page.sent[-1]) == {"type": "ended", "cause": "remote_hangup"}
    assert call.id not in bench.manager.calls


def test_an_extension_is_sent_as_dtmf_after_answer_with_commas_as_pauses(
    bench: BrowserBench,
) -> None:
    page = bench.open_page("alice")
    call = bench.dial(page, "203", extension="12,3")
    invite = bench.invite_to(bench.carol)
    bench.runtime.advance(5)
    assert not bench.media.of("dtmf")  # nothing before the answer

    bench.answer(bench.carol, invite, tag="carol")
    bench.runtime.advance(0)

    carol_leg = bench.leg_of(call, "phone")
    first = {"call_id": call.id, "leg": carol_leg.id, "digits": "12", "duration": 0.1}
    assert bench.media.of("dtmf") == [first]
    bench.runtime.advance(2 * 0.25 + 0.5 - 0.01)
    assert len(bench.media.of("dtmf")) == 1
    bench.runtime.advance(0.01)
    assert bench.media.of("dtmf") == [first, {**first, "digits": "3"}]


def test_a_page_abandoning_its_call_while_it_rings_cancels_the_phone(
    bench: BrowserBench,
) -> None:
    page = bench.open_page("alice")
    call = bench.dial(page, "203")
    invite = bench.invite_to(bench.carol)
    bench.respond(bench.carol.reply(invite, 180, tag="carol"), invite)

    bench.manager.page_hangup(page, call.id)
    bench.runtime.run()

    [cancel] = bench.service.requests("CANCEL", bench.carol.addr)
    assert cancel.via.branch == invite.via.branch
    assert page.last("ended")["cause"] == "cancelled"
    assert call.id not in bench.manager.calls
    record = bench.ended_record()
    assert (record.hangup_cause, record.hung_up_by, record.answered_at) == (
        "cancelled",
        "caller",
        None,
    )


def test_a_page_dialling_nobody_gets_the_refusal_and_the_attempt_is_logged(
    bench: BrowserBench,
) -> None:
    page = bench.open_page("alice")
    with pytest.raises(CallError) as refused:
        bench.dial(page, "999")
    assert refused.value.status == 404
    assert not bench.manager.calls
    assert bench.records[-1].callee_dialled == "999"
    assert page.sent == []


# -- a phone calls a user who has a page open -------------------------------------------------


def test_a_user_with_a_page_and_a_phone_rings_on_both(bench: BrowserBench) -> None:
    page = bench.open_page("alice")

    invite = bench.call(bench.carol, "alice")

    assert bench.invite_to(bench.alice).uri_text == bench.alice.contact
    [incoming] = page.sent
    assert incoming["type"] == "incoming"
    assert incoming["call"] == invite.call_id
    assert incoming["from"] == {"number": "carol", "name": None}
    assert 180 in [r.status for r in bench.answers_to(invite)]
    assert bench.manager.page_calls(page) == [
        {"call": invite.call_id, "state": "incoming", "peer": "carol", "direction": "incoming"}
    ]


def test_the_page_answering_cancels_the_phone_and_answers_the_caller(
    bench: BrowserBench,
) -> None:
    page = bench.open_page("alice")
    other_tab = bench.open_page("alice")
    invite = bench.call(bench.carol, "alice")
    phone_invite = bench.invite_to(bench.alice)

    bench.run(bench.manager.page_answer(page, invite.call_id, CHROME_OFFER))

    [cancel] = bench.service.requests("CANCEL", bench.alice.addr)
    assert cancel.via.branch == phone_invite.via.branch
    ok = bench.final(invite)
    assert ok.status == 200
    call = bench.manager.calls[invite.call_id]
    carol_leg = call.legs[0]
    audio = SessionDescription.parse(ok.body).audio
    assert audio is not None
    assert (audio.connection_address, audio.port) == (
        ENGINE_HOST,
        bench.media.port(call.id, carol_leg.id),
    )
    answered = page.last("answered")
    assert (answered["peer"], answered["call"]) == ("carol", call.id)
    answer = SessionDescription.parse(str(answered["sdp"])).audio
    assert answer is not None and answer.proto == "UDP/TLS/RTP/SAVPF"
    # The user's other tab stops ringing.
    assert without_call(other_tab.sent[-1]) == {"type": "ended", "cause": "answered_elsewhere"}
    assert call.answered_at is not None
    assert bench.leg_of(call, "browser").state is LegState.ANSWERED


def test_a_phone_answering_after_the_page_won_is_acked_and_hung_up(
    bench: BrowserBench,
) -> None:
    page = bench.open_page("alice")
    invite = bench.call(bench.carol, "alice")
    phone_invite = bench.invite_to(bench.alice)
    bench.run(bench.manager.page_answer(page, invite.call_id, CHROME_OFFER))

    bench.answer(bench.alice, phone_invite, tag="late")  # it crossed our CANCEL

    [ack] = bench.service.requests("ACK", bench.alice.addr)
    [bye] = bench.service.requests("BYE", bench.alice.addr)
    assert ack.to.tag == bye.to.tag == "late"
    assert invite.call_id in bench.manager.calls


def test_the_phone_answering_first_ends_the_call_on_the_page(bench: BrowserBench) -> None:
    page = bench.open_page("alice")
    invite = bench.call(bench.carol, "alice")

    bench.answer(bench.alice, bench.invite_to(bench.alice), tag="alice")

    ended = page.last("ended")
    assert ended["cause"] == "answered_elsewhere"
    assert ended["call"] == invite.call_id
    assert bench.final(invite).status == 200
    with pytest.raises(CallError) as late:
        bench.run(bench.manager.page_answer(page, invite.call_id, CHROME_OFFER))
    assert late.value.status == 481
    assert bench.manager.page_calls(page) == []


def test_declining_on_the_page_leaves_the_phone_ringing(bench: BrowserBench) -> None:
    page = bench.open_page("alice")
    invite = bench.call(bench.carol, "alice")
    phone_invite = bench.invite_to(bench.alice)

    bench.manager.page_hangup(page, invite.call_id)
    bench.runtime.run()

    assert page.last("ended")["call"] == invite.call_id
    assert not bench.service.requests("CANCEL")
    assert [r.status for r in bench.answers_to(invite) if r.status >= 200] == []
    assert invite.call_id in bench.manager.calls
    # The phone can still take it.
    bench.answer(bench.alice, phone_invite, tag="alice")
    assert bench.final(invite).status == 200


@pytest.mark.parametrize(
    ("page_first", "final"),
    [pytest.param(True, 486, id="page-declines-then-busy"), pytest.param(False, 603, id="busy")],
)
def test_the_caller_gets_the_last_final_status_when_page_and_phone_both_fail(
    bench: BrowserBench, page_first: bool, final: int
) -> None:
    page = bench.open_page("alice")
    invite = bench.call(bench.carol, "alice")
    phone_invite = bench.invite_to(bench.alice)

    def decline() -> None:
        bench.manager.page_hangup(page, invite.call_id)
        bench.runtime.run()

    def busy() -> None:
        bench.respond(bench.alice.reply(phone_invite, 486, tag="alice"), phone_invite)

    for step in (decline, busy) if page_first else (busy, decline):
        step()

    assert bench.final(invite).status == final
    assert invite.call_id not in bench.manager.calls
    assert bench.ended_record().sip_status == final


def test_a_user_with_only_a_page_open_is_routable(bench: BrowserBench) -> None:
    page = bench.open_page("dave")  # nothing registered

    invite = bench.call(bench.carol, "dave")

    assert [r.status for r in bench.answers_to(invite)] == [100, 180]
    assert page.types() == ["incoming"]
    assert not bench.service.requests("INVITE")


def test_a_user_whose_page_closed_is_unavailable_again(bench: BrowserBench) -> None:
    page = bench.open_page("dave")
    bench.manager.page_closed(page)

    invite = bench.call(bench.carol, "dave")

    assert bench.final(invite).status == 480


def test_ring_timeout_on_a_page_only_user_gives_the_caller_480(bench: BrowserBench) -> None:
    page = bench.open_page("dave")
    invite = bench.call(bench.carol, "dave")

    bench.runtime.advance(RING_TIMEOUT - 1)
    assert [r.status for r in bench.answers_to(invite)] == [100, 180]

    bench.runtime.advance(1)

    assert bench.final(invite).status == 480
    assert page.last("ended")["status"] == 480
    assert invite.call_id not in bench.manager.calls


def test_the_page_answering_a_page_only_call_opens_the_callers_stream_too(
    bench: BrowserBench,
) -> None:
    page = bench.open_page("dave")
    invite = bench.call(bench.carol, "dave")

    bench.run(bench.manager.page_answer(page, invite.call_id, CHROME_OFFER))

    call = bench.manager.calls[invite.call_id]
    carol_leg = call.legs[0]
    ok = bench.final(invite)
    assert ok.status == 200
    audio = SessionDescription.parse(ok.body).audio
    assert audio is not None and audio.port == bench.media.port(call.id, carol_leg.id)
    assert [args["leg"] for args in bench.media.of("offer")] == [
        carol_leg.id,
        bench.leg_of(call, "browser").id,
    ]


# -- in the call: mute, hold, keypad -------------------------------------------------------------


def test_mute_and_hold_set_the_page_legs_direction_in_the_engine_hold_reinvites_the_phone(
    bench: BrowserBench,
) -> None:
    page = bench.open_page("alice")
    call, invite, _ = bench.page_connect(page)
    page_leg = bench.leg_of(call, "browser")

    def engine_direction() -> object:
        last = bench.media.of("answer")[-1]
        assert last["leg"] == page_leg.id
        return last["direction"]

    bench.run(bench.manager.page_mute(page, call.id, True))
    assert engine_direction() == "recvonly"  # the others hear silence, the page hears them
    assert without_call(page.sent[-1]) == {"type": "muted", "muted": True}
    assert len(bench.service.requests("INVITE", bench.carol.addr)) == 1  # no re-INVITE

    bench.run(bench.manager.page_hold(page, call.id, True))
    assert engine_direction() == "inactive"
    assert without_call(page.sent[-1]) == {"type": "held", "held": True, "by": "you"}
    [_, hold] = bench.service.requests("INVITE", bench.carol.addr)
    assert hold.call_id == invite.call_id and hold.to.tag == "carol"
    assert "a=sendonly" in hold.body.decode().splitlines()  # RFC 3264 §8.4

    bench.run(bench.manager.page_hold(page, call.id, False))
    assert engine_direction() == "recvonly"  # still muted
    bench.run(bench.manager.page_mute(page, call.id, False))
    assert engine_direction() == "sendrecv"


def test_keypad_digits_on_the_page_go_to_the_phone_leg(bench: BrowserBench) -> None:
    page = bench.open_page("alice")
    call, _, _ = bench.page_connect(page)

    bench.run(bench.manager.page_dtmf(page, call.id, "5#"))

    carol_leg = bench.leg_of(call, "phone")
    assert bench.media.of("dtmf") == [
        {"call_id": call.id, "leg": carol_leg.id, "digits": "5#", "duration": 0.1}
    ]


def test_mute_hold_and_keypad_need_an_answered_call(bench: BrowserBench) -> None:
    page = bench.open_page("alice")
    call = bench.dial(page, "203")
    for work in (
        bench.manager.page_mute(page, call.id, True),
        bench.manager.page_hold(page, call.id, True),
        bench.manager.page_dtmf(page, call.id, "1"),
    ):
        with pytest.raises(CallError) as refused:
            bench.run(work)
        assert refused.value.status == 481
    with pytest.raises(CallError) as unknown:
        bench.manager.page_hangup(page, "w-nonesuch")
    assert unknown.value.status == 404
    bench.manager.page_hangup(page, call.id)
    bench.runtime.run()


def test_another_users_page_cannot_touch_the_call(bench: BrowserBench) -> None:
    page = bench.open_page("alice")
    call, _, _ = bench.page_connect(page)
    stranger = bench.open_page("bob")
    with pytest.raises(CallError) as refused:
        bench.manager.page_hangup(stranger, call.id)
    assert refused.value.status == 481
    assert bench.manager.page_calls(stranger) == []


# -- pages going and coming ------------------------------------------------------------------------


def test_a_reconnected_page_lists_and_carries_the_live_call(bench: BrowserBench) -> None:
    page = bench.open_page("alice")
    call, _, _ = bench.page_connect(page)

    bench.manager.page_closed(page)
    assert call.id in bench.manager.calls  # the media goes on without the socket
    again = bench.open_page("alice")

    assert bench.manager.page_calls(again) == [
        {"call": call.id, "state": "connected", "peer": "carol", "direction": "outgoing"}
    ]
    bench.manager.page_hangup(again, call.id)
    bench.runtime.run()
    assert again.last("ended")["cause"] == "normal"
    assert bench.service.requests("BYE", bench.carol.addr)


def test_a_page_opened_while_a_call_rings_rings_too(bench: BrowserBench) -> None:
    first = bench.open_page("dave")
    invite = bench.call(bench.carol, "dave")
    second = bench.open_page("dave")

    bench.run(bench.manager.page_answer(second, invite.call_id, CHROME_OFFER))

    assert bench.final(invite).status == 200
    assert first.last("ended")["cause"] == "answered_elsewhere"


# -- what is refused -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sdp",
    [
        pytest.param("not an SDP at all", id="garbage"),
        pytest.param(chrome_offer(replace=("m=audio", "m=video")), id="no-audio"),
        pytest.param(
            chrome_offer(replace=("111 63 9 0 8 13 110 126", "9 13")), id="no-common-codec"
        ),
    ],
)
def test_a_bad_offer_from_the_page_is_refused_with_488(bench: BrowserBench, sdp: str) -> None:
    page = bench.open_page("alice")
    with pytest.raises(CallError) as refused:
        bench.run(bench.manager.page_dial(page, "203", sdp))
    assert refused.value.status == 488
    assert not bench.service.requests("INVITE")
    assert not bench.manager.calls
    assert page.sent == []


@pytest.mark.parametrize(
    "sdp",
    [
        pytest.param(chrome_offer(drop="a=fingerprint"), id="no-fingerprint"),
        pytest.param(chrome_offer(drop="a=ice-ufrag"), id="no-ice-ufrag"),
        pytest.param(chrome_offer(drop="a=rtcp-mux"), id="no-rtcp-mux"),
    ],
)
def test_an_offer_the_engine_cannot_use_for_webrtc_is_refused_with_488(
    bench: BrowserBench, sdp: str
) -> None:
    page = bench.open_page("alice")
    with pytest.raises(CallError) as refused:
        bench.run(bench.manager.page_dial(page, "203", sdp))
    assert refused.value.status == 488


def test_a_page_answering_with_an_unusable_offer_leaves_the_phone_ringing(
    bench: BrowserBench,
) -> None:
    page = bench.open_page("alice")
    invite = bench.call(bench.carol, "alice")

    with pytest.raises(CallError) as refused:
        bench.run(bench.manager.page_answer(page, invite.call_id, chrome_offer(drop="a=fin")))

    assert refused.value.status == 488
    assert not bench.service.requests("CANCEL")
    assert invite.call_id in bench.manager.calls


def test_a_page_answering_with_a_bad_sdp_is_refused_and_the_call_rings_on(
    bench: BrowserBench,
) -> None:
    page = bench.open_page("alice")
    invite = bench.call(bench.carol, "alice")

    with pytest.raises(CallError) as refused:
        bench.run(bench.manager.page_answer(page, invite.call_id, "v=0 nonsense"))

    assert refused.value.status == 488
    assert not bench.service.requests("CANCEL")
    assert invite.call_id in bench.manager.calls
    bench.run(bench.manager.page_answer(page, invite.call_id, CHROME_OFFER))
    assert bench.final(invite).status == 200


def test_max_calls_per_user_counts_the_calls_a_page_places() -> None:
    bench = BrowserBench(CallSettings(ring_timeout=RING_TIMEOUT, max_calls_per_user=1))
    page = bench.open_page("alice")
    first = bench.dial(page, "203")

    with pytest.raises(CallError) as refused:
        bench.dial(page, "202")
    assert refused.value.status == 486
    assert not bench.service.requests("INVITE", bench.desk.addr)

    bench.manager.page_hangup(page, first.id)
    bench.runtime.run()
    bench.dial(page, "202")  # the first call ended: room again
    assert bench.service.requests("INVITE", bench.desk.addr)
