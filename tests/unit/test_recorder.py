"""Tests for media.recorder (RIFF/WAVE PCM16 call recording on a writer thread)."""

from __future__ import annotations

import threading
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from media.mixer import mix
from media.recorder import Recorder, RecorderError, RecordingInfo

RATE = 8000
FRAME = 160
BOTH = np.array([True, True])


def tone(freq: float, seconds: float, amplitude: int = 8000) -> npt.NDArray[np.int16]:
    t = np.arange(int(RATE * seconds)) / RATE
    signal: npt.NDArray[np.int16] = np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(
        np.int16
    )
    return signal


def ticks(left: npt.NDArray[np.int16], right: npt.NDArray[np.int16]) -> Iterator[Any]:
    """Split two equal-length signals into the engine's [2, 160] frames."""
    for start in range(0, left.size, FRAME):
        yield np.stack([left[start : start + FRAME], right[start : start + FRAME]])


def read_wav(path: Path) -> tuple[wave._wave_params, npt.NDArray[np.int16]]:
    with wave.open(str(path), "rb") as wav:
        params = wav.getparams()
        data = np.frombuffer(wav.readframes(params.nframes), dtype="<i2").astype(np.int16)
    return params, data.reshape(-1, params.nchannels).T


def peak_hz(signal: npt.NDArray[np.int16]) -> float:
    spectrum = np.abs(np.fft.rfft(signal.astype(np.float64)))
    return float(np.fft.rfftfreq(signal.size, 1 / RATE)[np.argmax(spectrum)])


def test_stereo_wav_has_party_zero_left_and_party_one_right(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = Recorder(path)
    for frame in ticks(tone(440, 1.0), tone(1000, 1.0)):
        recorder.write(frame, BOTH)
    info = recorder.stop()

    assert info == RecordingInfo(str(path), 1.0, 50)
    params, channels = read_wav(path)
    assert (params.nchannels, params.sampwidth, params.framerate) == (2, 2, RATE)
    assert params.nframes == RATE
    assert peak_hz(channels[0]) == 440.0
    assert peak_hz(channels[1]) == 1000.0
    np.testing.assert_array_equal(channels[0], tone(440, 1.0))


def test_file_is_a_riff_wave_pcm_file(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = Recorder(path)
    recorder.write(np.ones((2, FRAME), dtype=np.int16), BOTH)
    recorder.stop()
    header = path.read_bytes()[:44]
    assert header[:4] == b"RIFF" and header[8:16] == b"WAVEfmt "
    assert int.from_bytes(header[20:22], "little") == 1  # WAVE_FORMAT_PCM
    assert int.from_bytes(header[40:44], "little") == 2 * 2 * FRAME  # data chunk size
    assert path.stat().st_size == 44 + 2 * 2 * FRAME


def test_absent_party_is_recorded_as_silence_keeping_channels_aligned(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = Recorder(path)
    left, right = tone(440, 0.1), tone(1000, 0.1)
    for i, frame in enumerate(ticks(left, right)):
        recorder.write(frame, np.array([True, i % 2 == 0]))
    recorder.stop()

    _, channels = read_wav(path)
    np.testing.assert_array_equal(channels[0], left)
    expected = right.reshape(-1, FRAME).copy()
    expected[1::2] = 0
    np.testing.assert_array_equal(channels[1], expected.ravel())


def test_write_does_not_modify_the_callers_frame(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "call.wav")
    frame = np.full((2, FRAME), 9, dtype=np.int16)
    recorder.write(frame, np.array([False, False]))
    frame[:] = 1  # the engine reuses its buffers on the next tick
    recorder.stop()
    _, channels = read_wav(tmp_path / "call.wav")
    assert not channels.any()


def test_paused_time_is_silent_in_the_recording_and_keeps_the_timeline(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = Recorder(path)
    frames = [np.full((2, FRAME), i, dtype=np.int16) for i in range(1, 11)]
    for i, frame in enumerate(frames):
        if i == 3:
            recorder.pause()
            assert recorder.paused
        if i == 7:
            recorder.resume()
            assert not recorder.paused
        recorder.write(frame, BOTH)
    info = recorder.stop()

    assert info.frames_written == 10
    assert info.duration == pytest.approx(10 * FRAME / RATE)
    _, channels = read_wav(path)
    for channel in channels:
        assert list(channel[::FRAME]) == [1, 2, 3, 0, 0, 0, 0, 8, 9, 10]
        assert not channel[3 * FRAME : 7 * FRAME].any()


def test_mono_mix_file_is_the_saturating_sum_of_the_parties(tmp_path: Path) -> None:
    path, mono_path = tmp_path / "call.wav", tmp_path / "mix.wav"
    recorder = Recorder(path, mono_mix_path=mono_path)
    left, right = tone(440, 0.5, 20000), tone(1000, 0.5, 20000)
    for frame in ticks(left, right):
        recorder.write(frame, BOTH)
    recorder.stop()

    params, mono = read_wav(mono_path)
    assert (params.nchannels, params.framerate, params.nframes) == (1, RATE, left.size)
    np.testing.assert_array_equal(mono[0], mix(np.stack([left, right])))
    assert mono.max() == 32767  # 20000 + 20000 peaks clip rather than wrap


def test_recording_started_mid_call_counts_only_what_it_captured(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "late.wav", channels=1, rate=RATE)
    for _ in range(3):
        recorder.write(np.zeros((1, FRAME), dtype=np.int16), np.array([True]))
    assert recorder.stop() == RecordingInfo(str(tmp_path / "late.wav"), 0.06, 3)


def test_write_only_hands_the_frame_to_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hold the writer thread before it opens the file: every write must still return.
    gate = threading.Event()
    real_open = wave.open

    def held_open(file: Any, mode: str) -> Any:
        gate.wait()
        return real_open(file, mode)

    monkeypatch.setattr(wave, "open", held_open)
    path = tmp_path / "call.wav"
    recorder = Recorder(path)
    frame = np.zeros((2, FRAME), dtype=np.int16)
    for _ in range(1000):
        recorder.write(frame, BOTH)
    assert recorder.backlog == 1000
    assert not path.exists() or path.stat().st_size == 0  # nothing written yet

    gate.set()
    info = recorder.stop()
    assert recorder.backlog == 0
    assert info.frames_written == 1000
    monkeypatch.undo()
    params, _ = read_wav(path)
    assert params.nframes == 1000 * FRAME


def test_writer_failure_is_reported_to_the_engine(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "missing-dir" / "call.wav")
    with pytest.raises(RecorderError, match="failed"):
        recorder.stop()


def test_stop_is_idempotent_and_the_recorder_is_closed_afterwards(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "call.wav")
    recorder.write(np.zeros((2, FRAME), dtype=np.int16), BOTH)
    first = recorder.stop()
    assert recorder.stop() == first
    with pytest.raises(RecorderError, match="stopped"):
        recorder.write(np.zeros((2, FRAME), dtype=np.int16), BOTH)
    with pytest.raises(RecorderError, match="stopped"):
        recorder.pause()


@pytest.mark.parametrize(
    ("frames", "present", "match"),
    [
        (np.zeros((3, FRAME), dtype=np.int16), BOTH, "frames"),
        (np.zeros((2, FRAME), dtype=np.float32), BOTH, "frames"),
        (np.zeros(FRAME, dtype=np.int16), BOTH, "frames"),
        (np.zeros((2, FRAME), dtype=np.int16), np.array([1, 1]), "present"),
        (np.zeros((2, FRAME), dtype=np.int16), np.array([True]), "present"),
    ],
)
def test_malformed_frames_are_rejected(
    tmp_path: Path, frames: npt.NDArray[Any], present: npt.NDArray[Any], match: str
) -> None:
    recorder = Recorder(tmp_path / "call.wav")
    with pytest.raises(RecorderError, match=match):
        recorder.write(frames, present)
    recorder.stop()


def test_bad_channel_count_or_rate_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(RecorderError, match="channels"):
        Recorder(tmp_path / "a.wav", channels=0)
    with pytest.raises(RecorderError, match="rate"):
        Recorder(tmp_path / "a.wav", rate=0)


def test_recorders_started_together_hand_over_their_chunks_on_different_ticks(
    tmp_path: Path,
) -> None:
    count = Recorder.CHUNK_FRAMES
    recorders = [Recorder(tmp_path / f"{i}.wav") for i in range(count)]
    frame = np.zeros((2, FRAME), dtype=np.int16)
    handed_over: list[int] = []
    for tick in range(1, count + 1):
        for index, recorder in enumerate(recorders):
            recorder.write(frame, BOTH)
            if not recorder._pending:  # this write completed a chunk
                handed_over.append(index)
        # Each tick, exactly one recorder's first chunk is complete.
        assert len(handed_over) == tick
    assert sorted(handed_over) == list(range(count))
    for recorder in recorders:
        assert recorder.stop().frames_written == count
