"""Tests for the adaptive jitter buffer (media/jitter.py): explicit clock, no sleeps."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pytest

from media.jitter import (
    Frame,
    JitterBuffer,
    JitterBufferError,
    PlayoutState,
)

PTIME = 0.02
SAMPLES = 160
NET = 0.040  # one-way network delay of an undisturbed packet
PHASE = 0.007  # the engine's 20 ms tick is not aligned with the sender's clock
SSRC = 0x5EED


@dataclass(frozen=True)
class Pkt:
    seq: int
    ts: int
    arrival: float
    marker: bool = False
    ssrc: int = SSRC

    @property
    def payload(self) -> bytes:
        return self.seq.to_bytes(2, "big")


def stream(
    count: int,
    *,
    seq0: int = 1000,
    ts0: int = 160_000,
    start: int = 0,
    jitter: np.ndarray | None = None,
) -> list[Pkt]:
    """Packets ``start``..``start + count - 1`` of a 20 ms stream, sent at ``i * 20 ms``."""
    out = []
    for k in range(count):
        i = start + k
        extra = 0.0 if jitter is None else float(jitter[k])
        out.append(Pkt((seq0 + i) % 65536, (ts0 + i * SAMPLES) % 2**32, i * PTIME + NET + extra))
    return out


@dataclass
class Tick:
    now: float
    frame: Frame | None
    target: float
    current: float
    discarded: int


def run(jb: JitterBuffer, packets: list[Pkt], until: float, phase: float = PHASE) -> list[Tick]:
    """Deliver ``packets`` by arrival time and pop every 20 ms until ``until``."""
    pending = sorted(packets, key=lambda p: p.arrival)
    ticks: list[Tick] = []
    k = 0
    n = 0
    while (now := n * PTIME + phase) < until:
        while k < len(pending) and pending[k].arrival <= now:
            p = pending[k]
            jb.push(p.seq, p.ts, p.ssrc, p.payload, p.arrival, p.marker)
            k += 1
        ticks.append(Tick(now, jb.pop(now), jb.target_delay, jb.current_delay, jb.stats.discarded))
        n += 1
    return ticks


def played(ticks: list[Tick]) -> list[Tick]:
    return [t for t in ticks if t.frame is not None and not t.frame.lost]


def seqs(ticks: list[Tick]) -> list[int]:
    return [t.frame.seq for t in played(ticks) if t.frame is not None]


def test_returns_none_while_buffering_then_plays() -> None:
    jb = JitterBuffer()
    assert jb.pop(0.0) is None
    ticks = run(jb, stream(50), 1.2)
    assert ticks[0].frame is None and ticks[2].frame is None
    assert jb.state is PlayoutState.PLAYING
    assert played(ticks)[0].frame == Frame(b"\x03\xe8", 160_000, 1000, False)


def test_in_order_stream_plays_with_constant_delay() -> None:
    jb = JitterBuffer()
    ticks = run(jb, stream(200), 4.2)
    good = played(ticks)
    assert seqs(ticks) == list(range(1000, 1200))
    delays = {round(t.now - (t.frame.seq - 1000) * PTIME - NET, 9) for t in good if t.frame}
    assert len(delays) == 1
    assert jb.min_delay - PTIME / 2 <= delays.pop() <= jb.min_delay + PTIME / 2
    assert {round(t.current, 9) for t in good} == {round(good[0].current, 9)}
    assert jb.stats.lost == jb.stats.late == jb.stats.discarded == 0


@pytest.mark.parametrize("phase", [0.0, 0.004, 0.009, 0.011, 0.017])
def test_delay_settles_at_the_reachable_delay_nearest_the_target(phase: float) -> None:
    jb = JitterBuffer(min_delay=0.03)
    ticks = run(jb, stream(100), 2.5, phase)
    assert {round(t.current, 9) for t in played(ticks)} == {round(played(ticks)[0].current, 9)}
    assert abs(played(ticks)[0].current - 0.03) <= PTIME / 2 + 1e-9


def test_reordered_packets_play_in_sequence() -> None:
    packets = stream(100)
    packets[40] = replace(packets[40], arrival=packets[41].arrival + 0.001)
    packets[60] = replace(packets[60], arrival=packets[62].arrival + 0.001)
    jb = JitterBuffer(min_delay=0.06)
    ticks = run(jb, packets, 2.5)
    assert seqs(ticks) == list(range(1000, 1100))
    assert jb.stats.late == jb.stats.lost == 0


def test_packet_overtaken_by_its_successor_is_waited_for() -> None:
    packets = stream(400)
    packets[300] = replace(packets[300], arrival=packets[301].arrival + 0.01)
    jb = JitterBuffer()  # 20 ms target: the successor is already there when 300 is due
    ticks = run(jb, packets, 8.5)
    assert seqs(ticks)[:302] == list(range(1000, 1302))
    assert jb.stats.late == 0
    # Waiting added a frame of delay, given back by one drop a drop_interval later.
    assert jb.stats.discarded == 1
    assert len(seqs(ticks)) == 399


def test_duplicates_are_discarded_and_counted() -> None:
    packets = stream(100)
    again = [replace(packets[10], arrival=packets[10].arrival + 0.003)]
    again.append(replace(packets[20], arrival=packets[20].arrival + 0.5))  # after it was played
    jb = JitterBuffer()
    ticks = run(jb, packets + again, 2.5)
    assert seqs(ticks) == list(range(1000, 1100))
    assert jb.stats.duplicates == 2
    assert jb.stats.late == 0


def test_late_packet_is_discarded_and_counted() -> None:
    packets = stream(400)
    packets[300] = replace(packets[300], arrival=packets[300].arrival + 0.15)
    jb = JitterBuffer(max_delay=0.06)  # too short to wait for it
    ticks = run(jb, packets, 8.5)
    assert seqs(ticks) == [s for s in range(1000, 1400) if s != 1300]
    assert jb.stats.late == 1
    # One straggler in a full window does not move the 99th percentile.
    assert jb.stats.discarded == 0
    assert {t.target for t in ticks} == {jb.min_delay}


def test_lost_packet_yields_a_lost_frame_in_its_slot() -> None:
    packets = [p for p in stream(100) if p.seq != 1050]
    jb = JitterBuffer()
    ticks = run(jb, packets, 2.5)
    slot = {t.frame.timestamp: t for t in ticks if t.frame is not None}
    missing = slot[160_000 + 50 * SAMPLES]
    assert missing.frame == Frame(None, 160_000 + 50 * SAMPLES, 1050, True)
    before, after = slot[160_000 + 49 * SAMPLES], slot[160_000 + 51 * SAMPLES]
    assert missing.now - before.now == pytest.approx(PTIME)
    assert after.now - before.now == pytest.approx(2 * PTIME)
    assert seqs(ticks) == [s for s in range(1000, 1100) if s != 1050]
    assert jb.stats.lost == 1


def spike(count: int, at: int, height: float, *more: int) -> list[Pkt]:
    """A stream whose path stalls for ``height`` at packet ``at`` (and ``more``), then drains."""
    packets = stream(count)
    for start in (at, *more):
        release = start * PTIME + height + NET
        for i in range(start, count):
            if packets[i].arrival >= release:
                break
            packets[i] = replace(packets[i], arrival=release + 0.0005 * (i - start))
    return packets


def test_delay_spike_raises_target_at_once_and_loses_nothing() -> None:
    jb = JitterBuffer()
    ticks = run(jb, spike(400, 100, 0.2), 8.0)
    release = 100 * PTIME + 0.2 + NET
    before = [t for t in ticks if t.now < release]
    after = [t for t in ticks if t.now >= release]
    assert before[-1].target == pytest.approx(jb.min_delay, abs=0.005)
    # The burst arrives between two ticks; the target is up by the very next one.
    assert after[0].target > 0.15
    # Meanwhile the playout point stalled on the first delayed frame.
    stalled = [t.frame for t in before if t.frame is not None and t.frame.lost]
    assert len(stalled) >= 8
    assert {f.timestamp for f in stalled} == {160_000 + 100 * SAMPLES}
    assert seqs(ticks)[:120] == list(range(1000, 1120))
    assert jb.stats.late == 0


def test_target_shrinks_slowly_after_a_spike() -> None:
    jb = JitterBuffer()
    ticks = run(jb, spike(800, 100, 0.2), 16.0)
    release = 100 * PTIME + 0.2 + NET
    after = [t for t in ticks if t.now >= release + PTIME]
    steps = [a.target - b.target for a, b in zip(after, after[1:], strict=False)]
    assert max(steps) <= jb.shrink_rate * PTIME + 1e-9
    assert min(t.target for t in after if t.now < release + 4.0) > 0.15
    assert after[-1].target == pytest.approx(jb.min_delay, abs=0.005)


@pytest.mark.parametrize("marker", [True, False])
def test_delay_is_cut_in_a_pause_not_in_speech(marker: bool) -> None:
    jb = JitterBuffer(drop_interval=math.inf)
    talk = spike(500, 100, 0.2)  # 10 s of speech, then a 1 s pause, then more speech
    # Without the marker bit, the timestamp gap alone tells the pause from a loss.
    more = [replace(p, marker=marker and i == 0) for i, p in enumerate(stream(100, start=550))]
    ticks = run(jb, talk + more, 13.5)
    speech = [t for t in played(ticks) if 4.0 < t.now < 10.0]
    assert min(t.current for t in speech) > 0.15
    assert speech[-1].target < 0.05  # the target has come down, the delay has not
    resumed = next(t for t in played(ticks) if t.frame is not None and t.frame.seq == 1550)
    assert resumed.current <= resumed.target + PTIME / 2
    assert jb.stats.discarded == 0
    assert seqs(ticks) == list(range(1000, 1500)) + list(range(1550, 1650))


def test_recurring_spikes_hold_the_target_up() -> None:
    jb = JitterBuffer()
    ticks = run(jb, spike(1000, 100, 0.2, 450, 800), 20.0)  # spikes 7 s apart
    # 6 s after the second spike its delays have left the window, yet the target holds.
    assert min(t.target for t in ticks if 15.0 < t.now < 16.0) > 0.15
    assert jb.stats.late == 0


@pytest.mark.parametrize("marker", [True, False])
def test_talker_with_pauses_sheds_delay_in_pauses_only(marker: bool) -> None:
    """With silence suppression (RFC 3551 §4.1) no received frame is dropped to cut delay."""
    slots = stream(800)
    packets = [  # 1.5 s talkspurts, 0.5 s pauses; sequence numbers do not skip the pauses
        replace(slots[i], seq=1000 + k, marker=marker and i % 100 == 0 and i > 0)
        for k, i in enumerate(i for i in range(800) if i % 100 < 75)
    ]
    release = packets[160].arrival + 0.2  # a 200 ms spike in the third talkspurt
    for i in range(160, 170):
        packets[i] = replace(packets[i], arrival=release + 0.0005 * (i - 160))
    jb = JitterBuffer()
    ticks = run(jb, packets, 16.5)
    assert seqs(ticks) == list(range(1000, 1600))
    assert jb.stats.discarded == jb.stats.late == 0
    # Once the target has come down, the next pause takes the delay down with it.
    last = next(t for t in played(ticks) if t.frame is not None and t.frame.seq == 1525)
    assert last.current < 0.05


def test_in_speech_at_most_one_frame_is_dropped_per_interval() -> None:
    jb = JitterBuffer()
    ticks = run(jb, spike(800, 100, 0.3), 16.0)
    drops = [b.now for a, b in zip(ticks, ticks[1:], strict=False) if b.discarded > a.discarded]
    assert len(drops) >= 5
    assert min(np.diff(drops)) >= jb.drop_interval - 1e-9
    assert played(ticks)[-1].current < 0.05


def test_sequence_number_wraps() -> None:
    jb = JitterBuffer()
    ticks = run(jb, stream(100, seq0=65500), 2.5)
    assert seqs(ticks) == [(65500 + i) % 65536 for i in range(100)]
    assert jb.stats.late == jb.stats.duplicates == jb.stats.resyncs == 0


def test_timestamp_wraps() -> None:
    jb = JitterBuffer()
    ticks = run(jb, stream(100, ts0=2**32 - 30 * SAMPLES), 2.5)
    assert [t.frame.timestamp for t in played(ticks) if t.frame] == [
        (2**32 - 30 * SAMPLES + i * SAMPLES) % 2**32 for i in range(100)
    ]
    assert jb.stats.lost == jb.stats.resyncs == 0


def test_ssrc_change_flushes_and_restarts() -> None:
    first = stream(100)
    second = [replace(p, ssrc=0xBEEF) for p in stream(100, seq0=7, ts0=999_999, start=100)]
    jb = JitterBuffer()
    ticks = run(jb, first + second, 4.5)
    assert jb.stats.resyncs == 1
    switch = second[0].arrival
    assert any(t.frame is None for t in ticks if switch < t.now < switch + 0.03)
    got = seqs(ticks)
    assert got[-100:] == [7 + 100 + i for i in range(100)]
    assert jb.stats.discarded == 100 - got.index(107)


def test_straggler_of_the_replaced_ssrc_does_not_flip_back() -> None:
    first = stream(100)
    second = [replace(p, ssrc=0xBEEF) for p in stream(100, seq0=7, ts0=999_999, start=100)]
    straggler = replace(first[99], seq=first[99].seq + 1, arrival=second[2].arrival + 0.001)
    jb = JitterBuffer()
    ticks = run(jb, [*first, *second, straggler], 4.5)
    assert jb.stats.resyncs == 1
    assert jb.stats.late == 1
    assert seqs(ticks)[-100:] == [7 + 100 + i for i in range(100)]


def test_timestamp_jump_resyncs() -> None:
    jumped = [replace(p, ts=p.ts + 80_000) for p in stream(100, start=100)]  # +10 s
    jb = JitterBuffer()
    ticks = run(jb, stream(100) + jumped, 4.5)
    assert jb.stats.resyncs == 1
    assert seqs(ticks)[-100:] == list(range(1100, 1200))
    assert jb.stats.late == 0


def test_target_and_delay_stay_between_min_and_max() -> None:
    rng = np.random.default_rng(7)
    jb = JitterBuffer(min_delay=0.02, max_delay=0.2)
    ticks = run(jb, stream(1000, jitter=rng.uniform(0.0, 0.8, 1000)), 22.0)
    assert max(t.target for t in ticks) == pytest.approx(0.2)
    assert max(t.current for t in played(ticks)) <= 0.2 + PTIME / 2 + 1e-9
    assert jb.stats.resyncs == 0

    calm = JitterBuffer(min_delay=0.06, max_delay=0.12)
    ticks = run(calm, stream(200), 4.5)
    assert {t.target for t in ticks} == {0.06}
    assert all(0.05 <= t.current <= 0.07 for t in played(ticks))


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("sequence number", {"seq": 65536}),
        ("timestamp", {"timestamp": -1}),
        ("SSRC", {"ssrc": 2**32}),
    ],
)
def test_rejects_fields_outside_their_rtp_range(field: str, kwargs: dict[str, int]) -> None:
    args = {"seq": 1, "timestamp": 1, "ssrc": 1} | kwargs
    with pytest.raises(JitterBufferError, match=field):
        JitterBuffer().push(args["seq"], args["timestamp"], args["ssrc"], b"", 0.0)


def test_rejects_inconsistent_configuration() -> None:
    with pytest.raises(ValueError, match="min_delay"):
        JitterBuffer(min_delay=0.3, max_delay=0.2)
