"""The web dialer in headless Chromium, driven by Playwright like a person would use it.

:func:`open_dialer` launches Debian's Chromium with a fake microphone that says a tone (a WAV
file, :func:`tests.baresip.write_tone`) and opens the page of a :class:`ServerProcess`
started with ``https=True``.  The :class:`Dialer` it yields finds controls by role and name
(docs/browser-protocol.md, "The page's names"), saves a screenshot of each state, collects
console errors and uncaught exceptions (a test fails on any it did not allow), and listens to
the call's audio *inside the page*: :meth:`Dialer.heard` takes the samples of the track that
plays in ``<audio aria-label="Call audio">`` (``MediaStreamTrackProcessor``), so a test checks
them with :mod:`tests.audio` like any phone's recording.

Playwright is imported only when a browser starts, so the test modules can be collected
(and skipped) on a machine without it.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from media.tones import RATE
from tests.audio import WINDOW, ToneReport, assert_no_tone, assert_tone, tone_report
from tests.harness import wait_for_async

if TYPE_CHECKING:
    from playwright.async_api import ConsoleMessage, Locator, Page, WebSocket
    from playwright.async_api._generated import LocatorAssertions

CHROMIUM = Path("/usr/bin/chromium")
#: Screenshots of every test, one folder per test (ignored by git: tests/browser/.gitignore).
SCREENSHOTS = Path(__file__).parent / "screenshots"
#: What Chromium logs for a response with an error status, e.g. the 401 of a wrong password.
RESOURCE_ERROR = re.compile(r"Failed to load resource: the server responded with a status of")

# Reads `seconds` of the call audio's track in the page, as base64 of 16-bit samples.
_LISTEN = """async (seconds) => {
  const audio = document.querySelector('audio[aria-label="Call audio"]');
  if (!audio || !audio.srcObject) return null;
  const [track] = audio.srcObject.getAudioTracks();
  if (!track) return null;
  const reader = new MediaStreamTrackProcessor({track}).readable.getReader();
  const chunks = [];
  let total = 0, rate = 0;
  try {
    while (!rate || total < seconds * rate) {
      const {value, done} = await reader.read();
      if (done) break;
      rate = value.sampleRate;
      const plane = new Float32Array(value.numberOfFrames);
      value.copyTo(plane, {planeIndex: 0, format: "f32-planar"});
      value.close();
      chunks.push(plane);
      total += plane.length;
    }
  } finally {
    reader.cancel();
  }
  const pcm = new Int16Array(total);
  let at = 0;
  for (const chunk of chunks) {
    for (let i = 0; i < chunk.length; i++) {
      pcm[at++] = Math.max(-32768, Math.min(32767, Math.round(chunk[i] * 32767)));
    }
  }
  let text = "";
  const bytes = new Uint8Array(pcm.buffer);
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return {rate, pcm: btoa(text)};
}"""


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -e '.[test]')"
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        return f"{CHROMIUM} is missing (tests/run.sh installs Debian's chromium)"
    return None


def expect(locator: Locator) -> LocatorAssertions:
    """Playwright's ``expect`` (its assertions wait, up to 5 s, for the page to comply)."""
    from playwright.async_api import expect as playwright_expect

    return playwright_expect(locator)


def tone_spans(pcm: npt.NDArray[np.int16], hz: float, rate: int = RATE) -> list[tuple[str, float]]:
    """``pcm`` as runs of 100 ms windows that hold ``hz`` (``"tone"``), hold nothing of it
    (``"silence"``, below -50 dBFS) or are in between (``"other"``): ``(kind, seconds)``."""
    size = round(WINDOW * rate)
    runs: list[tuple[str, float]] = []
    for start in range(0, pcm.size - size + 1, size):
        window = pcm[start : start + size]
        if tone_report(window, hz, rate=rate).held:
            kind = "tone"
        else:
            try:
                assert_no_tone(window, hz, rate=rate)
                kind = "silence"
            except AssertionError:
                kind = "other"
        if runs and runs[-1][0] == kind:
            runs[-1] = (kind, runs[-1][1] + WINDOW)
        else:
            runs.append((kind, WINDOW))
    return runs


def assert_silent_spans(
    pcm: npt.NDArray[np.int16], hz: float, seconds: float, count: int = 1, rate: int = RATE
) -> None:
    """Fail unless ``pcm`` holds ``hz``, then at least ``seconds`` of silence, then ``hz``
    again, ``count`` times over (each tone at least 0.5 s; runs under 0.3 s, the
    switches, are left out)."""
    runs = [run for run in tone_spans(pcm, hz, rate) if run[1] >= 0.3 - 1e-9]
    kinds = [kind for kind, length in runs if length >= (seconds if kind == "silence" else 0.5)]
    wanted = ["tone", "silence"] * count + ["tone"]
    found = any(kinds[i : i + len(wanted)] == wanted for i in range(len(kinds)))
    shown = ", ".join(f"{kind} {length:.1f} s" for kind, length in tone_spans(pcm, hz, rate))
    assert found, f"not {count} time(s) {hz:g} Hz, {seconds:g} s of silence, {hz:g} Hz in: {shown}"


@dataclass(frozen=True, slots=True)
class PageAudio:
    """Audio the page played: mono samples at the track's rate (8 kHz for G.711, 48 kHz
    for Opus)."""

    pcm: npt.NDArray[np.int16]
    rate: int


@dataclass
class Dialer:
    """One dialer page and what it has shown so far."""

    page: Page
    shots: Path
    """Where :meth:`shot` saves screenshots."""
    errors: list[str] = field(default_factory=list)
    """Console errors and uncaught exceptions, in order."""
    calls: list[str] = field(default_factory=list)
    """Call ids the server named in ``dialling`` and ``incoming`` messages, in order."""
    received: list[dict[str, Any]] = field(default_factory=list)
    """Every message the page received on its WebSocket."""
    _shot_count: int = 0

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console error: {message.text} ({message.location})")

    def on_page_error(self, error: Exception) -> None:
        self.errors.append(f"uncaught: {error}")

    def on_websocket(self, socket: WebSocket) -> None:
        socket.on("framereceived", self._on_frame)

    def _on_frame(self, payload: str | bytes) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if isinstance(message, dict):
            self.received.append(message)
            if message.get("type") in ("dialling", "incoming") and "call" in message:
                self.calls.append(str(message["call"]))

    def check_errors(self, allowed: re.Pattern[str] | None = None) -> None:
        """Fail on any console error or uncaught exception except those ``allowed`` matches."""
        left = [e for e in self.errors if allowed is None or not allowed.search(e)]
        assert not left, "the page logged errors:\n" + "\n".join(left)

    async def shot(self, name: str) -> Path:
        """Save a full-page screenshot as ``NN-name.png``."""
        self._shot_count += 1
        path = self.shots / f"{self._shot_count:02d}-{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    # -- controls --------------------------------------------------------

    def button(self, name: str) -> Locator:
        return self.page.get_by_role("button", name=name, exact=True)

    @property
    def call_state(self) -> Locator:
        return self.page.get_by_role("status", name="Call state")

    @property
    def alert(self) -> Locator:
        return self.page.get_by_role("alert")

    async def sign_in(self, username: str, password: str) -> None:
        """Fill the sign-in form and submit it (the caller checks the outcome)."""
        await self.page.get_by_label("Username").fill(username)
        await self.page.get_by_label("Password").fill(password)
        await self.button("Sign in").click()

    async def signed_in(self, username: str, password: str) -> None:
        """Sign in and wait until the dialer is connected and ready."""
        await self.sign_in(username, password)
        await expect(self.page.get_by_role("status", name="Connection")).to_have_text("Connected")
        await expect(self.call_state).to_have_text("Ready")

    async def enter_number(self, number: str, shown: str | re.Pattern[str]) -> None:
        """Type ``number`` and wait for the server's reading of it below the field."""
        await self.page.get_by_label("Number").fill(number)
        await expect(self.page.locator("#number-hint")).to_have_text(shown)
        await expect(self.button("Call")).to_be_enabled()

    async def call_id(self, index: int = 0) -> str:
        """The id of the ``index``-th call the server named to the page."""
        await wait_for_async(
            lambda: len(self.calls) > index, f"the server named no call #{index} to the page"
        )
        return self.calls[index]

    async def confirmed(self, message: dict[str, Any]) -> None:
        """Wait until the server has sent the page ``message`` (its fields, with any call)."""

        def seen() -> bool:
            return any(message.items() <= m.items() for m in self.received)

        await wait_for_async(seen, f"the server never sent {message}")

    # -- audio -----------------------------------------------------------

    async def heard(self, seconds: float) -> PageAudio:
        """The next ``seconds`` of the call's audio as the page plays it."""
        found = await self.page.evaluate(_LISTEN, seconds)
        assert found is not None, "the page has no call audio track"
        pcm = np.frombuffer(base64.b64decode(found["pcm"]), "<i2").astype(np.int16)
        return PageAudio(pcm, int(found["rate"]))

    async def until_hears(
        self, hz: float, seconds: float = 1.0, timeout: float = 10.0
    ) -> ToneReport:
        """Listen ``seconds`` at a time until the page hears ``hz`` all along, loud and
        alone (set-up may take a few listens); fail with the last listen's problem."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            audio = await self.heard(seconds)
            try:
                return assert_tone(audio.pcm, hz, seconds, rate=audio.rate)
            except AssertionError:
                if asyncio.get_running_loop().time() >= deadline:
                    raise

    async def until_silent(self, hz: float, seconds: float = 1.0, timeout: float = 10.0) -> None:
        """Listen ``seconds`` at a time until none of it holds ``hz`` (the far end's
        audio has stopped), or fail with the last listen's problem."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            audio = await self.heard(seconds)
            try:
                assert_no_tone(audio.pcm, hz, rate=audio.rate)
                return
            except AssertionError:
                if asyncio.get_running_loop().time() >= deadline:
                    raise


@asynccontextmanager
async def open_dialer(
    https_port: int,
    microphone: Path,
    shots: Path,
    *,
    width: int = 1024,
    height: int = 800,
    deny_microphone: bool = False,
) -> AsyncIterator[Dialer]:
    """Chromium with ``microphone`` (a WAV file) as its microphone, on the dialer page;
    ``deny_microphone``: the user blocks it (no fake permission prompt that grants)."""
    from playwright.async_api import async_playwright

    shots.mkdir(parents=True, exist_ok=True)
    executable = CHROMIUM if CHROMIUM.exists() else Path(str(shutil.which("chromium")))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(executable),
            args=[
                "--use-fake-device-for-media-stream",
                *([] if deny_microphone else ["--use-fake-ui-for-media-stream"]),
                f"--use-file-for-fake-audio-capture={microphone}",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        try:
            context = await browser.new_context(
                ignore_https_errors=True, viewport={"width": width, "height": height}
            )
            page = await context.new_page()
            dialer = Dialer(page, shots)
            page.on("console", dialer.on_console)
            page.on("pageerror", dialer.on_page_error)
            page.on("websocket", dialer.on_websocket)
            await page.goto(f"https://127.0.0.1:{https_port}/")
            yield dialer
        finally:
            await browser.close()
