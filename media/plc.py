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
from collections.abc import Sequence
from functools import cache
from typing import Any

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


@cache
def _ramp(n: int) -> _Float:
    """Fade-in weights strictly between 0 and 1 (a triangular overlap-add window); shared,
    read-only."""
    ramp = np.arange(1, n + 1, dtype=np.float64) / (n + 1)
    ramp.flags.writeable = False
    return ramp


_INDEX = np.arange(FRAME)
_CYCLE_INDEX = np.arange(MAX_PERIODS * PITCH_MAX)
"""Positions in the longest cycle, three periods of the longest pitch."""
_FADE = np.clip(1.0 - FADE_PER_STEP * (np.arange(SILENT_AFTER + FRAME) - STEP) / STEP, 0.0, 1.0)
"""Gain of the n-th concealed sample: flat for 10 ms, then -20 % per 10 ms (I.2.3)."""


def estimate_pitches(histories: _Float) -> NDArray[np.intp]:
    """Pitch periods (``PITCH_MIN``..``PITCH_MAX``) of the ends of ``histories``' rows.

    Maximises ``<x, x_lag> / ||x_lag||`` over lags, where ``x`` is a row's last
    ``CORR_LEN`` samples: every lag of every row in one ``einsum`` over strided
    views.  Many streams starting an erasure on the same tick cost a fraction of
    searching them one by one.
    """
    n = histories.shape[1]
    recent = histories[:, n - CORR_LEN :]
    span = histories[:, n - CORR_LEN - PITCH_MAX : n - PITCH_MIN]
    # Along axis 1, window j starts PITCH_MIN + j samples before ``recent``.
    lagged = sliding_window_view(span, CORR_LEN, axis=1)[:, ::-1]
    correlation = np.einsum("kjs,ks->kj", lagged, recent)
    # Window energies as differences of a running sum of squares, reversed like ``lagged``.
    running = np.zeros((len(span), span.shape[1] + 1))
    np.cumsum(span * span, axis=1, out=running[:, 1:])
    energy = (running[:, CORR_LEN:] - running[:, :-CORR_LEN])[:, ::-1]
    score = correlation / np.sqrt(energy + 1.0)
    # Of lags that score the same but for rounding (a period and its multiples in a
    # steady tone), the shortest: repeating a double period would halve the pitch.
    best = score.max(axis=1, keepdims=True)
    pitches: NDArray[np.intp] = PITCH_MIN + np.argmax(score >= best - 1e-9 * np.abs(best), axis=1)
    return pitches


def conceal_all(plcs: Sequence[Plc]) -> Int16Array:
    """:meth:`Plc.conceal` for several streams, one row each.

    Streams starting an erasure (when a network fault hits every call at once,
    hundreds start on the same tick) are searched for their pitch and given
    their first frame together, in array operations over all of them; on the
    next frame their three-period cycles are built together too.
    """
    out = np.empty((len(plcs), FRAME))
    starting: list[int] = []
    growing: list[Plc] = []
    for row, plc in enumerate(plcs):
        if not plc.erased:
            starting.append(row)
        elif plc.erased == FRAME:
            growing.append(plc)
    if growing:
        histories = np.stack([plc.snapshot for plc in growing])
        pitches = np.array([plc.pitch for plc in growing])
        for plc, cycle in zip(growing, _cycles(histories, pitches, 3), strict=True):
            plc.longer = cycle[: 3 * plc.pitch]
    for row, plc in enumerate(plcs):
        if plc.erased:
            out[row] = plc.synthesize()
    if starting:
        begun = [plcs[row] for row in starting]
        histories = np.empty((len(begun), HISTORY))
        for row, plc in enumerate(begun):
            histories[row] = plc.played()
        out[starting] = _first_frames(begun, histories, estimate_pitches(histories))
    return _saturate(out)


def _cycles(histories: _Float, pitches: NDArray[np.intp], periods: int) -> _Float:
    """Each row's cycle of ``periods`` pitch periods, padded to ``periods * PITCH_MAX``.

    The last periods of the row's history, their end blended into the samples
    before them (overlap-add over a quarter period, I.2.2): played in a loop, the
    blended end runs into the cycle's start as the original signal ran into it,
    so the loop has no seam.
    """
    span = (periods * pitches)[:, np.newaxis]
    overlap = (pitches // 4)[:, np.newaxis]
    flat = histories.ravel()
    start = np.arange(0, histories.size, HISTORY)[:, np.newaxis] + HISTORY - span
    cycles: _Float = flat[start + np.minimum(_CYCLE_INDEX[: periods * PITCH_MAX], span - 1)]
    # The blended end: ``overlap`` samples (at most PITCH_MAX // 4) per row.
    j = _CYCLE_INDEX[np.newaxis, : PITCH_MAX // 4]
    inside = j < overlap
    at = np.where(inside, span - overlap + j, 0)
    w = np.where(inside, (j + 1) / (overlap + 1), 0.0)
    rows = np.arange(len(histories))[:, np.newaxis]
    before = flat[np.maximum(start - overlap + j, 0)]
    end = cycles[rows, at]
    cycles[rows, at] = np.where(inside, end * (1.0 - w) + before * w, end)
    return cycles


def _first_frames(plcs: list[Plc], histories: _Float, pitches: NDArray[np.intp]) -> _Float:
    """The first concealed frame of each of ``plcs`` (I.2.2), which then continue the erasure.

    One period repeated for 10 ms, then cross-faded into two periods, joined to the
    last played sample by a fading offset, with the I.2.3 gain; for all rows at once.
    """
    pitch = pitches[:, np.newaxis]
    overlap = pitch // 4
    step = _INDEX[:STEP][np.newaxis]
    resume = STEP % pitch  # where the first period's loop stands after 10 ms
    frame = _INDEX[np.newaxis]
    # One period: 10 ms played, then the 10 ms the cross-fade fades out.
    one = np.take_along_axis(
        _cycles(histories, pitches, 1),
        np.where(frame < STEP, frame, resume + frame - STEP) % pitch,
        axis=1,
    )
    two = _cycles(histories, pitches, 2)
    new = np.take_along_axis(two, (resume + pitch + step) % (2 * pitch), axis=1)
    # A quarter period's ramp, then 1: the cross-fade's weights, and (as 1 - w) the
    # fading offset's.
    w = np.minimum((step + 1) / (overlap + 1), 1.0)
    frames = np.empty((len(plcs), FRAME))
    frames[:, :STEP] = one[:, :STEP]
    frames[:, STEP:] = one[:, STEP:] * (1.0 - w) + new * w
    offset = histories[:, -1:] - np.take_along_axis(histories, HISTORY - pitch - 1, axis=1)
    frames[:, :STEP] += offset * (1.0 - w)
    frames *= _FADE[:FRAME]
    positions = (resume + pitch + STEP) % (2 * pitch)  # in the two-period cycle
    for row, plc in enumerate(plcs):
        period = int(pitches[row])
        plc._continue(
            histories[row], period, two[row, : 2 * period], int(positions[row, 0]), frames[row]
        )
    return frames


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
        self.snapshot: _Float = silence
        """The history the current erasure is made from."""
        self.pitch = PITCH_MAX
        self._cycle: _Float = silence
        """The pitch periods being looped."""
        self.longer: _Float = silence
        """The cycle of three periods the erasure grows into 20 ms in (I.2.2), made by
        :func:`conceal_all` for the erasure's second frame."""
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
        n = min(self.pitch // 4 + RECOVERY_GROWTH * (steps - 1), STEP)
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
        frame: Int16Array = conceal_all([self])[0]
        return frame

    def synthesize(self) -> _Float:
        """The next frame of an erasure already begun (:func:`_first_frames`), before
        rounding and saturation to int16."""
        if self._erased >= SILENT_AFTER:
            self._erased += FRAME
            silence = np.zeros(FRAME)
            self._played.append(silence)
            return silence
        out = np.empty(FRAME)
        for start in range(0, FRAME, STEP):
            if (self._erased + start) // STEP < MAX_PERIODS:
                out[start : start + STEP] = self._grow(STEP)
            else:
                out[start : start + STEP] = self._take(STEP)
        out *= self._gain(FRAME)
        self._erased += FRAME
        self._played.append(out)
        return out

    # -- synthesis -----------------------------------------------------------

    def played(self) -> NDArray[Any]:
        """The last ``HISTORY`` samples played (int16, or float64 after concealment):
        what an erasure is made from."""
        return np.concatenate(self._played)[-HISTORY:]

    def _continue(
        self, history: _Float, pitch: int, cycle: _Float, pos: int, frame: _Float
    ) -> None:
        """Take up an erasure whose first ``frame`` repeated periods of ``pitch``
        samples of ``history``; it goes on with two periods, ``cycle``, from ``pos``."""
        self.snapshot = history
        self.pitch = pitch
        self._cycle = cycle
        self._pos = pos
        self._erased = FRAME
        self._played.append(frame)

    def _take(self, n: int) -> _Float:
        """The next ``n`` samples of the looped cycle (a new array)."""
        pos, length = self._pos, len(self._cycle)
        self._pos = (pos + n) % length
        if pos + n <= length:
            return self._cycle[pos : pos + n].copy()
        return self._cycle[(pos + _INDEX[:n]) % length]

    def _grow(self, n: int) -> _Float:
        """Switch to the three-period cycle, cross-fading into it; ``n`` samples."""
        m = self.pitch // 4  # the overlap-add's length (I.2.2)
        old = self._take(m)
        start = (self._pos - m) % len(self._cycle)
        self._cycle = self.longer
        # The same history sample sits one period later in the longer cycle.
        self._pos = start + self.pitch
        new = self._take(n)
        w = _ramp(m)
        new[:m] = old * (1.0 - w) + new[:m] * w
        return new

    def _gain(self, n: int) -> _Float:
        """Fade for the next ``n`` concealed samples (:data:`_FADE`; silence past its end)."""
        if self._erased >= SILENT_AFTER:
            return np.zeros(n)
        return _FADE[self._erased : self._erased + n]
