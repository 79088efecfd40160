"""Conferencing decisions (voipcore.calls.conference) on the call manager's bench: who
may invite and remove, how the target is read, and the parties as shown."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from voipcore.calls import conference
from voipcore.calls.manager import CallError, CallSettings
from voipcore.calls.model import Call
from voipcore.dialer.numbers import InvalidNumber

from .test_calls_manager import RING_TIMEOUT, Bench


@pytest.fixture
def bench() -> Iterator[Bench]:
    bench = Bench(CallSettings(ring_timeout=RING_TIMEOUT))
    yield bench
    assert not bench.runtime.tasks, "work spawned and never run"


def states(bench: Bench, call: Call) -> list[tuple[str, str, str, str]]:
    return [(p.leg_id, p.peer, p.role, p.state) for p in conference.parties(bench.manager, call)]


def invited(bench: Bench) -> Call:
    """Alice and Bob talk; Alice invites Carol by extension, and Carol answers."""
    call, _, _, _ = bench.connect()
    leg = conference.invite(bench.manager, call.id, "203", user="alice", admin=False)
    bench.runtime.run()
    assert (leg.id, leg.role) == ("c", "colleague")
    assert states(bench, call)[-1] == ("c", "carol", "colleague", "ringing")
    bench.answer(bench.carol, bench.invite_to(bench.carol), tag="carol", port=7000)
    return call


def test_an_invited_colleague_joins_and_is_listed_with_the_others(bench: Bench) -> None:
    call = invited(bench)
    assert states(bench, call) == [
        ("a", "alice", "caller", "connected"),
        ("b", "bob", "callee", "connected"),
        ("c", "carol", "colleague", "connected"),
    ]
    [carol] = [p for p in conference.parties(bench.manager, call) if p.peer == "carol"]
    assert carol.joined_at is not None and carol.left_at is None
    assert carol.to_json()["kind"] == "phone"


def test_only_the_owner_or_an_admin_invites(bench: Bench) -> None:
    call, _, _, _ = bench.connect()
    with pytest.raises(CallError) as refused:
        conference.invite(bench.manager, call.id, "carol", user="bob", admin=False)
    assert refused.value.status == 403
    conference.invite(bench.manager, call.id, "carol", user="bob", admin=True)
    bench.runtime.run()
    with pytest.raises(CallError) as missing:
        conference.invite(bench.manager, "no-such-call", "carol", user="alice", admin=False)
    assert missing.value.status == 404


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("bob", "bob is already in this call."),
        ("202", "bob is already in this call."),
        ("dave", "dave has neither a registered phone nor a dialer page open"),
        ("299", "Not Found (299)"),
    ],
)
def test_a_target_that_cannot_join_is_refused_with_words(
    bench: Bench, target: str, words: str
) -> None:
    call, _, _, _ = bench.connect()
    with pytest.raises(CallError) as refused:
        conference.invite(bench.manager, call.id, target, user="alice", admin=False)
    assert (refused.value.status, refused.value.reason) == (409, words)
    assert [leg.id for leg in call.live_legs()] == ["a", "b"]


def test_a_number_that_cannot_be_is_refused_before_anything_rings(bench: Bench) -> None:
    call, _, _, _ = bench.connect()
    with pytest.raises(InvalidNumber):
        conference.invite(bench.manager, call.id, "+1 404 555", user="alice", admin=False)
    assert not bench.runtime.tasks


def test_a_call_not_answered_yet_takes_no_invite(bench: Bench) -> None:
    invite = bench.call(bench.alice, "bob")
    with pytest.raises(CallError) as refused:
        conference.invite(bench.manager, invite.call_id, "carol", user="alice", admin=False)
    assert refused.value.status == 409
    bench.manager.end(invite.call_id)
    bench.runtime.run()


def test_a_party_removes_itself_and_the_other_two_stay(bench: Bench) -> None:
    call = invited(bench)
    with pytest.raises(CallError) as refused:
        conference.remove(bench.manager, call.id, "a", user="carol", admin=False)
    assert refused.value.status == 403
    conference.remove(bench.manager, call.id, "c", user="carol", admin=False)
    bench.runtime.run()
    assert not call.ended
    assert [state for *_, state in states(bench, call)] == ["connected", "connected", "left"]
    with pytest.raises(CallError) as gone:
        conference.remove(bench.manager, call.id, "c", user="alice", admin=False)
    assert gone.value.status == 404


def test_the_call_is_visible_to_the_owner_an_admin_and_the_parties(bench: Bench) -> None:
    call = invited(bench)
    for user, admin in (("alice", False), ("carol", False), ("dave", True)):
        assert conference.visible(bench.manager, call.id, user=user, admin=admin) is call
    with pytest.raises(CallError) as refused:
        conference.visible(bench.manager, call.id, user="dave", admin=False)
    assert refused.value.status == 403
