"""Fixtures that start real servers and peers on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.harness import ServerProcess, TestUser, logged_tracebacks


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "expect_tracebacks: the test makes in-process code log tracebacks on purpose"
    )


@pytest.fixture(autouse=True)
def no_logged_tracebacks(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    """Fails a test during which code in this process (a ClockedServer, a media engine, an
    asyncio task) logged a traceback: what ServerProcess.stop checks in a server's log."""
    yield
    if request.node.get_closest_marker("expect_tracebacks") is not None:
        return
    logged = logged_tracebacks(caplog.get_records("setup") + caplog.get_records("call"))
    if logged:
        pytest.fail(
            f"{len(logged)} traceback(s) logged in process (a test that provokes them on "
            "purpose is marked expect_tracebacks):\n" + "\n---\n".join(logged[:3]),
            pytrace=False,
        )


class StartServer(Protocol):
    """Start a :class:`ServerProcess` in the test's ``tmp_path`` with these options."""

    def __call__(
        self,
        *,
        domain: str = ...,
        users: list[TestUser] = ...,
        extra_sip: str = ...,
        extra_config: str = ...,
        sip_trace: bool = ...,
        event_loop: str = ...,
        host: str = ...,
        expect_tracebacks: bool = ...,
    ) -> ServerProcess: ...


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A running voipcore with users alice/alice-secret and bob/bob-secret."""
    proc = ServerProcess(tmp_path, sip_trace=True).start()
    yield proc
    proc.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Starts voipcore in tmp_path with ServerProcess options; all are stopped (and their
    logs checked) at teardown, even when one of them fails."""
    with contextlib.ExitStack() as started:

        def start(**options: Any) -> ServerProcess:
            proc = ServerProcess(tmp_path, **options)
            started.callback(proc.stop)
            return proc.start()

        yield start
