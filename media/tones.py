"""Tone synthesis and tone measurement on int16 PCM at 8000 Hz.

Synthesis: sines, DTMF dual tones (ITU-T Q.23), call-progress tones with cadences (ANSI
T1.401 US values), and :class:`ToneGenerator` for 20 ms frames with continuous phase.
Measurement: :func:`dominant_frequency` (windowed FFT peak, interpolated) and
:func:`goertzel_power` (one DFT bin), which tests use to check audio as audio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from media.dtmf import DIGITS, event_code

RATE = 8000
FRAME = 160
FULL_SCALE = 32767

Int16Array = npt.NDArray[np.int16]

#: DTMF low (row) and high (column) group frequencies in Hz (ITU-T Q.23 Table 1).
DTMF_LOW = (697.0, 770.0, 852.0, 941.0)
DTMF_HIGH = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYPAD = ("123A", "456B", "789C", "*0#D")
DTMF_FREQUENCIES: dict[str, tuple[float, float]] = {
    key: (DTMF_LOW[row], DTMF_HIGH[col])
    for row, keys in enumerate(_KEYPAD)
    for col, key in enumerate(keys)
}


class ToneError(ValueError):
    """Invalid tone parameters or audio that cannot be measured."""


@dataclass(frozen=True, slots=True)
class ToneSpec:
    """A call-progress tone: frequencies mixed at equal level, and an on/off cadence."""

    freqs: tuple[float, ...]
    """Frequencies in Hz, summed."""
    cadence: tuple[float, ...] = ()
    """Alternating on/off times in seconds, repeated; empty for a steady tone."""


#: US call-progress tones (ANSI T1.401, the "precise tone plan").
CALL_PROGRESS: dict[str, ToneSpec] = {
    "dial": ToneSpec((350.0, 440.0)),
    "ringback": ToneSpec((440.0, 480.0), (2.0, 4.0)),
    "busy": ToneSpec((480.0, 620.0), (0.5, 0.5)),
    "reorder": ToneSpec((480.0, 620.0), (0.25, 0.25)),
}


def _check(amplitude: float, rate: int, freqs: tuple[float, ...]) -> None:
    if not 0.0 <= amplitude <= 1.0:
        raise ToneError(f"amplitude must be 0-1 of full scale, got {amplitude}")
    if rate <= 0:
        raise ToneError(f"rate must be positive, got {rate}")
    for freq in freqs:
        if not 0.0 <= freq < rate / 2:
            raise ToneError(f"{freq} Hz is outside 0-{rate / 2} Hz (Nyquist)")


def _to_int16(signal: npt.NDArray[np.float64]) -> Int16Array:
    return np.rint(signal).astype(np.int16)


def sine(
    freq_hz: float,
    duration_s: float,
    amplitude: float = 0.5,
    rate: int = RATE,
    phase: float = 0.0,
) -> Int16Array:
    """``round(duration_s * rate)`` samples of a sine, peak ``amplitude`` of full scale."""
    _check(amplitude, rate, (freq_hz,))
    n = np.arange(round(duration_s * rate))
    return _to_int16(amplitude * FULL_SCALE * np.sin(2 * np.pi * freq_hz * n / rate + phase))


class ToneGenerator:
    """Consecutive frames of summed sines with continuous phase, optionally cadenced.

    The tones share the peak ``amplitude`` equally, so the sum never clips.  Phases are
    kept per tone and wrapped to 2π after each frame, so hours of frames stay exact.
    During the off part of a cadence the frames are silent.
    """

    def __init__(
        self,
        freqs: tuple[float, ...],
        amplitude: float = 0.5,
        *,
        cadence: tuple[float, ...] = (),
        rate: int = RATE,
        frame_size: int = FRAME,
    ) -> None:
        _check(amplitude, rate, freqs)
        if not freqs or frame_size <= 0:
            raise ToneError("a tone needs at least one frequency and a positive frame size")
        if len(cadence) % 2 or any(t <= 0 for t in cadence):
            raise ToneError(f"cadence must be positive on/off pairs, got {cadence}")
        self.frame_size = frame_size
        self._level = amplitude * FULL_SCALE / len(freqs)
        self._step = 2 * np.pi * np.asarray(freqs, dtype=np.float64)[:, np.newaxis] / rate
        self._phase = np.zeros((len(freqs), 1))
        self._ramp = np.arange(frame_size, dtype=np.float64)
        self._gate = np.repeat(np.arange(len(cadence)) % 2 == 0, [round(t * rate) for t in cadence])
        self._sample = 0

    @classmethod
    def call_progress(cls, name: str, amplitude: float = 0.25) -> ToneGenerator:
        """A generator for one of :data:`CALL_PROGRESS` (``dial``, ``ringback``, ...)."""
        spec = CALL_PROGRESS.get(name)
        if spec is None:
            raise ToneError(f"unknown call-progress tone {name!r}; known: {sorted(CALL_PROGRESS)}")
        return cls(spec.freqs, amplitude, cadence=spec.cadence)

    def next_frame(self) -> Int16Array:
        """The next ``frame_size`` samples."""
        angles = self._phase + self._step * self._ramp
        frame = self._level * np.sin(angles).sum(axis=0)
        self._phase = (self._phase + self._step * self.frame_size) % (2 * np.pi)
        if self._gate.size:
            index = (self._sample + np.arange(self.frame_size)) % self._gate.size
            frame *= self._gate[index]
        self._sample += self.frame_size
        return _to_int16(frame)


def dtmf_tone(
    digit: str, duration: float = 0.1, amplitude: float = 0.5, rate: int = RATE
) -> Int16Array:
    """The Q.23 dual tone of ``digit`` for ``duration`` seconds, both tones at equal level."""
    key = DIGITS[event_code(digit)]
    low, high = DTMF_FREQUENCIES[key]
    _check(amplitude, rate, (low, high))
    n = np.arange(round(duration * rate))
    both = np.sin(2 * np.pi * low * n / rate) + np.sin(2 * np.pi * high * n / rate)
    return _to_int16(amplitude * FULL_SCALE / 2 * both)


def _samples(pcm: npt.NDArray[np.integer] | npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    samples = np.asarray(pcm, dtype=np.float64)
    if samples.ndim != 1 or samples.size < 2:
        raise ToneError("expected a 1-D signal of at least 2 samples")
    return samples


def dominant_frequency(
    pcm: npt.NDArray[np.integer] | npt.NDArray[np.floating], rate: int = RATE
) -> float:
    """Frequency in Hz of the strongest spectral peak of ``pcm``.

    The mean is removed, a Hann window applied, and the signal zero-padded to 4x (at least)
    before the FFT; the peak is refined by fitting a parabola through the log magnitudes of
    its bin and neighbours, which for a Hann window is accurate to a small fraction of a
    bin (well under 1 Hz on one second of audio).
    """
    samples = _samples(pcm)
    samples = samples - samples.mean()
    size = 1 << (max(samples.size - 1, 1).bit_length() + 2)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size), size))
    peak = int(np.argmax(spectrum[1:-1])) + 1
    if spectrum[peak] <= 0.0:
        raise ToneError("the signal is silent (or pure DC): no dominant frequency")
    left, centre, right = np.log(np.maximum(spectrum[peak - 1 : peak + 2], 1e-300))
    curvature = left - 2 * centre + right
    offset = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
    return float((peak + offset) * rate / size)


def goertzel_power(
    pcm: npt.NDArray[np.integer] | npt.NDArray[np.floating], freq: float, rate: int = RATE
) -> float:
    """Power of ``pcm`` at ``freq`` Hz: ``|X(freq)|² / N²`` for the N-sample DFT.

    This is the single bin the Goertzel algorithm computes, evaluated as one numpy dot
    product.  A sine of peak ``A`` at ``freq`` gives about ``A² / 4``.
    """
    samples = _samples(pcm)
    _check(0.0, rate, (freq,))
    n = np.arange(samples.size)
    bin_value = samples @ np.exp(-2j * np.pi * freq * n / rate)
    return float(abs(bin_value) ** 2 / samples.size**2)
