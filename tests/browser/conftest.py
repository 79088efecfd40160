"""Fixtures of the browser tests: a fake microphone and a screenshot folder per test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.baresip import write_tone
from tests.browser.dialer import SCREENSHOTS
from tests.harness import ServerProcess

#: What the page's fake microphone says.
MICROPHONE_HZ = 1000.0


@pytest.fixture
def microphone(tmp_path: Path) -> Path:
    """A WAV file of a 1000 Hz tone, the page's microphone (Chromium loops it)."""
    path = tmp_path / "microphone.wav"
    write_tone(path, MICROPHONE_HZ, 20.0)
    return path


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Path:
    """tests/browser/screenshots/TEST_NAME/, emptied first; printed for the reader."""
    path = SCREENSHOTS / str(request.node.name)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    print(f"screenshots: {path}")
    return path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """voipcore serving the dialer over HTTPS, users alice (201) and bob (202)."""
    proc = ServerProcess(tmp_path, sip_trace=True, https=True).start()
    yield proc
    proc.stop()
