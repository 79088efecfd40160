"""Audio checks for tests: the expected tone really flowed, loud enough, long enough, alone.

A test that says audio flowed calls :func:`assert_tone` on what a peer recorded::

    assert_tone(phone_b.audio(0), 1000, seconds=1.0)

The recording is cut into 100 ms windows.  A window *holds* the tone when every expected
frequency is at least ``min_level_dbfs`` loud in it (its single-bin DFT amplitude: the
sine's peak for a tone on the frequency; a tone 4 Hz off still counts, 8 Hz off does not)
and the expected frequencies carry at least half the window's energy.  The check passes when:

- **duration**: the tone is held in at least ``presence`` (90 %) of the windows that
  ``seconds`` of tone spans, so one 20 ms frame in a second of silence fails;
- **level**: the same windows count only if loud enough, so a tone 2 LSB loud fails;
- **nothing else**: the strongest spectral peak away from the expected frequencies,
  averaged over the whole recording, is at least ``-max_leak_db`` dB below the weakest
  expected tone, so the speaker's own tone echoed at -6 dB beside the right one fails.

Leading or trailing silence is allowed (set-up and tear-down); anything else in the
recording counts as a leak, so slice a recording that legitimately holds other sounds.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from media import g711
from media.rtp import RtpPacket
from media.tones import FULL_SCALE, RATE

#: Window length of the presence check, in seconds.
WINDOW = 0.1
#: Spectral peaks closer than this to an expected frequency belong to it (the Hann main
#: lobe of a 100 ms window is +-20 Hz; a tone starting mid-window smears a little wider).
GUARD_HZ = 50.0
#: Peaks below this are hum or DC drift, not tones.
LOWEST_HZ = 60.0

#: A timestamp further ahead than this (10 s at 8 kHz) is a new stretch, not a gap.
MAX_GAP = 80_000

Pcm = npt.NDArray[np.integer] | npt.NDArray[np.floating]


def _lay_out(placed: list[tuple[int, npt.NDArray[np.int16]]]) -> npt.NDArray[np.int16]:
    """Samples put at their offsets; what no packet covered stays silent."""
    size = max((offset + samples.size for offset, samples in placed), default=0)
    audio = np.zeros(size, np.int16)
    for offset, samples in placed:
        audio[offset : offset + samples.size] = samples
    return audio


def recorded_audio(packets: Iterable[RtpPacket], pts: Collection[int]) -> npt.NDArray[np.int16]:
    """What a peer heard: the G.711 ``pts`` packets among ``packets`` (in arrival order)
    decoded, each at its RTP timestamp, so a lost packet leaves 20 ms of silence (RFC 3550
    §5.1: the timestamp is the sampling instant).  A new SSRC, or a timestamp jump backwards
    or of over 10 s, starts a new stretch after what came before, as a new source would."""
    stretches: list[npt.NDArray[np.int16]] = []
    placed: list[tuple[int, npt.NDArray[np.int16]]] = []
    ssrc, base = -1, 0
    for packet in packets:
        if packet.payload_type not in pts:
            continue
        offset = (packet.timestamp - base) & 0xFFFFFFFF
        if packet.ssrc != ssrc or offset > MAX_GAP:
            stretches.append(_lay_out(placed))
            placed, ssrc, base, offset = [], packet.ssrc, packet.timestamp, 0
        placed.append((offset, g711.decode(packet.payload_type, packet.payload)))
    stretches.append(_lay_out(placed))
    return np.concatenate(stretches)


@dataclass(frozen=True, slots=True)
class ToneReport:
    """What :func:`tone_report` measured in one recording."""

    freqs: tuple[float, ...]
    """The expected frequencies in Hz."""
    windows: int
    """100 ms windows in the recording."""
    held: int
    """Windows in which every expected frequency was present, loud enough and dominant."""
    level_dbfs: float
    """Median level of the weakest expected tone over the windows that held it (dBFS,
    peak amplitude against full scale); ``-inf`` when none did."""
    leak_hz: float
    """Frequency of the strongest spectral peak away from the expected ones."""
    leak_db: float
    """That peak against the weakest expected tone, in dB (negative: quieter)."""

    @property
    def held_seconds(self) -> float:
        """Seconds of recording that held the tone."""
        return self.held * WINDOW

    def describe(self) -> str:
        """One line for an assertion message."""
        tones = " + ".join(f"{f:g} Hz" for f in self.freqs)
        return (
            f"{tones}: held in {self.held} of {self.windows} windows of {WINDOW * 1000:g} ms, "
            f"level {self.level_dbfs:.1f} dBFS, strongest other peak {self.leak_hz:.0f} Hz "
            f"at {self.leak_db:+.1f} dB"
        )


def _windows(pcm: Pcm, rate: int) -> npt.NDArray[np.float64]:
    size = round(WINDOW * rate)
    samples = np.asarray(pcm, dtype=np.float64)
    if samples.ndim != 1:
        raise ValueError(f"expected a 1-D recording, got shape {samples.shape}")
    count = samples.size // size
    rows = samples[: count * size].reshape(count, size)
    centred: npt.NDArray[np.float64] = rows - rows.mean(axis=1, keepdims=True)
    return centred


def _amplitudes(
    rows: npt.NDArray[np.float64], freqs: tuple[float, ...], rate: int
) -> npt.NDArray[np.float64]:
    """Peak amplitude of each frequency in each window, from its single DFT bin
    (``|X(f)| / N`` is ``A / 2`` for a sine of peak ``A``): shape (windows, tones)."""
    size = rows.shape[1]
    basis = np.exp(-2j * np.pi * np.outer(freqs, np.arange(size)) / rate)
    amplitude: npt.NDArray[np.float64] = 2 * np.abs(rows @ basis.T) / size
    return amplitude


def _expected(freqs: float | tuple[float, ...]) -> tuple[float, ...]:
    return (float(freqs),) if isinstance(freqs, int | float) else tuple(freqs)


def _dbfs(amplitude: float) -> float:
    return 20 * math.log10(amplitude / FULL_SCALE) if amplitude > 0 else -math.inf


def tone_report(
    pcm: Pcm,
    freqs: float | tuple[float, ...],
    *,
    min_level_dbfs: float = -30.0,
    rate: int = RATE,
) -> ToneReport:
    """Measure how much of ``pcm`` holds the tone(s) ``freqs`` and what else it holds."""
    expected = _expected(freqs)
    rows = _windows(pcm, rate)
    if not rows.shape[0]:
        return ToneReport(expected, 0, 0, -math.inf, 0.0, 0.0)
    size = rows.shape[1]
    amplitude = _amplitudes(rows, expected, rate)
    energy = np.mean(rows**2, axis=1)  # A^2 / 2 for a sine
    loud = np.all(amplitude >= FULL_SCALE * 10 ** (min_level_dbfs / 20), axis=1)
    dominant = np.sum(amplitude**2, axis=1) / 2 >= 0.5 * np.maximum(energy, 1e-12)
    held = loud & dominant
    weakest = amplitude.min(axis=1)
    level = _dbfs(float(np.median(weakest[held]))) if held.any() else -math.inf

    spectrum = np.mean(np.abs(np.fft.rfft(rows * np.hanning(size), 4 * size)) ** 2, axis=0)
    bins = np.fft.rfftfreq(4 * size, 1 / rate)
    near = np.zeros(bins.size, bool)
    tone_peaks = []
    for freq in expected:
        lobe = np.abs(bins - freq) <= GUARD_HZ
        near |= lobe
        tone_peaks.append(float(spectrum[lobe].max()))
    others = np.where(near | (bins < LOWEST_HZ), 0.0, spectrum)
    peak = int(np.argmax(others))
    reference = max(min(tone_peaks), 1e-12)
    leak_db = 10 * math.log10(max(float(others[peak]), 1e-12) / reference)
    return ToneReport(expected, rows.shape[0], int(held.sum()), level, float(bins[peak]), leak_db)


def assert_tone(
    pcm: Pcm,
    freqs: float | tuple[float, ...],
    seconds: float,
    *,
    presence: float = 0.9,
    min_level_dbfs: float = -30.0,
    max_leak_db: float = -20.0,
    rate: int = RATE,
) -> ToneReport:
    """Fail unless ``pcm`` holds ``freqs`` for ``presence`` of ``seconds``, loud and alone.

    Returns the report, so a test can check more (e.g. that a later span is longer).
    """
    report = tone_report(pcm, freqs, min_level_dbfs=min_level_dbfs, rate=rate)
    needed = math.ceil(presence * seconds / WINDOW - 1e-9)
    problems = []
    if report.held < needed:
        problems.append(f"held in {report.held} windows, needed {needed} of {seconds:g} s")
    if report.leak_db > max_leak_db:
        problems.append(f"another tone at {report.leak_hz:.0f} Hz above {max_leak_db:g} dB")
    if problems:
        raise AssertionError("; ".join(problems) + f" ({report.describe()})")
    return report


def assert_no_tone(
    pcm: Pcm, freqs: float | tuple[float, ...], *, max_level_dbfs: float = -50.0, rate: int = RATE
) -> None:
    """Fail if any 100 ms window of ``pcm`` holds any of ``freqs`` above ``max_level_dbfs``.

    Silence proves something only once the test has shown that the path delivers audio.
    """
    rows = _windows(pcm, rate)
    if not rows.shape[0]:
        return
    expected = _expected(freqs)
    loudest = _amplitudes(rows, expected, rate).max(axis=0)
    for freq, amplitude in zip(expected, loudest, strict=True):
        if _dbfs(float(amplitude)) > max_level_dbfs:
            raise AssertionError(
                f"{freq:g} Hz reached {_dbfs(float(amplitude)):.1f} dBFS in a "
                f"{WINDOW * 1000:g} ms window (bound {max_level_dbfs:g} dBFS)"
            )


async def until_heard(
    recording: Callable[[], Pcm],
    freqs: float | tuple[float, ...],
    seconds: float,
    *,
    timeout: float = 10.0,
    presence: float = 0.9,
    max_leak_db: float = -20.0,
) -> ToneReport:
    """Wait until :func:`assert_tone` passes on ``recording()`` (polled every 20 ms), or
    fail with its message once ``timeout`` seconds have passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return assert_tone(
                recording(), freqs, seconds, presence=presence, max_leak_db=max_leak_db
            )
        except AssertionError:
            if loop.time() >= deadline:
                raise
        await asyncio.sleep(0.02)
