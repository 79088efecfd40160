"""Media anchoring: the only part of the call layer that talks to the media engine.

Every leg has its own stream in the engine, under the call's id and the leg's
id; the engine relays two legs that share a codec, runs the audio path when
they differ (transcoding) and mixes three or more.  Each leg also has its own
SDP session towards its party (RFC 3264 §8: one session id, the version
raised whenever what it describes changes).

Transcoding at set-up: a leg we dial is offered every codec the engine
converts, the other party's first, so two parties with no codec in common
still connect (through the audio path), and two that share one keep the relay.
"""

from __future__ import annotations

from typing import Any

from media.control import MediaControl
from voipcore.calls.model import Leg
from voipcore.sdp import (
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    Format,
    SdpError,
    SessionDescription,
    build_answer,
    build_offer,
    build_webrtc_answer,
    negotiate,
    to_engine_codecs,
    webrtc_offer,
)

#: What the engine's audio path can take (RFC 3551 static types, RFC 4733 events), in
#: the order the trunk is offered them (Twilio: PCMU first, PCMA second, RFC 4733 DTMF).
SUPPORTED = [PCMU, PCMA, TELEPHONE_EVENT]


def offer_formats(preferred: list[Format]) -> list[Format]:
    """What to offer a leg we dial: ``preferred`` (the other party's codecs) first,
    then every other codec the engine converts to."""
    names = {f.name.upper() for f in preferred}
    return list(preferred) + [f for f in SUPPORTED if f.name.upper() not in names]


def answer_formats(offered: list[Format], chosen: list[Format]) -> list[Format]:
    """An answer's formats from the ``offered`` ones, those the other leg ``chosen``
    first: when the party offered the other leg's codec, the relay can carry the call."""
    first = {f.name.upper() for f in chosen[:1]}
    return sorted(offered, key=lambda f: f.name.upper() not in first)


class MediaAnchor:
    """Opens, points and closes legs' streams; builds each leg's SDP."""

    def __init__(self, media: MediaControl) -> None:
        self.media = media

    async def open(self, leg: Leg) -> None:
        """Give ``leg`` a stream (pointed at its party's offer if it made one)."""
        args: dict[str, Any] = {
            "call_id": leg.call.id,
            "leg": leg.id,
            "codecs": to_engine_codecs(leg.formats),
        }
        audio = SessionDescription.parse(leg.remote_sdp).audio if leg.remote_sdp else None
        if audio is not None:
            args["remote"] = {"host": audio.connection_address, "port": audio.port}
        reply = await self.media.request("offer", args)
        leg.local = (reply["local"]["host"], reply["local"]["port"])

    async def open_browser(self, leg: Leg, offer: SessionDescription) -> bytes:
        """Give a browser leg its WebRTC stream for the page's ``offer``; returns our
        answer (ICE-lite, DTLS server, rtcp-mux), kept as the leg's session."""
        browser = webrtc_offer(offer)
        reply = await self.media.request(
            "offer",
            {
                "call_id": leg.call.id,
                "leg": leg.id,
                "codecs": to_engine_codecs(leg.formats),
                "webrtc": {"ufrag": browser.ufrag, "fingerprints": browser.fingerprints},
            },
        )
        leg.local = (reply["local"]["host"], reply["local"]["port"])
        ice, dtls = reply["webrtc"], reply["webrtc"]["fingerprint"]
        leg.last_sdp = build_webrtc_answer(
            offer,
            address=leg.local[0],
            port=leg.local[1],
            formats=leg.formats,
            session_id=leg.session_id,
            version=leg.version,
            ice=(ice["ufrag"], ice["pwd"]),
            fingerprint=(dtls["algorithm"], dtls["value"]),
        ).to_bytes()
        return leg.last_sdp

    async def set_direction(self, leg: Leg, direction: str) -> None:
        """What the engine sends to and takes from ``leg``'s party (RFC 3264 §6.1 terms:
        "recvonly" mutes the party, "inactive" holds it)."""
        await self.media.request(
            "answer",
            {
                "call_id": leg.call.id,
                "leg": leg.id,
                "codecs": to_engine_codecs(leg.formats),
                "direction": direction,
            },
        )

    async def apply(self, leg: Leg, body: bytes, *, command: str = "answer") -> list[Format]:
        """Point ``leg``'s stream at the audio in ``body`` (address, codecs, direction).

        Returns the formats both sides support; SdpError if there are none.
        """
        audio = SessionDescription.parse(body).audio
        if audio is None:
            raise SdpError("no audio stream")
        formats = negotiate(audio, SUPPORTED)
        if not formats:
            raise SdpError("no codec in common")
        await self.media.request(
            command,
            {
                "call_id": leg.call.id,
                "leg": leg.id,
                "codecs": to_engine_codecs(formats),
                "remote": {"host": audio.connection_address, "port": audio.port},
                "direction": audio.direction,
            },
        )
        leg.formats, leg.remote_sdp = formats, body
        return formats

    async def set_codecs(self, leg: Leg) -> None:
        """Tell the engine ``leg.formats`` changed order (the first is the one sent)."""
        await self.media.request(
            "answer",
            {"call_id": leg.call.id, "leg": leg.id, "codecs": to_engine_codecs(leg.formats)},
        )

    async def remove(self, leg: Leg, call_id: str | None = None) -> None:
        """Close one leg's stream (in ``call_id``, by default the leg's call); the
        engine's summary of it is kept on the leg."""
        args = {"call_id": call_id or leg.call.id, "leg": leg.id}
        reply = await self.media.request("delete", args)
        leg.media = (reply.get("legs") or {}).get(leg.id)

    async def release(self, call_id: str) -> dict[str, Any]:
        """Close the call's streams; returns each leg's summary by leg id."""
        summary = await self.media.request("delete", {"call_id": call_id})
        legs = summary.get("legs")
        return legs if isinstance(legs, dict) else {}

    async def play(self, leg: Leg, args: dict[str, Any]) -> None:
        await self.media.request("play", {"call_id": leg.call.id, "leg": leg.id, **args})

    async def stop_play(self, leg: Leg) -> None:
        await self.media.request("stop_play", {"call_id": leg.call.id, "leg": leg.id})

    async def record(self, call_id: str, action: str, **args: Any) -> dict[str, Any]:
        """Start (``file``, ``channels``: the leg on each, left first), pause, resume or
        stop the call's recording; stop replies with what was written."""
        return await self.media.request("record", {"call_id": call_id, "action": action, **args})

    async def send_dtmf(self, leg: Leg, digits: str, duration: float) -> None:
        await self.media.request(
            "dtmf",
            {"call_id": leg.call.id, "leg": leg.id, "digits": digits, "duration": duration},
        )


def describe(
    leg: Leg, *, answering: SessionDescription | None = None, direction: str = "sendrecv"
) -> bytes:
    """Our SDP towards ``leg``'s party: an answer to ``answering``, else an offer.

    The version goes up whenever the session described changes (RFC 3264 §8);
    the result is kept as the leg's current session.
    """
    host, port = leg.local

    def build(version: int) -> bytes:
        if answering is not None:
            sdp = build_answer(
                answering,
                address=host,
                port=port,
                formats=leg.formats,
                session_id=leg.session_id,
                version=version,
            )
        else:
            sdp = build_offer(
                address=host,
                port=port,
                formats=leg.formats,
                session_id=leg.session_id,
                version=version,
                direction=direction,
            )
        return sdp.to_bytes()

    body = build(leg.version)
    if leg.last_sdp and body != leg.last_sdp:
        leg.version += 1
        body = build(leg.version)
    leg.last_sdp = body
    return body
