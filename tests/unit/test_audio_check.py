"""The shared audio check fails on each way a weak check passed (issue 10), and passes real
audio: a tone through G.711, with silence around it, a packet lost here and there."""

from __future__ import annotations

import numpy as np
import pytest

from media import g711
from media.rtp import RtpPacket
from media.tones import CALL_PROGRESS, ToneGenerator, sine
from tests.audio import assert_no_tone, assert_tone, recorded_audio, tone_report

SILENCE = np.zeros(8000, np.int16)


def g711_round_trip(pcm: np.ndarray, pt: int = g711.PCMU) -> np.ndarray:
    return g711.decode(pt, g711.encode(pt, pcm).tobytes())


def test_a_second_of_tone_through_g711_with_silence_around_it_passes() -> None:
    pcm = np.concatenate([SILENCE[:2000], sine(1000, 1.0, 0.4), SILENCE[:3000]])
    for pt in (g711.PCMU, g711.PCMA):
        report = assert_tone(g711_round_trip(pcm, pt), 1000, seconds=1.0)
        assert report.held >= 9 and report.level_dbfs == pytest.approx(-8.0, abs=0.5)
        assert report.leak_db < -30


def test_a_few_lost_frames_still_pass_but_a_third_lost_fails() -> None:
    frames = sine(440, 2.0, 0.4).reshape(100, 160)
    assert_tone(np.concatenate(np.delete(frames, [10, 40, 70], axis=0)), 440, seconds=2.0)
    with pytest.raises(AssertionError, match="held in"):
        assert_tone(np.concatenate(frames[::3]), 440, seconds=2.0)


def test_one_frame_of_tone_in_a_second_of_silence_fails() -> None:
    pcm = SILENCE.copy()
    pcm[4000:4160] = sine(1000, 0.02, 0.4)
    with pytest.raises(AssertionError, match="held in [01] windows, needed 9"):
        assert_tone(pcm, 1000, seconds=1.0)


def test_a_tone_two_lsb_loud_fails() -> None:
    quiet = np.rint(2 * np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000)).astype(np.int16)
    assert tone_report(quiet, 1000).level_dbfs == -np.inf  # no window was loud enough
    with pytest.raises(AssertionError, match="held in 0 windows"):
        assert_tone(quiet, 1000, seconds=1.0)


def test_the_speakers_own_tone_echoed_at_minus_6db_beside_the_right_one_fails() -> None:
    right = sine(1000, 1.0, 0.4).astype(np.int32)
    echo = sine(440, 1.0, 0.2).astype(np.int32)
    pcm = g711_round_trip((right + echo).astype(np.int16))
    with pytest.raises(AssertionError, match="another tone at 440 Hz"):
        assert_tone(pcm, 1000, seconds=1.0)


def test_a_third_party_16db_down_fails_and_40db_down_passes() -> None:
    right = sine(1000, 1.0, 0.4)
    for level, fails in ((0.06, True), (0.004, False)):
        pcm = (right + sine(697, 1.0, level)).astype(np.int16)
        if fails:
            with pytest.raises(AssertionError, match="another tone at 69[78] Hz"):
                assert_tone(pcm, 1000, seconds=1.0)
        else:
            assert_tone(pcm, 1000, seconds=1.0)


def test_the_wrong_tone_alone_fails() -> None:
    with pytest.raises(AssertionError, match="held in 0 windows"):
        assert_tone(sine(1010, 1.0, 0.4), 1000, seconds=1.0)
    with pytest.raises(AssertionError):
        assert_tone(sine(440, 1.0, 0.4), 1000, seconds=1.0)


def test_ringback_is_heard_during_its_on_time_only() -> None:
    generator = ToneGenerator.call_progress("ringback")
    pcm = np.concatenate([generator.next_frame() for _ in range(150)])  # 3 s: 2 on, 1 off
    assert_tone(g711_round_trip(pcm), CALL_PROGRESS["ringback"].freqs, seconds=2.0)
    with pytest.raises(AssertionError, match="held in"):
        assert_tone(pcm, CALL_PROGRESS["ringback"].freqs, seconds=3.0)


def test_empty_and_short_recordings_fail_and_two_d_input_is_refused() -> None:
    with pytest.raises(AssertionError, match="held in 0 windows"):
        assert_tone(np.zeros(0, np.int16), 1000, seconds=0.5)
    with pytest.raises(AssertionError, match="held in 0 windows"):
        assert_tone(sine(1000, 0.05), 1000, seconds=0.5)
    with pytest.raises(ValueError, match="1-D"):
        assert_tone(np.zeros((2, 800), np.int16), 1000, seconds=0.1)


def test_assert_no_tone_fails_on_a_faint_tone_and_passes_silence_and_other_tones() -> None:
    assert_no_tone(SILENCE, 800)
    assert_no_tone(g711_round_trip(sine(1000, 1.0, 0.4)), 800)
    pcm = SILENCE.copy()
    pcm[2000:2800] = sine(800, 0.1, 0.01)  # -40 dBFS for 100 ms
    with pytest.raises(AssertionError, match="800 Hz reached"):
        assert_no_tone(pcm, (440, 800))


def rtp_stream(pcm: np.ndarray, ssrc: int, first_ts: int, skip: set[int]) -> list[RtpPacket]:
    frames = pcm.reshape(-1, 160)
    return [
        RtpPacket(
            0, index, (first_ts + 160 * index) & 0xFFFFFFFF, ssrc, g711.encode(0, f).tobytes()
        )
        for index, f in enumerate(frames)
        if index not in skip
    ]


def test_recorded_audio_leaves_lost_packets_silent_so_heavy_loss_fails() -> None:
    tone = sine(1000, 1.0, 0.4)
    whole = recorded_audio(rtp_stream(tone, 7, 0xFFFFFF00, set()), (0,))  # wraps
    assert whole.size == 8000
    assert_tone(whole, 1000, seconds=1.0)
    halved = recorded_audio(rtp_stream(tone, 7, 0, set(range(1, 49, 2))), (0,))
    assert halved.size == 8000 and not halved[160:320].any()
    with pytest.raises(AssertionError, match="held in [0-6] windows"):
        assert_tone(halved, 1000, seconds=1.0)


def test_recorded_audio_puts_a_new_source_after_the_old_and_skips_other_types() -> None:
    first = rtp_stream(sine(1000, 0.5, 0.4), 1, 5000, set())
    second = rtp_stream(sine(440, 0.5, 0.4), 2, 90, set())
    event = RtpPacket(101, 99, 0, 1, b"\x05\x80\x00\xa0")
    audio = recorded_audio([*first, event, *second], (0,))
    assert audio.size == 8000
    assert_tone(audio[:4000], 1000, seconds=0.5)
    assert_tone(audio[4000:], 440, seconds=0.5)
