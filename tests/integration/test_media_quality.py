"""RTCP, round-trip time, quality warnings and media timeouts over real sockets."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from media.control import Json
from media.engine import MediaEngine
from media.rtcp import (
    ReceiverReport,
    ReportBlock,
    SenderReport,
    build_compound,
    ntp_middle32,
    parse_compound,
)
from tests.harness import wait_for_async
from tests.integration.test_media import PCMU, addr
from tests.rtpphone import RtpPhone

pytestmark = pytest.mark.integration


async def started_engine(media_timeout: float = 60.0) -> MediaEngine:
    engine = MediaEngine(rtp_ports=(36000, 36200), media_timeout=media_timeout)
    await engine.start()
    return engine


def test_engine_sends_sender_reports_and_measures_rtt_from_the_answer() -> None:
    async def main() -> None:
        engine = await started_engine()
        phone_a, phone_b = RtpPhone.open(), RtpPhone.open()
        rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtcp.bind(("127.0.0.1", 0))
        rtcp.setblocking(False)
        reply = await engine.request(
            "offer", {"call_id": "c", "leg": "a", "codecs": [PCMU], "remote": addr(phone_a)}
        )
        await engine.request(
            "answer",
            {
                "call_id": "c",
                "leg": "b",
                "codecs": [PCMU],
                "remote": addr(phone_b),
                "rtcp": {"host": "127.0.0.1", "port": rtcp.getsockname()[1]},
            },
        )
        to_a = (reply["local"]["host"], reply["local"]["port"])
        # A talks; the engine relays to B and owes B's RTCP port sender reports.
        sending = asyncio.create_task(phone_a.send_tone(to_a, 1000, 5.0))
        loop = asyncio.get_running_loop()
        data, engine_rtcp = await asyncio.wait_for(loop.sock_recvfrom(rtcp, 2048), 10)
        received = time.monotonic()
        [report, sdes] = parse_compound(data)
        assert isinstance(report, SenderReport) and report.packet_count > 0
        # B answers at least 50 ms later with a receiver report echoing LSR, and as DLSR
        # the delay it really had (RFC 3550 §6.4.1), however long this machine took.
        await asyncio.sleep(0.05)
        dlsr = round((time.monotonic() - received) * 65536)
        block = ReportBlock(report.ssrc, lsr=ntp_middle32(report.ntp_timestamp), dlsr=dlsr)
        rtcp.sendto(build_compound([ReceiverReport(phone_b.ssrc, [block])]), engine_rtcp)

        def measured() -> list[float]:
            rtt = engine.query("c")["legs"]["b"]["rtt"]
            return [] if rtt is None else [rtt]  # (0.0 is a measurement)

        rtt = await wait_for_async(measured, "no RTT measured from the receiver report")
        assert rtt == [pytest.approx(0.0, abs=0.02)]
        sending.cancel()
        rtcp.close()
        await engine.stop()

    asyncio.run(main())


def test_silent_leg_raises_media_timeout() -> None:
    async def main() -> None:
        engine = await started_engine(media_timeout=1.0)
        events: list[Json] = []
        engine.subscribe(events.append)
        phone = RtpPhone.open()
        await engine.request(
            "offer", {"call_id": "c", "leg": "a", "codecs": [PCMU], "remote": addr(phone)}
        )
        await wait_for_async(lambda: events, "no media_timeout event")
        assert events == [{"event": "media_timeout", "call_id": "c", "leg": "a"}]
        await engine.stop()

    asyncio.run(main())


def test_packet_loss_raises_and_clears_a_quality_warning() -> None:
    async def main() -> None:
        engine = await started_engine()
        events: list[Json] = []
        engine.subscribe(events.append)
        phone_a, phone_b = RtpPhone.open(), RtpPhone.open()
        reply = await engine.request(
            "offer", {"call_id": "c", "leg": "a", "codecs": [PCMU], "remote": addr(phone_a)}
        )
        await engine.request(
            "answer", {"call_id": "c", "leg": "b", "codecs": [PCMU], "remote": addr(phone_b)}
        )
        to_a = (reply["local"]["host"], reply["local"]["port"])
        loop = asyncio.get_running_loop()
        start = loop.time()
        # 5 % of A's packets vanish for 6 s (MOS about 4.0), then 6 s without loss.
        for index in range(600):
            if index >= 300 or index % 20:
                phone_a.send_packet(to_a, b"\xff" * 160, 0, timestamp=index * 160)
            else:
                phone_a.seq = (phone_a.seq + 1) & 0xFFFF
            await asyncio.sleep(max(0.0, start + (index + 1) * 0.02 - loop.time()))

        def warnings() -> list[tuple[str, str]]:
            return [(e["event"], e["name"]) for e in events if e["leg"] == "a" and "name" in e]

        await wait_for_async(lambda: len(warnings()) >= 2, lambda: f"warnings: {warnings()}")
        assert warnings() == [
            ("quality_warning", "high-packet-loss"),
            ("quality_cleared", "high-packet-loss"),
        ]
        # One sample a second: MOS dips with 5 % loss (R falls by 12.5) and recovers.
        samples = [e for e in events if e["event"] == "quality" and e["leg"] == "a"]
        assert 10 <= len(samples) <= loop.time() - start + 1
        assert min(s["mos"] for s in samples) < 4.2 < samples[-1]["mos"]
        await engine.stop()

    asyncio.run(main())
