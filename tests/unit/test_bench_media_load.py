"""Receiver-side frame counting of the media benchmark's audio mode."""

from __future__ import annotations

import numpy as np

from benchmarks.media_load import RTP_PORTS, TICK_NS, Frames, missed_ticks, stream_figures
from media.workers import split_ports

SECOND = 1_000_000_000
#: The window starts 1 s in, at a phase unrelated to the ticks, and lasts 10 s.
START = SECOND + 7_300_000
END = START + 10 * SECOND


def _stream(
    ticks: int = 600,
    *,
    first_seq: int = 100,
    phase: int = 3_000_000,
    jitter_ms: float = 4.0,
    seed: int = 1,
) -> tuple[list[int], list[int]]:
    """Sequence numbers and arrival times of a punctual 20 ms stream from time 0."""
    rng = np.random.default_rng(seed)
    arrivals = phase + np.arange(ticks) * TICK_NS + rng.uniform(0, jitter_ms * 1e6, ticks)
    seqs = [(first_seq + k) % 65536 for k in range(ticks)]
    return seqs, [int(a) for a in arrivals]


def _skip(arrivals: list[int], at: int, ticks: int) -> list[int]:
    """The engine stalls before frame ``at`` and skips ``ticks`` ticks: later frames come later."""
    return arrivals[:at] + [a + ticks * TICK_NS for a in arrivals[at:]]


def test_punctual_stream_owes_and_receives_50_frames_a_second() -> None:
    for phase in (0, 7_299_999, 7_300_000, 7_300_001, 19_000_000):
        assert stream_figures(*_stream(phase=phase), START, END) == Frames(500, 500, 0)


def test_sequence_wrap_changes_nothing() -> None:
    assert stream_figures(*_stream(first_seq=65500), START, END) == Frames(500, 500, 0)


def test_lost_packets_are_missing_frames_not_missed_ticks() -> None:
    seqs, arrivals = _stream()
    keep = [k for k in range(len(seqs)) if k not in (200, 201, 400)]
    figures = stream_figures([seqs[k] for k in keep], [arrivals[k] for k in keep], START, END)
    assert figures == Frames(500, 497, 0)


def test_stall_of_n_ticks_counts_n_missed_and_n_lost() -> None:
    seqs, arrivals = _stream()
    # Five ticks skipped at 6 s: no sequence number for them, and no frame either.
    assert stream_figures(seqs, _skip(arrivals, 300, 5), START, END) == Frames(500, 495, 5)


def test_two_stalls_add_up() -> None:
    seqs, arrivals = _stream()
    arrivals = _skip(_skip(arrivals, 150, 1), 450, 3)
    assert stream_figures(seqs, arrivals, START, END) == Frames(500, 496, 4)


def test_stall_at_the_start_of_the_window_counts() -> None:
    seqs, arrivals = _stream()
    first_inside = next(k for k, a in enumerate(arrivals) if a >= START)
    assert stream_figures(seqs, _skip(arrivals, first_inside, 2), START, END).missed == 2


def test_stall_before_the_window_does_not_count() -> None:
    seqs, arrivals = _stream()
    assert stream_figures(seqs, _skip(arrivals, 20, 4), START, END) == Frames(500, 500, 0)


def test_silent_or_stopped_stream() -> None:
    assert stream_figures([], [], START, END) == Frames(500, 0, 0)
    seqs, arrivals = _stream(ticks=300)  # stops 6 s in: frames 51-299 are in the window
    assert stream_figures(seqs, arrivals, START, END) == Frames(500, 249, 0)


def test_missed_ticks_take_each_workers_median() -> None:
    low0, low1 = (low for low, _ in split_ports(*RTP_PORTS, 2))
    streams = {
        ("127.0.0.1", low0): Frames(500, 500, 0),
        ("127.0.0.1", low0 + 2): Frames(500, 500, 1),  # one odd stream
        ("127.0.0.1", low0 + 4): Frames(500, 500, 0),
        ("127.0.0.1", low1): Frames(500, 497, 3),
        ("127.0.0.1", low1 + 2): Frames(500, 497, 3),
    }
    assert missed_ticks(streams, 2) == 3
