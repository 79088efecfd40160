"""Fixtures that start real servers and peers on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.harness import ServerProcess, TestUser


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
