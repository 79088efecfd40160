"""Opus legs: 8 kHz <-> 48 kHz resampling quality, the codec round trip, TOC, PLC, bad input."""

from __future__ import annotations

import fractions
from collections.abc import Callable

import av
import numpy as np
import numpy.typing as npt
import pytest

from media import opus

Int16Array = npt.NDArray[np.int16]
Resample = Callable[[Int16Array, Int16Array | None], Int16Array]


def tone(freq: float, seconds: float, rate: int, amplitude: float = 10_000) -> Int16Array:
    t = np.arange(round(seconds * rate)) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def stream(convert: Resample, signal: Int16Array, frame: int, streams: int = 1) -> Int16Array:
    """Feed ``signal`` frame by frame to ``convert`` as ``streams`` identical streams."""
    batches = np.tile(signal.reshape(-1, 1, frame), (1, streams, 1))
    previous: Int16Array | None = None
    out = []
    for batch in batches:
        out.append(convert(batch, previous))
        previous = batch
    return np.concatenate(out, axis=1)


def rms_db(signal: Int16Array) -> float:
    return float(10 * np.log10(np.mean(signal.astype(np.float64) ** 2) + 1e-9))


def spectrum(
    signal: Int16Array, rate: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Frequencies and levels in dB relative to the strongest bin (Blackman window)."""
    magnitude = np.abs(np.fft.rfft(signal * np.blackman(len(signal))))
    levels: npt.NDArray[np.float64] = 20 * np.log10(magnitude / magnitude.max() + 1e-12)
    freqs = np.fft.rfftfreq(len(signal), 1 / rate).astype(np.float64)
    return freqs, levels


def assert_pure_tone(signal: Int16Array, rate: int, freq: float, floor: float) -> None:
    freqs, levels = spectrum(signal, rate)
    assert freqs[np.argmax(levels)] == pytest.approx(freq, abs=rate / len(signal))
    assert levels[np.abs(freqs - freq) > 100].max() < floor


def test_1khz_round_trip_through_48khz_keeps_frequency_and_level() -> None:
    signal = tone(1000, 1.0, opus.RATE)
    back = stream(opus.downsample, stream(opus.upsample, signal, opus.FRAME, 3), opus.OPUS_FRAME)
    settled = back[:, opus.FRAME * 5 :]  # past the filters' start from silence
    for row in settled:
        assert abs(rms_db(row) - rms_db(signal)) < 1
        assert_pure_tone(row, opus.RATE, 1000, -40)


def test_upsampled_tone_has_no_images() -> None:
    up = stream(opus.upsample, tone(1000, 0.5, opus.RATE), opus.FRAME)[0, opus.OPUS_FRAME * 2 :]
    assert_pure_tone(up, opus.CLOCK_RATE, 1000, -40)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3500.0])
def test_passband_reaches_the_8khz_frame_within_1db(freq: float) -> None:
    signal = tone(freq, 0.5, opus.CLOCK_RATE)
    down = stream(opus.downsample, signal, opus.OPUS_FRAME)[0, opus.FRAME * 2 :]
    assert abs(rms_db(down) - rms_db(signal)) < 1
    assert_pure_tone(down, opus.RATE, freq, -40)


@pytest.mark.parametrize("freq", [4100.0, 5000.0, 7000.0, 12_000.0, 20_000.0])
def test_content_above_4khz_is_40db_down_after_downsampling(freq: float) -> None:
    signal = tone(freq, 0.5, opus.CLOCK_RATE)
    down = stream(opus.downsample, signal, opus.OPUS_FRAME)[0, opus.FRAME * 2 :]
    assert rms_db(down) < rms_db(signal) - 40


def test_frame_by_frame_equals_filtering_the_whole_signal() -> None:
    """The polyphase filters, carried across frame edges, are LOWPASS applied to all of it."""
    signal = tone(440, 0.2, opus.RATE) // 2 + tone(3300, 0.2, opus.RATE) // 2
    stuffed = np.zeros(len(signal) * opus.FACTOR)
    stuffed[:: opus.FACTOR] = signal
    up = np.convolve(stuffed, opus.LOWPASS * opus.FACTOR)[: len(stuffed)]
    framed_up = stream(opus.upsample, signal, opus.FRAME)[0]
    assert np.abs(framed_up - up).max() <= 1

    down = np.convolve(framed_up, opus.LOWPASS)[opus.FACTOR - 1 :: opus.FACTOR][: len(signal)]
    framed_down = stream(opus.downsample, framed_up, opus.OPUS_FRAME)[0]
    assert np.abs(framed_down - down).max() <= 1


def test_a_frame_without_its_predecessor_starts_from_silence() -> None:
    first, second = tone(440, 0.04, opus.RATE).reshape(2, 1, opus.FRAME)
    continued = opus.upsample(second, first)
    assert not np.array_equal(opus.upsample(second), continued)
    assert np.array_equal(opus.upsample(second, np.zeros_like(first)), opus.upsample(second))


def test_resamplers_reject_wrong_shapes() -> None:
    with pytest.raises(ValueError):
        opus.upsample(np.zeros((1, opus.OPUS_FRAME), np.int16))
    with pytest.raises(ValueError):
        opus.downsample(
            np.zeros((2, opus.OPUS_FRAME), np.int16), np.zeros((1, opus.OPUS_FRAME), np.int16)
        )
    with pytest.raises(ValueError):
        opus.upsample(np.zeros((1, opus.FRAME), np.float32))


def toc_frame_ms(toc: int) -> float:
    """Frame duration of an Opus TOC byte's configuration (RFC 6716 §3.1, Table 2)."""
    config = toc >> 3
    if config < 12:
        return (10, 20, 40, 60)[config % 4]
    if config < 16:
        return (10, 20)[config % 2]
    return (2.5, 5, 10, 20)[config % 4]


def coded(freq: float, frames: int = 50) -> tuple[list[bytes], Int16Array]:
    encoder = opus.OpusEncoder()
    decoder = opus.OpusDecoder()
    packets = [
        encoder.encode(frame)
        for frame in tone(freq, frames * 0.02, opus.RATE).reshape(-1, opus.FRAME)
    ]
    return packets, np.concatenate([decoder.decode(packet) for packet in packets])


@pytest.mark.parametrize("freq", [440.0, 1000.0])
def test_tone_survives_encoder_and_decoder(freq: float) -> None:
    _, decoded = coded(freq)
    settled = decoded[opus.FRAME * 10 :]
    assert abs(rms_db(settled) - rms_db(tone(freq, 1, opus.RATE))) < 1
    assert_pure_tone(settled, opus.RATE, freq, -30)


def test_encoder_sends_one_20ms_mono_frame_per_packet() -> None:
    packets, decoded = coded(1000, frames=10)
    assert len(decoded) == 10 * opus.FRAME
    for packet in packets:
        toc = packet[0]
        assert toc_frame_ms(toc) == 20
        assert toc & 0x04 == 0  # s: mono
        assert toc & 0x03 == 0  # c: code 0, one frame
        assert 1 < len(packet) <= 1275  # RFC 6716 §3.2.1: at most 1275 bytes a frame


def stereo_packets(left: Int16Array, right: Int16Array) -> list[bytes]:
    """Packets of a stereo libopus encoder at 48 kHz, as Chrome may send them."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = opus.CLOCK_RATE
    codec.layout = "stereo"
    codec.format = "s16"
    codec.bit_rate = 64_000
    codec.time_base = fractions.Fraction(1, opus.CLOCK_RATE)
    packets = []
    for start in range(0, len(left), opus.OPUS_FRAME):
        end = start + opus.OPUS_FRAME
        interleaved = np.stack([left[start:end], right[start:end]], axis=1).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(interleaved, "s16", "stereo")
        frame.sample_rate = opus.CLOCK_RATE
        frame.pts = start
        packets += [bytes(packet) for packet in codec.encode(frame)]
    return packets


def test_decoder_downmixes_a_stereo_packet() -> None:
    left = tone(1000, 1, opus.CLOCK_RATE)
    packets = stereo_packets(left, np.zeros_like(left))
    assert packets[0][0] & 0x04  # s: stereo
    decoder = opus.OpusDecoder()
    decoded = np.concatenate([decoder.decode(packet) for packet in packets])
    assert decoded.shape == (len(packets) * opus.FRAME,)
    settled = decoded[opus.FRAME * 10 :]
    # Half of one channel: 6 dB below it.
    assert rms_db(settled) == pytest.approx(rms_db(left) - 6, abs=1.5)
    assert_pure_tone(settled, opus.RATE, 1000, -30)


def test_conceal_continues_the_signal_with_opus_plc() -> None:
    decoder = opus.OpusDecoder()
    assert not decoder.conceal().any()  # nothing received yet: silence
    packets, _ = coded(440, frames=20)
    for packet in packets:
        decoder.decode(packet)
    concealed = decoder.conceal()
    assert concealed.shape == (opus.FRAME,)
    assert rms_db(concealed) > rms_db(tone(440, 0.02, opus.RATE)) - 6
    assert decoder.decode(packets[-1]).shape == (opus.FRAME,)


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xff\xff\xff", b"\x03", b"\x7b\xff\xff\xff\xff", b"\x78" + bytes(1500), b"\x00"],
    ids=["empty", "code3-garbage", "code3-no-count", "code3-bad-count", "too-long", "10ms"],
)
def test_bad_payload_raises_value_error_and_decoder_goes_on(payload: bytes) -> None:
    packets, _ = coded(440, frames=3)
    decoder = opus.OpusDecoder()
    decoder.decode(packets[0])
    with pytest.raises(ValueError):
        decoder.decode(payload)
    assert decoder.decode(packets[1]).shape == (opus.FRAME,)
