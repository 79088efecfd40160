"""The harness fails a test whose server logged a traceback or did not stop cleanly."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import pytest

from media.control import MediaControl, UdpControlClient
from media.engine import MediaEngine
from tests.harness import (
    ServerFailed,
    ServerProcess,
    free_udp_port,
    logged_tracebacks,
    wait_for,
)

pytestmark = pytest.mark.integration

PCMU = {"pt": 0, "name": "PCMU", "rate": 8000}


def worker_server(tmp_path: Path, control_port: int) -> ServerProcess:
    """A server with one media worker whose control socket a test can reach."""
    media = f'[media]\nworkers = 1\ncontrol = "udp:127.0.0.1:{control_port}"\n'
    return ServerProcess(tmp_path, extra_config=media).start()


async def record_into_nowhere(control: MediaControl, tmp_path: Path) -> None:
    """Make a media engine log a traceback: a recording whose directory does not exist
    fails in the recorder's writer thread, which logs it with ``logger.exception``."""
    await control.request("offer", {"call_id": "c", "leg": "a", "codecs": [PCMU]})
    path = str(tmp_path / "missing" / "call.wav")
    await control.request("record", {"call_id": "c", "action": "start", "file": path})
    await control.request("record", {"call_id": "c", "action": "stop"})


async def record_in_worker(control_port: int, tmp_path: Path) -> None:
    client = await UdpControlClient.connect("127.0.0.1", control_port)
    await record_into_nowhere(client, tmp_path)
    await client.close()


def test_clean_stop_passes(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    assert server.stop() == 0


def test_traceback_a_media_worker_logged_fails_the_stop(tmp_path: Path) -> None:
    port = free_udp_port()
    server = worker_server(tmp_path, port)
    asyncio.run(record_in_worker(port, tmp_path))
    with pytest.raises(ServerFailed) as failed:
        server.stop()
    message = str(failed.value)
    assert re.search(r"server \(log .*/server-\d+\.log\) logged 1 traceback", message)
    assert "recording to " in message and "Traceback (most recent call last)" in message
    assert "FileNotFoundError" in message
    assert "after SIGTERM" not in message


def test_expected_tracebacks_are_allowed(tmp_path: Path) -> None:
    port = free_udp_port()
    server = worker_server(tmp_path, port)
    server.expect_tracebacks = True
    asyncio.run(record_in_worker(port, tmp_path))
    assert server.stop() == 0


def test_server_that_died_fails_the_stop(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    # Dies behind the test's back (SIGKILL: SIGHUP may be inherited as ignored, under nohup).
    os.kill(server.pid, signal.SIGKILL)
    wait_for(lambda: not server.alive(), "SIGKILL did not end the server")
    with pytest.raises(ServerFailed, match=r"\(log .*\) had already exited with code -9 when"):
        server.stop()


def test_a_crash_the_test_asked_for_passes(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL


@pytest.mark.expect_tracebacks
def test_traceback_logged_in_process_is_found(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What the autouse ``no_logged_tracebacks`` fixture fails a test for (this test is
    marked so that it may)."""

    async def main() -> None:
        engine = MediaEngine(rtp_ports=(36400, 36500), host="127.0.0.1")
        await engine.start()
        await record_into_nowhere(engine, tmp_path)
        await engine.stop()

    asyncio.run(main())
    [logged] = logged_tracebacks(caplog.records)
    assert logged.startswith("ERROR media.recorder recording to ")
    assert "Traceback (most recent call last)" in logged and "FileNotFoundError" in logged
