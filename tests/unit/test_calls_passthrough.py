"""Pass-through calls (voipcore.calls.passthrough): the rep's own phone, press 1, the prospect.

The click-to-call bench (in-memory trunk, engine and clock): both carrier legs go
to its carrier :class:`Phone`, told apart by the number in their Request-URI.
The rep's key presses arrive as the engine's ``dtmf`` events on the rep's leg.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from voipcore.calls.manager import CallError, CallSettings
from voipcore.calls.model import Call, LegState
from voipcore.calls.passthrough import (
    KEY_GUARD,
    PROMPT,
    PROMPT_GAP,
    Passthrough,
    Stage,
    passthrough_number,
    prompt_seconds,
)
from voipcore.dialer.numbers import InvalidNumber
from voipcore.sip.message import Request

from .fakes import FakePage
from .test_calls_click import CALLER_ID, NUMBER, ClickBench

#: Alice's cell phone, her pass-through number.
CELL = "+14045550199"
TIMEOUT = 15.0


class PassthroughBench(ClickBench):
    """The click-to-call bench with pass-through calls for alice (her number: CELL)."""

    def __init__(self) -> None:
        super().__init__(CallSettings(ring_timeout=30.0, passthrough_timeout=TIMEOUT))
        self.numbers: dict[str, str] = {"alice": CELL}

        async def number_of(user: str) -> str | None:
            return self.numbers.get(user)

        self.passthrough = Passthrough(self.manager, number_of)
        self.page = FakePage("alice")

    def dial_passthrough(self, extension: str = "") -> Call:
        """Alice's page dials NUMBER with pass-through on."""
        work = self.passthrough.dial(
            "alice", NUMBER, extension=extension, person_id=12, page=self.page, ref="r1"
        )
        call = asyncio.run(work)
        self.runtime.run()
        return call

    def invite_for(self, number: str) -> Request:
        [invite] = [i for i in self.invites_to_carrier() if i.uri_text.startswith(f"sip:{number}@")]
        return invite

    def rep_answers(self, call: Call) -> None:
        self.answer(self.carrier, self.invite_for(CELL), tag="cell", port=9000)
        self.runtime.run()

    def rep_presses(self, call: Call, digit: str) -> None:
        """The rep's key, and the time its end packets take (KEY_GUARD)."""
        event = {"event": "dtmf", "call_id": call.id, "leg": "a", "digit": digit}
        self.media.emit(event | {"duration": 0.1})
        self.runtime.advance(KEY_GUARD)

    def prospect_answers(self) -> None:
        self.answer(self.carrier, self.invite_for(NUMBER), tag="prospect", port=9002)
        self.runtime.advance(0)

    def states(self) -> list[object]:
        return [m["state"] for m in self.page.sent if m["type"] == "passthrough"]


@pytest.fixture
def bench() -> Iterator[PassthroughBench]:
    bench = PassthroughBench()
    yield bench
    assert not bench.runtime.tasks, "work spawned and never run"


def test_the_reps_number_is_rung_first_through_the_trunk(bench: PassthroughBench) -> None:
    call = bench.dial_passthrough()

    [invite] = bench.invites_to_carrier()
    assert invite.uri_text == f"sip:{CELL}@acme.pstn.ashburn.twilio.com"
    assert str(invite.from_.uri) == f"sip:{CALLER_ID}@acme.pstn.twilio.com"
    assert bench.page.sent[0] == {"type": "dialling", "ref": "r1", "call": call.id}
    assert bench.states() == ["calling_you"]
    assert (call.mode, call.e164, call.person_id) == ("passthrough", NUMBER, 12)


def test_answering_plays_the_prompt_twice_and_1_dials_the_prospect_and_bridges(
    bench: PassthroughBench,
) -> None:
    call = bench.dial_passthrough(extension="45")
    bench.rep_answers(call)

    prompt = {"call_id": call.id, "leg": "a", "file": str(PROMPT)}
    assert bench.media.of("play") == [prompt]
    assert bench.states() == ["calling_you", "press_1"]
    bench.runtime.advance(prompt_seconds(PROMPT) + PROMPT_GAP)
    assert bench.media.of("play") == [prompt, prompt]
    assert len(bench.invites_to_carrier()) == 1  # not before the rep presses 1

    bench.rep_presses(call, "1")

    assert bench.media.of("stop_play") == [{"call_id": call.id, "leg": "a"}]
    assert bench.states()[-1] == "dialling"
    assert bench.page.last("passthrough")["to"] == NUMBER
    prospect = bench.invite_for(NUMBER)
    assert str(prospect.from_.uri) == f"sip:{CALLER_ID}@acme.pstn.twilio.com"
    bench.prospect_answers()

    assert bench.states()[-1] == "connected"
    assert bench.page.last("answered")["peer"] == NUMBER
    assert [(leg.kind, leg.role, leg.state) for leg in call.legs] == [
        ("trunk", "caller", LegState.ANSWERED),
        ("trunk", "callee", LegState.ANSWERED),
    ]
    assert bench.media.of("dtmf") == [
        {"call_id": call.id, "leg": "b", "digits": "45", "duration": 0.1}
    ]
    # A key pressed now is the prospect's business, not ours.
    bench.rep_presses(call, "9")
    bench.runtime.advance(TIMEOUT)
    assert call.id in bench.manager.calls


def test_the_prospect_is_dialled_only_once_the_reps_key_is_over(bench: PassthroughBench) -> None:
    call = bench.dial_passthrough()
    bench.rep_answers(call)
    bench.media.emit({"event": "dtmf", "call_id": call.id, "leg": "a", "digit": "1"})
    bench.runtime.run()

    assert bench.states()[-1] == "dialling"
    bench.runtime.advance(KEY_GUARD - 0.01)
    assert len(bench.invites_to_carrier()) == 1  # a late end packet of the 1 goes nowhere
    bench.runtime.advance(0.01)
    assert bench.invite_for(NUMBER)


def test_the_prospect_hanging_up_ends_both_and_logs_two_billable_legs(
    bench: PassthroughBench,
) -> None:
    call = bench.dial_passthrough()
    bench.rep_answers(call)
    bench.rep_presses(call, "1")
    ok, dialog = bench.answer(bench.carrier, bench.invite_for(NUMBER), tag="prospect", port=9002)
    bench.runtime.advance(61)

    bench.request(bench.carrier, bench.carrier.request(dialog, "BYE"))
    bench.runtime.run()

    byes = bench.service.requests("BYE", bench.carrier.addr)
    assert [bye.call_id for bye in byes] == [bench.invite_for(CELL).call_id]
    assert bench.page.last("ended")["cause"] == "normal"
    record = bench.ended_record()
    assert record.mode == "passthrough"
    assert [(leg.peer, leg.billable) for leg in record.legs] == [(CELL, True), (NUMBER, True)]
    assert record.billable_minutes == 2 + 2  # 61 s on each leg


@pytest.mark.parametrize(
    ("digit", "cause"), [("2", "passthrough_declined"), ("#", "passthrough_declined")]
)
def test_another_key_ends_the_call_without_dialling(
    bench: PassthroughBench, digit: str, cause: str
) -> None:
    call = bench.dial_passthrough()
    bench.rep_answers(call)

    bench.rep_presses(call, digit)

    assert len(bench.invites_to_carrier()) == 1
    assert len(bench.service.requests("BYE", bench.carrier.addr)) == 1
    assert call.id not in bench.manager.calls
    assert bench.page.last("ended")["cause"] == cause
    assert bench.states()[-1] == "press_1"
    assert bench.ended_record().hangup_cause == cause


def test_no_key_in_time_ends_the_call_with_a_timeout(bench: PassthroughBench) -> None:
    call = bench.dial_passthrough()
    bench.rep_answers(call)

    bench.runtime.advance(TIMEOUT - 0.1)
    assert call.id in bench.manager.calls
    bench.runtime.advance(0.1)

    assert call.id not in bench.manager.calls
    assert len(bench.invites_to_carrier()) == 1
    assert [m["type"] for m in bench.page.sent].count("ended") == 1
    assert bench.page.last("ended")["cause"] == "passthrough_timeout"
    record = bench.ended_record()
    assert (record.hangup_cause, record.hung_up_by) == ("passthrough_timeout", "system")


def test_the_rep_not_answering_ends_it_before_any_prompt(bench: PassthroughBench) -> None:
    call = bench.dial_passthrough()
    invite = bench.invite_for(CELL)

    bench.respond(bench.carrier.reply(invite, 486, tag="cell"), invite)
    bench.runtime.run()

    assert call.id not in bench.manager.calls
    assert not bench.media.of("play")
    assert bench.page.last("ended") == {
        "type": "ended",
        "cause": "busy",
        "status": 486,
        "call": call.id,
    }


def test_the_page_hanging_up_while_the_prospect_rings_ends_both(bench: PassthroughBench) -> None:
    call = bench.dial_passthrough()
    bench.rep_answers(call)
    bench.rep_presses(call, "1")

    with pytest.raises(CallError):
        bench.passthrough.hang_up(FakePage("bob"), call.id)
    bench.passthrough.hang_up(bench.page, call.id)
    bench.runtime.run()

    assert len(bench.service.requests("CANCEL", bench.carrier.addr)) == 1
    assert len(bench.service.requests("BYE", bench.carrier.addr)) == 1
    assert not bench.passthrough.owns(call.id)
    record = bench.ended_record()
    assert (record.hangup_cause, record.hung_up_by) == ("normal", "caller")


def test_the_pages_keypad_reaches_the_prospect_once_dialled(bench: PassthroughBench) -> None:
    call = bench.dial_passthrough()
    bench.rep_answers(call)
    with pytest.raises(CallError, match="press 1 on your phone"):
        asyncio.run(bench.passthrough.send_dtmf(bench.page, call.id, "5"))

    bench.rep_presses(call, "1")
    bench.prospect_answers()
    asyncio.run(bench.passthrough.send_dtmf(bench.page, call.id, "5"))

    assert bench.media.of("dtmf")[-1] == {
        "call_id": call.id,
        "leg": "b",
        "digits": "5",
        "duration": 0.1,
    }
    with pytest.raises(CallError, match="no pass-through call"):
        asyncio.run(bench.passthrough.send_dtmf(FakePage("bob"), call.id, "5"))


def test_a_rep_with_no_passthrough_number_gets_a_clear_error(bench: PassthroughBench) -> None:
    bench.numbers.clear()
    with pytest.raises(CallError, match="Set your pass-through number"):
        bench.dial_passthrough()
    assert not bench.service.sent and not bench.manager.calls


def test_the_stages_follow_the_table(bench: PassthroughBench) -> None:
    call = bench.dial_passthrough()
    bench.rep_presses(call, "1")  # before answer: ignored
    assert bench.states() == [Stage.CALLING_YOU.value]
    assert len(bench.invites_to_carrier()) == 1


def test_the_reps_own_extension_rings_their_registered_phone_not_their_page(
    bench: PassthroughBench,
) -> None:
    bench.numbers["alice"] = "201"
    page = bench.open_page("alice")

    call = bench.dial_passthrough()

    assert bench.invite_to(bench.alice)
    assert not bench.invites_to_carrier()
    assert [leg.kind for leg in call.legs] == ["phone"]
    assert not [m for m in page.sent if m["type"] == "incoming"]
    bench.answer(bench.alice, bench.invite_to(bench.alice), tag="alice")
    bench.runtime.run()
    assert bench.states() == ["calling_you", "press_1"]


def test_only_the_reps_own_extension_is_taken_as_it_is() -> None:
    assert passthrough_number(" 201 ", "US", own_extension="201") == "201"
    with pytest.raises(InvalidNumber):
        passthrough_number("202", "US", own_extension="201")


@pytest.mark.parametrize(
    ("typed", "e164"),
    [("(404) 555-0199", CELL), ("404.555.0199", CELL), ("+1 404 555 0199", CELL)],
)
def test_a_passthrough_number_is_normalised_to_e164(typed: str, e164: str) -> None:
    assert passthrough_number(typed, "US") == e164


@pytest.mark.parametrize(
    "typed", ["404-555-0199 x123", "404 555 0199 ext. 123", "+14045550199;ext=123"]
)
def test_a_passthrough_number_with_an_extension_is_refused_in_words(typed: str) -> None:
    with pytest.raises(InvalidNumber, match="switchboard"):
        passthrough_number(typed, "US")


def test_an_invalid_passthrough_number_says_why() -> None:
    with pytest.raises(InvalidNumber, match="short"):
        passthrough_number("555", "US")
