"""Conference in the web dialer (headless Chromium, 360 px wide): during a call to Bob's
phone the rep invites Carol's phone, sees the participants list fill in, hears both,
removes Carol and talks on with Bob."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest

from tests.audio import assert_tone
from tests.baresip import BINARY
from tests.browser.dialer import Dialer, browser_missing, expect, open_dialer
from tests.browser.test_dialer import NARROW, assert_fits
from tests.harness import DEFAULT_USERS, ServerProcess, TestUser
from tests.integration.test_baresip import phones

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing())),
    pytest.mark.skipif(shutil.which(BINARY) is None, reason="baresip is not installed"),
]

BOB_HZ, CAROL_HZ = 440.0, 1100.0


def states(bob: str, carol: str) -> list[re.Pattern[str]]:
    """The participants list's items: alice (this page), bob and carol in these states
    (an item's text is the name, the state, and "Remove" where there is the button)."""
    return [
        re.compile(r"^alice \(you\)\s*Connected$"),
        re.compile(rf"^bob\s*{bob}\s*Remove$"),
        re.compile(rf"^carol\s*{carol}\s*(Remove)?$"),
    ]


async def hears_both(dialer: Dialer, timeout: float = 10.0) -> None:
    """Listen a second at a time until the page hears Bob's and Carol's tones together."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        audio = await dialer.heard(1.0)
        try:
            assert_tone(audio.pcm, (BOB_HZ, CAROL_HZ), 1.0, rate=audio.rate)
            return
        except AssertionError:
            if asyncio.get_running_loop().time() >= deadline:
                raise


def test_the_page_invites_a_colleagues_phone_lists_the_parties_and_removes_them(
    tmp_path: Path, microphone: Path, shots: Path
) -> None:
    users = [*DEFAULT_USERS, TestUser("carol", "carol-secret", "203")]
    server = ServerProcess(tmp_path, sip_trace=True, https=True, users=users).start()

    async def main() -> None:
        async with (
            phones(server, tmp_path, ("bob", BOB_HZ), ("carol", CAROL_HZ)) as [bob, carol],
            open_dialer(server.https_port, microphone, shots, width=NARROW) as dialer,
        ):
            await dialer.signed_in("alice", "alice-secret")
            invite = dialer.button("Invite")
            await expect(invite).to_be_disabled()
            await dialer.enter_number("202", "extension 202")
            await dialer.button("Call").click()
            await bob.wait_event("CALL_INCOMING", timeout=10)
            await bob.command("accept")
            await expect(dialer.call_state).to_have_text("Connected")

            await invite.click()
            form = dialer.page.get_by_role("group", name="Invite who")
            await expect(form).to_be_visible()
            await expect(invite).to_have_count(1)  # the form's: the opener hides meanwhile
            who = form.get_by_role("textbox", name="Invite who")
            send = form.get_by_role("button", name="Invite", exact=True)
            await who.fill("299")
            await send.click()
            # Refused in words below the field (and in the page's alert), the form open.
            await expect(who).to_have_accessible_description("Not Found (299)")
            await expect(who).to_have_attribute("aria-invalid", "true")
            await expect(dialer.alert).to_have_text("Not Found (299)")
            await who.fill("203")
            await dialer.shot("invite-form")
            await send.click()
            await carol.wait_event("CALL_INCOMING", timeout=10)
            parties = dialer.page.get_by_role("list", name="Participants").get_by_role("listitem")
            await expect(parties).to_have_text(states("Connected", "Ringing"))
            await expect(form).to_be_hidden()
            await expect(dialer.alert).to_be_hidden()
            await carol.command("accept")
            await expect(parties).to_have_text(states("Connected", "Connected"))
            await expect(dialer.button("Remove alice")).to_have_count(0)
            await hears_both(dialer)
            await dialer.shot("three-parties")
            await assert_fits(dialer, NARROW)

            await dialer.button("Remove carol").click()
            await carol.wait_event("CALL_CLOSED")
            await expect(parties).to_have_text(states("Connected", "Left"))
            await expect(dialer.button("Remove carol")).to_have_count(0)
            await expect(dialer.call_state).to_have_text("Connected")
            await dialer.until_hears(BOB_HZ, seconds=1.0)
            await dialer.shot("carol-removed")

            await dialer.button("Hang up").click()
            await bob.wait_event("CALL_CLOSED")
            await expect(parties).to_have_count(0)
            dialer.check_errors()

    try:
        asyncio.run(main())
    finally:
        server.stop()
