"""Opus (RFC 6716) for WebRTC legs, bridged to the engine's 8 kHz audio path.

An Opus RTP payload is one plain Opus packet and its clock is always 48 kHz (RFC 7587 §4.1,
§4.2), whatever the SDP says about channels: Chrome offers ``opus/48000/2`` and may send
stereo or mono packets.  :class:`OpusDecoder` decodes with libopus to 48 kHz mono (a mono
libopus decoder downmixes stereo packets itself) and :class:`OpusEncoder` sends
mono 20 ms packets in the VOIP application; both go through PyAV.

The engine mixes 160-sample frames at 8 kHz, so :func:`upsample` and :func:`downsample`
convert by a factor of 6 for a whole batch of streams at once.  One linear-phase low-pass,
a Kaiser-windowed sinc designed here at import, serves both ways: flat to 3.5 kHz within
0.2 dB and at least 49 dB down from 4 kHz, so a decoded wideband voice does not alias into
the 8 kHz frame and the images of an upsampled frame stay out of the Opus encoder.  Both run
as polyphase filters (only the non-zero inputs of the upsampler and only the kept outputs
of the downsampler are computed) and continue from each stream's previous frame, so frame
edges do not click.

A lost packet is concealed by libopus' own PLC: :meth:`OpusDecoder.conceal` decodes a
packet whose only frame has zero length, which RFC 6716 §3.2.1 defines as a lost frame
(the way RFC 7845 §4.1 repairs gaps), built from the previous packet's TOC byte so the
decoder keeps its mode, bandwidth and channels.
"""

from __future__ import annotations

import fractions

import av
import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

#: The Opus RTP clock rate, whatever the audio bandwidth (RFC 7587 §4.1).
CLOCK_RATE = 48_000
#: The engine's sample rate and frame.
RATE = 8_000
FRAME = 160
#: 48 kHz samples per 8 kHz sample, and per 20 ms Opus frame.
FACTOR = CLOCK_RATE // RATE
OPUS_FRAME = FRAME * FACTOR

Int16Array = npt.NDArray[np.int16]
_Float = npt.NDArray[np.float32]

_TAPS_PER_PHASE = 44
_CUTOFF = 3725.0
_KAISER_BETA = 4.5


def _design_lowpass() -> npt.NDArray[np.float64]:
    taps = _TAPS_PER_PHASE * FACTOR
    ratio = 2 * _CUTOFF / CLOCK_RATE
    lowpass: npt.NDArray[np.float64] = ratio * np.sinc(ratio * (np.arange(taps) - (taps - 1) / 2))
    lowpass *= np.kaiser(taps, _KAISER_BETA)
    lowpass /= lowpass.sum()
    lowpass.flags.writeable = False
    return lowpass


#: The 264-tap anti-aliasing and anti-imaging low-pass at 48 kHz, unity gain at DC.
LOWPASS = _design_lowpass()


def _polyphase() -> tuple[_Float, _Float]:
    """:data:`LOWPASS` split into the upsampler's and the downsampler's phase matrices.

    Row ``j`` of either matrix weighs the ``j``-th oldest of the 44 inputs in a window, so
    a window of past samples times the matrix is the filter output with no flipping.
    """
    phases = LOWPASS.reshape(_TAPS_PER_PHASE, FACTOR)  # [k, p] = h[6k + p]
    # Output phase p of upsampled sample m: sum over k of h[6k + p] * x[m - k], with gain 6
    # for the five zeros stuffed between inputs.
    up = phases[::-1] * FACTOR
    # Output m of the downsampler: sum over k, r of h[6k + 5 - r] * x[6(m - k) + r].
    down = phases[::-1, ::-1]
    return up.astype(np.float32), down.astype(np.float32)


_UP, _DOWN = _polyphase()
_UP.flags.writeable = False
_DOWN.flags.writeable = False


class OpusError(ValueError):
    """An Opus payload the decoder rejects, or a frame of the wrong shape."""


def _to_int16(samples: _Float) -> Int16Array:
    """Round and saturate, in place: the batch's float buffer is ours to reuse."""
    np.rint(samples, out=samples)
    np.clip(samples, -32768, 32767, out=samples)
    return samples.astype(np.int16)


def _windows(
    frames: Int16Array, previous: Int16Array | None, width: int, group: int
) -> npt.NDArray[np.float32]:
    """Each stream's frame in groups of ``group`` samples, preceded by the last ``width - 1``
    groups of its previous frame (silence without one), as windows of ``width`` groups."""
    streams, samples = frames.shape
    if previous is not None and previous.shape != frames.shape:
        raise OpusError(f"previous frames {previous.shape} do not match frames {frames.shape}")
    history = (width - 1) * group
    padded = np.zeros((streams, history + samples), np.float32)
    padded[:, history:] = frames
    if previous is not None:
        padded[:, :history] = previous[:, samples - history :]
    grouped = padded.reshape(streams, -1, group)
    return sliding_window_view(grouped, width, axis=1)  # [stream, m, r, j]


def upsample(frames: Int16Array, previous: Int16Array | None = None) -> Int16Array:
    """8 kHz ``[streams, 160]`` frames to 48 kHz ``[streams, 960]``.

    ``previous`` is the batch each stream fed last time (None at a stream's start), whose
    tail the filter continues from.
    """
    _check(frames, FRAME)
    windows = _windows(frames, previous, _TAPS_PER_PHASE, 1)[:, :, 0, :]  # [stream, m, j]
    return _to_int16(np.matmul(windows, _UP).reshape(len(frames), -1))


def downsample(frames: Int16Array, previous: Int16Array | None = None) -> Int16Array:
    """48 kHz ``[streams, 960]`` frames to 8 kHz ``[streams, 160]``; ``previous`` as in
    :func:`upsample`."""
    _check(frames, OPUS_FRAME)
    windows = _windows(frames, previous, _TAPS_PER_PHASE, FACTOR)  # [stream, m, r, j]
    return _to_int16(np.einsum("smrj,jr->sm", windows, _DOWN))


def _check(frames: Int16Array, samples: int) -> None:
    if frames.dtype != np.int16 or frames.ndim != 2 or frames.shape[1] != samples:
        raise OpusError(f"expected int16 frames of shape (streams, {samples}), got {frames.shape}")


class OpusDecoder:
    """One received Opus stream, decoded to 8 kHz mono frames."""

    def __init__(self) -> None:
        self._codec = av.CodecContext.create("libopus", "r")
        self._codec.sample_rate = CLOCK_RATE
        self._codec.layout = "mono"
        self._codec.format = "s16"
        self._previous = np.zeros((1, OPUS_FRAME), np.int16)
        self._toc: int | None = None

    def decode(self, payload: bytes) -> Int16Array:
        """One RTP payload (RFC 7587 §4.2) of 20 ms to 160 samples at 8 kHz.

        Raises OpusError (a ValueError) for a payload libopus rejects or one that is not
        20 ms long (the engine's ptime).
        """
        if not payload:
            # An empty packet would put the decoder into draining for good.
            raise OpusError("empty Opus payload")
        frame = self._decode(payload)
        self._toc = payload[0]
        return frame

    def conceal(self) -> Int16Array:
        """160 samples at 8 kHz from libopus' PLC in place of a lost 20 ms packet.

        Before the first packet there is nothing to continue: silence.
        """
        if self._toc is None:
            return np.zeros(FRAME, np.int16)
        # Code 0 (one frame) with nothing after the TOC byte: a zero-length, lost frame.
        return self._decode(bytes((self._toc & 0xFC,)))

    def _decode(self, packet: bytes) -> Int16Array:
        try:
            frames = self._codec.decode(av.Packet(packet))
        except av.FFmpegError as error:
            raise OpusError(f"bad Opus payload: {error}") from error
        samples = sum(frame.samples for frame in frames)
        if samples != OPUS_FRAME:
            raise OpusError(f"Opus payload of {samples} samples, not 20 ms")
        audio = np.concatenate([frame.to_ndarray() for frame in frames], axis=1, dtype=np.int16)
        frame = downsample(audio, self._previous).reshape(FRAME)
        self._previous = audio
        return frame


class OpusEncoder:
    """One sent Opus stream: 8 kHz frames to mono 20 ms packets in VOIP mode (RFC 6716 §2.1).

    ``expected_loss`` (percent) above zero turns on in-band FEC, redundancy sized for that
    loss which a receiver can use to rebuild a lost packet from the next (RFC 6716 §2.1.7).
    """

    def __init__(self, bitrate: int = 24_000, expected_loss: int = 0) -> None:
        codec = av.CodecContext.create("libopus", "w")
        codec.sample_rate = CLOCK_RATE
        codec.layout = "mono"
        codec.format = "s16"
        codec.bit_rate = bitrate
        codec.time_base = fractions.Fraction(1, CLOCK_RATE)
        options = {
            "application": "voip",
            "frame_duration": "20",
            # The audio comes from 8 kHz: narrowband (RFC 6716 §2.1.3) codes all there is, with
            # fewer bits and a third of the CPU of the fullband default.
            "cutoff": "4000",
            # Mid complexity (RFC 6716 §2.1.5), as WebRTC on mobiles: 60 legs fit one core.
            "compression_level": "5",
        }
        if expected_loss:
            options |= {"fec": "1", "packet_loss": str(expected_loss)}
        codec.options = options
        self._codec = codec
        self._previous = np.zeros((1, FRAME), np.int16)
        self._pts = 0

    def encode(self, frame: Int16Array) -> bytes:
        """160 samples at 8 kHz to one Opus packet, the RTP payload (RFC 7587 §4.2)."""
        batch = frame.reshape(1, FRAME)
        audio = av.AudioFrame.from_ndarray(upsample(batch, self._previous), "s16", "mono")
        audio.sample_rate = CLOCK_RATE
        audio.pts = self._pts
        self._pts += OPUS_FRAME
        self._previous = batch
        # libopus, fed whole 20 ms frames, returns one packet for each.
        (packet,) = self._codec.encode(audio)
        return bytes(packet)
