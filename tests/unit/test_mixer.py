"""Tests for media.mixer (conference mix-minus on int16 frames)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from media.mixer import (
    MAX_PARTICIPANTS,
    MixerError,
    mix,
    mix_minus,
    mix_minus_grouped,
    mix_minus_pairs,
)

Int16Array = npt.NDArray[np.int16]


def naive_mix_minus(frames: Int16Array, mask: npt.NDArray[np.bool_] | None = None) -> Int16Array:
    """Reference: for each row, add every other present row in Python ints, then clip."""
    rows, samples = frames.shape
    present = [True] * rows if mask is None else [bool(m) for m in mask]
    out = np.zeros_like(frames)
    for i in range(rows):
        for s in range(samples):
            total = sum(int(frames[j, s]) for j in range(rows) if j != i and present[j])
            out[i, s] = max(-32768, min(32767, total))
    return out


pcm = st.integers(min_value=-32768, max_value=32767) | st.sampled_from([-32768, 32767])
frames_strategy = hnp.arrays(
    np.int16,
    st.tuples(st.integers(1, 6), st.integers(1, 12)),
    elements=pcm,
)


@given(frames_strategy)
def test_mix_minus_equals_naive_sum_of_other_rows(frames: Int16Array) -> None:
    np.testing.assert_array_equal(mix_minus(frames), naive_mix_minus(frames))


@given(frames_strategy, st.data())
def test_mix_minus_with_mask_equals_naive_sum_of_present_rows(
    frames: Int16Array, data: st.DataObject
) -> None:
    mask = data.draw(hnp.arrays(np.bool_, frames.shape[0]))
    np.testing.assert_array_equal(mix_minus(frames, mask), naive_mix_minus(frames, mask))


def test_mix_minus_saturates_instead_of_wrapping() -> None:
    frames = np.array([[32767], [32767], [32767], [-32768], [-32768], [-32768]], dtype=np.int16)
    out = mix_minus(frames[:3])
    np.testing.assert_array_equal(out, [[32767], [32767], [32767]])
    out = mix_minus(frames[3:])
    np.testing.assert_array_equal(out, [[-32768], [-32768], [-32768]])


def test_clipping_happens_after_the_sum_not_per_addition() -> None:
    # 30000 + 30000 - 30000 = 30000: exact in int32, wrong if clipped midway.
    frames = np.array([[0], [30000], [30000], [-30000]], dtype=np.int16)
    assert mix_minus(frames)[0, 0] == 30000


def test_absent_participant_contributes_nothing_but_still_hears_the_mix() -> None:
    frames = np.array([[100, 100], [20, 20], [3, 3]], dtype=np.int16)
    out = mix_minus(frames, np.array([False, True, True]))
    np.testing.assert_array_equal(out, [[23, 23], [3, 3], [20, 20]])


def test_two_party_mix_minus_swaps_the_parties() -> None:
    frames = np.array([[1, 2, 3], [-4, -5, -6]], dtype=np.int16)
    np.testing.assert_array_equal(mix_minus(frames), frames[::-1])


def test_mix_sums_present_rows_with_saturation() -> None:
    frames = np.array([[20000, 5], [20000, 6], [-7, 7]], dtype=np.int16)
    np.testing.assert_array_equal(mix(frames), [32767, 18])
    np.testing.assert_array_equal(mix(frames, np.array([True, False, True])), [19993, 12])


def test_gain_scales_a_participants_contribution_everywhere() -> None:
    frames = np.array([[1000], [1000], [1000]], dtype=np.int16)
    gains = np.array([0.5, 1.0, 2.0])
    np.testing.assert_array_equal(mix_minus(frames, gains=gains), [[3000], [2500], [1500]])
    assert mix(frames, gains=gains)[0] == 3500


def test_amplified_contribution_saturates_to_int16_first() -> None:
    frames = np.array([[30000], [0]], dtype=np.int16)
    out = mix_minus(frames, gains=np.array([4.0, 1.0]))
    assert out[1, 0] == 32767


@given(frames_strategy, st.data())
def test_grouped_mixing_equals_mixing_each_group_alone(
    frames: Int16Array, data: st.DataObject
) -> None:
    rows = frames.shape[0]
    groups = np.array(data.draw(st.lists(st.integers(-2, 3), min_size=rows, max_size=rows)))
    mask = data.draw(hnp.arrays(np.bool_, rows))
    out = mix_minus_grouped(frames, groups, mask)
    for label in np.unique(groups):
        rows_of = groups == label
        np.testing.assert_array_equal(out[rows_of], mix_minus(frames[rows_of], mask[rows_of]))


@given(frames_strategy, st.data())
def test_pair_mixing_equals_grouped_mixing_of_calls_of_one_or_two(
    frames: Int16Array, data: st.DataObject
) -> None:
    rows = frames.shape[0]
    order = data.draw(st.permutations(range(rows)))
    sizes = data.draw(st.lists(st.sampled_from([1, 2]), min_size=rows, max_size=rows))
    groups = np.zeros(rows, dtype=np.int64)
    partners = np.full(rows, -1)
    start = label = 0
    while start < rows:
        members = order[start : start + sizes[label]]
        groups[members] = label
        if len(members) == 2:
            partners[members[0]], partners[members[1]] = members[1], members[0]
        start += len(members)
        label += 1
    mask = data.draw(hnp.arrays(np.bool_, rows))
    np.testing.assert_array_equal(
        mix_minus_pairs(frames, partners, mask), mix_minus_grouped(frames, groups, mask)
    )


def test_pair_mixing_refuses_bad_partners() -> None:
    frames = np.zeros((3, 4), dtype=np.int16)
    for partners in ([1, 0], [1, 0, 3], [1, 0, -2], [0.5, 1.0, 2.0]):
        with pytest.raises(MixerError, match="partners"):
            mix_minus_pairs(frames, partners)
    with pytest.raises(MixerError, match="mask"):
        mix_minus_pairs(frames, [1, 0, -1], np.array([True, False]))


def test_grouped_mixing_keeps_conferences_apart() -> None:
    frames = np.array([[1], [2], [10], [20], [7]], dtype=np.int16)
    out = mix_minus_grouped(frames, [5, 5, 9, 9, 11])
    np.testing.assert_array_equal(out, [[2], [1], [20], [10], [0]])


def test_outputs_are_int16_with_the_input_shape() -> None:
    frames = np.zeros((4, 160), dtype=np.int16)
    for out in (mix_minus(frames), mix_minus_grouped(frames, [0, 0, 1, 1])):
        assert out.dtype == np.int16
        assert out.shape == (4, 160)
    assert mix(frames).shape == (160,)


@pytest.mark.parametrize(
    "frames",
    [np.zeros((2, 160), dtype=np.int32), np.zeros(160, dtype=np.int16), [[0, 0], [0, 0]]],
)
def test_frames_must_be_2d_int16(frames: Int16Array) -> None:
    with pytest.raises(MixerError, match="int16"):
        mix_minus(frames)


def test_mask_gains_and_groups_must_match_the_rows() -> None:
    frames = np.zeros((3, 4), dtype=np.int16)
    with pytest.raises(MixerError, match="mask"):
        mix_minus(frames, np.array([True, False]))
    with pytest.raises(MixerError, match="mask"):
        mix_minus(frames, np.array([1, 0, 1]))
    with pytest.raises(MixerError, match="gains"):
        mix_minus(frames, gains=np.array([1.0, -1.0, 1.0]))
    with pytest.raises(MixerError, match="gains"):
        mix(frames, gains=np.array([1.0, 1.0]))
    with pytest.raises(MixerError, match="group_ids"):
        mix_minus_grouped(frames, [0, 1])
    with pytest.raises(MixerError, match="group_ids"):
        mix_minus_grouped(frames, [0.5, 1.0, 2.0])


def test_empty_conference_tick_mixes_to_nothing() -> None:
    frames = np.zeros((0, 160), dtype=np.int16)
    assert mix_minus(frames).shape == (0, 160)
    assert mix_minus_grouped(frames, np.zeros(0, dtype=np.int64)).shape == (0, 160)
    np.testing.assert_array_equal(mix(frames), np.zeros(160, dtype=np.int16))


def test_grouped_mixing_at_the_participant_limit_does_not_overflow() -> None:
    frames = np.full((MAX_PARTICIPANTS, 2), 32767, dtype=np.int16)
    frames[:, 1] = -32768
    groups = np.arange(MAX_PARTICIPANTS) % 3
    out = mix_minus_grouped(frames, groups)
    np.testing.assert_array_equal(out[:, 0], 32767)
    np.testing.assert_array_equal(out[:, 1], -32768)
    with pytest.raises(MixerError, match="at most"):
        mix_minus_grouped(np.zeros((MAX_PARTICIPANTS + 1, 1), dtype=np.int16), np.zeros(65537))
