"""A dialer page without a browser: the JSON WebSocket protocol spoken by a test, with
aiortc as its WebRTC stack (docs/browser-protocol.md).

Chromium tests (tests/browser/) check the real page; this stand-in lets integration
tests and benchmarks drive browser legs cheaply: sign in, dial or answer, send a tone,
record what comes back.
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
import json
import ssl
import time
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from tests.harness import wait_for_async

RATE = 8000
SAMPLES = 160


class ToneTrack(MediaStreamTrack):
    """A microphone saying one tone (0 Hz: silence), 20 ms frames in real time."""

    kind = "audio"

    def __init__(self, hz: float, amplitude: float = 0.3) -> None:
        super().__init__()
        self.hz = hz
        self.amplitude = amplitude
        self._sent = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._sent / RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        t = (np.arange(SAMPLES) + self._sent) / RATE
        pcm = (self.amplitude * 32767 * np.sin(2 * np.pi * self.hz * t)).astype(np.int16)
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = RATE, self._sent
        frame.time_base = fractions.Fraction(1, RATE)
        self._sent += SAMPLES
        return frame


class PageClient:
    """One signed-in page: an HTTPS session, its WebSocket and its calls' peers."""

    def __init__(self, base: str, username: str, password: str) -> None:
        self.base = base
        self.username = username
        self.password = password
        self.messages: list[dict[str, Any]] = []
        self.heard: dict[str, list[npt.NDArray[np.int16]]] = {}
        """Audio received per call, as 8 kHz-or-native int16 chunks (see :attr:`rates`)."""
        self.rates: dict[str, int] = {}
        self.peers: dict[str, RTCPeerConnection] = {}
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._refs = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> PageClient:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context),
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # the server is an IP address
        )
        credentials = {"username": self.username, "password": self.password}
        async with self._session.post(f"{self.base}/api/v1/session", json=credentials) as reply:
            assert reply.status == 200, await reply.text()
        await self._connect()
        return self

    async def _connect(self) -> dict[str, Any]:
        """Open the page's WebSocket; its ``hello``."""
        assert self._session is not None
        self._ws = await self._session.ws_connect(f"{self.base.replace('http', 'ws', 1)}/api/v1/ws")
        self._reader = asyncio.create_task(self._read())
        hellos = sum(1 for m in self.messages if m.get("type") == "hello")

        def hello() -> dict[str, Any] | None:
            found = [m for m in self.messages if m.get("type") == "hello"]
            return found[-1] if len(found) > hellos else None

        return await wait_for_async(hello, "no hello from the server")

    async def reconnect(self) -> dict[str, Any]:
        """Drop the WebSocket (a network blip; the calls' media goes on) and open a new
        one; its ``hello``."""
        assert self._ws is not None and self._reader is not None
        await self._ws.close()
        await self._reader
        return await self._connect()

    async def __aexit__(self, *exc: object) -> None:
        for pc in self.peers.values():
            await pc.close()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await self._reader
        if self._session is not None:
            await self._session.close()

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(message.data))

    async def send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send_str(json.dumps(message))

    def find(self, kind: str, **fields: Any) -> dict[str, Any] | None:
        """The first message of ``kind`` whose fields match."""
        return next(
            (
                m
                for m in self.messages
                if m.get("type") == kind and all(m.get(k) == v for k, v in fields.items())
            ),
            None,
        )

    async def wait(self, kind: str, timeout: float = 15.0, **fields: Any) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return self.find(kind, **fields)

        return await wait_for_async(
            found, lambda: f"no {kind} {fields} among {self.messages}", timeout
        )

    async def _offer(self, hz: float) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(ToneTrack(hz))
        await pc.setLocalDescription(await pc.createOffer())
        return pc

    def _listen(self, call: str, pc: RTCPeerConnection) -> None:
        self.peers[call] = pc
        self.heard.setdefault(call, [])

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            task = asyncio.create_task(self._record(call, track))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _record(self, call: str, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, AudioFrame)
            samples = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
            self.rates[call] = frame.sample_rate
            self.heard[call].append(samples.astype(np.int16))

    async def dial(self, to: str, hz: float, extension: str = "") -> str:
        """Dial ``to`` saying ``hz``; returns the call id once the server answered our SDP."""
        pc = await self._offer(hz)
        ref = next(self._refs)
        await self.send(
            {
                "type": "dial",
                "ref": ref,
                "to": to,
                "extension": extension,
                "sdp": pc.localDescription.sdp,
            }
        )
        reply = await self.wait("dialling", ref=ref)
        self._listen(reply["call"], pc)
        await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        return str(reply["call"])

    async def answer(self, call: str, hz: float) -> None:
        pc = await self._offer(hz)
        await self.send({"type": "answer", "call": call, "sdp": pc.localDescription.sdp})
        reply = await self.wait("answered", call=call)
        self._listen(call, pc)
        await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))

    def audio(self, call: str, since: int = 0) -> tuple[npt.NDArray[np.int16], int]:
        """What the page heard on ``call`` from chunk ``since`` on, and its sample rate."""
        chunks = self.heard.get(call, [])[since:]
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        return pcm, self.rates.get(call, RATE)
