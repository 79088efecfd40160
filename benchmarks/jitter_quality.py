"""Jitter-buffer quality: added delay against late loss, ours vs a fixed buffer vs an oracle.

Run ``python -m benchmarks.jitter_quality``.  Each trace of :mod:`benchmarks.traces`
is replayed through

* **ours**: :class:`media.jitter.JitterBuffer` with its defaults;
* **fixed 60 ms**: the same class pinned at ``min_delay = max_delay = 0.06``;
* **oracle**: knows every arrival in advance and plays each frame at the first
  tick after ``send timestamp + C``, with the smallest constant ``C`` whose loss
  is no worse than ours (``oracle=``), and again with loss <= 1 % (``oracle1%``).

All three play on the same 20 ms tick grid; each trace is replayed at four tick
phases (0, 5, 10, 15 ms) and the figures averaged, so that the tick
quantisation does not favour one of them.  *Added delay* is playout time minus
send time minus the trace's fastest one-way delay, averaged over played frames.
*Loss* is the share of packets that arrived but were never played: for the
jitter buffers late packets plus received frames dropped to cut delay.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from benchmarks.traces import PTIME, Trace, all_traces
from media.jitter import JitterBuffer

PHASES = (0.0, 0.005, 0.010, 0.015)
ORACLE_STEP = 0.00025
PLAYERS = ("ours", "fixed", "oracle", "oracle1")


@dataclass(frozen=True, slots=True)
class Outcome:
    """Mean added delay (s) and loss share of one player on one trace."""

    delay: float
    loss: float


def _arrived(trace: Trace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index, send time and arrival of every packet that arrived."""
    idx = np.array([i for i, p in enumerate(trace.packets) if p.arrival is not None])
    send = np.array([trace.packets[i].send_time for i in idx])
    arrival = np.array([trace.packets[i].arrival for i in idx], dtype=float)
    return idx, send, arrival


def _media_time(trace: Trace, idx: np.ndarray) -> np.ndarray:
    """Each packet's timestamp as seconds since the first one, on the sender's clock."""
    ts0 = trace.packets[0].timestamp
    ticks = [(trace.packets[i].timestamp - ts0) % 2**32 for i in idx]
    return np.array(ticks, dtype=float) / trace.clock_rate


def replay(trace: Trace, make: Callable[[], JitterBuffer], phase: float) -> Outcome:
    """Feed ``trace`` to a fresh buffer and pop it every 20 ms at ``phase`` past the grid."""
    idx, send, arrival = _arrived(trace)
    base = float(np.min(arrival - send))
    order = np.argsort(arrival, kind="stable")
    by_seq = {trace.packets[i].seq: i for i in idx}
    jb = make()
    played: dict[int, float] = {}
    tick = math.floor(arrival[order[0]] / PTIME) * PTIME + phase
    end = float(arrival.max()) + 1.0
    k = 0
    while tick < end:
        while k < len(order) and arrival[order[k]] <= tick:
            p = trace.packets[idx[order[k]]]
            jb.push(p.seq, p.timestamp, 0x1234, b"", arrival[order[k]], p.marker)
            k += 1
        frame = jb.pop(tick)
        if frame is not None and not frame.lost:
            played[by_seq[frame.seq]] = tick
        tick += PTIME
    delays = [t - trace.packets[i].send_time - base for i, t in played.items()]
    return Outcome(float(np.mean(delays)), 1.0 - len(played) / len(idx))


def oracle(trace: Trace, phase: float, max_loss: float) -> Outcome:
    """Smallest constant playout offset on the tick grid with loss <= ``max_loss``."""
    idx, send, arrival = _arrived(trace)
    base = float(np.min(arrival - send))
    nominal = _media_time(trace, idx)
    lo = float(np.min(arrival - nominal))
    hi = float(np.max(arrival - nominal)) + PTIME
    offsets = np.arange(lo, hi + ORACLE_STEP, ORACLE_STEP)
    playout = np.ceil((nominal[None, :] + offsets[:, None] - phase) / PTIME) * PTIME + phase
    on_time = arrival[None, :] <= playout + 1e-9
    loss = 1.0 - on_time.mean(axis=1)
    best = int(np.argmax(loss <= max_loss + 1e-12))
    delay = playout[best][on_time[best]] - send[on_time[best]] - base
    return Outcome(float(np.mean(delay)), float(loss[best]))


def _mean(outcomes: list[Outcome]) -> Outcome:
    return Outcome(
        float(np.mean([o.delay for o in outcomes])), float(np.mean([o.loss for o in outcomes]))
    )


def evaluate(trace: Trace) -> dict[str, Outcome]:
    """Ours, fixed and both oracles on ``trace``, averaged over the tick phases."""
    ours = [replay(trace, JitterBuffer, ph) for ph in PHASES]
    fixed = [
        replay(trace, lambda: JitterBuffer(min_delay=0.06, max_delay=0.06), ph) for ph in PHASES
    ]
    matched = [oracle(trace, ph, o.loss) for ph, o in zip(PHASES, ours, strict=True)]
    one = [oracle(trace, ph, 0.01) for ph in PHASES]
    return {
        "ours": _mean(ours),
        "fixed": _mean(fixed),
        "oracle": _mean(matched),
        "oracle1": _mean(one),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--seeds", type=int, default=1, help="average each trace over this many seeds"
    )
    args = parser.parse_args()
    head = (
        f"{'trace':<14}{'ours ms':>8}{'loss%':>7}{'fixed60 ms':>11}{'loss%':>7}"
        f"{'oracle= ms':>11}{'loss%':>7}{'ours/or=':>9}{'oracle1% ms':>12}{'ours/or1%':>10}"
    )
    print(head)
    print("-" * len(head))
    runs = [[evaluate(t) for t in all_traces(10 * k)] for k in range(args.seeds)]
    for i, trace in enumerate(all_traces()):
        o, f, m, one = (_mean([run[i][key] for run in runs]) for key in PLAYERS)
        print(
            f"{trace.name:<14}{o.delay * 1e3:>8.1f}{o.loss * 100:>7.2f}"
            f"{f.delay * 1e3:>11.1f}{f.loss * 100:>7.2f}"
            f"{m.delay * 1e3:>11.1f}{m.loss * 100:>7.2f}{o.delay / m.delay:>9.2f}"
            f"{one.delay * 1e3:>12.1f}{o.delay / one.delay:>10.2f}"
        )


if __name__ == "__main__":
    main()
