"""The web dialer in headless Chromium against a real server, real phones and the carrier
stand-in: what a rep clicks, what the other side hears, what the page hears."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.audio import assert_tone
from tests.browser.conftest import MICROPHONE_HZ
from tests.browser.dialer import browser_missing, expect, open_dialer
from tests.harness import ServerProcess
from tests.integration.test_baresip import phones
from tests.integration.test_calls import logged

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing())),
]

#: The state after the far end hangs up (docs/browser-protocol.md, "ended").
ENDED_BY_PEER = re.compile(r"^Ended: (the other side )?hung up$")
#: What bob's phone says.
BOB_HZ = 440.0


def test_call_to_an_extension_carries_audio_both_ways_and_is_logged(
    server: ServerProcess, tmp_path: Path, microphone: Path, shots: Path
) -> None:
    async def main() -> None:
        async with (
            phones(server, tmp_path, ("bob", BOB_HZ)) as [bob],
            open_dialer(server.https_port, microphone, shots) as dialer,
        ):
            await dialer.signed_in("alice", "alice-secret")
            await dialer.enter_number("202", "extension 202")
            await dialer.shot("number-entered")
            await dialer.button("Call").click()
            incoming = await bob.wait_event("CALL_INCOMING", "CALL_CLOSED", timeout=10)
            assert incoming.type == "CALL_INCOMING", incoming
            await expect(dialer.call_state).to_have_text("Ringing")
            await dialer.shot("ringing")
            await bob.command("accept")
            await bob.wait_event("CALL_ESTABLISHED")
            await expect(dialer.call_state).to_have_text("Connected")
            await expect(dialer.page.get_by_role("timer", name="Call time")).to_be_visible()
            await dialer.until_hears(BOB_HZ)
            await dialer.shot("connected")
            await dialer.button("Hang up").click()
            await expect(dialer.call_state).to_have_text("Ended: hung up")
            await bob.wait_event("CALL_CLOSED")
            await dialer.shot("ended")
            assert_tone(await bob.received_audio(), MICROPHONE_HZ, 1.0)
            row = await logged(server, await dialer.call_id())
            dialer.check_errors()
        [leg] = [leg for leg in row["legs"] if leg["kind"] == "browser"]
        assert leg["peer"] == "alice", leg
        assert leg["packets_in"] > 0 and leg["packets_out"] > 0, leg
        assert leg["mos_avg"] is not None and leg["jitter"] is not None, leg

    asyncio.run(main())


def test_incoming_call_is_answered_in_the_page_and_ended_by_the_phone(
    server: ServerProcess, tmp_path: Path, microphone: Path, shots: Path
) -> None:
    async def main() -> None:
        async with (
            phones(server, tmp_path, ("bob", BOB_HZ)) as [bob],
            open_dialer(server.https_port, microphone, shots) as dialer,
        ):
            await dialer.signed_in("alice", "alice-secret")
            await bob.command("dial", "201")
            incoming = dialer.page.get_by_role("region", name="Incoming call")
            await expect(incoming).to_be_visible()
            await expect(incoming).to_contain_text("bob")
            await bob.wait_event("CALL_RINGING")
            await dialer.shot("incoming")
            await dialer.button("Answer").click()
            await bob.wait_event("CALL_ESTABLISHED")
            await expect(dialer.call_state).to_have_text("Connected")
            await expect(incoming).to_be_hidden()
            await dialer.until_hears(BOB_HZ)
            await dialer.shot("connected")
            await bob.command("hangup")
            await bob.wait_event("CALL_CLOSED")
            # The server says "normal" (the call log's cause), not "remote_hangup": the page
            # cannot tell who hung up.
            await expect(dialer.call_state).to_have_text(ENDED_BY_PEER)
            await dialer.shot("ended")
            assert_tone(await bob.received_audio(), MICROPHONE_HZ, 1.0)
            dialer.check_errors()

    asyncio.run(main())
