"""Media over the control protocol: a Unix-socket client and a pool of worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from media.control import ControlClient, ControlError, ControlServer, Json, MediaControl
from media.engine import MediaEngine
from media.workers import WorkerPool, split_ports
from tests.audio import until_heard
from tests.harness import wait_for_async
from tests.integration.test_media import PCMU, addr, local, record_swapped_with_a_pause
from tests.rtpphone import RtpPhone

pytestmark = pytest.mark.integration


async def relay_call(control: MediaControl, call_id: str) -> None:
    """Set up a relayed call and send A's 1000 Hz tone for 0.5 s: B must hear it."""
    phone_a, phone_b = RtpPhone.open(), RtpPhone.open()
    reply_a = await control.request(
        "offer", {"call_id": call_id, "leg": "a", "codecs": [PCMU], "remote": addr(phone_a)}
    )
    await control.request(
        "answer", {"call_id": call_id, "leg": "b", "codecs": [PCMU], "remote": addr(phone_b)}
    )
    await phone_a.send_tone(local(reply_a), 1000, 0.5)
    try:
        await until_heard(lambda: phone_b.audio(0), 1000, 0.5)
    finally:
        phone_a.close()
        phone_b.close()


def test_control_protocol_over_unix_socket(tmp_path: Path) -> None:
    async def main() -> None:
        engine = MediaEngine(rtp_ports=(32000, 32100))
        await engine.start()
        server = ControlServer(engine)
        path = str(tmp_path / "media.sock")
        await server.listen_unix(path)
        client = await ControlClient.connect_unix(path)
        events: list[Json] = []
        client.subscribe(events.append)
        await relay_call(client, "c1")
        stats = await client.request("stats", {})
        assert stats["calls"] == 1
        with pytest.raises(ControlError, match="unknown call 'zz'"):
            await client.request("delete", {"call_id": "zz"})
        summary = await client.request("delete", {"call_id": "c1"})
        assert summary["legs"]["a"]["packets_in"] == 25
        await client.close()
        server.close()
        await engine.stop()

    asyncio.run(main())


def test_ports_split_evenly_between_workers() -> None:
    assert split_ports(20000, 30000, 4) == [
        (20000, 22500),
        (22500, 25000),
        (25000, 27500),
        (27500, 30000),
    ]
    with pytest.raises(ValueError, match="too small"):
        split_ports(20000, 20002, 4)


def test_worker_pool_spreads_calls_and_survives_a_crash() -> None:
    async def main() -> None:
        pool = WorkerPool(2, rtp_ports=(33000, 33400), host="127.0.0.1")
        await pool.start()
        events: list[Json] = []
        pool.subscribe(events.append)
        try:
            await relay_call(pool, "c1")
            await relay_call(pool, "c2")
            per_worker = [w["calls"] for w in (await pool.request("stats", {}))["workers"]]
            assert per_worker == [1, 1]
            victim = pool.pids[0]
            os.kill(victim, signal.SIGKILL)

            def ended() -> list[tuple[str, str]]:
                return [(e["event"], e["call_id"]) for e in events if e["event"] == "call_ended"]

            await wait_for_async(
                lambda: victim not in pool.pids and len(pool.pids) == 2 and ended(),
                lambda: f"worker not replaced: pids {pool.pids}, ended {ended()}",
            )
            assert ended() == [("call_ended", "c1")]
            with pytest.raises(ControlError, match="unknown call 'c1'"):
                await pool.request("query", {"call_id": "c1"})
            # The other worker's call is untouched, and the restarted worker takes new calls.
            assert (await pool.request("query", {"call_id": "c2"}))["call_id"] == "c2"
            await relay_call(pool, "c3")
        finally:
            await pool.stop()

    asyncio.run(main())


def test_a_worker_records_the_legs_on_the_channels_named_with_pauses_silent(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        pool = WorkerPool(1, rtp_ports=(33400, 33500), host="127.0.0.1")
        await pool.start()
        try:
            await record_swapped_with_a_pause(pool, "c1", tmp_path / "call.wav")
        finally:
            await pool.stop()

    asyncio.run(main())
