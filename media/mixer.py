"""Conference mixing on int16 PCM frames, batched with numpy.

Each participant hears everyone but itself ("mix-minus", also called N-1 mixing): the
conference total is summed once in int32 and each participant's own contribution is
subtracted from it, so a tick costs O(participants x samples) rather than O(n^2).
Only the final result saturates to int16, so the sum is exact before clipping: a row
equals what clipping the naive sum of the other rows gives.

Frames are ``[participants, samples]`` int16 arrays; ``mask`` (bool, one per row) marks the
participants present this tick: absent rows add nothing but still receive the mix;
``gains`` (one non-negative float per row) scale what a participant contributes, with each
scaled contribution saturated to int16 like any other amplified signal.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

PCM16_MIN = -32768
PCM16_MAX = 32767
#: Most rows per call: their int16 sum (and any prefix of it) still fits int32.
MAX_PARTICIPANTS = 65536

Int16Array = npt.NDArray[np.int16]


class MixerError(ValueError):
    """Frames, mask, gains or group ids of the wrong type or shape."""


def _check_frames(frames: Int16Array) -> int:
    """The number of rows of a valid ``[participants, samples]`` int16 array."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.int16 or frames.ndim != 2:
        raise MixerError("frames must be a 2-D int16 array [participants, samples]")
    rows: int = frames.shape[0]
    if rows > MAX_PARTICIPANTS:
        raise MixerError(f"at most {MAX_PARTICIPANTS} participants per call, got {rows}")
    return rows


def _check_mask(mask: npt.ArrayLike, rows: int) -> npt.NDArray[np.bool_]:
    checked = np.asarray(mask)
    if checked.dtype != np.bool_ or checked.shape != (rows,):
        raise MixerError(f"mask must be a bool array of {rows} entries")
    return checked


def _contributions(
    frames: Int16Array,
    mask: npt.NDArray[np.bool_] | None,
    gains: npt.NDArray[np.floating] | None,
) -> npt.NDArray[np.int32]:
    """What each row adds to the mix, as int32 (zero for absent rows)."""
    rows = _check_frames(frames)
    if gains is None:
        contrib = frames.astype(np.int32)
    else:
        gains = np.asarray(gains)
        if gains.shape != (rows,) or not np.all(np.isfinite(gains)) or np.any(gains < 0):
            raise MixerError(f"gains must be {rows} finite non-negative numbers")
        scaled = np.rint(frames * gains[:, np.newaxis].astype(np.float32))
        contrib = np.clip(scaled, PCM16_MIN, PCM16_MAX).astype(np.int32)
    if mask is not None:
        contrib[~_check_mask(mask, rows)] = 0
    return contrib


def _saturate(total: npt.NDArray[np.int32]) -> Int16Array:
    return np.clip(total, PCM16_MIN, PCM16_MAX).astype(np.int16)


def mix(
    frames: Int16Array,
    mask: npt.NDArray[np.bool_] | None = None,
    gains: npt.NDArray[np.floating] | None = None,
) -> Int16Array:
    """Saturating sum of all present rows: one int16 frame ``[samples]`` (e.g. a mono recording)."""
    contrib = _contributions(frames, mask, gains)
    return _saturate(contrib.sum(axis=0, dtype=np.int32))


def mix_minus(
    frames: Int16Array,
    mask: npt.NDArray[np.bool_] | None = None,
    gains: npt.NDArray[np.floating] | None = None,
) -> Int16Array:
    """Row i of the result is the saturating sum of every present row except row i."""
    contrib = _contributions(frames, mask, gains)
    total = contrib.sum(axis=0, dtype=np.int32)
    np.subtract(total, contrib, out=contrib)
    return _saturate(contrib)


def mix_minus_grouped(
    frames: Int16Array,
    group_ids: npt.ArrayLike,
    mask: npt.NDArray[np.bool_] | None = None,
    gains: npt.NDArray[np.floating] | None = None,
) -> Int16Array:
    """:func:`mix_minus` for many conferences in one array.

    ``group_ids`` gives each row's conference (any integer labels, rows in any order);
    rows mix only with rows of the same label. One call serves a whole engine tick.
    """
    contrib = _contributions(frames, mask, gains)
    ids = np.asarray(group_ids)
    if ids.shape != (frames.shape[0],) or not np.issubdtype(ids.dtype, np.integer):
        raise MixerError(f"group_ids must be {frames.shape[0]} integers, one per row")
    if ids.size == 0:
        return np.empty(frames.shape, dtype=np.int16)
    # Sort rows by conference so each conference is one run of rows; a run's total is the
    # difference of prefix sums at its ends (one vectorised pass, unlike np.add.at's scatter
    # or reduceat's per-run loop). Prefix sums fit int32: at most MAX_PARTICIPANTS rows.
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    run_starts = np.empty(ids.size, dtype=np.bool_)
    run_starts[0] = True
    np.not_equal(sorted_ids[1:], sorted_ids[:-1], out=run_starts[1:])
    starts = np.flatnonzero(run_starts)
    ends = np.append(starts[1:], ids.size)
    prefix = np.zeros((ids.size + 1, frames.shape[1]), dtype=np.int32)
    np.cumsum(contrib[order], axis=0, out=prefix[1:])
    totals = prefix[ends] - prefix[starts]
    row_group = np.empty(ids.size, dtype=np.intp)
    row_group[order] = np.cumsum(run_starts) - 1
    np.subtract(totals[row_group], contrib, out=contrib)
    return _saturate(contrib)


def mix_minus_pairs(
    frames: Int16Array, partners: npt.ArrayLike, mask: npt.NDArray[np.bool_] | None = None
) -> Int16Array:
    """:func:`mix_minus_grouped` for conferences of one or two: each row hears its partner.

    ``partners[i]`` is the other row of row i's conference, or -1 when it has none.  The
    result equals :func:`mix_minus_grouped`'s (one row's sum needs no saturation) for one
    gather instead of the int32 sums: the common case of a tick where every call has two legs.
    """
    rows = _check_frames(frames)
    others = np.asarray(partners)
    if (
        others.shape != (rows,)
        or not np.issubdtype(others.dtype, np.integer)
        or np.any((others < -1) | (others >= rows))
    ):
        raise MixerError(f"partners must be {rows} row numbers or -1, one per row")
    heard = others >= 0
    source = np.where(heard, others, 0)
    if mask is not None:
        heard &= _check_mask(mask, rows)[source]
    out = frames[source]
    out[~heard] = 0
    return out
