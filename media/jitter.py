"""Adaptive jitter buffer with clock-driven playout (sans-I/O).

The media engine files every received RTP packet with :meth:`JitterBuffer.push`
and asks for one frame per 20 ms tick with :meth:`JitterBuffer.pop`; both take
an explicit time and nothing here reads a clock.

The target delay follows the recent delay distribution, in the manner of
WebRTC NetEQ and Asterisk's ``jitterbuf``: each packet's relative delay is
``arrival - timestamp / clock_rate`` (RFC 3550 §6.4.1 uses the same
difference for its jitter estimate); a sorted window of the last ``window``
seconds of these gives the running minimum (the fastest path) and a high
percentile, and ``target = percentile - minimum + margin`` clamped to
``[min_delay, max_delay]``.  Like NetEQ's delay peak detector, delay peaks
(``peak_height`` above the estimate) that recur within 20 s of each other
hold the target up for twice their longest period, at the level where the
remembered peaks would cost ``peak_loss`` of the frames.

The playout point only moves in whole frames:

* it grows at once: a higher estimate raises the target immediately, and a
  frame that has not arrived stalls the playout point (a concealed frame is
  played, the timestamp is not advanced; up to ``max_delay``) rather than
  being given up, so a delay spike delays playout instead of throwing the
  delayed frames away;
* it shrinks slowly: the target decays by at most ``shrink_rate`` seconds per
  second; the surplus is shed for free in silence (a talkspurt, RFC 3551 §4.1,
  starts with the marker bit or after a timestamp gap, and is scheduled at the
  target delay) or by skipping frames that never arrived, and only as a last
  resort by dropping one received frame per ``drop_interval``.

Sequence numbers (16 bits) and timestamps (32 bits) are unwrapped to unbounded
integers (RFC 3550 §A.1).  A new SSRC or a timestamp jump that the arrival
times do not explain flushes the buffer and starts buffering again.  Every
packet is assumed to carry one frame of ``frame_samples`` samples.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import logging
import math
from array import array
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from media.rtp import seq_diff, ts_diff

logger = logging.getLogger(__name__)

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32
SPURT_MEMORY = 5.0
"""Seconds after a talkspurt start during which delay is cut only in the next pause."""
PEAK_COUNT = 8
"""Delay peaks remembered (NetEQ keeps eight)."""
PEAK_MERGE = 1.0
"""Seconds within which delay peaks count as one (the packets of one spike drain together)."""
PEAK_PERIOD_MAX = 20.0
"""Seconds after which a delay peak no longer recurs with the previous ones."""


@functools.cache
def _ranks(percentile: float, window_len: int) -> tuple[int, ...]:
    """The index of the percentile in a sorted window of n delays, for every n up to
    ``window_len`` (shared by every buffer with the same settings)."""
    return (0, *(min(n - 1, math.ceil(percentile * n) - 1) for n in range(1, window_len + 1)))


class JitterBufferError(ValueError):
    """A packet field is out of its RTP range (RFC 3550 §5.1)."""


class Frame(NamedTuple):
    """One 20 ms slot of playout (a tuple: made once per stream and tick)."""

    payload: bytes | None
    """The RTP payload, or ``None`` when the slot must be concealed (PLC)."""
    timestamp: int
    """RTP timestamp (32 bits) of the slot."""
    seq: int
    """Sequence number (16 bits) of the packet that carries, or should have carried, the slot."""
    lost: bool
    """True when ``payload`` is ``None``."""


@dataclass(slots=True)
class JitterStats:
    """Counters since the buffer was created (they survive resyncs)."""

    received: int = 0
    """Packets passed to :meth:`JitterBuffer.push`."""
    played: int = 0
    """Frames returned with a payload."""
    concealed: int = 0
    """Frames returned without a payload (lost, stalled or silent)."""
    expanded: int = 0
    """Concealed frames that did not advance the playout point (delay grew by one frame)."""
    lost: int = 0
    """Frames given up because their packet had not arrived when they were due.

    Under silence suppression, the slots of a pause longer than ``max_delay``
    count here too: the pause is only known once the next talkspurt arrives.
    """
    late: int = 0
    """Packets that arrived after their frame was played or given up."""
    duplicates: int = 0
    """Packets whose sequence number had already been received."""
    discarded: int = 0
    """Buffered packets thrown away unplayed: dropped to cut delay, overflow or flush."""
    resyncs: int = 0
    """Restarts on an SSRC change or a timestamp jump."""


class PlayoutState(Enum):
    """Whether the buffer is filling up to its target or playing out."""

    BUFFERING = "buffering"
    PLAYING = "playing"


@dataclass(slots=True)
class _Packet:
    seq: int
    ts: int
    payload: bytes
    talkspurt: bool


class JitterBuffer:
    """Adaptive playout buffer for one RTP stream.

    ``target_delay`` and ``current_delay`` count from the fastest packet of the
    window; playout moves in whole frames, so ``current_delay`` settles within
    half a frame of the target, which stays in ``[min_delay, max_delay]``.

    ``percentile`` of the delays seen in the last ``window`` seconds, plus
    ``margin``, sets the target; ``shrink_rate`` (s/s) bounds how fast it decays;
    ``drop_interval`` (s) is the shortest time between two delay changes in
    speech when a received frame is dropped (``math.inf``: delay then shrinks
    only in silence and over lost frames); ``resync_threshold`` (s) is the
    timestamp jump, beyond what the arrival times explain, that restarts the
    buffer; ``peak_height`` (s) and ``peak_loss`` (share) tune the peak detector.
    """

    # Slots: with more than 30 attributes CPython stops sharing instance dict keys and
    # every attribute read becomes a dictionary lookup, on the audio path's hottest code.
    __slots__ = (
        "clock_rate",
        "frame_samples",
        "min_delay",
        "max_delay",
        "percentile",
        "margin",
        "shrink_rate",
        "drop_interval",
        "resync_threshold",
        "peak_height",
        "peak_loss",
        "stats",
        "_frame_time",
        "_slack",
        "_window_len",
        "_rank",
        "_capacity",
        "_seen_len",
        "_target",
        "_current",
        "_retired",
        "_state",
        "_ssrc",
        "_buf",
        "_seen",
        "_delays",
        "_oldest",
        "_sorted",
        "_d_min",
        "_estimate",
        "_peaks",
        "_peak_level",
        "_peak_until",
        "_hi_seq",
        "_hi_ts",
        "_hi_arrival",
        "_play_ts",
        "_next_seq",
        "_last_pop",
        "_last_adjust",
        "_last_spurt",
    )

    # Per-stream state, set by _reset_stream() and cleared on every resync.
    _state: PlayoutState
    _ssrc: int | None
    _buf: dict[int, _Packet]
    """Packets not yet played, by unwrapped timestamp; all at or after ``_play_ts``."""
    _seen: array[int]
    """Sequence numbers received, each in slot ``ext_seq % len``: the last ``len`` numbers."""
    _delays: array[float]
    """Relative delays of the window, a ring: the oldest at ``_oldest`` once full."""
    _oldest: int
    _sorted: array[float]
    """The same, sorted: ``[0]`` is the running minimum."""
    _d_min: float
    _estimate: float
    _peaks: deque[tuple[float, float]]
    _peak_level: float
    _peak_until: float
    _hi_seq: int
    _hi_ts: int
    _hi_arrival: float
    _play_ts: int
    _next_seq: int
    _last_pop: float
    _last_adjust: float
    _last_spurt: float

    def __init__(
        self,
        clock_rate: int = 8000,
        frame_samples: int = 160,
        min_delay: float = 0.02,
        max_delay: float = 0.5,
        *,
        percentile: float = 0.99,
        window: float = 5.0,
        margin: float = 0.01,
        shrink_rate: float = 0.05,
        drop_interval: float = 0.5,
        resync_threshold: float = 1.0,
        peak_height: float = 0.078,
        peak_loss: float = 0.005,
    ) -> None:
        if clock_rate <= 0 or frame_samples <= 0:
            raise ValueError("clock_rate and frame_samples must be positive")
        if not 0.0 <= min_delay <= max_delay:
            raise ValueError(f"need 0 <= min_delay <= max_delay, got {min_delay}, {max_delay}")
        if not 0.0 < percentile <= 1.0:
            raise ValueError(f"percentile must be in (0, 1], got {percentile}")
        if min(window, drop_interval, resync_threshold, peak_height) <= 0:
            raise ValueError("window, drop_interval, resync_threshold, peak_height must be > 0")
        if min(margin, shrink_rate, peak_loss) < 0:
            raise ValueError("margin, shrink_rate and peak_loss must be >= 0")
        self.clock_rate = clock_rate
        self.frame_samples = frame_samples
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.percentile = percentile
        self.margin = margin
        self.shrink_rate = shrink_rate
        self.drop_interval = drop_interval
        self.resync_threshold = resync_threshold
        self.peak_height = peak_height
        self.peak_loss = peak_loss
        self.stats = JitterStats()
        self._frame_time = frame_samples / clock_rate
        # Playout moves in whole frames: aim at the reachable delay nearest the target.
        # The microsecond makes the dead band wider than a frame, so rounding noise
        # cannot alternate a stall and a drop.
        self._slack = self._frame_time / 2 + 1e-6
        self._window_len = max(1, round(window / self._frame_time))
        self._rank = _ranks(percentile, self._window_len)
        # A spike that drains can leave max_delay worth of frames queued; twice that is abuse.
        self._capacity = 2 * math.ceil(max_delay / self._frame_time) + 2
        # Duplicates are told within four windows' worth of sequence numbers.
        self._seen_len = 1 << (4 * self._window_len - 1).bit_length()
        self._target = min_delay
        self._current = 0.0
        self._retired: tuple[int | None, float] = (None, 0.0)
        """The SSRC last replaced, and when."""
        self._reset_stream()

    # -- public surface ----------------------------------------------------

    @property
    def state(self) -> PlayoutState:
        """Buffering (``pop`` returns ``None``) or playing."""
        return self._state

    @property
    def target_delay(self) -> float:
        """Playout delay the buffer aims at, in seconds above the fastest recent packet."""
        return self._target

    @property
    def current_delay(self) -> float:
        """Delay of the frame last returned by :meth:`pop`, in seconds above the fastest packet."""
        return self._current

    def __len__(self) -> int:
        return len(self._buf)

    def push(
        self,
        seq: int,
        timestamp: int,
        ssrc: int,
        payload: bytes,
        arrival: float,
        marker: bool = False,
    ) -> None:
        """File one RTP packet (RFC 3550 §5.1 header fields) received at ``arrival``."""
        if not 0 <= seq < SEQ_MOD:
            raise JitterBufferError(f"sequence number {seq} is not 16-bit")
        if not 0 <= timestamp < TS_MOD:
            raise JitterBufferError(f"timestamp {timestamp} is not 32-bit")
        if not 0 <= ssrc < TS_MOD:
            raise JitterBufferError(f"SSRC {ssrc} is not 32-bit")
        self.stats.received += 1
        if ssrc != self._ssrc:
            if self._ssrc is None:
                self._start_stream(ssrc, seq, timestamp, arrival)
            else:
                old, switched = self._retired
                if ssrc == old and arrival - switched < self.resync_threshold:
                    self.stats.late += 1  # A straggler of the stream just replaced.
                    return
                logger.debug("SSRC %08x -> %08x: resync", self._ssrc, ssrc)
                self._retired = (self._ssrc, arrival)
                self._resync()
                self._start_stream(ssrc, seq, timestamp, arrival)

        hi_seq, hi_ts = self._hi_seq, self._hi_ts
        ext_seq = hi_seq + seq_diff(seq, hi_seq)
        ext_ts = hi_ts + ts_diff(timestamp, hi_ts)
        talkspurt = marker
        if ext_seq > hi_seq:
            jump = (ext_ts - hi_ts) / self.clock_rate - (arrival - self._hi_arrival)
            if abs(jump) > self.resync_threshold:
                logger.debug("timestamp jump of %.3f s: resync", jump)
                self._resync()
                self._start_stream(ssrc, seq, timestamp, arrival)
                ext_seq, ext_ts = seq, timestamp
            else:
                # Silence suppression: the timestamp moved on further than the lost packets explain.
                talkspurt = talkspurt or ext_ts - hi_ts > (ext_seq - hi_seq) * self.frame_samples
                self._hi_seq, self._hi_ts, self._hi_arrival = ext_seq, ext_ts, arrival

        buf = self._buf
        slot = ext_seq & (self._seen_len - 1)
        if self._seen[slot] == ext_seq or ext_ts in buf:
            self.stats.duplicates += 1
            return
        self._seen[slot] = ext_seq
        self._observe(arrival - ext_ts / self.clock_rate, arrival)
        if self._state is PlayoutState.PLAYING and ext_ts < self._play_ts:
            self.stats.late += 1
            return
        if len(buf) >= self._capacity:
            del buf[min(buf)]
            self.stats.discarded += 1
        buf[ext_ts] = _Packet(ext_seq, ext_ts, payload, talkspurt)

    def pop(self, now: float) -> Frame | None:
        """The frame to play at ``now`` (one call per frame time), or ``None`` while buffering."""
        if not self._buf and self._state is PlayoutState.BUFFERING:
            return None
        rate = self.clock_rate
        if self._state is PlayoutState.BUFFERING:
            first = min(self._buf)
            if now - first / rate - self._d_min - self._target < -self._slack:
                return None
            self._state = PlayoutState.PLAYING
            self._play_ts = first
            self._next_seq = self._buf[first].seq
            self._last_pop = self._last_adjust = now
        self._decay_target(now)

        frame = self._frame_time
        # How far the frame due now is behind the target schedule (negative: ahead of it).
        excess = now - self._play_ts / rate - self._d_min - self._target
        pkt = self._buf.get(self._play_ts)
        if pkt is None and self._buf:
            nxt = min(self._buf)
            following = self._buf[nxt]
            if nxt < self._play_ts + self.frame_samples:
                pkt = following  # Misaligned timestamps: take it as the frame due now.
            elif following.talkspurt:
                # Silence until the next talkspurt: start it at the target delay.
                if now - nxt / rate - self._d_min - self._target < -self._slack:
                    return self._conceal(now, advance=False, expand=False)
                pkt = following
                self._last_spurt = now
            elif excess >= self._slack:
                # Behind schedule and frames are missing: skip them instead of received ones.
                skip = (nxt - self._play_ts) // self.frame_samples
                skip = min(skip, 1 + int((excess - self._slack) / frame))
                self.stats.lost += skip
                self._next_seq += skip
                self._play_ts += skip * self.frame_samples
                pkt = self._buf.get(self._play_ts)
                if pkt is None:
                    return self._conceal(now, advance=True, expand=False)
            else:
                return self._conceal(now, advance=not self._may_stall(now), expand=True)
        elif pkt is None:
            # Nothing buffered: a delay spike, a loss or silence.  Waiting costs nothing
            # if it was a loss (the frame is skipped once its successor turns up) and
            # saves the delayed frames if it was a spike.
            return self._conceal(now, advance=not self._may_stall(now), expand=True)
        elif excess < -self._slack and self._may_stall(now):
            return self._conceal(now, advance=False, expand=True)
        elif excess >= self._slack and self._may_drop(now, excess):
            successor = self._buf.get(pkt.ts + self.frame_samples)
            if successor is not None:
                del self._buf[pkt.ts]
                self.stats.discarded += 1
                self._last_adjust = now
                pkt = successor
        return self._play(now, pkt)

    # -- playout ----------------------------------------------------------

    def _play(self, now: float, pkt: _Packet) -> Frame:
        del self._buf[pkt.ts]
        self._current = now - pkt.ts / self.clock_rate - self._d_min
        self._play_ts = pkt.ts + self.frame_samples
        self._next_seq = pkt.seq + 1
        self.stats.played += 1
        return Frame(pkt.payload, pkt.ts % TS_MOD, pkt.seq % SEQ_MOD, False)

    def _conceal(self, now: float, *, advance: bool, expand: bool) -> Frame:
        ts = self._play_ts
        self._current = now - ts / self.clock_rate - self._d_min
        out = Frame(None, ts % TS_MOD, self._next_seq % SEQ_MOD, True)
        self.stats.concealed += 1
        if advance:
            self._play_ts += self.frame_samples
            self._next_seq += 1
            self.stats.lost += 1
        elif expand:
            self.stats.expanded += 1
            self._last_adjust = now
        return out

    def _may_stall(self, now: float) -> bool:
        """Whether one more frame of delay stays within half a frame of ``max_delay``."""
        delay = now - self._play_ts / self.clock_rate - self._d_min
        return delay + self._frame_time <= self.max_delay + self._slack

    def _may_drop(self, now: float, excess: float) -> bool:
        """Whether to drop a received frame to cut delay: rarely, and never while a pause,
        which sheds the delay for free, is still to be expected."""
        if excess + self._target > self.max_delay + self._slack:
            return True
        if now - self._last_spurt < SPURT_MEMORY:
            return False
        return now - self._last_adjust >= self.drop_interval

    # -- delay estimate ----------------------------------------------------

    def _observe(self, delay: float, arrival: float) -> None:
        """Add one relative delay to the window (O(log n) search, one memmove)."""
        delays, ordered = self._delays, self._sorted
        if delays and delay - self._d_min - self._estimate > self.peak_height:
            self._record_peak(arrival, delay - self._d_min)
        if len(delays) == self._window_len:
            oldest = self._oldest
            del ordered[bisect.bisect_left(ordered, delays[oldest])]
            delays[oldest] = delay
            self._oldest = (oldest + 1) % self._window_len
        else:
            delays.append(delay)
        bisect.insort(ordered, delay)
        n = len(ordered)
        d_min = self._d_min = ordered[0]
        spread = ordered[self._rank[n]] - d_min
        self._estimate = self._clamp(spread + self.margin)
        level = self._level(arrival)
        if level > self._target:
            self._target = level

    def _record_peak(self, when: float, height: float) -> None:
        """Note a delay peak; recurring peaks hold the target up (cf. NetEQ's peak detector).

        The held level is the lowest one at which the recorded peaks, recurring at
        their mean period, would cost at most ``peak_loss`` of the frames.
        """
        peaks = self._peaks
        if peaks and when - peaks[-1][0] < PEAK_MERGE:
            if height > peaks[-1][1]:
                peaks[-1] = (peaks[-1][0], height)
        else:
            if peaks and when - peaks[-1][0] > PEAK_PERIOD_MAX:
                peaks.clear()
            peaks.append((when, height))
        if len(peaks) < 2:
            return
        times = [t for t, _ in peaks]
        periods = [b - a for a, b in itertools.pairwise(times)]
        self._peak_until = times[-1] + 2 * max(periods)
        budget = self.peak_loss * sum(periods) / len(periods)
        heights = sorted((h for _, h in peaks), reverse=True)
        total = 0.0
        level = 0.0
        for k, h in enumerate(heights, 1):
            total += h
            level = (total - len(heights) * budget) / k
            if k == len(heights) or level >= heights[k]:
                break
        self._peak_level = self._clamp(max(level, 0.0) + self.margin)

    def _level(self, now: float) -> float:
        return max(self._estimate, self._peak_level) if now < self._peak_until else self._estimate

    def _clamp(self, delay: float) -> float:
        return min(max(delay, self.min_delay), self.max_delay)

    def _decay_target(self, now: float) -> None:
        elapsed = max(0.0, now - self._last_pop)
        self._last_pop = now
        level = self._level(now)
        if self._target > level:
            self._target = max(level, self._target - self.shrink_rate * elapsed)
        else:
            self._target = level

    # -- stream lifecycle --------------------------------------------------

    def _reset_stream(self) -> None:
        self._state = PlayoutState.BUFFERING
        self._ssrc = None
        self._buf = {}
        self._seen = array("q", [-1 << 62]) * self._seen_len  # no sequence number is this
        self._delays = array("d")
        self._oldest = 0
        self._sorted = array("d")
        self._d_min = 0.0
        self._estimate = self.min_delay
        self._peaks = deque(maxlen=PEAK_COUNT)
        self._peak_level = 0.0
        self._peak_until = -math.inf
        self._hi_seq = 0
        self._hi_ts = 0
        self._hi_arrival = 0.0
        self._play_ts = 0
        self._next_seq = 0
        self._last_pop = 0.0
        self._last_adjust = 0.0
        self._last_spurt = -math.inf

    def _start_stream(self, ssrc: int, seq: int, timestamp: int, arrival: float) -> None:
        self._ssrc = ssrc
        self._hi_seq, self._hi_ts, self._hi_arrival = seq, timestamp, arrival

    def _resync(self) -> None:
        self.stats.resyncs += 1
        self.stats.discarded += len(self._buf)
        self._reset_stream()
        self._target = self.min_delay
