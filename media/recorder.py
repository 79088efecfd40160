"""Call recording to RIFF/WAVE PCM16 files, written off the audio tick by one thread.

The engine calls :meth:`Recorder.write` once per 20 ms tick with one frame per party
(rows = channels: party 0 is the left channel, party 1 the right). A party that is absent
or muted is recorded as silence so the channels stay time-aligned. ``write`` only copies
the frame; every second's worth goes as one chunk to the writer thread that all recorders
share, which owns the files, writes the interleaved samples with the stdlib :mod:`wave`
module, and finalises the RIFF header when :meth:`Recorder.stop` closes them. An optional
second file holds the mono mix of all parties.

One shared thread fed one chunk a second, rather than a thread per call fed every tick:
each wake-up of another thread can take the GIL from the audio tick for up to the
interpreter's switch interval (5 ms), so threads and wake-ups are kept few. Recorders
started together (a burst of calls) would hand over their chunks on the same tick and make
the writer hold the GIL for one long stretch each second, so each recorder's first chunk
is shorter by a different amount: the chunks arrive spread over the second.

Pausing keeps the timeline: while paused every tick is written as silence on every
channel (Twilio's ``pauseBehavior="silence"``), so the file lasts as long as the recording
ran and a listener hears where the rep paused (say, while a card number was read out).

The queue is unbounded so the caller never waits on the disk; :attr:`Recorder.backlog`
shows how far the writer is behind.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import threading
import wave
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
    """Seconds of audio in the file (paused time included, as silence)."""
    frames_written: int
    """Number of :meth:`Recorder.write` frames written (one per tick, paused ones too)."""


class _Writer:
    """The thread that writes every recording, started on first use."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Recorder, npt.NDArray[np.int16] | None, int]] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(
        self, recorder: Recorder, chunk: npt.NDArray[np.int16] | None, frames: int = 0
    ) -> None:
        """Queue a chunk of ``frames`` ticks for ``recorder``; ``None`` closes its files."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
                self._thread.start()
        self._queue.put((recorder, chunk, frames))

    def _run(self) -> None:
        while True:
            recorder, chunk, frames = self._queue.get()
            recorder._handle(chunk, frames)


_WRITER = _Writer()


class Recorder:
    """Records one call: ``channels`` parties into one WAV, optionally a mono mix too."""

    #: Frames (20 ms each) collected before they go to the writer as one chunk.
    CHUNK_FRAMES = 50
    #: Numbers recorders in order of creation, to stagger their chunks.
    _created = itertools.count()

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
        self._written = 0
        self._pending: list[npt.NDArray[np.int16]] = []
        #: Frames the first chunk gathers: 1 to CHUNK_FRAMES, in turn by creation.
        self._chunk_frames = 1 + next(Recorder._created) % self.CHUNK_FRAMES
        self._error: BaseException | None = None
        self._done = threading.Event()
        # Owned by the writer thread.
        self._files: contextlib.ExitStack | None = None
        self._main: wave.Wave_write | None = None
        self._mono: wave.Wave_write | None = None

    @property
    def paused(self) -> bool:
        """Whether ticks are currently written as silence."""
        return self._paused

    @property
    def backlog(self) -> int:
        """Frames captured and not yet written to disk."""
        return self._frames - self._written

    def write(
        self, frames: npt.NDArray[np.int16], present: npt.NDArray[np.bool_] | None = None
    ) -> None:
        """Queue one tick: ``frames`` is int16 ``[channels, samples]``, ``present`` one bool
        per channel (None: all); absent channels, and every channel while paused, are
        recorded as silence. Never waits for I/O."""
        self._check_running()
        if (
            not isinstance(frames, np.ndarray)
            or frames.dtype != np.int16
            or frames.ndim != 2
            or frames.shape[0] != self.channels
        ):
            raise RecorderError(f"frames must be int16 [{self.channels}, samples]")
        if present is not None:
            present = np.asarray(present)
            if present.dtype != np.bool_ or present.shape != (self.channels,):
                raise RecorderError(f"present must be a bool array of {self.channels} entries")
        if self._paused:
            block = np.zeros_like(frames)
        else:
            block = frames.copy()
            if present is not None:
                block[~present] = 0
        self._pending.append(block)
        self._frames += 1
        self._samples += block.shape[1]
        if len(self._pending) >= self._chunk_frames:
            self._flush()
            self._chunk_frames = self.CHUNK_FRAMES

    def pause(self) -> None:
        """Write silence until :meth:`resume`: the paused time stays in the file, silent."""
        self._check_running()
        self._paused = True

    def resume(self) -> None:
        """Capture again after :meth:`pause`."""
        self._check_running()
        self._paused = False

    def stop(self) -> RecordingInfo:
        """Flush what is queued, finalise the WAV header(s) and return what was recorded.

        Blocks until the writer has closed the files; calling it again returns the same info.
        Raises :class:`RecorderError` if writing failed.
        """
        if self._info is None:
            self._flush()
            _WRITER.submit(self, None)
            self._done.wait()
            self._info = RecordingInfo(self.path, self._samples / self.rate, self._frames)
        if self._error is not None:
            raise RecorderError(f"recording to {self.path} failed: {self._error}") from self._error
        return self._info

    def _flush(self) -> None:
        if self._pending:
            _WRITER.submit(self, np.concatenate(self._pending, axis=1), len(self._pending))
            self._pending = []

    def _check_running(self) -> None:
        if self._info is not None:
            raise RecorderError(f"recorder for {self.path} is stopped")
        if self._error is not None:
            raise RecorderError(f"recording to {self.path} failed: {self._error}") from self._error

    def _open(self, path: str, channels: int) -> wave.Wave_write:
        # Open the file ourselves: wave.open(path) leaks a half-built object when it fails.
        # The wave writer closes first (callbacks run last-in first-out), finalising the
        # RIFF sizes, then the file.
        assert self._files is not None
        file = self._files.enter_context(open(path, "wb"))  # noqa: SIM115 - ExitStack owns it
        wav = self._files.enter_context(wave.open(file, "wb"))  # noqa: SIM115 - ExitStack owns it
        wav.setnchannels(channels)
        wav.setsampwidth(_SAMPLE_WIDTH)
        wav.setframerate(self.rate)
        return wav

    def _handle(self, chunk: npt.NDArray[np.int16] | None, frames: int) -> None:
        """Writer thread: the only code that touches this recording's files."""
        try:
            if self._error is None:
                if self._files is None:
                    self._files = contextlib.ExitStack()
                    self._main = self._open(self.path, self.channels)
                    if self.mono_mix_path is not None:
                        self._mono = self._open(self.mono_mix_path, 1)
                if chunk is not None:
                    assert self._main is not None
                    # [channels, samples] transposed is the interleaved WAV layout.
                    self._main.writeframesraw(chunk.T.astype("<i2").tobytes())
                    if self._mono is not None:
                        self._mono.writeframesraw(mix(chunk).astype("<i2").tobytes())
        except Exception as exc:  # handed to the engine by write() and stop()
            logger.exception("recording to %s failed", self.path)
            self._error = exc
        if chunk is not None:
            self._written += frames
            return
        try:
            if self._files is not None:
                self._files.close()
        except Exception as exc:
            logger.exception("closing recording %s failed", self.path)
            self._error = self._error or exc
        self._written = self._frames
        self._done.set()
