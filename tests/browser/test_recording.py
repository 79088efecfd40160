"""Recording from the web dialer (headless Chromium, 360 px wide): during a call to Bob's
phone the rep records, pauses, resumes and stops, sees the "Recording" status follow, and
after the call plays the recording in History (its <audio> loads the WAV with the cookie)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.baresip import BINARY
from tests.browser.dialer import browser_missing, expect, open_dialer
from tests.browser.people import SalesPage
from tests.browser.test_dialer import NARROW, assert_fits
from tests.harness import ServerProcess
from tests.integration.test_baresip import phones

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing())),
    pytest.mark.skipif(shutil.which(BINARY) is None, reason="baresip is not installed"),
]

BOB_HZ = 440.0
#: Reads the player's state once it has loaded the file's header (HAVE_METADATA).
_LOADED = """(audio) => new Promise((resolve) => {
  const done = () => resolve({ready: audio.readyState, duration: audio.duration,
                              error: audio.error && audio.error.code});
  if (audio.readyState >= 1 || audio.error) return done();
  audio.addEventListener("loadedmetadata", done, {once: true});
  audio.addEventListener("error", done, {once: true});
  audio.load();
})"""


def test_the_page_records_a_call_and_plays_it_in_history(
    tmp_path: Path, microphone: Path, shots: Path
) -> None:
    server = ServerProcess(tmp_path, sip_trace=True, https=True).start()

    async def main() -> None:
        async with (
            phones(server, tmp_path, ("bob", BOB_HZ)) as [bob],
            open_dialer(server.https_port, microphone, shots, width=NARROW) as dialer,
        ):
            await dialer.signed_in("alice", "alice-secret")
            status = dialer.page.get_by_role("status", name="Recording state")
            record = dialer.button("Record")
            await expect(record).to_be_disabled()
            await expect(status).to_be_hidden()
            await dialer.enter_number("202", "extension 202")
            await dialer.button("Call").click()
            await bob.wait_event("CALL_INCOMING", timeout=10)
            await bob.command("accept")
            await expect(dialer.call_state).to_have_text("Connected")

            await record.click()
            await expect(status).to_have_text("Recording")
            await expect(record).to_be_hidden()
            await expect(dialer.button("Stop recording")).to_be_visible()
            await dialer.shot("recording")
            await assert_fits(dialer, NARROW)
            await asyncio.sleep(1.0)
            await dialer.button("Pause recording").click()
            await expect(status).to_have_text("Recording paused")
            await expect(dialer.button("Pause recording")).to_be_hidden()
            await dialer.shot("paused")
            await asyncio.sleep(0.5)
            await dialer.button("Resume recording").click()
            await expect(status).to_have_text("Recording")
            await asyncio.sleep(1.0)
            await dialer.button("Stop recording").click()
            await expect(status).to_be_hidden()
            await expect(record).to_be_enabled()
            await dialer.button("Hang up").click()
            await bob.wait_event("CALL_CLOSED")

            sales = SalesPage(dialer.page)
            await sales.open_history()
            player = sales.history.locator("audio[aria-label^='Recording of the call with']")
            await expect(player).to_have_count(1)
            assert await player.get_attribute("controls") is not None
            loaded = await player.evaluate(_LOADED)
            assert loaded["error"] is None, loaded
            assert loaded["ready"] >= 1 and loaded["duration"] > 2.0, loaded
            await dialer.shot("history-player")
            dialer.check_errors()

    try:
        asyncio.run(main())
    finally:
        server.stop()


def test_policy_always_records_from_the_answer_and_never_shows_no_controls(
    tmp_path: Path, microphone: Path, shots: Path
) -> None:
    always = '[recording]\npolicy = "always"\n'
    server = ServerProcess(tmp_path / "always", https=True, extra_config=always)
    server.workdir.mkdir()
    server.start()

    async def main() -> None:
        async with (
            phones(server, tmp_path, ("bob", BOB_HZ)) as [bob],
            open_dialer(server.https_port, microphone, shots, width=NARROW) as dialer,
        ):
            await dialer.signed_in("alice", "alice-secret")
            status = dialer.page.get_by_role("status", name="Recording state")
            await expect(dialer.button("Record")).to_be_hidden()
            await dialer.enter_number("202", "extension 202")
            await dialer.button("Call").click()
            await bob.wait_event("CALL_INCOMING", timeout=10)
            await bob.command("accept")
            await expect(status).to_have_text("Recording")
            await expect(dialer.button("Pause recording")).to_be_visible()
            await expect(dialer.button("Stop recording")).to_be_hidden()
            await dialer.shot("always")
            await dialer.button("Hang up").click()
            await bob.wait_event("CALL_CLOSED")
            dialer.check_errors()

    try:
        asyncio.run(main())
    finally:
        server.stop()

    never = '[recording]\npolicy = "never"\n'
    server = ServerProcess(tmp_path / "never", https=True, extra_config=never)
    server.workdir.mkdir()
    server.start()

    async def signed_in() -> None:
        async with open_dialer(server.https_port, microphone, shots, width=NARROW) as dialer:
            await dialer.signed_in("alice", "alice-secret")
            await expect(dialer.page.locator("#recording-controls")).to_be_hidden()
            for name in ("Record", "Pause recording", "Resume recording", "Stop recording"):
                await expect(dialer.button(name)).to_be_hidden()
            await dialer.shot("never")
            dialer.check_errors()

    try:
        asyncio.run(signed_in())
    finally:
        server.stop()
