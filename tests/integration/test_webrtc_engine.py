"""Browser legs in the media engine over real sockets, with aiortc as the browser:
ICE-lite, DTLS-SRTP and rtcp-mux on one port, G.711 relayed and Opus transcoded,
DSCP EF like any leg, and a certificate that does not match its fingerprint refused."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from media.control import Json
from media.engine import MediaEngine
from media.webrtc import WebRtcStream
from tests.audio import assert_no_tone, until_heard
from tests.harness import wait_for_async
from tests.rtpphone import RtpPhone
from tests.webpage import ToneTrack
from voipcore.sdp import (
    OPUS,
    PCMA,
    PCMU,
    SessionDescription,
    build_webrtc_answer,
    negotiate,
    to_engine_codecs,
    webrtc_offer,
)

pytestmark = pytest.mark.integration

PORTS = (33000, 33998)


def run(test: Callable[[MediaEngine, list[Json]], Awaitable[None]]) -> None:
    async def main() -> None:
        engine = MediaEngine(rtp_ports=PORTS, host="127.0.0.1")
        events: list[Json] = []
        engine.subscribe(events.append)
        await engine.start()
        try:
            await test(engine, events)
        finally:
            await engine.stop()

    asyncio.run(main())


class Browser:
    """An aiortc peer saying a tone into one leg of an engine call, recording what it hears."""

    def __init__(self, hz: float) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(ToneTrack(hz))
        self.chunks: list[npt.NDArray[np.int16]] = []
        self.rate = 8000
        self._task: asyncio.Task[None] | None = None

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            self._task = asyncio.create_task(self._record(track))

    async def _record(self, track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.rate = frame.sample_rate
            self.chunks.append(frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0])

    def heard(self) -> npt.NDArray[np.int16]:
        """What it heard, at 8 kHz (Opus arrives at 48 kHz: every 6th sample)."""
        pcm = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        return pcm[:: self.rate // 8000].astype(np.int16)

    async def join(
        self, engine: MediaEngine, leg: str, supported: list[Any], *, tamper: bool = False
    ) -> Json:
        """Offer, let the engine make the leg, apply its answer; the engine's reply."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = SessionDescription.parse(self.pc.localDescription.sdp)
        browser = webrtc_offer(offer)
        audio = offer.audio
        assert audio is not None
        formats = negotiate(audio, supported)
        prints = [[a, "00:" * 31 + "00" if tamper else v] for a, v in browser.fingerprints]
        reply = await engine.request(
            "offer",
            {
                "call_id": "c",
                "leg": leg,
                "codecs": to_engine_codecs(formats),
                "webrtc": {"ufrag": browser.ufrag, "fingerprints": prints},
            },
        )
        ice, dtls = reply["webrtc"], reply["webrtc"]["fingerprint"]
        answer = build_webrtc_answer(
            offer,
            address=reply["local"]["host"],
            port=reply["local"]["port"],
            formats=formats,
            session_id=1,
            version=1,
            ice=(ice["ufrag"], ice["pwd"]),
            fingerprint=(dtls["algorithm"], dtls["value"]),
        )
        await self.pc.setRemoteDescription(RTCSessionDescription(str(answer), "answer"))
        return reply

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.pc.close()


async def bridged(
    engine: MediaEngine,
    supported: list[Any],
    then: Callable[[MediaEngine, Browser, RtpPhone], Awaitable[None]] | None = None,
) -> None:
    """A browser (1000 Hz) and a PCMU phone (440 Hz) in one call: each hears the other;
    then ``then`` runs with both still talking."""
    browser, phone = Browser(1000.0), RtpPhone.open()
    try:
        reply = await browser.join(engine, "a", supported)
        assert PORTS[0] <= reply["local"]["port"] <= PORTS[1]
        host, port = phone.address
        engine_side = await engine.request(
            "answer",
            {
                "call_id": "c",
                "leg": "b",
                "codecs": [{"pt": 0, "name": "PCMU", "rate": 8000}],
                "remote": {"host": host, "port": port},
            },
        )
        dest = (engine_side["local"]["host"], engine_side["local"]["port"])
        talking = asyncio.create_task(phone.send_tone(dest, 440.0))
        await until_heard(lambda: phone.audio(0), 1000.0, 1.0)
        await until_heard(browser.heard, 440.0, 1.0)
        if then is not None:
            await then(engine, browser, phone)
        talking.cancel()
    finally:
        phone.close()
        await browser.close()


def test_a_g711_browser_leg_and_a_phone_hear_each_other_through_the_relay() -> None:
    async def test(engine: MediaEngine, events: list[Json]) -> None:
        await bridged(engine, [PCMU, PCMA])
        assert any(e.get("state") == "connected" for e in events if e["event"] == "webrtc")

    run(test)


def test_an_opus_browser_leg_is_transcoded_for_a_g711_phone() -> None:
    async def test(engine: MediaEngine, events: list[Json]) -> None:
        await bridged(engine, [OPUS])

    run(test)


def test_a_muted_browser_leg_sends_the_phone_silence_not_nothing() -> None:
    async def muted(engine: MediaEngine, browser: Browser, phone: RtpPhone) -> None:
        await mute(engine, True)
        # Past the jitter buffer's last frames, all the phone gets is silence, but it
        # gets it: RTP never stops (phones and carriers hang up when it does).
        start = len(phone.audio(0)) + 1600
        await wait_for_async(lambda: len(phone.audio(0)) > start + 8000, "no RTP while muted")
        assert_no_tone(phone.audio(0)[start:], 1000.0)
        await mute(engine, False)
        await until_heard(lambda: phone.audio(0)[start + 8000 :], 1000.0, 1.0)

    async def test(engine: MediaEngine, events: list[Json]) -> None:
        await bridged(engine, [PCMU], muted)

    run(test)


async def mute(engine: MediaEngine, on: bool) -> None:
    """Mute leg "a" as the call layer does: the engine stops hearing it (recvonly)."""
    codecs = [{"pt": 0, "name": "PCMU", "rate": 8000}]
    direction = "recvonly" if on else "sendrecv"
    await engine.request(
        "answer", {"call_id": "c", "leg": "a", "codecs": codecs, "direction": direction}
    )
    assert engine.query("c")["mode"] == ("audio" if on else "relay")


def test_browser_media_is_marked_dscp_ef_on_a_port_from_the_range() -> None:
    async def test(engine: MediaEngine, events: list[Json]) -> None:
        browser = Browser(1000.0)
        try:
            await browser.join(engine, "a", [PCMU])
            stream = engine.calls["c"].streams["a"]
            assert isinstance(stream, WebRtcStream)
            sock = stream.rtp_socket
            assert sock is not None
            assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) == 46 << 2
        finally:
            await browser.close()

    run(test)


def test_a_certificate_not_matching_the_offer_fingerprint_fails_the_leg() -> None:
    async def test(engine: MediaEngine, events: list[Json]) -> None:
        browser = Browser(1000.0)
        try:
            await browser.join(engine, "a", [PCMU], tamper=True)

            def failed() -> Json | None:
                return next(
                    (e for e in events if e["event"] == "webrtc" and e["state"] == "failed"),
                    None,
                )

            event = await wait_for_async(failed, "no failed event for a forged certificate")
            assert "fingerprint" in str(event["reason"])
            assert engine.query("c")["legs"]["a"]["packets_in"] == 0
        finally:
            await browser.close()

    run(test)
