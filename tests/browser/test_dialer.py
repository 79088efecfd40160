"""The web dialer in headless Chromium against a real server, real phones and the carrier
stand-in: what a rep clicks, what the other side hears, what the page hears."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.audio import assert_tone, until_heard
from tests.baresip import BINARY, Baresip
from tests.browser.conftest import MICROPHONE_HZ
from tests.browser.dialer import (
    RESOURCE_ERROR,
    Dialer,
    assert_silent_spans,
    browser_missing,
    expect,
    open_dialer,
)
from tests.carrier import CarrierCall, CarrierMedia, Party, TwilioCarrier
from tests.harness import ServerProcess, wait_for_async
from tests.integration.test_baresip import phones
from tests.integration.test_calls import logged
from tests.integration.test_trunk import trunk_setup

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing())),
]

#: The state after the far end hangs up (docs/browser-protocol.md, "ended").
ENDED_BY_PEER = "Ended: the other side hung up"
needs_baresip = pytest.mark.skipif(shutil.which(BINARY) is None, reason="baresip is not installed")

#: A phone's width in CSS pixels.
NARROW = 360
#: What bob's phone says.
BOB_HZ = 440.0


@asynccontextmanager
async def alice_and_bob(
    server: ServerProcess, tmp_path: Path, microphone: Path, shots: Path, width: int = 1024
) -> AsyncIterator[tuple[Dialer, Baresip]]:
    """Alice signed in to the dialer page (``width`` px wide), bob on his baresip phone."""
    async with (
        phones(server, tmp_path, ("bob", BOB_HZ)) as [bob],
        open_dialer(server.https_port, microphone, shots, width=width) as dialer,
    ):
        await dialer.signed_in("alice", "alice-secret")
        yield dialer, bob


@needs_baresip
def test_call_to_an_extension_carries_audio_both_ways_and_is_logged(
    server: ServerProcess, tmp_path: Path, microphone: Path, shots: Path
) -> None:
    async def main() -> None:
        async with alice_and_bob(server, tmp_path, microphone, shots) as (dialer, bob):
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
            # 2 s of bob heard: the page's tone has had as long to reach bob's recording.
            await dialer.until_hears(BOB_HZ, seconds=2.0)
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


@needs_baresip
def test_incoming_call_is_answered_in_the_page_and_ended_by_the_phone(
    server: ServerProcess, tmp_path: Path, microphone: Path, shots: Path
) -> None:
    async def main() -> None:
        async with alice_and_bob(server, tmp_path, microphone, shots) as (dialer, bob):
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
            # 2 s of bob heard: the page's tone has had as long to reach bob's recording.
            await dialer.until_hears(BOB_HZ, seconds=2.0)
            await dialer.shot("connected")
            await bob.command("hangup")
            await bob.wait_event("CALL_CLOSED")
            await expect(dialer.call_state).to_have_text(ENDED_BY_PEER)
            await dialer.shot("ended")
            assert_tone(await bob.received_audio(), MICROPHONE_HZ, 1.0)
            dialer.check_errors()

    asyncio.run(main())


@needs_baresip
def test_keypad_digits_pressed_in_a_call_reach_the_phone(
    server: ServerProcess, tmp_path: Path, microphone: Path, shots: Path
) -> None:
    async def main() -> None:
        async with alice_and_bob(server, tmp_path, microphone, shots) as (dialer, bob):
            await dialer.enter_number("202", "extension 202")
            await dialer.button("Call").click()
            await bob.wait_event("CALL_INCOMING")
            await bob.command("accept")
            await expect(dialer.call_state).to_have_text("Connected")
            await dialer.button("Dial 5").click()
            await dialer.button("Dial #").click()
            await dialer.page.keyboard.press("7")  # a key typed outside a text field
            await dialer.shot("digits-pressed")
            digits = [(await bob.wait_event("CALL_DTMF_START")).param for _ in range(3)]
            assert digits == ["5", "#", "7"], digits
            await dialer.button("Hang up").click()
            await bob.wait_event("CALL_CLOSED")
            dialer.check_errors()

    asyncio.run(main())


@dataclass
class HttpsServer(ServerProcess):
    """A server that also serves the dialer over HTTPS (for :func:`trunk_setup`)."""

    https: bool = True


#: The carrier's callee in the trunk tests, and what it says.
CALLEE, CALLEE_HZ = "+14045550123", 440.0


@asynccontextmanager
async def trunk_dialer(
    tmp_path: Path, microphone: Path, shots: Path
) -> AsyncIterator[tuple[TwilioCarrier, Dialer]]:
    """The carrier stand-in, whose :data:`CALLEE` answers with a tone, a server with a
    trunk to it, and alice signed in to the dialer page."""
    async with trunk_setup(tmp_path, server_type=HttpsServer) as (carrier, server):
        carrier.set_party(CALLEE, Party(media="tone", tone_hz=CALLEE_HZ))
        async with open_dialer(server.https_port, microphone, shots) as dialer:
            await dialer.signed_in("alice", "alice-secret")
            yield carrier, dialer


async def answered_by_callee(
    carrier: TwilioCarrier, dialer: Dialer
) -> tuple[CarrierCall, CarrierMedia]:
    """Click Call; the carrier's callee answers: its call and media."""
    await dialer.button("Call").click()
    call = await carrier.wait_for_call(CALLEE)
    assert await call.final() == 200
    await expect(dialer.call_state).to_have_text("Connected")
    assert call.media is not None
    return call, call.media


def test_trunk_call_to_a_national_number_dials_the_extension_after_answer(
    tmp_path: Path, microphone: Path, shots: Path
) -> None:
    async def main() -> None:
        async with trunk_dialer(tmp_path, microphone, shots) as (carrier, dialer):
            await dialer.enter_number("(404) 555-0123", f"{CALLEE} · (404) 555-0123")
            await dialer.page.get_by_label("Extension").fill("1,23")
            await dialer.shot("number-entered")
            call, media = await answered_by_callee(carrier, dialer)
            await wait_for_async(
                lambda: media.dtmf_received == "123",
                lambda: f"the carrier got digits {media.dtmf_received!r}, not '123'",
            )
            await dialer.until_hears(CALLEE_HZ)
            await until_heard(media.audio, MICROPHONE_HZ, 1.0)
            await dialer.shot("connected")
            await dialer.button("Hang up").click()
            await expect(dialer.call_state).to_have_text("Ended: hung up")
            await asyncio.wait_for(call.ended(), 5)
            assert call.ended_by == "customer"
            dialer.check_errors()

    asyncio.run(main())


def test_mute_and_hold_silence_the_page_for_the_far_end_and_resume(
    tmp_path: Path, microphone: Path, shots: Path
) -> None:
    async def main() -> None:
        async with trunk_dialer(tmp_path, microphone, shots) as (carrier, dialer):
            await dialer.enter_number("4045550123", f"{CALLEE} · (404) 555-0123")
            call, media = await answered_by_callee(carrier, dialer)
            await dialer.until_hears(CALLEE_HZ)
            await until_heard(media.audio, MICROPHONE_HZ, 1.0)

            mute = dialer.button("Mute")
            await mute.click()
            await expect(mute).to_have_attribute("aria-pressed", "true")
            await dialer.confirmed({"type": "muted", "muted": True})
            await dialer.shot("muted")
            # Muting is one way: the page hears the far end all the while.
            await dialer.until_hears(CALLEE_HZ, seconds=1.5)
            await mute.click()
            await expect(mute).to_have_attribute("aria-pressed", "false")
            await dialer.confirmed({"type": "muted", "muted": False})
            heard = len(media.audio())
            await until_heard(lambda: media.audio()[heard:], MICROPHONE_HZ, 1.0)

            hold = dialer.button("Hold")
            await hold.click()
            await expect(hold).to_have_attribute("aria-pressed", "true")
            await expect(dialer.call_state).to_have_text("On hold")
            await wait_for_async(lambda: call.on_hold, "the carrier got no hold re-INVITE")
            await dialer.until_silent(CALLEE_HZ, seconds=1.5)
            await dialer.shot("held")
            await hold.click()
            await expect(hold).to_have_attribute("aria-pressed", "false")
            await expect(dialer.call_state).to_have_text("Connected")
            await wait_for_async(lambda: not call.on_hold, "the carrier got no resume")
            await dialer.until_hears(CALLEE_HZ)
            heard = len(media.audio())
            await until_heard(lambda: media.audio()[heard:], MICROPHONE_HZ, 1.0)
            await dialer.shot("resumed")
            await dialer.button("Hang up").click()
            await asyncio.wait_for(call.ended(), 5)
            # Muted, then held: the far end heard silence twice, the tone around it.
            assert_silent_spans(media.audio(), MICROPHONE_HZ, 1.0, count=2)
            dialer.check_errors()

    asyncio.run(main())


async def assert_fits(dialer: Dialer, width: int) -> None:
    """The page needs no horizontal scrolling at ``width`` CSS pixels."""
    scroll_width = await dialer.page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"the page is {scroll_width} px wide at {width} px"


def test_wrong_password_shows_the_alert_and_the_page_fits_a_narrow_screen(
    server: ServerProcess, microphone: Path, shots: Path
) -> None:
    async def main() -> None:
        async with open_dialer(server.https_port, microphone, shots, width=NARROW) as dialer:
            await expect(dialer.button("Sign in")).to_be_visible()
            await assert_fits(dialer, NARROW)
            await dialer.sign_in("alice", "wrong")
            await expect(dialer.alert).to_have_text("Wrong username or password.")
            await expect(dialer.button("Sign in")).to_be_visible()
            await dialer.shot("wrong-password")
            await assert_fits(dialer, NARROW)
            await dialer.signed_in("alice", "alice-secret")
            await expect(dialer.alert).to_be_hidden()
            await dialer.enter_number("(404) 555-0123", "+14045550123 · (404) 555-0123")
            await dialer.shot("dialer-360px")
            await assert_fits(dialer, NARROW)
            # The one error allowed: Chromium's own line about the sign-in's 401.
            dialer.check_errors(allowed=re.compile(RESOURCE_ERROR.pattern + " 401"))

    asyncio.run(main())


@needs_baresip
def test_declined_incoming_call_stops_ringing_the_page_and_the_phone(
    server: ServerProcess, tmp_path: Path, microphone: Path, shots: Path
) -> None:
    async def main() -> None:
        async with alice_and_bob(server, tmp_path, microphone, shots, NARROW) as (dialer, bob):
            await bob.command("dial", "201")
            incoming = dialer.page.get_by_role("region", name="Incoming call")
            await expect(incoming).to_be_visible()
            await dialer.shot("incoming-360px")
            await assert_fits(dialer, NARROW)
            await dialer.button("Decline").click()
            await expect(incoming).to_be_hidden()
            closed = await bob.wait_event("CALL_CLOSED")
            assert closed.param == "603 Decline", closed
            await expect(dialer.call_state).to_have_text("Declined")
            await dialer.shot("declined")
            dialer.check_errors()

    asyncio.run(main())


def test_a_blocked_microphone_gets_a_clear_message_and_no_call(
    server: ServerProcess, microphone: Path, shots: Path
) -> None:
    async def main() -> None:
        async with open_dialer(
            server.https_port, microphone, shots, deny_microphone=True
        ) as dialer:
            await dialer.signed_in("alice", "alice-secret")
            await dialer.enter_number("202", re.compile("extension 202"))
            await dialer.button("Call").click()
            await expect(dialer.alert).to_contain_text("Microphone access is blocked")
            await dialer.shot("microphone-blocked")
            assert not dialer.calls  # nothing was dialled
            dialer.check_errors()

    asyncio.run(main())
