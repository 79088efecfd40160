"""Dialling an outgoing leg (voipcore.calls.forking): the leg's final status from its
branches' (RFC 3261 §16.7), and the Dialler's branches with an in-memory service and clock."""

from __future__ import annotations

import pytest

from voipcore.calls.forking import Dialler, final_status
from voipcore.calls.model import Branch, Call, Leg
from voipcore.calls.routing import Contact
from voipcore.calls.signalling import Signalling
from voipcore.sip.message import Response

from .fakes import DOMAIN, FakeRuntime, FakeService, Phone, contact, via

# -- the leg's final status (§16.7 step 6) ------------------------------------------------


@pytest.mark.parametrize(
    ("finals", "status"),
    [
        # One branch: its own status, but a challenge is ours to meet, never the caller's
        # (§22.2): one we could not meet means we may not call.
        ([404], 404),
        ([401], 403),
        ([407], 403),
        # A 6xx beats everything, whichever branch it came from (§16.7 step 6).
        ([486, 603], 603),
        ([600, 486, 404], 600),
        ([404, 408, 604], 604),
        # A busy phone says more than a vague failure.
        ([404, 486], 486),
        ([503, 486, 480], 486),
        # A timeout reads as no answer.
        ([408], 480),
        ([408, 404], 480),
        ([487, 408], 480),
        # Otherwise the lowest status (lowest class first).
        ([503, 404], 404),
        ([500, 488, 415], 415),
        ([487, 503], 487),
        # A met challenge counts no more: its retry's final does.
        ([401, 486], 486),
        ([407, 503], 503),
        ([401, 407], 403),
    ],
)
def test_final_status(finals: list[int], status: int) -> None:
    assert final_status(finals) == status


# -- the Dialler ---------------------------------------------------------------------------


class Observer:
    """What the Dialler tells the call layer, kept in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Leg, int]] = []
        self.answered_by: list[Branch] = []

    def leg_progress(self, leg: Leg, response: Response) -> None:
        self.events.append(("progress", leg, response.status))

    def leg_answered(self, leg: Leg, branch: Branch, response: Response) -> None:
        self.events.append(("answered", leg, response.status))
        self.answered_by.append(branch)

    def leg_failed(self, leg: Leg, status: int, reason: str | None) -> None:
        self.events.append(("failed", leg, status))


RING_TIMEOUT = 20.0
DESK = Phone("bob", ("UDP", "203.0.113.20", 5060))
MOBILE = Phone("bob", ("TCP", "203.0.113.21", 5062))


class Bench:
    def __init__(self) -> None:
        self.runtime = FakeRuntime()
        self.service = FakeService()
        self.observer = Observer()
        sig = Signalling(self.service, self.runtime, domain=DOMAIN, via=via, contact=contact)
        self.dialler = Dialler(
            sig, self.runtime, self.observer, trunk=None, ring_timeout=RING_TIMEOUT
        )
        call = Call("call-1", "alice", "bob", "bob", "alice")
        self.leg = Leg(call, "b", "phone", "callee", "bob", "b-leg-call-id", incoming=False)
        self.leg.last_sdp = b"v=0\r\n"
        call.legs.append(self.leg)

    def ring(self, *phones: Phone) -> list[Branch]:
        contacts = [Contact(p.user, p.contact, p.addr) for p in phones]
        self.dialler.ring(self.leg, contacts, from_uri=f"sip:alice@{DOMAIN}", max_forwards=69)
        return list(self.leg.branches.values())

    def respond(self, phone: Phone, branch: Branch, status: int) -> None:
        response = phone.reply(branch.invite, status, tag=f"tag-{phone.host}")
        self.dialler.on_response(response, self.service.key_of(branch.invite))


@pytest.fixture
def bench() -> Bench:
    return Bench()


def test_ring_sends_one_invite_per_contact_with_its_own_from_tag(bench: Bench) -> None:
    bench.ring(DESK, MOBILE)
    desk, mobile = (s.request for s in bench.service.sent)
    assert [s.addr for s in bench.service.sent] == [DESK.addr, MOBILE.addr]
    assert (desk.uri_text, mobile.uri_text) == (DESK.contact, MOBILE.contact)
    assert desk.call_id == mobile.call_id == "b-leg-call-id"
    # A phone reached twice must not take the second INVITE for a loop (§8.2.2.2).
    assert desk.from_.tag != mobile.from_.tag
    assert str(desk.to) == f"<sip:bob@{DOMAIN}>" and desk.to.tag is None
    assert desk.max_forwards == 69 and desk.body == b"v=0\r\n"
    assert desk.via.transport == "UDP" and mobile.via.transport == "TCP"
    assert desk.headers.get("Session-Expires") == "1800"
    assert bench.runtime.pending() == [bench.runtime.now() + RING_TIMEOUT]
    assert [b.user for b in bench.leg.branches.values()] == ["bob", "bob"]


def test_provisional_responses_report_progress_but_100_does_not(bench: Bench) -> None:
    desk, _ = bench.ring(DESK, MOBILE)
    bench.respond(DESK, desk, 100)
    bench.respond(DESK, desk, 180)
    assert bench.observer.events == [("progress", bench.leg, 180)]
    assert desk.alive and desk.final == 0


def test_a_2xx_is_reported_with_the_branch_that_answered(bench: Bench) -> None:
    _, mobile = bench.ring(DESK, MOBILE)
    bench.respond(MOBILE, mobile, 200)
    assert bench.observer.events == [("answered", bench.leg, 200)]
    assert bench.observer.answered_by == [mobile]


def test_the_leg_fails_once_every_branch_has_failed_with_the_best_status(bench: Bench) -> None:
    desk, mobile = bench.ring(DESK, MOBILE)
    bench.respond(DESK, desk, 404)
    assert bench.observer.events == []
    bench.respond(MOBILE, mobile, 486)
    assert bench.observer.events == [("failed", bench.leg, 486)]


def test_a_phones_challenge_is_not_passed_on(bench: Bench) -> None:
    [desk] = bench.ring(DESK)
    bench.respond(DESK, desk, 401)
    assert bench.observer.events == [("failed", bench.leg, 403)]


def test_timer_b_on_every_branch_is_no_answer(bench: Bench) -> None:
    desk, mobile = bench.ring(DESK, MOBILE)
    bench.dialler.on_failure(bench.service.key_of(desk.invite), 408)
    bench.dialler.on_failure(bench.service.key_of(mobile.invite), 503)
    assert bench.observer.events == [("failed", bench.leg, 480)]


def test_422_is_retried_at_the_phones_min_se(bench: Bench) -> None:
    [desk] = bench.ring(DESK)
    too_small = DESK.reply(desk.invite, 422, tag="d", headers=[("Min-SE", "3600")])
    bench.dialler.on_response(too_small, bench.service.key_of(desk.invite))
    assert bench.observer.events == []
    first, retry = (s.request for s in bench.service.sent)
    assert retry.cseq.seq == 2 and retry.via.branch != first.via.branch
    assert retry.call_id == first.call_id and retry.from_.tag == first.from_.tag
    assert retry.headers.get("Session-Expires") == "3600"
    assert retry.headers.get("Min-SE") == "3600"
    # A second 422 is not retried again (RFC 4028 §7.3): the leg fails.
    [_, again] = bench.leg.branches.values()
    bench.respond(DESK, again, 422)
    assert bench.observer.events == [("failed", bench.leg, 422)]


def test_ring_timeout_cancels_pending_branches_and_fails_with_480(bench: Bench) -> None:
    desk, mobile = bench.ring(DESK, MOBILE)
    bench.respond(DESK, desk, 486)
    bench.runtime.advance(RING_TIMEOUT - 1)
    assert bench.service.requests("CANCEL") == []
    bench.runtime.advance(1)
    [cancel] = bench.service.requests("CANCEL")
    assert bench.service.sent[-1].addr == MOBILE.addr
    assert cancel.via.branch == mobile.invite.via.branch
    assert cancel.cseq.method == "CANCEL" and cancel.cseq.seq == 1
    assert bench.observer.events == [("failed", bench.leg, 480)]
    assert bench.leg.timer_handle is None


def test_cancel_keeps_the_answering_branch(bench: Bench) -> None:
    desk, mobile = bench.ring(DESK, MOBILE)
    bench.dialler.cancel(bench.leg, keep=desk)
    assert [s.addr for s in bench.service.sent if s.request.method == "CANCEL"] == [MOBILE.addr]
    assert (desk.final, mobile.final) == (0, 487)
    # Cancelled already: not again.
    bench.dialler.cancel(bench.leg)
    assert len(bench.service.requests("CANCEL")) == 2


def test_responses_after_forget_are_ignored(bench: Bench) -> None:
    [desk] = bench.ring(DESK)
    key = bench.service.key_of(desk.invite)
    assert bench.dialler.owns(key)
    bench.dialler.forget(bench.leg)
    assert not bench.dialler.owns(key)
    bench.respond(DESK, desk, 200)
    assert bench.observer.events == []
