"""The media engine: calls, the relay fast path and the batched audio path.

Each call has legs (one :class:`~media.stream.Stream` each).  Two legs with
the same codec and nothing to add (no recording, prompt, DTMF to inject) are
*relayed*: packets are forwarded as they arrive, headers rewritten only when
needed.  Everything else (transcoding, conferences of 3+, recording, prompts,
DTMF generation) goes through the *audio path*: one 20 ms tick pops every
audio stream's jitter buffer, decodes all of them into one 2-D numpy array,
conceals losses, mixes (each leg hears everyone else), taps recorders, and
encodes and sends.  A once-a-second housekeeping pass samples quality (MOS),
sends RTCP and notices dead streams.
"""

from __future__ import annotations

import asyncio
import logging
import time
import wave
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from media import g711
from media.control import OTHERS, ControlError, EventCallback, Json
from media.dtmf import DIGITS, DtmfEnd, DtmfPacket, DtmfSender, DtmfStart
from media.mixer import mix, mix_minus_grouped, mix_minus_pairs
from media.opus import OPUS_FRAME, OpusDecoder, OpusEncoder, OpusError
from media.plc import Plc, conceal_all
from media.ports import PortAllocator, PortsExhausted
from media.quality import QualityCleared, QualityMonitor, QualityWarning
from media.recorder import Recorder, RecorderError
from media.stream import Addr, Codec, Filed, Stream
from media.tones import ToneGenerator
from media.webrtc import (
    Connected,
    DtlsIdentity,
    Event,
    Failed,
    IceParameters,
    Nominated,
    WebRtcError,
    WebRtcStream,
    WebRtcTransport,
)

log = logging.getLogger(__name__)

FRAME = 160
TICK = 0.02
#: Streams visited per loop callback: between slices the loop reads its sockets, so a
#: tick's share of visits (1/50 of the streams) never holds relayed packets back for long.
VISIT_SLICE = 4
#: Audio codecs the audio path can decode, by SDP encoding name (RFC 3551 §6).
G711 = {"PCMU": g711.PCMU, "PCMA": g711.PCMA}
#: Opus (RFC 7587), for browser legs: decoded to and encoded from the 8 kHz audio path.
OPUS = "OPUS"
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


class Player:
    """Frames of a prompt (8 kHz mono WAV) or a tone, played into one leg."""

    def __init__(self, frames: Callable[[], npt.NDArray[np.int16] | None]) -> None:
        self.next_frame = frames

    @classmethod
    def wav(cls, path: str, loop: bool = False) -> Player:
        """Play a 16-bit 8 kHz mono WAV file, optionally looping."""
        try:
            with wave.open(path, "rb") as wav_file:
                if (
                    wav_file.getnchannels() != 1
                    or wav_file.getsampwidth() != 2
                    or wav_file.getframerate() != 8000
                ):
                    raise ControlError(f"{path}: prompts must be 16-bit 8000 Hz mono WAV")
                pcm = np.frombuffer(wav_file.readframes(wav_file.getnframes()), "<i2")
        except (OSError, wave.Error, EOFError) as exc:
            raise ControlError(f"cannot play {path}: {exc}") from None
        padded = np.zeros(-(-len(pcm) // FRAME) * FRAME, np.int16)
        padded[: len(pcm)] = pcm
        chunks = padded.reshape(-1, FRAME)
        position = 0

        def frames() -> npt.NDArray[np.int16] | None:
            nonlocal position
            if position >= len(chunks):
                if not loop or not len(chunks):
                    return None
                position = 0
            position += 1
            frame: npt.NDArray[np.int16] = chunks[position - 1]
            return frame

        return cls(frames)

    @classmethod
    def tone(cls, freqs: list[float], duration: float | None, amplitude: float = 0.3) -> Player:
        """Play a tone (one or more frequencies) for ``duration`` s, or until stopped."""
        generator = ToneGenerator(tuple(freqs), amplitude)
        remaining = None if duration is None else max(1, round(duration / TICK))

        def frames() -> npt.NDArray[np.int16] | None:
            nonlocal remaining
            if remaining is not None:
                if remaining <= 0:
                    return None
                remaining -= 1
            return generator.next_frame()

        return cls(frames)


class DtmfOut:
    """Key presses queued for one leg, sent one packet per tick (RFC 4733 §2.5.1)."""

    #: Ticks of plain audio between two digits.
    GAP_TICKS = 3

    def __init__(self, payload_type: int) -> None:
        self._sender = DtmfSender(payload_type=payload_type)
        self._jobs: deque[tuple[str, float]] = deque()
        self._active: deque[DtmfPacket] = deque()
        self._gap = 0

    def __bool__(self) -> bool:
        return bool(self._jobs or self._active or self._gap)

    def add(self, digit: str, duration: float) -> None:
        """Queue one key press."""
        self._jobs.append((digit, duration))

    def next_packet(self, timestamp: int) -> DtmfPacket | None:
        """This tick's event packet, or None to send audio; ``timestamp`` is this tick's."""
        if not self._active:
            if self._gap:
                self._gap -= 1
                return None
            if not self._jobs:
                return None
            digit, duration = self._jobs.popleft()
            self._active.extend(self._sender.packets(digit, timestamp, duration))
            self._gap = self.GAP_TICKS
        return self._active.popleft()


@dataclass
class Call:
    """One call's legs and what is attached to it."""

    call_id: str
    streams: dict[str, Stream] = field(default_factory=dict)
    recorder: Recorder | None = None
    recording_legs: list[str] = field(default_factory=list)
    """The leg recorded on each channel, left first (:data:`OTHERS`: every leg not named,
    mixed); empty: one channel per leg in joining order."""
    players: dict[str, Player] = field(default_factory=dict)
    dtmf_out: dict[str, DtmfOut] = field(default_factory=dict)
    created: float = 0.0

    def needs_audio_path(self) -> bool:
        """Relay only two legs with one codec and nothing added to their audio.

        A party not heard (a muted browser) while the other still takes media gives
        the relay nothing to forward: the audio path sends that party silence instead,
        so its RTP never stops (phones and carriers hang up when it does).  On hold
        (sendonly against recvonly) nobody is owed media, and the relay stays.
        """
        streams = list(self.streams.values())
        return (
            len(streams) != 2
            or (not streams[0].listening and streams[1].sending)
            or (not streams[1].listening and streams[0].sending)
            or streams[0].audio_codec.key != streams[1].audio_codec.key
            or self.recorder is not None
            or bool(self.players)
            or any(self.dtmf_out.values())
        )


@dataclass
class _Layout:
    """The audio streams of a tick, grouped for numpy; valid until a call changes."""

    streams: list[Stream]
    plcs: list[Plc]
    groups: npt.NDArray[np.int64]
    """Each row's call, for the mixer."""
    partners: npt.NDArray[np.intp] | None
    """Each row's other leg (-1: none) when no call has more than two: mixing is a swap."""
    codecs: list[tuple[int, npt.NDArray[np.intp], list[Stream]]]
    """Rows by codec: the G.711 payload type, the rows and their streams."""
    kinds: npt.NDArray[np.int8]
    """Each row's index into ``codecs``."""
    players: list[tuple[Call, str, int]]
    dtmf: dict[Stream, Call]
    """Streams with DTMF queued, and their calls."""
    recorders: list[tuple[Recorder, int, int]]
    """Each recorder and its channels' slice of the taps."""
    tap_mixes: list[tuple[int, npt.NDArray[np.intp]]]
    """Taps that mix several rows (an :data:`OTHERS` channel): the tap and its rows."""
    opus: list[tuple[int, Stream]]
    """Opus rows: encoded one by one (each encoder has its own state)."""
    taps: npt.NDArray[np.intp]
    """The row recorded on each channel of every recorder."""
    tapped: npt.NDArray[np.bool_]
    """False for channels with no leg (recorded as silence)."""


@dataclass
class _Quality:
    monitor: QualityMonitor = field(default_factory=QualityMonitor)
    expected: int = 0
    lost: int = 0
    next_rtcp: float = 0.0
    next_sample: float = 0.0
    timed_out: bool = False


class MediaEngine:
    """An in-process media engine; also what each worker process runs."""

    def __init__(
        self,
        *,
        rtp_ports: tuple[int, int] = (20000, 30000),
        host: str = "127.0.0.1",
        advertise: str | None = None,
        dscp: int = 46,
        media_timeout: float = 60.0,
        jitter_min: float = 0.02,
        jitter_max: float = 0.5,
        cname: str = "voipcore",
    ) -> None:
        self.ports = PortAllocator(*rtp_ports, host=host)
        self.advertise = advertise or host
        self.dscp = dscp
        self.media_timeout = media_timeout
        self.jitter_min = jitter_min
        self.jitter_max = jitter_max
        self.cname = cname
        self.calls: dict[str, Call] = {}
        self.tick_overruns = 0
        self.ticks = 0
        self._audio: list[Stream] = []
        self._layout: _Layout | None = None
        #: Audio-path packets received since the last tick, filed at the next one.
        self._inbox: list[Filed] = []
        self._quality: dict[int, _Quality] = {}
        self._callbacks: list[EventCallback] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._next_tick = 0.0
        #: Streams awaiting their once-a-second visit, spread over the ticks.
        self._rounds: deque[Stream] = deque()
        #: Visits the current slice chain still owes; 0 when no chain is running.
        self._visits_due = 0
        #: The DTLS certificate of browser legs, made when the first one arrives.
        self._identity: DtlsIdentity | None = None

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Start the 20 ms tick."""
        self._loop = asyncio.get_running_loop()
        self._next_tick = self._loop.time() + TICK
        self._tick_handle = self._loop.call_at(self._next_tick, self._tick)

    async def stop(self) -> None:
        """Drop every call and stop the timers."""
        for call_id in list(self.calls):
            self.delete(call_id)
        if self._tick_handle is not None:
            self._tick_handle.cancel()

    def subscribe(self, callback: EventCallback) -> None:
        self._callbacks.append(callback)

    def _emit(self, event: Json) -> None:
        for callback in self._callbacks:
            callback(event)

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else time.monotonic()

    # -- control protocol --------------------------------------------------------

    async def request(self, command: str, args: Json) -> Json:
        """JSON-level entry point shared with the control protocol."""
        try:
            if command == "offer" or command == "answer":
                if command == "answer" and _str(args, "call_id") not in self.calls:
                    raise ControlError(f"unknown call {args.get('call_id')!r}")
                webrtc = args.get("webrtc")
                host, port = await self.offer(
                    _str(args, "call_id"),
                    _str(args, "leg"),
                    [_codec(c) for c in _list(args, "codecs")],
                    remote=_addr(args.get("remote")),
                    rtcp=_addr(args.get("rtcp")),
                    direction=str(args.get("direction", "sendrecv")),
                    webrtc=None if webrtc is None else _webrtc(webrtc),
                )
                reply: Json = {"local": {"host": host, "port": port}}
                if webrtc is not None:
                    reply["webrtc"] = self._webrtc_json(_str(args, "call_id"), _str(args, "leg"))
                return reply
            if command == "delete":
                if "leg" in args:
                    return self.remove_leg(_str(args, "call_id"), _str(args, "leg"))
                return self.delete(_str(args, "call_id"))
            if command == "query":
                return self.query(_str(args, "call_id"))
            if command == "play":
                tone = args.get("tone")
                self.play(
                    _str(args, "call_id"),
                    _str(args, "leg"),
                    path=args.get("file"),
                    tone=[float(f) for f in tone] if isinstance(tone, list) else None,
                    duration=_opt_float(args.get("duration")),
                    loop=bool(args.get("loop", False)),
                )
                return {}
            if command == "stop_play":
                self.stop_play(_str(args, "call_id"), _str(args, "leg"))
                return {}
            if command == "record":
                return self.record(
                    _str(args, "call_id"),
                    _str(args, "action"),
                    path=args.get("file"),
                    mono_path=args.get("mono_file"),
                    channels=_opt_legs(args, "channels"),
                )
            if command == "dtmf":
                self.send_dtmf(
                    _str(args, "call_id"),
                    _str(args, "leg"),
                    _str(args, "digits"),
                    duration=_opt_float(args.get("duration")) or 0.1,
                )
                return {}
            if command == "stats":
                return self.stats()
            if command == "ping":
                return {"pong": True}
        except (KeyError, TypeError, ValueError) as exc:
            raise ControlError(f"bad {command} request: {exc}") from None
        raise ControlError(f"unknown command {command!r}")

    # -- calls and legs ------------------------------------------------------------

    async def offer(
        self,
        call_id: str,
        leg: str,
        codecs: list[Codec],
        *,
        remote: Addr | None = None,
        rtcp: Addr | None = None,
        direction: str = "sendrecv",
        webrtc: tuple[str, list[tuple[str, str]]] | None = None,
    ) -> Addr:
        """Create or update a leg; returns the local RTP address to put in SDP.

        ``webrtc`` (the browser's ICE ufrag and DTLS fingerprints) makes the leg a
        browser's: ICE-lite, DTLS-SRTP and rtcp-mux on the one port (media.webrtc).
        """
        if direction not in DIRECTIONS:
            raise ControlError(f"direction must be one of {', '.join(DIRECTIONS)}")
        if not any(c.name.lower() != "telephone-event" for c in codecs):
            raise ControlError("at least one audio codec is needed")
        for codec in codecs:
            name = codec.name.upper()
            if name != "TELEPHONE-EVENT" and name not in G711 and name != OPUS:
                raise ControlError(f"codec {codec.name} is not supported (PCMU, PCMA, opus)")
        call = self.calls.get(call_id)
        if call is None:
            call = self.calls[call_id] = Call(call_id, created=self._now())
        stream = call.streams.get(leg)
        if stream is None:
            stream = self._open_stream(call, leg, codecs, remote, rtcp, webrtc)
        elif isinstance(stream, WebRtcStream):
            if webrtc is not None and webrtc[0] != stream.transport.remote_ufrag:
                raise ControlError(f"leg {leg!r} is a browser's: ICE restarts are not supported")
            stream.codecs = codecs
        else:
            stream.codecs = codecs
            if remote is not None and remote != stream.remote:
                # New address from a re-INVITE: latch afresh (RFC 4961 §3).
                stream.remote, stream.latched = remote, False
                stream.rtcp_remote = rtcp
        stream.direction = direction
        self._update_mode(call)
        return self.advertise, stream.local[1]

    def _open_stream(
        self,
        call: Call,
        leg: str,
        codecs: list[Codec],
        remote: Addr | None,
        rtcp: Addr | None,
        webrtc: tuple[str, list[tuple[str, str]]] | None,
    ) -> Stream:
        assert self._loop is not None, "engine not started"
        transport = None
        if webrtc is not None:
            if self._identity is None:
                self._identity = DtlsIdentity()
            try:
                transport = WebRtcTransport(
                    self._identity, IceParameters.generate(), webrtc[0], webrtc[1]
                )
            except WebRtcError as exc:
                raise ControlError(str(exc)) from None
        try:
            rtp_sock, rtcp_sock = self.ports.allocate(self.dscp)
        except PortsExhausted as exc:
            raise ControlError(str(exc)) from None
        stream = (Stream if transport is None else WebRtcStream)(
            call.call_id,
            leg,
            codecs,
            local=rtp_sock.getsockname()[:2],
            remote=remote,
            rtcp_remote=rtcp,
            on_event=self._stream_event,
            clock=self._loop.time,
            jitter_min=self.jitter_min,
            jitter_max=self.jitter_max,
            inbox=self._inbox,
        )
        if isinstance(stream, WebRtcStream):
            assert transport is not None
            stream.setup(transport, self._transport_event)
        stream.attach(self._loop, rtp_sock, rtcp_sock)
        call.streams[leg] = stream
        self._rounds.append(stream)
        self._quality[id(stream)] = _Quality(
            next_rtcp=self._now() + stream.rtcp_interval.interval()
        )
        return stream

    def delete(self, call_id: str) -> Json:
        """End a call; returns its final per-leg summary."""
        call = self._call(call_id)
        summary = self.query(call_id)
        if call.recorder is not None:
            summary["recording"] = _recording_json(call.recorder)
            call.recorder = None
        for stream in call.streams.values():
            self._close(stream)
        call.streams.clear()
        self._update_mode(call)
        del self.calls[call_id]
        return summary

    def remove_leg(self, call_id: str, leg: str) -> Json:
        """Take one leg out of a live call (it left); returns its final summary.

        The others stay up: two left relay or transcode, three or more stay mixed.
        """
        call, stream = self._stream(call_id, leg)
        summary = {"call_id": call_id, "legs": {leg: self._stream_json(stream)}}
        self._close(stream)
        del call.streams[leg]
        call.players.pop(leg, None)
        call.dtmf_out.pop(leg, None)
        self._update_mode(call)
        return summary

    def _webrtc_json(self, call_id: str, leg: str) -> Json:
        """What the answer SDP to a browser needs (RFC 8839 §5.4, RFC 8122 §5)."""
        _, stream = self._stream(call_id, leg)
        assert isinstance(stream, WebRtcStream) and self._identity is not None
        local = stream.transport.local
        return {
            "ufrag": local.ufrag,
            "pwd": local.pwd,
            "fingerprint": {"algorithm": "sha-256", "value": self._identity.fingerprint},
        }

    def _transport_event(self, stream: WebRtcStream, event: Event) -> None:
        base: Json = {"event": "webrtc", "call_id": stream.call_id, "leg": stream.leg}
        if isinstance(event, Nominated):
            self._emit({**base, "state": "nominated", "address": list(event.address)})
        elif isinstance(event, Connected):
            self._emit({**base, "state": "connected", "profile": event.profile})
        elif isinstance(event, Failed):
            log.warning("browser leg %s/%s failed: %s", stream.call_id, stream.leg, event.reason)
            self._emit({**base, "state": "failed", "reason": event.reason})

    def _close(self, stream: Stream) -> None:
        """RTCP BYE (RFC 3550 §6.6), then free the stream's ports."""
        stream.send_bye()
        stream.close()
        self.ports.release(stream.local[1])
        self._quality.pop(id(stream), None)

    def query(self, call_id: str) -> Json:
        """Per-leg statistics of a live call."""
        call = self._call(call_id)
        return {
            "call_id": call_id,
            "mode": "audio" if call.needs_audio_path() else "relay",
            "legs": {leg: self._stream_json(s) for leg, s in call.streams.items()},
        }

    def _stream_json(self, stream: Stream) -> Json:
        stats = stream.recv_stats
        quality = self._quality.get(id(stream))
        summary = quality.monitor.summary() if quality is not None else None
        counters = stream.counters
        return {
            "local": {"host": self.advertise, "port": stream.local[1]},
            "remote": None
            if stream.remote is None
            else {"host": stream.remote[0], "port": stream.remote[1]},
            "codec": stream.audio_codec.name,
            "packets_in": counters.packets_in,
            "packets_out": stream.packets_out,
            "bytes_in": counters.bytes_in,
            "bytes_out": stream.bytes_out,
            "lost": stats.lost,
            "expected": stats.expected,
            "jitter": stats.jitter_seconds,
            "rtt": counters.rtt,
            "dropped_source": counters.dropped_source,
            "dropped_invalid": counters.dropped_invalid,
            "send_errors": counters.send_errors,
            "late": stream.jitter.stats.late,
            "mos": None
            if summary is None
            else {"min": summary.mos_min, "avg": summary.mos_avg, "max": summary.mos_max},
        }

    def _call(self, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is None:
            raise ControlError(f"unknown call {call_id!r}")
        return call

    def _stream(self, call_id: str, leg: str) -> tuple[Call, Stream]:
        call = self._call(call_id)
        stream = call.streams.get(leg)
        if stream is None:
            raise ControlError(f"call {call_id!r} has no leg {leg!r}")
        return call, stream

    # -- features ---------------------------------------------------------------

    def play(
        self,
        call_id: str,
        leg: str,
        *,
        path: str | None = None,
        tone: list[float] | None = None,
        duration: float | None = None,
        loop: bool = False,
    ) -> None:
        """Play a WAV prompt or a tone into ``leg`` (the party on that leg hears it)."""
        call, _ = self._stream(call_id, leg)
        if (path is None) == (tone is None):
            raise ControlError("play needs exactly one of file or tone")
        call.players[leg] = (
            Player.wav(path, loop) if path is not None else Player.tone(tone or [], duration)
        )
        self._update_mode(call)

    def stop_play(self, call_id: str, leg: str) -> None:
        """Stop what is playing into ``leg``."""
        call, _ = self._stream(call_id, leg)
        call.players.pop(leg, None)
        self._update_mode(call)

    def record(
        self,
        call_id: str,
        action: str,
        *,
        path: str | None = None,
        mono_path: str | None = None,
        channels: list[str] | None = None,
    ) -> Json:
        """start / pause / resume / stop a recording with one party per channel.

        ``channels`` names the leg on each channel, left first (``["b", "a"]`` puts leg
        b on the left; ``["a", "*"]`` puts a on the left and every other leg, mixed, on the
        right); by default each leg gets one in joining order, at least two.  Paused
        stretches are written as silence (:mod:`media.recorder`).
        """
        call = self._call(call_id)
        if action == "start":
            if call.recorder is not None:
                raise ControlError(f"call {call_id!r} is already recording")
            if not path:
                raise ControlError("record start needs a file")
            for leg in channels or ():
                if leg != OTHERS and leg not in call.streams:
                    raise ControlError(f"channels: call {call_id!r} has no leg {leg!r}")
            call.recorder = Recorder(
                path, len(channels) if channels else max(2, len(call.streams)), 8000, mono_path
            )
            call.recording_legs = channels or []
            self._update_mode(call)
            return {}
        recorder = call.recorder
        if recorder is None:
            raise ControlError(f"call {call_id!r} is not recording")
        if action == "pause":
            recorder.pause()
        elif action == "resume":
            recorder.resume()
        elif action == "stop":
            call.recorder = None
            self._update_mode(call)
            return {"recording": _recording_json(recorder)}
        else:
            raise ControlError("record action must be start, pause, resume or stop")
        return {}

    def send_dtmf(self, call_id: str, leg: str, digits: str, *, duration: float = 0.1) -> None:
        """Send RFC 4733 events to ``leg`` (e.g. an extension after answer)."""
        call, stream = self._stream(call_id, leg)
        pt = stream.dtmf_payload_type
        if pt is None:
            raise ControlError(f"leg {leg!r} did not negotiate telephone-event")
        bad = [d for d in digits.upper() if d not in DIGITS]
        if bad or not digits:
            raise ControlError(f"digits must be 0-9 * # A-D, got {digits!r}")
        queue = call.dtmf_out.setdefault(leg, DtmfOut(pt))
        for digit in digits.upper():
            queue.add(digit, duration)
        self._update_mode(call)

    # -- modes ---------------------------------------------------------------------

    def _update_mode(self, call: Call) -> None:
        streams = list(call.streams.values())
        audio = bool(streams) and call.needs_audio_path()
        if len(streams) == 2:
            streams[0].peer, streams[1].peer = streams[1], streams[0]
        else:
            for stream in streams:
                stream.peer = None
        for stream in streams:
            if audio and stream.relaying:
                stream.relaying = False
                stream.plc = Plc()
                self._audio.append(stream)
            elif not audio and not stream.relaying:
                stream.relaying = True
                stream.plc = stream.opus = None
            opus = not stream.relaying and stream.audio_codec.name.upper() == OPUS
            if opus and stream.opus is None:
                stream.opus = (OpusDecoder(), OpusEncoder())
            elif not opus:
                stream.opus = None
        self._audio = [
            s
            for s in self._audio
            if not s.relaying
            and s.call_id in self.calls
            and self.calls[s.call_id].streams.get(s.leg) is s
        ]
        self._layout = None

    def _stream_event(self, call_id: str, leg: str, event: object) -> None:
        if isinstance(event, DtmfStart):
            self._emit(
                {"event": "dtmf_start", "call_id": call_id, "leg": leg, "digit": event.digit}
            )
        elif isinstance(event, DtmfEnd):
            duration = event.duration / 8000
            self._emit(
                {
                    "event": "dtmf",
                    "call_id": call_id,
                    "leg": leg,
                    "digit": event.digit,
                    "duration": duration,
                }
            )
            call = self.calls.get(call_id)
            if call is not None and call.needs_audio_path():
                # Relayed calls forward the events themselves; in the audio path
                # they are regenerated towards the other legs that take them.
                for other_leg, other in call.streams.items():
                    if other_leg != leg and other.dtmf_payload_type is not None:
                        self.send_dtmf(call_id, other_leg, event.digit, duration=duration)

    # -- the 20 ms tick ----------------------------------------------------------------

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self.ticks += 1
        if self._inbox:
            # Filed late but with their arrival times: the buffers end up as if filed
            # on arrival, and one tight loop over all of them is cheaper.
            for jitter, seq, ts, ssrc, data, arrival, marker in self._inbox:
                jitter.push(seq, ts, ssrc, data, arrival, marker)
            self._inbox.clear()
        if self._audio:
            self._audio_tick(now)
        self._visit_streams()
        self._next_tick += TICK
        if self._next_tick < now:
            # Fell behind by more than a tick: skip ahead instead of bursting.
            self.tick_overruns += 1
            self._next_tick = now + TICK
        self._tick_handle = self._loop.call_at(self._next_tick, self._tick)

    def _audio_tick(self, now: float) -> None:
        """Pop, decode, conceal, mix, record, encode and send every audio stream at once."""
        layout = self._layout if self._layout is not None else self._build_layout()
        streams = layout.streams
        count = len(streams)
        frames = np.zeros((count, FRAME), np.int16)
        present = np.zeros(count, bool)
        heard: list[int] = []
        rows: list[int] = []
        payloads: list[bytes] = []
        lost: list[int] = []
        plcs = layout.plcs
        for row, stream in enumerate(streams):
            frame = stream.jitter.pop(now)
            if frame is None:
                continue
            heard.append(row)
            payload = frame.payload
            if stream.opus is not None:
                try:
                    if payload is None:
                        raise OpusError("lost")
                    frames[row] = plcs[row].good(stream.opus[0].decode(payload))
                except OpusError:
                    lost.append(row)
            elif payload is not None and len(payload) == FRAME:
                rows.append(row)
                payloads.append(payload)
            else:
                lost.append(row)
        present[heard] = True
        if rows:
            self._decode(layout, frames, rows, payloads)
        if lost:
            frames[lost] = conceal_all([layout.plcs[row] for row in lost])
        if layout.partners is not None:
            outputs = mix_minus_pairs(frames, layout.partners, mask=present)
        else:
            outputs = mix_minus_grouped(frames, layout.groups, mask=present)

        changed: set[str] = set()
        for call, leg, row in layout.players:
            prompt = call.players[leg].next_frame()
            if prompt is None:
                del call.players[leg]
                changed.add(call.call_id)
            else:
                mixed = outputs[row].astype(np.int32) + prompt
                outputs[row] = np.clip(mixed, -32768, 32767)
        if layout.recorders:
            taps = frames[layout.taps]
            taps[~(present[layout.taps] & layout.tapped)] = 0
            for tap, mixed in layout.tap_mixes:
                taps[tap] = mix(frames[mixed], present[mixed])
            for recorder, start, end in layout.recorders:
                recorder.write(taps[start:end])

        dtmf = layout.dtmf
        for row, stream in layout.opus:
            assert stream.opus is not None
            stream.send_payload(stream.opus[1].encode(outputs[row]), samples=OPUS_FRAME)
        for law, law_rows, law_streams in layout.codecs:
            block = g711.encode(law, outputs[law_rows]).tobytes()
            for stream, start in zip(law_streams, range(0, len(block), FRAME), strict=True):
                payload = block[start : start + FRAME]
                if stream not in dtmf:
                    stream.send_payload(payload, samples=FRAME)
                elif not self._send_frame(dtmf[stream], stream, payload):
                    changed.add(stream.call_id)
        # A prompt or a DTMF run that ended may let the call go back to relaying.
        for call_id in changed:
            self._update_mode(self.calls[call_id])

    @staticmethod
    def _decode(
        layout: _Layout, frames: npt.NDArray[np.int16], rows: list[int], payloads: list[bytes]
    ) -> None:
        """Decode the received payloads into their rows, then let PLC see them (I.2.4)."""
        encoded = np.frombuffer(b"".join(payloads), np.uint8).reshape(len(rows), FRAME)
        index = np.asarray(rows)
        if len(layout.codecs) == 1:
            frames[index] = g711.decode(layout.codecs[0][0], encoded)
        else:
            kinds = layout.kinds[index]
            for kind, (law, _, _) in enumerate(layout.codecs):
                chosen = kinds == kind
                frames[index[chosen]] = g711.decode(law, encoded[chosen])
        plcs = layout.plcs
        for row in rows:
            view = frames[row]
            healed = plcs[row].good(view)
            if healed is not view:  # only the first frame after a loss changes
                frames[row] = healed

    def _build_layout(self) -> _Layout:
        """Group the audio streams for the tick's numpy work (rebuilt when calls change)."""
        streams = self._audio
        plcs = []
        for stream in streams:
            assert stream.plc is not None, "audio streams conceal losses"
            plcs.append(stream.plc)
        call_number: dict[str, int] = {}
        rows_by_call: dict[str, list[int]] = {}
        by_codec: dict[str, tuple[list[int], list[Stream]]] = {}
        opus: list[tuple[int, Stream]] = []
        for row, stream in enumerate(streams):
            call_number.setdefault(stream.call_id, len(call_number))
            rows_by_call.setdefault(stream.call_id, []).append(row)
            if stream.opus is not None:
                opus.append((row, stream))
                continue
            law_rows, law_streams = by_codec.setdefault(stream.audio_codec.name.upper(), ([], []))
            law_rows.append(row)
            law_streams.append(stream)
        kinds = np.zeros(len(streams), np.int8)
        for kind, (law_rows, _) in enumerate(by_codec.values()):
            kinds[law_rows] = kind
        players: list[tuple[Call, str, int]] = []
        dtmf: dict[Stream, Call] = {}
        recorders: list[tuple[Recorder, int, int]] = []
        taps: list[int] = []
        tap_mixes: list[tuple[int, npt.NDArray[np.intp]]] = []
        for call_id, rows in rows_by_call.items():
            call = self.calls[call_id]
            for row in rows:
                leg = streams[row].leg
                if leg in call.players:
                    players.append((call, leg, row))
                if leg in call.dtmf_out:
                    dtmf[streams[row]] = call
            if call.recorder is not None:
                # The named leg's row on each channel, else one per leg in joining
                # order; -1 for a channel with no leg (it is recorded as silence).
                channels = call.recorder.channels
                recorders.append((call.recorder, len(taps), len(taps) + channels))
                if call.recording_legs:
                    row_of = {streams[row].leg: row for row in rows}
                    named = set(call.recording_legs)
                    others = [row for row in rows if streams[row].leg not in named]
                    for leg in call.recording_legs:
                        if leg != OTHERS:
                            taps.append(row_of.get(leg, -1))
                        elif len(others) == 1:
                            taps.append(others[0])
                        else:
                            if others:
                                tap_mixes.append((len(taps), np.asarray(others, np.intp)))
                            taps.append(-1)
                else:
                    taps += (rows + [-1] * channels)[:channels]
        tap_index = np.asarray(taps, np.intp)
        partners: npt.NDArray[np.intp] | None = None
        if all(len(rows) <= 2 for rows in rows_by_call.values()):
            partners = np.full(len(streams), -1, np.intp)
            for rows in rows_by_call.values():
                if len(rows) == 2:
                    partners[rows] = rows[::-1]
        self._layout = _Layout(
            streams=list(streams),
            plcs=plcs,
            groups=np.fromiter((call_number[s.call_id] for s in streams), np.int64, len(streams)),
            partners=partners,
            codecs=[
                (G711[name], np.asarray(law_rows, np.intp), law_streams)
                for name, (law_rows, law_streams) in by_codec.items()
            ],
            kinds=kinds,
            players=players,
            dtmf=dtmf,
            recorders=recorders,
            tap_mixes=tap_mixes,
            opus=opus,
            taps=np.maximum(tap_index, 0),
            tapped=tap_index >= 0,
        )
        return self._layout

    def _send_frame(self, call: Call, stream: Stream, payload: bytes) -> bool:
        """Send one tick's audio, or the leg's next DTMF packet; False once DTMF is done."""
        queue = call.dtmf_out.get(stream.leg)
        if queue:
            packet = queue.next_packet(stream.next_timestamp(FRAME))
            if packet is not None:
                stream.send_payload(
                    packet.payload,
                    samples=FRAME,
                    marker=packet.marker,
                    payload_type=stream.dtmf_payload_type,
                    timestamp=packet.timestamp,
                )
                return True
            if not queue:
                del call.dtmf_out[stream.leg]
                stream.send_payload(payload, samples=FRAME)
                return False
        stream.send_payload(payload, samples=FRAME)
        return True

    # -- once a second per stream ---------------------------------------------------------

    def _visit_streams(self) -> None:
        """Queue this tick's visits: 1/50 of the streams, so each is seen once a second.

        They run :data:`VISIT_SLICE` at a time, one loop callback per slice, so a
        second's worth of quality sampling and RTCP neither stalls the relay in one
        burst nor adds to the tick.
        """
        running = self._visits_due > 0
        self._visits_due = -(-len(self._rounds) // round(1 / TICK))
        if self._visits_due and not running:
            assert self._loop is not None
            self._loop.call_soon(self._visit_slice)

    def _visit_slice(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        rounds = self._rounds
        count = min(VISIT_SLICE, self._visits_due, len(rounds))
        for _ in range(count):
            stream = rounds.popleft()
            if id(stream) in self._quality:  # deleted streams drop out here
                self._sample_quality(stream, now)
                rounds.append(stream)
        self._visits_due = self._visits_due - count if rounds else 0
        if self._visits_due > 0:
            self._loop.call_soon(self._visit_slice)

    def _sample_quality(self, stream: Stream, now: float) -> None:
        quality = self._quality.get(id(stream))
        if quality is None or now < quality.next_sample:
            return
        quality.next_sample = now + 1.0
        if isinstance(stream, WebRtcStream):
            stream.handle_timer()
        if now >= quality.next_rtcp:
            quality.next_rtcp = now + stream.send_rtcp(self.cname)
        last = stream.last_packet_at
        started = last if last is not None else self.calls[stream.call_id].created
        if not quality.timed_out and now - started > self.media_timeout:
            quality.timed_out = True
            self._emit({"event": "media_timeout", "call_id": stream.call_id, "leg": stream.leg})
        stats = stream.recv_stats
        if not stats.received:
            return
        expected, lost = stats.expected, stats.lost
        interval_expected = expected - quality.expected
        loss = max(0, lost - quality.lost) / interval_expected if interval_expected > 0 else 0.0
        quality.expected, quality.lost = expected, lost
        rtt = stream.counters.rtt or 0.0
        jitter, loss = stats.jitter_seconds, min(loss, 1.0)
        events = quality.monitor.sample(now, rtt, jitter, loss)
        score = quality.monitor.latest_mos
        if self._callbacks and score is not None:
            self._emit(
                {
                    "event": "quality",
                    "call_id": stream.call_id,
                    "leg": stream.leg,
                    "mos": round(score, 3),
                    "jitter": jitter,
                    "loss": loss,
                    "rtt": stream.counters.rtt,
                }
            )
        for event in events:
            base: Json = {"call_id": stream.call_id, "leg": stream.leg, "name": event.name}
            if isinstance(event, QualityWarning):
                self._emit(
                    {
                        "event": "quality_warning",
                        **base,
                        "value": event.value,
                        "threshold": event.threshold,
                    }
                )
            elif isinstance(event, QualityCleared):
                self._emit({"event": "quality_cleared", **base, "value": event.value})

    # -- engine-wide ---------------------------------------------------------------------

    def stats(self) -> Json:
        """Engine-wide counters."""
        streams = [s for c in self.calls.values() for s in c.streams.values()]
        return {
            "calls": len(self.calls),
            "streams": len(streams),
            "audio_streams": len(self._audio),
            "ports_free": self.ports.available,
            "ticks": self.ticks,
            "tick_overruns": self.tick_overruns,
            "packets_in": sum(s.counters.packets_in for s in streams),
            "packets_out": sum(s.packets_out for s in streams),
        }


def _recording_json(recorder: Recorder) -> Json:
    """Stop a recording; a failed disk write is reported, not raised, so the call still ends."""
    try:
        info = recorder.stop()
    except RecorderError as exc:
        log.error("%s", exc)
        return {"file": recorder.path, "error": str(exc)}
    return {"file": info.path, "duration": info.duration, "frames": info.frames_written}


def _str(args: Json, key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise ControlError(f"{key} must be a non-empty string")
    return value


def _list(args: Json, key: str) -> list[Any]:
    value = args.get(key)
    if not isinstance(value, list):
        raise ControlError(f"{key} must be a list")
    return value


def _opt_legs(args: Json, key: str) -> list[str] | None:
    """An optional list of distinct leg names, e.g. a recording's ``channels``."""
    value = args.get(key)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(leg, str) and leg for leg in value)
        or len(set(value)) != len(value)
    ):
        raise ControlError(f"{key} must be a non-empty list of distinct leg names (or {OTHERS!r})")
    return value


def _opt_float(value: object) -> float | None:
    return None if value is None else float(str(value))


def _addr(value: object) -> Addr | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("host"), str):
        raise ControlError('an address must be {"host": ..., "port": ...}')
    port = value.get("port")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ControlError(f"bad port {port!r}")
    return value["host"], port


def _webrtc(value: object) -> tuple[str, list[tuple[str, str]]]:
    """``{"ufrag": ..., "fingerprints": [[algorithm, value], ...]}`` from the browser's SDP."""
    if not isinstance(value, dict):
        raise TypeError("webrtc must be an object")
    prints = value.get("fingerprints")
    if not isinstance(prints, list):
        raise TypeError("webrtc.fingerprints must be a list of [algorithm, value]")
    return str(value["ufrag"]), [(str(a), str(v)) for a, v in prints]


def _codec(value: object) -> Codec:
    if not isinstance(value, dict):
        raise ControlError('a codec must be {"pt": ..., "name": ..., "rate": ...}')
    pt, name = value.get("pt"), value.get("name")
    if not isinstance(pt, int) or not 0 <= pt <= 127 or not isinstance(name, str):
        raise ControlError(f"bad codec {value!r}")
    return Codec(pt, name, int(value.get("rate", 8000)))
