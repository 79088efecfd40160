"""Packet loss concealment for 8 kHz speech, after ITU-T G.711 Appendix I.

:class:`Plc` sees every 20 ms frame of one stream, decoded to int16: received
frames go through :meth:`Plc.good`, missing ones are made up by
:meth:`Plc.conceal`.  As in Appendix I:

* the last 48.75 ms of output are kept (three longest pitch periods plus a
  quarter period of overlap, I.2);
* at the start of an erasure the pitch period is the lag, 40-120 samples
  (200-66 Hz), that maximises the normalised cross-correlation of the last
  20 ms with the history (I.2.1);
* the erasure is filled by repeating the last pitch period, with the end of the
  repeated segment overlap-added onto the samples before its start so the
  repetition has no seam; after 10 ms the last two periods are repeated, after
  20 ms the last three (I.2.2), cross-faded over a quarter period;
* from 10 ms on the output fades by 20 % per 10 ms, reaching silence at 60 ms
  (I.2.3);
* the first good frame after an erasure is overlap-added with the continued
  synthetic signal over a quarter period, 4 ms longer for each further 10 ms
  of erasure, at most 10 ms (I.2.4).

Unlike Appendix I this adds no algorithmic delay: instead of reshaping the
already-played history, the synthetic signal starts with a fading offset that
joins it to the last played sample.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

FRAME = 160
"""Samples per 20 ms frame at 8000 Hz."""
PITCH_MIN = 40
PITCH_MAX = 120
CORR_LEN = 160
STEP = 80
"""10 ms: the unit in which an erasure grows its pitch buffer and fades."""
HISTORY = 3 * PITCH_MAX + PITCH_MAX // 4
"""390 samples: 48.75 ms."""
MAX_PERIODS = 3
FADE_PER_STEP = 0.2
SILENT_AFTER = STEP + round(STEP / FADE_PER_STEP)
"""480 samples: the fade reaches zero 60 ms into an erasure."""
RECOVERY_GROWTH = 32
"""Samples (4 ms) added to the recovery overlap for each further 10 ms of erasure."""

Int16Array = NDArray[np.int16]
_Float = NDArray[np.float64]


class PlcError(ValueError):
    """A frame that is not 160 int16 samples."""


def _saturate(x: _Float) -> Int16Array:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def _ramp(n: int) -> _Float:
    """Fade-in weights strictly between 0 and 1 (a triangular overlap-add window)."""
    return np.arange(1, n + 1, dtype=np.float64) / (n + 1)


def estimate_pitch(history: _Float) -> int:
    """Pitch period in samples (``PITCH_MIN``..``PITCH_MAX``) of the end of ``history``.

    Maximises ``<x, x_lag> / ||x_lag||`` over lags, where ``x`` is the last
    ``CORR_LEN`` samples; all lags in one matrix-vector product.
    """
    n = len(history)
    recent = history[n - CORR_LEN :]
    # Row j is the window that starts PITCH_MIN + j samples before ``recent``.
    lagged = sliding_window_view(history[n - CORR_LEN - PITCH_MAX : n - PITCH_MIN], CORR_LEN)
    lagged = lagged[::-1]
    energy = np.einsum("ij,ij->i", lagged, lagged)
    score = (lagged @ recent) / np.sqrt(energy + 1.0)
    return PITCH_MIN + int(np.argmax(score))


class Plc:
    """Concealment state of one stream (int16, 8000 Hz, 160-sample frames)."""

    def __init__(self) -> None:
        silence = np.zeros(HISTORY)
        self._played: deque[Int16Array | _Float] = deque([silence], maxlen=-(-HISTORY // FRAME))
        """The last frames of output, newest last: at least ``HISTORY`` samples.

        Kept by reference and joined only when an erasure starts, so a good frame
        costs an append rather than a copy.
        """
        self._erased = 0
        """Samples concealed so far in the current erasure (0: not in one)."""
        self._pitch = PITCH_MAX
        self._overlap = PITCH_MAX // 4
        self._snapshot: _Float = silence
        self._periods = 1
        self._cycle: _Float = silence
        self._pos = 0

    @property
    def erased(self) -> int:
        """Samples concealed in the current erasure (0 when the last frame was good)."""
        return self._erased

    def good(self, frame: Int16Array) -> Int16Array:
        """Feed a received frame; it comes back unchanged unless it ends an erasure.

        After an erasure its start is overlap-added with the continued synthetic
        signal (G.711 Appendix I, I.2.4) and a new array is returned.  The frame
        is kept, not copied, as history for three frames: do not modify it.
        """
        if frame.shape != (FRAME,) or frame.dtype != np.int16:
            raise PlcError(f"expected {FRAME} int16 samples, got {frame.shape} {frame.dtype}")
        if not self._erased:
            self._played.append(frame)
            return frame
        steps = -(-self._erased // STEP)
        n = min(self._overlap + RECOVERY_GROWTH * (steps - 1), STEP)
        x = frame.astype(np.float64)
        tail = self._take(n) * self._gain(n)
        w = _ramp(n)
        x[:n] = tail * (1.0 - w) + x[:n] * w
        self._erased = 0
        out = _saturate(x)
        self._played.append(out)
        return out

    def conceal(self) -> Int16Array:
        """A frame to play in place of a lost one (G.711 Appendix I, I.2.2-I.2.3)."""
        if self._erased >= SILENT_AFTER:
            self._erased += FRAME
            self._played.append(np.zeros(FRAME))
            return np.zeros(FRAME, dtype=np.int16)
        if not self._erased:
            self._begin()
        out = np.empty(FRAME)
        for start in range(0, FRAME, STEP):
            if 0 < (self._erased + start) // STEP < MAX_PERIODS:
                out[start : start + STEP] = self._grow(STEP)
            else:
                out[start : start + STEP] = self._take(STEP)
        if self._erased == 0:
            # Join the first period to the last played sample with a fading offset.
            n = self._overlap
            offset = self._snapshot[-1] - self._snapshot[-self._pitch - 1]
            out[:n] += offset * (1.0 - _ramp(n))
        out *= self._gain(FRAME)
        self._erased += FRAME
        self._played.append(out)
        return _saturate(out)

    # -- synthesis -----------------------------------------------------------

    def _begin(self) -> None:
        self._snapshot = np.concatenate(self._played)[-HISTORY:].astype(np.float64)
        self._pitch = estimate_pitch(self._snapshot)
        self._overlap = self._pitch // 4
        self._periods = 1
        self._cycle = self._make_cycle(1)
        self._pos = 0

    def _make_cycle(self, periods: int) -> _Float:
        """The last ``periods`` pitch periods, their end blended into what precedes them.

        Played in a loop, the blended end runs into the cycle's start as the
        original signal ran into it, so the loop has no seam.
        """
        span = periods * self._pitch
        n = self._overlap
        cycle = self._snapshot[HISTORY - span :].copy()
        before = self._snapshot[HISTORY - span - n : HISTORY - span]
        w = _ramp(n)
        cycle[span - n :] = cycle[span - n :] * (1.0 - w) + before * w
        return cycle

    def _take(self, n: int) -> _Float:
        """The next ``n`` samples of the looped cycle."""
        idx = (self._pos + np.arange(n)) % len(self._cycle)
        self._pos = (self._pos + n) % len(self._cycle)
        return self._cycle[idx]

    def _grow(self, n: int) -> _Float:
        """Switch to a cycle one period longer, cross-fading into it; ``n`` samples."""
        m = self._overlap
        old = self._take(m)
        start = (self._pos - m) % len(self._cycle)
        self._periods += 1
        self._cycle = self._make_cycle(self._periods)
        # The same history sample sits one period later in the longer cycle.
        self._pos = start + self._pitch
        new = self._take(n)
        w = _ramp(m)
        new[:m] = old * (1.0 - w) + new[:m] * w
        return new

    def _gain(self, n: int) -> _Float:
        """Fade for the next ``n`` concealed samples: flat for 10 ms, then -20 % per 10 ms."""
        t = self._erased + np.arange(n, dtype=np.float64)
        return np.clip(1.0 - FADE_PER_STEP * (t - STEP) / STEP, 0.0, 1.0)
