"""Click-to-call (voipcore.calls.manager ``originate`` with a device, an extension and a person).

The rep is rung first, on their registered phones, their signed-in dialer pages
or both; once they answer, the number is dialled through the trunk, and the
extension goes to the number as RFC 4733 digits after it answers.  The bench is
the browser bench (in-memory phones, pages, engine and clock) with a Twilio
trunk whose one edge is the carrier :class:`Phone` below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from voipcore.calls.manager import CallError, CallManager, CallSettings
from voipcore.calls.model import Call, LegState
from voipcore.calls.routing import Device, Router
from voipcore.config import TwilioTrunkConfig
from voipcore.sip.message import Request
from voipcore.store import User
from voipcore.trunks.twilio import TwilioTrunk

from .fakes import DOMAIN, Phone, contact, via
from .test_calls_browser import BrowserBench
from .test_calls_manager import USERS
from .test_sdp import CHROME_OFFER

RING_TIMEOUT = 30.0
NUMBER = "+14045551234"
#: Alice's caller id on the trunk.
CALLER_ID = "+14045550100"


class ClickBench(BrowserBench):
    """The browser bench with a trunk: numbers go to :attr:`carrier`."""

    def __init__(self, settings: CallSettings) -> None:
        super().__init__(settings)
        self.carrier = Phone(NUMBER, ("UDP", "198.51.100.7", 5060))
        users: dict[str, User] = {
            **USERS,
            "alice": dataclasses.replace(USERS["alice"], caller_id=CALLER_ID),
        }
        config = TwilioTrunkConfig(
            domain="acme.pstn.twilio.com",
            username="voipcore",
            password="Sup3rSecretPassw0rd",
            cps=1000,
            edge_addresses={"ashburn": "198.51.100.7:5060"},
        )
        registrar = self.manager.router.registrar
        self.manager = CallManager(
            self.service,
            self.media,
            Router(registrar, lambda: users, has_trunk=True, browsers=self.pages.online),
            self.runtime,
            via=via,
            contact=contact,
            record=self.records.append,
            trunk=TwilioTrunk(config),
            settings=settings,
            pages=self.pages,
        )

    def click(self, device: Device = "any", *, extension: str = "", person_id: int = 12) -> Call:
        """Alice clicks to call :data:`NUMBER` on ``device``."""
        call = self.manager.originate(
            "alice", NUMBER, user="alice", device=device, extension=extension, person_id=person_id
        )
        self.runtime.run()
        return call

    def invites_to_carrier(self) -> list[Request]:
        return self.service.requests("INVITE", self.carrier.addr)

    def phone_answers(self, call: Call) -> None:
        """Alice's phone answers: the number is dialled."""
        self.answer(self.alice, self.invite_to(self.alice), tag="alice")
        assert self.invites_to_carrier()

    def carrier_answers(self) -> None:
        [invite] = self.invites_to_carrier()
        self.answer(self.carrier, invite, tag="carrier", port=9000)


@pytest.fixture
def bench() -> Iterator[ClickBench]:
    bench = ClickBench(CallSettings(ring_timeout=RING_TIMEOUT))
    yield bench
    assert not bench.runtime.tasks, "work spawned and never run"


# -- which devices ring -------------------------------------------------------------------------


def test_any_device_rings_the_reps_phone_and_page_showing_the_number(bench: ClickBench) -> None:
    page = bench.open_page("alice")

    call = bench.click()

    phone_invite = bench.invite_to(bench.alice)
    assert str(phone_invite.from_.uri) == f"sip:{NUMBER}@{DOMAIN}"
    assert page.sent == [
        {"type": "incoming", "from": {"number": NUMBER, "name": None}, "call": call.id}
    ]
    assert [(leg.kind, leg.role) for leg in call.legs] == [
        ("phone", "caller"),
        ("browser", "caller"),
    ]
    assert not bench.invites_to_carrier()


def test_phone_device_rings_the_phone_only(bench: ClickBench) -> None:
    page = bench.open_page("alice")

    call = bench.click("phone")

    assert bench.invite_to(bench.alice)
    assert page.sent == []
    assert [leg.kind for leg in call.legs] == ["phone"]


def test_browser_device_rings_the_pages_only(bench: ClickBench) -> None:
    page = bench.open_page("alice")

    call = bench.click("browser")

    assert not bench.service.requests("INVITE")
    assert page.types() == ["incoming"]
    assert [leg.kind for leg in call.legs] == ["browser"]


@pytest.mark.parametrize(
    ("user", "device", "page", "words"),
    [
        ("dave", "any", False, "dave has neither a registered phone nor a dialer page open"),
        ("dave", "phone", True, "dave has no registered phone"),
        ("alice", "browser", False, "alice has no dialer page open"),
    ],
)
def test_nothing_to_ring_is_480_in_words_and_nothing_happens(
    bench: ClickBench, user: str, device: Device, page: bool, words: str
) -> None:
    if page:
        bench.open_page(user)
    with pytest.raises(CallError) as refused:
        bench.manager.originate(user, NUMBER, user=user, device=device)
    assert (refused.value.status, str(refused.value)) == (480, words)
    assert not bench.manager.calls and not bench.service.sent and not bench.records


def test_a_number_we_may_not_dial_fails_before_the_rep_rings(bench: ClickBench) -> None:
    with pytest.raises(CallError) as refused:
        bench.manager.originate("alice", "+1404555", user="alice")
    assert refused.value.status == 484  # Address Incomplete
    assert not bench.manager.calls and not bench.service.sent


def test_the_per_user_call_limit_counts_click_to_calls() -> None:
    bench = ClickBench(CallSettings(ring_timeout=RING_TIMEOUT, max_calls_per_user=1))
    first = bench.click("phone")

    with pytest.raises(CallError) as refused:
        bench.click("phone")
    assert refused.value.status == 486

    invite = bench.invite_to(bench.alice)
    bench.respond(bench.alice.reply(invite, 603, tag="alice"), invite)
    assert first.id not in bench.manager.calls
    bench.click("phone")  # room again


# -- the rep does not answer ---------------------------------------------------------------------


def test_the_rep_declining_on_the_phone_dials_nothing_and_logs_rejected(
    bench: ClickBench,
) -> None:
    call = bench.click("phone")
    invite = bench.invite_to(bench.alice)

    bench.respond(bench.alice.reply(invite, 603, tag="alice"), invite)
    bench.runtime.advance(RING_TIMEOUT)

    assert not bench.invites_to_carrier()
    assert call.id not in bench.manager.calls
    record = bench.ended_record()
    assert (record.hangup_cause, record.sip_status, record.answered_at) == ("rejected", 603, None)
    assert (record.direction, record.callee_e164, record.person_id) == ("outbound", NUMBER, 12)


def test_the_rep_declining_on_the_page_leaves_the_phone_ringing(bench: ClickBench) -> None:
    page = bench.open_page("alice")
    call = bench.click()

    bench.manager.page_hangup(page, call.id)
    bench.runtime.run()

    assert call.id in bench.manager.calls and not bench.service.requests("CANCEL")
    invite = bench.invite_to(bench.alice)
    bench.respond(bench.alice.reply(invite, 603, tag="alice"), invite)
    assert not bench.invites_to_carrier()
    assert bench.ended_record().hangup_cause == "rejected"


def test_the_rep_not_answering_dials_nothing_and_logs_no_answer(bench: ClickBench) -> None:
    page = bench.open_page("alice")
    call = bench.click()

    bench.runtime.advance(RING_TIMEOUT)

    assert len(bench.service.requests("CANCEL", bench.alice.addr)) == 1
    assert page.last("ended")["cause"] == "no_answer"
    assert not bench.invites_to_carrier()
    assert call.id not in bench.manager.calls
    assert bench.ended_record().hangup_cause == "no_answer"


# -- the rep answers -------------------------------------------------------------------------------


def test_the_rep_answering_on_the_phone_dials_the_number_with_the_reps_caller_id(
    bench: ClickBench,
) -> None:
    page = bench.open_page("alice")
    call = bench.click()
    assert not bench.invites_to_carrier()

    bench.phone_answers(call)

    assert page.last("ended")["cause"] == "answered_elsewhere"
    [invite] = bench.invites_to_carrier()
    assert invite.uri_text == f"sip:{NUMBER}@acme.pstn.ashburn.twilio.com"
    assert str(invite.from_.uri) == f"sip:{CALLER_ID}@acme.pstn.twilio.com"
    bench.carrier_answers()
    assert [(leg.kind, leg.role, leg.state) for leg in call.legs] == [
        ("phone", "caller", LegState.ANSWERED),
        ("browser", "caller", LegState.ENDED),
        ("trunk", "callee", LegState.ANSWERED),
    ]


def test_the_extension_goes_to_the_number_as_dtmf_after_it_answers(bench: ClickBench) -> None:
    call = bench.click("phone", extension="12,3")
    bench.phone_answers(call)
    [invite] = bench.invites_to_carrier()
    bench.respond(bench.carrier.reply(invite, 180, tag="carrier"), invite)
    bench.runtime.advance(5)
    assert not bench.media.of("dtmf")  # not to the rep, nor before the number answers

    bench.carrier_answers()
    bench.runtime.advance(0)

    trunk = bench.leg_of(call, "trunk")
    first = {"call_id": call.id, "leg": trunk.id, "digits": "12", "duration": 0.1}
    assert bench.media.of("dtmf") == [first]
    bench.runtime.advance(2 * 0.25 + 0.5)
    assert bench.media.of("dtmf") == [first, {**first, "digits": "3"}]


def test_the_rep_hanging_up_while_the_number_rings_cancels_it(bench: ClickBench) -> None:
    call = bench.click("phone")
    _, dialog = bench.answer(bench.alice, bench.invite_to(bench.alice), tag="alice")
    [invite] = bench.invites_to_carrier()
    bench.respond(bench.carrier.reply(invite, 180, tag="carrier"), invite)

    bench.request(bench.alice, bench.alice.request(dialog, "BYE"))

    [cancel] = bench.service.requests("CANCEL", bench.carrier.addr)
    assert cancel.via.branch == invite.via.branch
    assert call.id not in bench.manager.calls
    record = bench.ended_record()
    assert (record.hangup_cause, record.hung_up_by) == ("normal", "caller")
    assert record.legs[-1].sip_status == 487


def test_the_rep_answering_on_the_page_dials_the_number_and_the_call_is_logged(
    bench: ClickBench,
) -> None:
    page = bench.open_page("alice")
    call = bench.click("browser", extension="77")

    bench.run(bench.manager.page_answer(page, call.id, CHROME_OFFER))

    answered = page.last("answered")
    assert (answered["peer"], "sdp" in answered) == (NUMBER, True)
    [invite] = bench.invites_to_carrier()
    assert str(invite.from_.uri) == f"sip:{CALLER_ID}@acme.pstn.twilio.com"
    bench.carrier_answers()
    bench.runtime.advance(0)
    page_leg, trunk = call.legs
    assert (page_leg.kind, page_leg.role, page_leg.state) == (
        "browser",
        "caller",
        LegState.ANSWERED,
    )
    assert (trunk.kind, trunk.role, trunk.state) == ("trunk", "callee", LegState.ANSWERED)
    assert bench.media.of("dtmf") == [
        {"call_id": call.id, "leg": trunk.id, "digits": "77", "duration": 0.1}
    ]

    bench.manager.page_hangup(page, call.id)
    bench.runtime.run()

    assert len(bench.service.requests("BYE", bench.carrier.addr)) == 1
    record = bench.ended_record()
    assert (record.direction, record.callee_dialled, record.callee_e164) == (
        "outbound",
        NUMBER,
        NUMBER,
    )
    assert (record.user, record.caller, record.person_id, record.callee_extension) == (
        "alice",
        "alice",
        12,
        "77",
    )
    assert (record.hangup_cause, record.hung_up_by) == ("normal", "caller")
    assert [(leg.kind, leg.role, leg.peer) for leg in record.legs] == [
        ("browser", "caller", "alice"),
        ("trunk", "callee", NUMBER),
    ]


# -- the page places the call ----------------------------------------------------------------------


def test_a_page_dialling_a_person_logs_the_person_and_the_extension(bench: ClickBench) -> None:
    page = bench.open_page("alice")
    call = bench.run(
        bench.manager.page_dial(page, NUMBER, CHROME_OFFER, extension="9", person_id=40)
    )
    assert (call.person_id, call.extension) == (40, "9")
    record = bench.records[-1]
    assert (record.person_id, record.callee_extension) == (40, "9")

    with pytest.raises(CallError):
        bench.run(bench.manager.page_dial(page, "999", CHROME_OFFER, person_id=41))
    assert bench.records[-1].person_id == 41  # the refused attempt is the person's too
