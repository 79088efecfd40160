"""Pass-through from the dialer page in headless Chromium: the rep saves their number,
finds the switch on by default with its cost, dials, and the carrier stand-in plays
the rep's phone (answers, presses 1) and then the prospect; History marks the call
Pass-through with its two legs' billable minutes and cost, on a phone too."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.audio import until_heard
from tests.browser.dialer import RESOURCE_ERROR, browser_missing, expect, open_dialer
from tests.browser.people import SalesPage
from tests.browser.test_dialer import NARROW, assert_fits
from tests.carrier import Party
from tests.harness import wait_for_async
from tests.integration.test_passthrough import (
    CELL,
    PROSPECT,
    PROSPECT_HZ,
    RATE,
    REP_HZ,
    PassthroughServer,
)
from tests.integration.test_trunk import trunk_setup

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing())),
]


def test_a_rep_sets_a_passthrough_number_and_calls_over_their_phone(
    tmp_path: Path, microphone: Path, shots: Path
) -> None:
    async def main() -> None:
        async with (
            trunk_setup(tmp_path, server_type=PassthroughServer, extra=RATE) as (carrier, server),
            open_dialer(server.https_port, microphone, shots) as dialer,
        ):
            carrier.set_party(CELL, Party(media="tone", tone_hz=REP_HZ))
            carrier.set_party(PROSPECT, Party(media="tone", tone_hz=PROSPECT_HZ))
            page = dialer.page
            await dialer.signed_in("alice", "alice-secret")
            switch = page.get_by_role("switch", name="Pass-through")
            await expect(switch).to_be_hidden()  # no number yet

            await dialer.button("Settings").click()
            settings = page.get_by_role("form", name="Settings")
            number = settings.get_by_label("Pass-through number")
            await number.fill("(404) 555-0177 x12")
            await dialer.button("Save").click()
            await expect(number).to_have_attribute("aria-invalid", "true")
            await expect(page.locator("#passthrough-number-hint")).to_contain_text("switchboard")
            await dialer.shot("extension-refused")
            await number.fill("(404) 555-0177")
            await dialer.button("Save").click()
            await expect(page.locator("#settings-saved")).to_have_text(
                f"Saved: pass-through calls ring {CELL} first."
            )
            await expect(settings).to_have_count(0)  # closed once saved
            await dialer.button("Settings").click()
            await expect(number).to_have_value(CELL)
            await dialer.button("Settings").click()
            await expect(settings).to_have_count(0)

            await expect(switch).to_be_checked()  # on by default once set
            await expect(page.locator("#passthrough-hint")).to_have_text(
                f"Rings your phone {CELL} first · 2 billable legs · about $0.026/min"
            )
            await dialer.enter_number("(404) 555-1234", f"{PROSPECT} · (404) 555-1234")
            await dialer.shot("switch-on")
            await dialer.button("Call").click()

            stage = page.get_by_role("status", name="Pass-through")
            rep = await carrier.wait_for_call(CELL)
            assert await rep.final() == 200
            await expect(stage).to_have_text("Press 1 on your phone")
            await dialer.shot("press-1")
            await asyncio.sleep(1.0)  # the trunk takes one new call a second
            assert rep.media is not None
            rep_media = rep.media
            heard_before = rep_media.audio().size
            rep_media.send_dtmf("1")
            prospect = await carrier.wait_for_call(PROSPECT)
            assert await prospect.final() == 200
            await expect(dialer.call_state).to_have_text("Connected")
            await expect(stage).to_have_text("Connected")
            assert prospect.media is not None
            prospect_media = prospect.media
            await until_heard(prospect_media.audio, REP_HZ, 1.0)
            await until_heard(lambda: rep_media.audio()[heard_before:], PROSPECT_HZ, 1.0)
            await dialer.shot("connected")
            # The audio is on the rep's phone: mute and hold are there; the keypad still
            # reaches the prospect.
            await expect(dialer.button("Mute")).to_be_disabled()
            await expect(dialer.button("Hold")).to_be_disabled()
            await dialer.button("Dial 5").click()
            await wait_for_async(
                lambda: prospect_media.dtmf_received == "5",
                lambda: f"the prospect got digits {prospect_media.dtmf_received!r}, not '5'",
            )
            stages = [m["state"] for m in dialer.received if m.get("type") == "passthrough"]
            assert stages == ["calling_you", "press_1", "dialling", "connected"]

            await dialer.button("Hang up").click()
            await expect(dialer.call_state).to_have_text("Ended: hung up")
            await asyncio.wait_for(rep.ended(), 5)
            await asyncio.wait_for(prospect.ended(), 5)
            await expect(stage).to_be_hidden()

            # Switched off, the next call is an ordinary browser call again.
            await switch.uncheck()
            await dialer.button("Call").click()
            again = await carrier.wait_for_call(PROSPECT)
            assert await again.final() == 200
            await expect(dialer.call_state).to_have_text("Connected")
            await dialer.button("Hang up").click()
            await asyncio.wait_for(again.ended(), 5)
            assert [call.to_number for call in carrier.calls] == [CELL, PROSPECT, PROSPECT]

            # History marks the pass-through call and shows what its two legs cost: each
            # talked under a minute, one billable minute each at $0.013.
            sales = SalesPage(page)
            await sales.open_history()
            await expect(
                sales.history.get_by_role("columnheader", name="Cost (estimated)")
            ).to_be_visible()
            marked = sales.history_row("Pass-through")
            await expect(marked).to_have_count(1)
            await expect(marked.get_by_role("cell", name="2 min · $0.026")).to_be_visible()
            await expect(marked.get_by_role("cell", name="Outbound Pass-through")).to_be_visible()
            await marked.scroll_into_view_if_needed()
            await dialer.shot("history")
            # On a phone the table scrolls inside its region; the page does not.
            await page.set_viewport_size({"width": NARROW, "height": 800})
            await marked.get_by_role("cell", name="2 min · $0.026").scroll_into_view_if_needed()
            await assert_fits(dialer, NARROW)
            await dialer.shot("history-360px")
            dialer.check_errors(RESOURCE_ERROR)  # the refused number's 400

    asyncio.run(main())
