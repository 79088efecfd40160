"""Call recording (voipcore.calls.recording) on the call manager's in-memory bench.

Alice calls Bob and his desk phone answers: leg ``a`` is Alice (the rep), leg ``b`` Bob.
The engine is :class:`FakeMedia` (its ``record`` and ``play`` commands are checked); the
index is a list.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from voipcore.calls.manager import CallError, CallSettings
from voipcore.calls.model import Call, Leg, LegState
from voipcore.calls.recording import (
    BEEP_HZ,
    BEEP_SECONDS,
    Policy,
    Recordings,
    RecordingSettings,
    RecordingState,
    rep_leg,
)
from voipcore.store.calls import LegRole
from voipcore.store.recordings import Recording

from .test_calls_manager import Bench

RING_TIMEOUT = 30.0


class RecordingBench(Bench):
    """The manager bench with recording on, per ``policy`` and ``announce``."""

    def __init__(self, directory: Path, policy: Policy = "rep", announce: str = "beep") -> None:
        super().__init__(CallSettings(ring_timeout=RING_TIMEOUT))
        self.indexed: list[Recording] = []

        async def index(recording: Recording) -> None:
            self.indexed.append(recording)

        settings = RecordingSettings(directory, policy, "beep" if announce == "beep" else "none")
        self.recordings = Recordings(self.manager, settings, index)

    def act(self, call: Call, action: str, user: str = "alice", admin: bool = False) -> str:
        live = asyncio.run(self.recordings.act(call.id, action, user=user, admin=admin))
        return live.state.value

    def record_commands(self) -> list[dict[str, object]]:
        return self.media.of("record")

    def beeps(self) -> list[str]:
        """The legs a recording beep was played to, in order."""
        return [
            str(args["leg"])
            for args in self.media.of("play")
            if args.get("tone") == [BEEP_HZ] and args.get("duration") == BEEP_SECONDS
        ]


def test_the_rep_starts_pauses_resumes_and_stops_with_a_beep_on_start_and_resume(
    tmp_path: Path,
) -> None:
    bench = RecordingBench(tmp_path / "recordings")
    call, *_ = bench.connect()

    assert bench.act(call, "start") == "recording"
    [start] = bench.record_commands()
    assert start["action"] == "start" and start["channels"] == ["a", "*"]  # the rep left
    path = Path(str(start["file"]))
    assert path.parent == tmp_path / "recordings" and path.parent.is_dir()
    assert bench.beeps() == ["a", "b"]
    assert bench.recordings.state(call.id) is RecordingState.RECORDING

    assert bench.act(call, "pause") == "paused"
    assert bench.beeps() == ["a", "b"]  # no beep for a pause
    assert bench.act(call, "resume") == "recording"
    assert bench.beeps() == ["a", "b", "a", "b"]
    assert bench.act(call, "stop") == "stopped"
    assert [args["action"] for args in bench.record_commands()] == [
        "start",
        "pause",
        "resume",
        "stop",
    ]

    [indexed] = bench.indexed
    assert (indexed.call_id, indexed.path) == (call.id, str(path))
    assert path.stem == indexed.id and len(indexed.id) >= 24  # random, unguessable
    assert indexed.ended_at is not None and indexed.ended_at >= indexed.started_at
    assert bench.recordings.state(call.id) is RecordingState.STOPPED
    # A second recording of the same call is a new file.
    bench.act(call, "start")
    assert bench.record_commands()[-1]["file"] != str(path)


def test_moves_the_state_does_not_allow_are_refused_in_words(tmp_path: Path) -> None:
    bench = RecordingBench(tmp_path)
    call, *_ = bench.connect()
    with pytest.raises(CallError, match="Nothing to pause: the call is not being recorded"):
        bench.act(call, "pause")
    bench.act(call, "start")
    with pytest.raises(CallError, match=r"already being recorded \(recording\)") as refused:
        bench.act(call, "start")
    assert refused.value.status == 409
    with pytest.raises(CallError, match="Cannot resume a recording that is recording"):
        bench.act(call, "resume")


def test_only_the_calls_owner_or_an_admin_records_a_call_in_progress(tmp_path: Path) -> None:
    bench = RecordingBench(tmp_path)
    call, *_ = bench.connect()
    with pytest.raises(CallError, match="another user's call") as refused:
        bench.act(call, "start", user="bob")
    assert refused.value.status == 403
    assert bench.act(call, "start", user="carol", admin=True) == "recording"
    with pytest.raises(CallError, match="no call nope in progress") as missing:
        asyncio.run(bench.recordings.act("nope", "start", user="alice", admin=False))
    assert missing.value.status == 404


def test_a_call_not_connected_yet_cannot_be_recorded(tmp_path: Path) -> None:
    bench = RecordingBench(tmp_path)
    invite = bench.call(bench.alice, "bob")
    call = bench.manager.calls[invite.call_id]
    with pytest.raises(CallError, match="not connected yet") as refused:
        bench.act(call, "start")
    assert refused.value.status == 409 and not bench.record_commands()


def test_policy_never_refuses_every_action(tmp_path: Path) -> None:
    bench = RecordingBench(tmp_path, policy="never")
    call, *_ = bench.connect()
    with pytest.raises(CallError, match="Recording is turned off on this server"):
        bench.act(call, "start")
    assert not bench.record_commands()


def test_policy_always_records_from_the_answer_and_may_pause_but_not_stop(
    tmp_path: Path,
) -> None:
    bench = RecordingBench(tmp_path, policy="always")
    call, *_ = bench.connect()
    [start] = bench.record_commands()
    assert (start["action"], start["channels"]) == ("start", ["a", "*"])
    assert bench.beeps() == ["a", "b"]
    with pytest.raises(CallError, match="pause it instead") as refused:
        bench.act(call, "stop")
    assert refused.value.status == 409
    assert bench.act(call, "pause") == "paused"


def test_announce_none_plays_no_beep(tmp_path: Path) -> None:
    bench = RecordingBench(tmp_path, announce="none")
    call, *_ = bench.connect()
    bench.act(call, "start")
    bench.act(call, "pause")
    bench.act(call, "resume")
    assert not bench.media.of("play")


def test_a_call_ending_while_recorded_indexes_its_recording(tmp_path: Path) -> None:
    bench = RecordingBench(tmp_path)
    call, invite, alice_dialog, _ = bench.connect()
    bench.act(call, "start")
    bench.runtime.advance(5.0)
    bench.request(bench.alice, bench.alice.request(alice_dialog, "BYE"))

    [indexed] = bench.indexed
    assert indexed.call_id == call.id
    assert indexed.ended_at == pytest.approx(indexed.started_at + 5.0)
    # The engine closed the file with the call: no separate stop.
    assert [args["action"] for args in bench.record_commands()] == ["start"]
    assert bench.recordings.state(call.id) is RecordingState.STOPPED


def test_dialer_pages_in_the_call_hear_the_recording_state(tmp_path: Path) -> None:
    bench = RecordingBench(tmp_path)
    call, *_ = bench.connect()
    sent: list[dict[str, object]] = []

    class Page:
        user = "alice"

        def send(self, message: dict[str, object]) -> None:
            sent.append(message)

    call.legs[0].kind, call.legs[0].page = "browser", Page()
    bench.act(call, "start")
    bench.act(call, "pause")
    assert sent == [
        {"type": "recording", "state": "recording", "call": call.id},
        {"type": "recording", "state": "paused", "call": call.id},
    ]


def leg(call: Call, leg_id: str, role: LegRole, state: LegState = LegState.ANSWERED) -> Leg:
    made = Leg(call, leg_id, "trunk", role, "x", f"sip-{leg_id}", incoming=role == "caller")
    made.state = state
    call.legs.append(made)
    return made


def test_the_rep_is_the_caller_except_on_calls_in_from_the_trunk() -> None:
    outbound = Call("c1", "alice", "+14045551234", "+14045551234", "alice", "outbound")
    caller = leg(outbound, "a", "caller")
    assert rep_leg(outbound) is None  # nobody to talk to yet
    leg(outbound, "b", "callee")
    assert rep_leg(outbound) is caller

    inbound = Call("c2", "+14045551234", "alice", "+14045550100", "alice", "inbound")
    leg(inbound, "a", "caller")
    callee = leg(inbound, "b", "callee")
    assert rep_leg(inbound) is callee

    ringing = Call("c3", "alice", "bob", "bob", "alice")
    leg(ringing, "a", "caller")
    leg(ringing, "b", "callee", LegState.DIALLING)
    assert rep_leg(ringing) is None
