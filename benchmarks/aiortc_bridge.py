"""Stock aiortc as a media server: the baseline of :mod:`benchmarks.webrtc_load`.

    python -m benchmarks.aiortc_bridge --control unix:/tmp/aiortc.sock

Serves the engine's control protocol (:mod:`media.control`), so the benchmark
drives it as it drives ``python -m media.worker``: ``offer`` (or ``answer``)
with a ``webrtc`` object makes one ``RTCPeerConnection`` per browser leg, and
the two legs of a call are bridged the way an aiortc application does it:
each leg's received track is read frame by frame (aiortc decodes it) and put
on the other leg's outgoing track (which aiortc encodes again).  The reply has
the shape the engine's has (``local`` and ``webrtc``), taken from aiortc's
answer.  The browser's offer is built from the request: its ICE credentials
(``webrtc.pwd`` too, since aiortc is a full ICE agent that checks back), its
fingerprint, ``a=setup:active`` and its one host candidate (``remote``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re

import uvloop
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from av.frame import Frame

from media.control import ControlAddress, ControlError, ControlServer, EventCallback, Json

#: Frames an outgoing track holds before dropping the oldest (a slow encoder must not grow it).
QUEUE = 10


class ForwardTrack(MediaStreamTrack):
    """An outgoing audio track fed with the other leg's received frames."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[Frame] = asyncio.Queue(QUEUE)

    def put(self, frame: Frame) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(frame)

    async def recv(self) -> Frame:
        return await self.queue.get()


def browser_offer(args: Json) -> str:
    """The SDP offer a browser leg with the request's parameters would send (RFC 8829 §5.2)."""
    webrtc = args["webrtc"]
    remote = args["remote"]
    codec = args["codecs"][0]
    pt, name, rate = int(codec["pt"]), str(codec["name"]), int(codec.get("rate", 8000))
    rtpmap = f"{pt} {name}/{rate}" + ("/2" if name.lower() == "opus" else "")
    algorithm, value = webrtc["fingerprints"][0]
    host, port = remote["host"], int(remote["port"])
    return "\r\n".join(
        [
            "v=0",
            "o=- 1 1 IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE 0",
            f"m=audio {port} UDP/TLS/RTP/SAVPF {pt}",
            f"c=IN IP4 {host}",
            "a=mid:0",
            "a=sendrecv",
            "a=rtcp-mux",
            f"a=rtpmap:{rtpmap}",
            f"a=ice-ufrag:{webrtc['ufrag']}",
            f"a=ice-pwd:{webrtc['pwd']}",
            f"a=fingerprint:{algorithm} {value}",
            "a=setup:active",
            f"a=candidate:1 1 udp 2130706431 {host} {port} typ host",
            "a=end-of-candidates",
            "",
        ]
    )


def answer_json(sdp: str) -> Json:
    """``local`` and ``webrtc`` from aiortc's answer, as the engine replies them."""

    def attribute(name: str) -> str:
        match = re.search(rf"^a={name}:(.*?)\r?$", sdp, re.MULTILINE)
        if match is None:
            raise ControlError(f"aiortc's answer has no a={name}")
        return match[1].strip()

    candidate = re.search(
        r"^a=candidate:\S+ 1 udp \d+ (\d+\.\d+\.\d+\.\d+) (\d+) typ host", sdp, re.MULTILINE
    )
    if candidate is None:
        raise ControlError("aiortc's answer has no IPv4 host candidate")
    algorithm, _, value = attribute("fingerprint").partition(" ")
    return {
        "local": {"host": candidate[1], "port": int(candidate[2])},
        "webrtc": {
            "ufrag": attribute("ice-ufrag"),
            "pwd": attribute("ice-pwd"),
            "fingerprint": {"algorithm": algorithm, "value": value},
        },
    }


class AiortcBridge:
    """One ``RTCPeerConnection`` per leg; the two legs of a call hear each other."""

    def __init__(self) -> None:
        self.peers: dict[tuple[str, str], RTCPeerConnection] = {}
        #: Each call's outgoing tracks, by leg.
        self.calls: dict[str, dict[str, ForwardTrack]] = {}
        self.pumps: set[asyncio.Task[None]] = set()

    def subscribe(self, callback: EventCallback) -> None:
        """No events: the benchmark does not wait for any."""

    async def request(self, command: str, args: Json) -> Json:
        if command in ("offer", "answer"):
            return await self._leg(str(args["call_id"]), str(args["leg"]), args)
        if command == "delete":
            await self._delete(str(args["call_id"]))
            return {}
        if command == "stats":
            return {"streams": len(self.peers), "tick_overruns": 0}
        if command == "ping":
            return {"pong": True}
        raise ControlError(f"unknown command {command!r}")

    async def _leg(self, call_id: str, leg: str, args: Json) -> Json:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        out = ForwardTrack()
        pc.addTrack(out)
        self.peers[call_id, leg] = pc
        self.calls.setdefault(call_id, {})[leg] = out

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            task = asyncio.ensure_future(self._pump(call_id, leg, track))
            self.pumps.add(task)
            task.add_done_callback(self.pumps.discard)

        await pc.setRemoteDescription(RTCSessionDescription(browser_offer(args), "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return answer_json(pc.localDescription.sdp)

    async def _pump(self, call_id: str, leg: str, track: MediaStreamTrack) -> None:
        """Each received frame to the other leg of the call, as MediaRelay would."""
        with contextlib.suppress(Exception):
            while True:
                frame = await track.recv()
                if not isinstance(frame, Frame):
                    continue
                for other, out in self.calls.get(call_id, {}).items():
                    if other != leg:
                        out.put(frame)

    async def _delete(self, call_id: str) -> None:
        for key in [k for k in self.peers if k[0] == call_id]:
            await self.peers.pop(key).close()
        self.calls.pop(call_id, None)


async def serve(address: ControlAddress) -> None:
    bridge = AiortcBridge()
    server = ControlServer(bridge)
    bound = await server.listen(address)
    print(f"ready {bound}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.aiortc_bridge")
    parser.add_argument("--control", required=True, help="unix:PATH or tcp:HOST:PORT")
    args = parser.parse_args()
    uvloop.run(serve(ControlAddress.parse(args.control)))


if __name__ == "__main__":
    main()
