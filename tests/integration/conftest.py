"""Fixtures that start real servers and peers on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A running voipcore with users alice/alice-secret and bob/bob-secret."""
    proc = ServerProcess(tmp_path, sip_trace=True).start()
    yield proc
    proc.stop()
