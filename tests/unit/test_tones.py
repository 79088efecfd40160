"""Tone synthesis and measurement: frequencies checked as audio, also through G.711."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from media import g711
from media.tones import (
    CALL_PROGRESS,
    DTMF_FREQUENCIES,
    DTMF_HIGH,
    DTMF_LOW,
    FRAME,
    ToneError,
    ToneGenerator,
    dominant_frequency,
    dtmf_tone,
    goertzel_power,
    sine,
)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3400.0, 1234.5])
def test_dominant_frequency_is_within_1hz_on_one_second(freq: float) -> None:
    assert dominant_frequency(sine(freq, 1.0)) == pytest.approx(freq, abs=1.0)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3400.0])
@pytest.mark.parametrize("payload_type", [g711.PCMU, g711.PCMA])
def test_dominant_frequency_survives_a_g711_round_trip(freq: float, payload_type: int) -> None:
    coded = g711.decode(payload_type, g711.encode(payload_type, sine(freq, 1.0)))
    assert dominant_frequency(coded) == pytest.approx(freq, abs=1.0)


def test_dominant_frequency_ignores_dc_offset_and_noise() -> None:
    rng = np.random.default_rng(1)
    noisy = sine(1000.0, 1.0, amplitude=0.2) + 5000 + rng.normal(0, 800, 8000)
    assert dominant_frequency(noisy) == pytest.approx(1000.0, abs=1.0)


def test_dominant_frequency_of_one_20ms_frame_is_within_a_quarter_hz() -> None:
    # Short frames need both the Hann window (leakage would bias the fit by over 1 Hz)
    # and the parabolic interpolation (the zero-padded bins are 7.8 Hz apart).
    for freq in np.random.default_rng(2).uniform(200.0, 3500.0, 50):
        assert dominant_frequency(sine(freq, 0.02)) == pytest.approx(freq, abs=0.25)


def test_dominant_frequency_rejects_silence_and_bad_shapes() -> None:
    with pytest.raises(ToneError, match="silent"):
        dominant_frequency(np.full(160, 300, np.int16))
    with pytest.raises(ToneError, match="1-D"):
        dominant_frequency(np.zeros((2, 160), np.int16))


def test_sine_length_amplitude_and_phase() -> None:
    tone = sine(1000.0, 0.5, amplitude=0.5)
    assert tone.dtype == np.int16 and tone.size == 4000
    assert np.abs(tone).max() == round(0.5 * 32767)
    assert sine(1000.0, 0.01, phase=np.pi / 2)[0] == round(0.5 * 32767)


def test_tone_generator_frames_have_continuous_phase() -> None:
    generator = ToneGenerator((1000.0,), 0.5)
    frames = [generator.next_frame() for _ in range(50)]
    assert all(frame.shape == (FRAME,) and frame.dtype == np.int16 for frame in frames)
    joined = np.concatenate(frames)
    np.testing.assert_allclose(joined, sine(1000.0, 1.0), atol=1)
    # No jump at frame boundaries: every step is within what a 1 kHz sine can move.
    max_step = 2 * np.pi * 1000 / 8000 * 0.5 * 32767
    assert np.abs(np.diff(joined.astype(np.int32))).max() <= max_step + 1


def test_tone_generator_keeps_phase_over_a_long_run() -> None:
    generator = ToneGenerator((697.0, 1209.0), 0.5)
    for _ in range(3000):  # one minute
        generator.next_frame()
    frame = generator.next_frame()
    n = np.arange(3000 * FRAME, 3001 * FRAME)
    expected = (
        0.25 * 32767 * (np.sin(2 * np.pi * 697 * n / 8000) + np.sin(2 * np.pi * 1209 * n / 8000))
    )
    np.testing.assert_allclose(frame, expected, atol=1)


def test_mixed_tones_share_the_amplitude_and_never_clip() -> None:
    generator = ToneGenerator((440.0, 480.0), 1.0)
    peak = max(int(np.abs(generator.next_frame().astype(np.int32)).max()) for _ in range(100))
    assert 32000 < peak <= 32767


def test_us_ringback_is_440_and_480hz_two_seconds_on_four_off() -> None:
    generator = ToneGenerator.call_progress("ringback")
    frames = [generator.next_frame() for _ in range(600)]  # two 6 s cycles
    on = [bool(np.any(frame)) for frame in frames]
    assert on == ([True] * 100 + [False] * 200) * 2
    burst = np.concatenate(frames[:50])
    powers = {f: goertzel_power(burst, f) for f in (440.0, 480.0, 350.0, 620.0)}
    assert min(powers[440.0], powers[480.0]) > 1000 * max(powers[350.0], powers[620.0])
    assert CALL_PROGRESS["busy"].freqs == (480.0, 620.0)


def test_unknown_call_progress_tone_is_rejected() -> None:
    with pytest.raises(ToneError, match="unknown call-progress tone"):
        ToneGenerator.call_progress("howler")


@pytest.mark.parametrize("digit", list("0123456789*#ABCD"))
def test_dtmf_tone_contains_exactly_its_two_q23_frequencies(digit: str) -> None:
    tone = dtmf_tone(digit, 0.1)
    low, high = DTMF_FREQUENCIES[digit]
    powers = {f: goertzel_power(tone, f) for f in DTMF_LOW + DTMF_HIGH}
    others = max(p for f, p in powers.items() if f not in (low, high))
    assert min(powers[low], powers[high]) > 100 * others


def test_dtmf_keypad_matches_q23() -> None:
    assert DTMF_FREQUENCIES["1"] == (697.0, 1209.0)
    assert DTMF_FREQUENCIES["0"] == (941.0, 1336.0)
    assert DTMF_FREQUENCIES["#"] == (941.0, 1477.0)
    assert DTMF_FREQUENCIES["D"] == (941.0, 1633.0)


def test_goertzel_power_of_a_sine_is_a_squared_over_four() -> None:
    amplitude = 0.5 * 32767
    assert goertzel_power(sine(1000.0, 0.1), 1000.0) == pytest.approx(amplitude**2 / 4, rel=1e-3)
    assert goertzel_power(sine(1000.0, 0.1), 1500.0) < 1e-3 * amplitude**2


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: sine(5000.0, 0.1), "Nyquist"),
        (lambda: sine(1000.0, 0.1, amplitude=1.5), "amplitude"),
        (lambda: ToneGenerator(()), "at least one frequency"),
        (lambda: ToneGenerator((440.0,), cadence=(1.0,)), "cadence"),
        (lambda: dtmf_tone("E"), "not a DTMF digit"),
    ],
)
def test_invalid_tone_parameters_are_rejected(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
