"""Synthetic RTP arrival traces for the jitter-buffer benchmark (seeded, reproducible).

Each trace is ~60 s of 20 ms G.711 packets (8000 Hz, 160 samples each) sent
continuously, as carriers send G.711 without silence suppression.  Times are
on the receiver's clock; a drifting sender stamps packets with its own clock.
Sequence numbers and timestamps start close to their wrap points, so every
replay also crosses a 16-bit sequence wrap and a 32-bit timestamp wrap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CLOCK_RATE = 8000
FRAME_SAMPLES = 160
PTIME = FRAME_SAMPLES / CLOCK_RATE
DURATION = 60.0
BASE_DELAY = 0.040
"""Fixed one-way network delay (propagation, serialisation) under every trace."""


@dataclass(frozen=True, slots=True)
class TracePacket:
    """One packet as sent, and when it arrived (``None``: lost in the network)."""

    seq: int
    timestamp: int
    send_time: float
    arrival: float | None
    marker: bool = False
    """Set on the first packet of a talkspurt (RFC 3551 §4.1)."""


@dataclass(frozen=True, slots=True)
class Trace:
    """A named packet trace, packets in send order."""

    name: str
    description: str
    packets: tuple[TracePacket, ...]
    clock_rate: int = CLOCK_RATE
    frame_samples: int = FRAME_SAMPLES


def _build(
    name: str,
    description: str,
    rng: np.random.Generator,
    delay: np.ndarray,
    lost: np.ndarray,
    drift_ppm: float = 0.0,
    active: np.ndarray | None = None,
) -> Trace:
    """Packets for the 20 ms slots that are ``active`` (default: all), one per slot."""
    n = len(delay)
    # A sender clock running fast by drift_ppm emits its 20 ms frames sooner in real time.
    send = np.arange(n) * PTIME / (1.0 + drift_ppm * 1e-6)
    arrival = send + delay
    slots = np.arange(n) if active is None else np.nonzero(active)[0]
    seq0 = int(rng.integers(65536 - 200, 65536))
    ts0 = int(rng.integers(2**32 - 100 * FRAME_SAMPLES, 2**32))
    packets = tuple(
        TracePacket(
            seq=(seq0 + k) % 65536,
            timestamp=(ts0 + int(i) * FRAME_SAMPLES) % 2**32,
            send_time=float(send[i]),
            arrival=None if lost[i] else float(arrival[i]),
            marker=k > 0 and slots[k - 1] != i - 1,
        )
        for k, i in enumerate(slots)
    )
    return Trace(name, description, packets)


def _count() -> int:
    return round(DURATION / PTIME)


def _queueing(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Small non-negative queueing jitter: a half-normal with scale ``sigma``."""
    return BASE_DELAY + np.abs(rng.normal(0.0, sigma, n))


def steady(seed: int = 1) -> Trace:
    """A good LAN/WAN path: half-normal jitter, sigma 4 ms, no loss."""
    rng = np.random.default_rng(seed)
    n = _count()
    return _build("steady", "half-normal jitter 4 ms", rng, _queueing(rng, n, 0.004), np.zeros(n))


def bursty(seed: int = 2) -> Trace:
    """Steady jitter plus a delay spike of 100-300 ms every ~10 s that drains at line rate.

    During a spike the path stalls: the packet sent at its onset is held for the
    spike height and the ones behind it queue up, then all leave back to back
    (each 0.5 ms after the previous one), the usual shape of a Wi-Fi retry
    storm or a route change.
    """
    rng = np.random.default_rng(seed)
    n = _count()
    delay = _spiky(rng, n)
    return _build("bursty", "spikes 100-300 ms every ~10 s, draining", rng, delay, np.zeros(n))


def _spiky(rng: np.random.Generator, n: int) -> np.ndarray:
    delay = _queueing(rng, n, 0.004)
    t = 2.0 + rng.exponential(10.0)
    send = np.arange(n) * PTIME
    while t < n * PTIME - 1.0:
        height = rng.uniform(0.100, 0.300)
        release = t + height
        hit = np.nonzero((send >= t) & (send < release))[0]
        for k, i in enumerate(hit):
            delay[i] = max(delay[i], release + BASE_DELAY + 0.0005 * k - send[i])
        t = release + 2.0 + rng.exponential(8.0)
    return delay


def talkspurts(seed: int = 7) -> Trace:
    """The bursty path under a talker with silence suppression (RFC 3551 §4.1, RFC 3389).

    Talkspurts and pauses alternate with exponential lengths, means 1.0 s and
    1.5 s (the conversational speech model of ITU-T P.59); no packets are sent
    in a pause and the first packet of each talkspurt carries the marker bit.
    """
    rng = np.random.default_rng(seed)
    n = _count()
    delay = _spiky(rng, n)
    active = np.zeros(n, dtype=bool)
    t = 0.0
    while t < DURATION:
        spurt = rng.exponential(1.0)
        active[int(t / PTIME) : int((t + spurt) / PTIME) + 1] = True
        t += spurt + rng.exponential(1.5)
    return _build(
        "talkspurts", "bursty path, on/off talker", rng, delay, np.zeros(n), active=active
    )


def lossy(seed: int = 3, loss: float = 0.03) -> Trace:
    """Steady jitter with independent random loss (3 % by default, 1-5 % is typical)."""
    rng = np.random.default_rng(seed)
    n = _count()
    lost = rng.random(n) < loss
    return _build(
        "loss", f"{loss:.0%} random loss, 4 ms jitter", rng, _queueing(rng, n, 0.004), lost
    )


def reordering(seed: int = 4, share: float = 0.02) -> Trace:
    """Steady jitter; ``share`` of the packets take a path 25-60 ms slower and are overtaken."""
    rng = np.random.default_rng(seed)
    n = _count()
    delay = _queueing(rng, n, 0.004)
    slow = rng.random(n) < share
    delay[slow] += rng.uniform(0.025, 0.060, int(slow.sum()))
    return _build("reorder", f"{share:.0%} of packets +25-60 ms", rng, delay, np.zeros(n))


def drift(seed: int = 5, ppm: float = 100.0) -> Trace:
    """Steady jitter from a sender whose clock runs ``ppm`` parts per million fast (or slow)."""
    rng = np.random.default_rng(seed)
    n = _count()
    return _build(
        f"drift{ppm:+.0f}ppm",
        f"sender clock {ppm:+.0f} ppm, 4 ms jitter",
        rng,
        _queueing(rng, n, 0.004),
        np.zeros(n),
        drift_ppm=ppm,
    )


def all_traces(offset: int = 0) -> list[Trace]:
    """Every benchmark trace, seeded with its default seed plus ``offset``."""
    makers: list[Callable[[int], Trace]] = [
        steady,
        bursty,
        lossy,
        reordering,
        lambda seed: drift(seed, 100.0),
        lambda seed: drift(seed, -100.0),
        talkspurts,
    ]
    return [make(seed + offset) for seed, make in enumerate(makers, 1)]
