"""Tests for media.quality (ITU-T G.107 E-model, Twilio Voice Insights warnings)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.quality import (
    QualityCleared,
    QualityEvent,
    QualityInputError,
    QualityMonitor,
    QualityWarning,
    mos,
    mos_from_r,
    r_factor,
)

# baresip test/mos.c: (rtt ms, jitter ms, R, MOS). Its loss column counts packets; ours is
# a fraction, checked separately below.
BARESIP_VECTORS = [
    (0.0, 0.0, 92.95, 4.404),
    (500.0, 0.0, 54.20, 2.796),
    (0.0, 100.0, 84.20, 4.172),
    (0.0, 200.0, 64.20, 3.315),
]

GOOD = (0.05, 0.005, 0.0)  # rtt, jitter, loss of a clean call


@pytest.mark.parametrize(("rtt_ms", "jitter_ms", "r", "score"), BARESIP_VECTORS)
def test_baresip_vectors_reproduced_to_three_decimals(
    rtt_ms: float, jitter_ms: float, r: float, score: float
) -> None:
    assert round(r_factor(rtt_ms / 1000, jitter_ms / 1000, 0.0), 3) == r
    assert round(mos(rtt_ms / 1000, jitter_ms / 1000, 0.0), 3) == score


@pytest.mark.parametrize(
    ("rtt", "jitter", "loss", "r", "score"),
    [
        (0.0, 0.0, 0.01, 90.45, 4.350),
        (0.0, 0.0, 0.10, 67.95, 3.499),
        (0.01, 0.01, 0.10, 67.20, 3.463),
    ],
)
def test_loss_costs_two_and_a_half_r_per_percent(
    rtt: float, jitter: float, loss: float, r: float, score: float
) -> None:
    assert round(r_factor(rtt, jitter, loss), 3) == r
    assert round(mos(rtt, jitter, loss), 3) == score


def test_latency_impairment_is_continuous_at_160_ms() -> None:
    below = r_factor(0.14999999, 0.0, 0.0)
    at = r_factor(0.150, 0.0, 0.0)  # effective latency exactly 160 ms
    assert at == pytest.approx(89.2)
    assert below == pytest.approx(at, abs=1e-6)


def test_one_second_rtt_keeps_r_but_floors_mos_at_one() -> None:
    # baresip reports MOS 0.990 here; G.107's cubic dips below 1 for small R, rtpengine floors.
    assert round(r_factor(1.0, 0.0, 0.0), 3) == 4.2
    assert mos(1.0, 0.0, 0.0) == 1.0


def test_r_factor_floors_at_zero_for_total_loss() -> None:
    assert r_factor(2.0, 0.5, 1.0) == 0.0
    assert mos(2.0, 0.5, 1.0) == 1.0


@pytest.mark.parametrize(("r", "score"), [(-5.0, 1.0), (0.0, 1.0), (100.0, 4.5), (120.0, 4.5)])
def test_mos_from_r_clamps_per_annex_b(r: float, score: float) -> None:
    assert mos_from_r(r) == pytest.approx(score)


@pytest.mark.parametrize(
    ("rtt", "jitter", "loss"),
    [(-0.001, 0.0, 0.0), (0.0, -0.001, 0.0), (0.0, 0.0, -0.01), (0.0, 0.0, 1.5), (math.nan, 0, 0)],
)
def test_out_of_range_measurements_are_rejected(rtt: float, jitter: float, loss: float) -> None:
    with pytest.raises(QualityInputError):
        mos(rtt, jitter, loss)


def test_mos_from_nan_r_is_rejected() -> None:
    with pytest.raises(QualityInputError):
        mos_from_r(math.nan)


seconds = st.floats(min_value=0.0, max_value=3.0)
fraction = st.floats(min_value=0.0, max_value=1.0)


@given(seconds, seconds, fraction, seconds, seconds, fraction)
def test_mos_never_improves_when_any_impairment_grows(
    rtt: float, jitter: float, loss: float, d_rtt: float, d_jitter: float, d_loss: float
) -> None:
    base = mos(rtt, jitter, loss)
    assert 1.0 <= base <= 4.5
    assert mos(rtt + d_rtt, jitter, loss) <= base
    assert mos(rtt, jitter + d_jitter, loss) <= base
    assert mos(rtt, jitter, min(1.0, loss + d_loss)) <= base


@given(st.floats(min_value=-50.0, max_value=150.0), st.floats(min_value=0.0, max_value=50.0))
def test_mos_from_r_is_monotonic(r: float, step: float) -> None:
    assert mos_from_r(r) <= mos_from_r(r + step)


def feed(
    monitor: QualityMonitor, samples: list[tuple[float, float, float]], start: float = 0.0
) -> list[QualityEvent]:
    events: list[QualityEvent] = []
    for i, (rtt, jitter, loss) in enumerate(samples):
        events.extend(monitor.sample(start + i, rtt, jitter, loss))
    return events


def named(events: list[QualityEvent], name: str) -> list[QualityEvent]:
    return [e for e in events if e.name == name]


@pytest.mark.parametrize(
    ("name", "bad", "value", "threshold"),
    [
        # RTT over 400 ms also drives MOS under 3.5: low-mos is raised alongside.
        ("high-rtt", (0.45, 0.005, 0.0), 0.45, 0.400),
        ("high-jitter", (0.05, 0.035, 0.0), 0.035, 0.030),
    ],
)
def test_threshold_warning_raised_once_at_third_bad_sample_and_cleared(
    name: str, bad: tuple[float, float, float], value: float, threshold: float
) -> None:
    monitor = QualityMonitor()
    assert named(feed(monitor, [GOOD, bad, bad]), name) == []
    assert named(monitor.sample(3.0, *bad), name) == [QualityWarning(name, value, threshold, 3.0)]
    assert named(feed(monitor, [bad] * 5, start=4.0), name) == []
    assert name in monitor.active_warnings
    # Cleared only once no sample in the last five crosses.
    assert named(feed(monitor, [GOOD] * 4, start=9.0), name) == []
    good_value = GOOD[0] if name == "high-rtt" else GOOD[1]
    assert named(monitor.sample(13.0, *GOOD), name) == [QualityCleared(name, good_value, 13.0)]
    assert monitor.active_warnings == set()


def test_low_mos_needs_three_of_the_last_five_samples() -> None:
    monitor = QualityMonitor()
    poor = (0.38, 0.0, 0.0)  # MOS 3.414, RTT still under its own threshold
    # At most two poor samples in any five: no warning.
    assert feed(monitor, [poor, GOOD, GOOD, poor, GOOD, GOOD, poor, GOOD, poor]) == []
    (warning,) = monitor.sample(9.0, *poor)  # window: GOOD poor GOOD poor poor
    assert isinstance(warning, QualityWarning)
    assert (warning.name, warning.threshold, warning.now) == ("low-mos", 3.5, 9.0)
    assert warning.value == mos(*poor)


def test_low_mos_scattered_over_more_than_five_samples_never_raises() -> None:
    monitor = QualityMonitor()
    poor = (0.38, 0.0, 0.0)
    assert feed(monitor, [poor, GOOD, GOOD, GOOD, poor, GOOD, GOOD, GOOD, poor] * 3) == []


def test_packet_loss_warning_uses_the_window_average() -> None:
    monitor = QualityMonitor()
    # One 12 % burst in five samples averages 2.4 %: below the 3 % threshold.
    assert feed(monitor, [GOOD, GOOD, (0.05, 0.005, 0.12), GOOD, GOOD]) == []
    # Two such bursts average 4.8 %.
    (warning,) = monitor.sample(5.0, 0.05, 0.005, 0.12)
    assert isinstance(warning, QualityWarning)
    assert (warning.name, warning.threshold, warning.now) == ("high-packet-loss", 0.03, 5.0)
    assert warning.value == pytest.approx(0.048)


def test_packet_loss_waits_for_a_full_window() -> None:
    monitor = QualityMonitor()
    lossy = (0.05, 0.005, 0.20)
    assert named(feed(monitor, [lossy] * 4), "high-packet-loss") == []
    (warning,) = named(monitor.sample(4.0, *lossy), "high-packet-loss")
    assert isinstance(warning, QualityWarning)
    assert warning.now == 4.0


def test_packet_loss_clears_only_below_one_percent_average() -> None:
    monitor = QualityMonitor()
    feed(monitor, [(0.05, 0.005, 0.05)] * 5)
    assert monitor.active_warnings == {"high-packet-loss"}
    # 2 % average: no longer above 3 %, but not yet back under the 1 % clear level.
    assert feed(monitor, [(0.05, 0.005, 0.02)] * 5, start=5.0) == []
    (cleared,) = feed(monitor, [GOOD] * 3, start=10.0)  # 2, 2, 0, 0, 0 %: 0.8 %
    assert isinstance(cleared, QualityCleared)
    assert (cleared.name, cleared.now) == ("high-packet-loss", 12.0)
    assert cleared.value == pytest.approx(0.008)


def test_a_bad_sample_can_raise_several_warnings_at_once() -> None:
    monitor = QualityMonitor()
    awful = (0.6, 0.1, 0.2)
    names = [e.name for e in feed(monitor, [awful] * 5)]
    assert names == ["high-rtt", "high-jitter", "low-mos", "high-packet-loss"]


def test_summary_tracks_min_avg_max_mos_jitter_loss_and_worst_rtt() -> None:
    monitor = QualityMonitor()
    assert monitor.summary() is None
    feed(monitor, [(0.0, 0.0, 0.0), (0.5, 0.0, 0.0), (0.1, 0.02, 0.04)])
    summary = monitor.summary()
    assert summary is not None
    assert summary.samples == 3
    assert round(summary.mos_max, 3) == 4.404
    assert round(summary.mos_min, 3) == 2.796
    expected_avg = (mos(0.0, 0.0, 0.0) + mos(0.5, 0.0, 0.0) + mos(0.1, 0.02, 0.04)) / 3
    assert summary.mos_avg == pytest.approx(expected_avg)
    assert summary.jitter_avg == pytest.approx(0.02 / 3)
    assert summary.loss == pytest.approx(0.04 / 3)
    assert summary.rtt_max == 0.5


def test_latest_mos_is_that_of_the_last_sample() -> None:
    monitor = QualityMonitor()
    assert monitor.latest_mos is None
    feed(monitor, [(0.0, 0.0, 0.0), (0.1, 0.02, 0.04)])
    assert monitor.latest_mos == mos(0.1, 0.02, 0.04)


def test_monitor_rejects_bad_samples_without_recording_them() -> None:
    monitor = QualityMonitor()
    with pytest.raises(QualityInputError):
        monitor.sample(0.0, 0.05, 0.0, 2.0)
    assert monitor.summary() is None


def test_monitor_rejects_impossible_raise_count() -> None:
    with pytest.raises(ValueError, match="raise_count"):
        QualityMonitor(window=5, raise_count=6)
