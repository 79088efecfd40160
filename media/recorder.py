"""Call recording to RIFF/WAVE PCM16 files, written off the audio tick by one thread.

The engine calls :meth:`Recorder.write` once per 20 ms tick with one frame per party
(rows = channels: party 0 is the left channel, party 1 the right). A party that is absent
or muted is recorded as silence so the channels stay time-aligned. ``write`` only copies
the frame and puts it on a queue; a single background thread owns the files, writes the
interleaved samples with the stdlib :mod:`wave` module, and finalises the RIFF header when
:meth:`Recorder.stop` closes them. An optional second file holds the mono mix of all parties.

Pausing skips audio: nothing is captured while paused, so the file is shorter than the call
by the paused time (Twilio's ``pauseBehavior="skip"``), and no silence marks the gap.

The queue is unbounded so the caller never waits on the disk; :attr:`Recorder.backlog`
shows how far the writer is behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import wave
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from media.mixer import mix

logger = logging.getLogger(__name__)

_SAMPLE_WIDTH = 2  # bytes per PCM16 sample


class RecorderError(ValueError):
    """Bad frames, or a recorder used after stop or after its writer failed."""


@dataclass(frozen=True)
class RecordingInfo:
    """What :meth:`Recorder.stop` wrote."""

    path: str
    """The multichannel WAV file."""
    duration: float
    """Seconds of audio captured (paused time excluded)."""
    frames_written: int
    """Number of :meth:`Recorder.write` frames captured (one per tick)."""


class Recorder:
    """Records one call: ``channels`` parties into one WAV, optionally a mono mix too."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        channels: int = 2,
        rate: int = 8000,
        mono_mix_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if channels < 1:
            raise RecorderError(f"channels must be >= 1, got {channels}")
        if rate < 1:
            raise RecorderError(f"rate must be a positive sample rate, got {rate}")
        self.path = os.fspath(path)
        self.mono_mix_path = None if mono_mix_path is None else os.fspath(mono_mix_path)
        self.channels = channels
        self.rate = rate
        self._paused = False
        self._info: RecordingInfo | None = None
        self._frames = 0
        self._samples = 0
        self._error: BaseException | None = None
        self._queue: queue.SimpleQueue[npt.NDArray[np.int16] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, name=f"recorder:{os.path.basename(self.path)}", daemon=True
        )
        self._thread.start()

    @property
    def paused(self) -> bool:
        """Whether audio is currently being skipped."""
        return self._paused

    @property
    def backlog(self) -> int:
        """Frames handed to the writer thread and not yet written."""
        return self._queue.qsize()

    def write(self, frames: npt.NDArray[np.int16], present: npt.NDArray[np.bool_]) -> None:
        """Queue one tick: ``frames`` is int16 ``[channels, samples]``, ``present`` one bool
        per channel; absent channels are recorded as silence. Never waits for I/O."""
        self._check_running()
        if (
            not isinstance(frames, np.ndarray)
            or frames.dtype != np.int16
            or frames.ndim != 2
            or frames.shape[0] != self.channels
        ):
            raise RecorderError(f"frames must be int16 [{self.channels}, samples]")
        present = np.asarray(present)
        if present.dtype != np.bool_ or present.shape != (self.channels,):
            raise RecorderError(f"present must be a bool array of {self.channels} entries")
        if self._paused:
            return
        block = frames.copy()
        block[~present] = 0
        self._queue.put(block)
        self._frames += 1
        self._samples += block.shape[1]

    def pause(self) -> None:
        """Stop capturing until :meth:`resume`; paused time is left out of the file."""
        self._check_running()
        self._paused = True

    def resume(self) -> None:
        """Capture again after :meth:`pause`."""
        self._check_running()
        self._paused = False

    def stop(self) -> RecordingInfo:
        """Flush the queue, finalise the WAV header(s) and return what was recorded.

        Blocks until the writer thread has finished; calling it again returns the same info.
        Raises :class:`RecorderError` if the writer failed.
        """
        if self._info is None:
            self._queue.put(None)
            self._thread.join()
            self._info = RecordingInfo(self.path, self._samples / self.rate, self._frames)
        if self._error is not None:
            raise RecorderError(f"recording to {self.path} failed: {self._error}") from self._error
        return self._info

    def _check_running(self) -> None:
        if self._info is not None:
            raise RecorderError(f"recorder for {self.path} is stopped")
        if self._error is not None:
            raise RecorderError(f"recording to {self.path} failed: {self._error}") from self._error

    @contextlib.contextmanager
    def _wav(self, path: str, channels: int) -> Iterator[wave.Wave_write]:
        # Open the file ourselves: wave.open(path) leaks a half-built object when it fails.
        # The wave writer closes first, finalising the RIFF sizes, then the file.
        with open(path, "wb") as file, wave.open(file, "wb") as wav:
            wav.setnchannels(channels)
            wav.setsampwidth(_SAMPLE_WIDTH)
            wav.setframerate(self.rate)
            yield wav

    def _run(self) -> None:
        """Writer thread: the only code that touches the files."""
        finished = False
        try:
            with contextlib.ExitStack() as stack:
                main = stack.enter_context(self._wav(self.path, self.channels))
                mono = None
                if self.mono_mix_path is not None:
                    mono = stack.enter_context(self._wav(self.mono_mix_path, 1))
                while (block := self._queue.get()) is not None:
                    # [channels, samples] transposed is the interleaved WAV layout.
                    main.writeframesraw(block.T.astype("<i2").tobytes())
                    if mono is not None:
                        mono.writeframesraw(mix(block).astype("<i2").tobytes())
                finished = True
        except Exception as exc:  # handed to the engine by write() and stop()
            logger.exception("recording to %s failed", self.path)
            self._error = exc
            if not finished:
                while self._queue.get() is not None:
                    pass
