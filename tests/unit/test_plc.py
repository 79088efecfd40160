"""Tests for the G.711 Appendix I style packet loss concealment (media/plc.py)."""

from __future__ import annotations

import numpy as np
import pytest

from media.plc import FRAME, HISTORY, Plc, PlcError, conceal_all, estimate_pitches

RATE = 8000


def voiced(f0: float, seconds: float = 1.0, hum: float = 0.0) -> np.ndarray:
    """A vowel-like int16 signal: three harmonics of ``f0``, plus a 23 Hz hum of amplitude ``hum``.

    The hum is not periodic in the pitch period, so a bare repeat of the last
    period steps by about the hum's change over one period.
    """
    t = np.arange(round(seconds * RATE)) / RATE
    x = (
        8000 * np.sin(2 * np.pi * f0 * t)
        + 3000 * np.sin(2 * np.pi * 2 * f0 * t + 0.5)
        + 1500 * np.sin(2 * np.pi * 3 * f0 * t + 1.0)
    )
    x = x * (1.0 - hum / 16000) + hum * np.sin(2 * np.pi * 23 * t)
    out: np.ndarray = np.round(x).astype(np.int16)
    return out


def frames(x: np.ndarray) -> list[np.ndarray]:
    return [x[i : i + FRAME] for i in range(0, len(x) - FRAME + 1, FRAME)]


def dominant_frequency(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), 1 << 16))
    return float(np.argmax(spectrum)) * RATE / (1 << 16)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def max_step(x: np.ndarray) -> float:
    return float(np.max(np.abs(np.diff(x.astype(np.float64)))))


def pitch_of(history: np.ndarray) -> int:
    return int(estimate_pitches(history[np.newaxis])[0])


def primed(signal: np.ndarray, count: int = 10) -> tuple[Plc, list[np.ndarray]]:
    plc = Plc()
    out = [plc.good(f) for f in frames(signal)[:count]]
    return plc, out


@pytest.mark.parametrize("f0", [75.0, 110.0, 150.0, 190.0, 260.0])
def test_concealed_speech_keeps_its_pitch(f0: float) -> None:
    plc, _ = primed(voiced(f0))
    concealed = np.concatenate([plc.conceal(), plc.conceal()])
    assert abs(dominant_frequency(concealed) - f0) < 3.0


@pytest.mark.parametrize("period", [40, 57, 80, 119])
def test_pitch_estimate_finds_the_period(period: float) -> None:
    t = np.arange(HISTORY)
    x = 1000 * np.sin(2 * np.pi * t / period) + 300 * np.sin(4 * np.pi * t / period)
    assert abs(pitch_of(x) - period) <= 1


def test_erasure_draws_on_more_pitch_periods_as_it_goes_on() -> None:
    # A 50-sample pattern under as much noise: every period differs from the last.
    rng = np.random.default_rng(3)
    pattern = np.tile(rng.normal(0.0, 3000.0, 50), 32)
    signal = np.round(pattern + rng.normal(0.0, 3000.0, len(pattern))).astype(np.int16)
    plc, played = primed(signal)
    pitch = pitch_of(np.concatenate(played).astype(np.float64)[-HISTORY:])
    assert pitch in (50, 100)
    out = np.concatenate([plc.conceal(), plc.conceal()]).astype(np.float64)
    # Looping one period would make the second frame repeat itself every period.
    tail = out[FRAME + pitch // 4 :]
    similarity = np.corrcoef(tail[:-pitch], tail[pitch:])[0, 1]
    assert similarity < 0.8


def test_concealment_fades_from_10_ms_and_is_silent_from_60_ms() -> None:
    signal = voiced(130.0)
    plc, _ = primed(signal)
    erasure = np.concatenate([plc.conceal() for _ in range(5)])  # 100 ms
    per_10ms = [rms(erasure[i : i + 80]) for i in range(0, len(erasure), 80)]
    reference = rms(signal[: 10 * FRAME])
    assert per_10ms[0] > 0.8 * reference
    assert all(b < a for a, b in zip(per_10ms[1:6], per_10ms[2:6], strict=False))
    assert per_10ms[4] < 0.5 * reference
    assert not erasure[480:].any()


@pytest.mark.parametrize("f0", [100.0, 143.0, 170.0])
def test_no_click_where_the_erasure_starts(f0: float) -> None:
    signal = voiced(f0, hum=5000.0)
    plc, played = primed(signal)
    joined = np.concatenate([played[-1], plc.conceal()])
    bound = 1.2 * max_step(signal)
    assert max_step(joined[FRAME - 8 : FRAME + 48]) <= bound
    # A bare repeat of the last period would click here: the bound means something.
    pitch = pitch_of(np.concatenate(played).astype(np.float64)[-HISTORY:])
    bare = np.concatenate([played[-1], played[-1][-pitch:]])
    assert max_step(bare[FRAME - 8 : FRAME + 8]) > bound


@pytest.mark.parametrize("lost", [1, 2, 4])
def test_no_click_where_the_erasure_ends(lost: int) -> None:
    # The talk resumes in opposite phase to the synthetic signal: the worst seam.
    before = voiced(143.0)
    after = -before
    plc, _ = primed(before)
    last = [plc.conceal() for _ in range(lost)][-1]
    first = plc.good(frames(after)[20])
    bound = 1.2 * max_step(before)
    assert max_step(np.concatenate([last, first])[FRAME - 8 :]) <= bound
    assert max_step(np.concatenate([last, frames(after)[20]])) > bound


def test_good_frames_pass_through_untouched() -> None:
    signal = voiced(100.0)
    plc = Plc()
    for f in frames(signal)[:5]:
        assert plc.good(f) is f
    plc.conceal()
    recovered = plc.good(frames(signal)[6])
    assert not np.array_equal(recovered, frames(signal)[6])
    assert np.array_equal(recovered[FRAME // 2 :], frames(signal)[6][FRAME // 2 :])
    assert plc.erased == 0


def test_concealment_before_any_audio_is_silence() -> None:
    plc = Plc()
    assert not plc.conceal().any()


def test_long_erasure_stays_silent_and_recovers() -> None:
    signal = voiced(100.0)
    plc, _ = primed(signal)
    for _ in range(20):
        out = plc.conceal()
    assert not out.any()
    assert plc.erased == 20 * FRAME
    recovered = plc.good(frames(signal)[30])
    assert np.array_equal(recovered[80:], frames(signal)[30][80:])


@pytest.mark.parametrize(
    "frame",
    [np.zeros(FRAME, dtype=np.int32), np.zeros(FRAME - 1, dtype=np.int16), np.zeros((2, FRAME))],
)
def test_rejects_frames_that_are_not_160_int16_samples(frame: np.ndarray) -> None:
    with pytest.raises(PlcError, match="160 int16"):
        Plc().good(frame)


def test_streams_concealed_together_match_each_concealed_alone() -> None:
    """conceal_all starts erasures for all rows in array operations: the same frames,
    sample for sample, as one stream at a time, through start, growth, fade and silence."""
    rng = np.random.default_rng(11)
    signals = [voiced(f0, 0.2, hum=rng.uniform(0, 2000)) for f0 in rng.uniform(70, 300, 12)]
    together = [primed(signal, 8)[0] for signal in signals]
    alone = [primed(signal, 8)[0] for signal in signals]
    # Rows start their erasures on different frames: some continue while others begin.
    for plc in together[:4] + alone[:4]:
        plc.conceal()
    for _ in range(5):
        batch = conceal_all(together)
        single = np.stack([plc.conceal() for plc in alone])
        assert np.array_equal(batch, single)
    assert all(plc.erased for plc in together)
