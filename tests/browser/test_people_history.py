"""The dialer page's sales features in headless Chromium, as a rep uses them: find a person
by their account, call their office line with its extension, log the call, find it in
History and export it; and the same page on a phone's screen for an admin."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.browser.dialer import Dialer, browser_missing, expect, open_dialer
from tests.browser.people import SalesPage
from tests.browser.test_dialer import NARROW, HttpsServer, assert_fits
from tests.carrier import Party, TwilioCarrier
from tests.harness import DEFAULT_USERS, ServerProcess, TestUser, wait_for_async
from tests.integration.test_trunk import trunk_setup

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing())),
]

ACCOUNT = "Analytical Engines"
NAME = "Ada Lovelace"
#: Ada's numbers: her mobile (primary) and the office line, whose extension is dialled as DTMF.
MOBILE, OFFICE, OFFICE_EXTENSION = "+14045550150", "+14045550151", "123"
OFFICE_HZ = 440.0
NOTES = "Wants a demo on Friday.\nCall the office line, ext. 123."


def ada() -> dict[str, Any]:
    """POST /api/v1/people body: Ada at her account, with two numbers."""
    return {
        "name": NAME,
        "account_name": ACCOUNT,
        "title": "Head of Engineering",
        "numbers": [
            {"number": "(404) 555-0150", "label": "mobile"},
            {"number": "404-555-0151", "label": "office", "extension": OFFICE_EXTENSION},
        ],
    }


@asynccontextmanager
async def sales_dialer(
    tmp_path: Path, microphone: Path, shots: Path
) -> AsyncIterator[tuple[TwilioCarrier, Dialer, list[dict[str, Any]]]]:
    """The carrier stand-in, whose office line answers with a tone, a server with a trunk
    to it, and alice signed in to the page; with the messages the page sent on its
    WebSocket."""
    async with trunk_setup(tmp_path, server_type=HttpsServer) as (carrier, server):
        carrier.set_party(OFFICE, Party(media="tone", tone_hz=OFFICE_HZ))
        async with open_dialer(server.https_port, microphone, shots) as dialer:
            sent: list[dict[str, Any]] = []
            dialer.page.on(
                "websocket",
                lambda socket: socket.on("framesent", lambda text: sent.append(json.loads(text))),
            )
            await dialer.signed_in("alice", "alice-secret")
            yield carrier, dialer, sent


def test_a_rep_calls_a_persons_office_line_logs_it_and_finds_it_in_history(
    tmp_path: Path, microphone: Path, shots: Path
) -> None:
    async def main() -> None:
        async with sales_dialer(tmp_path, microphone, shots) as (carrier, dialer, sent):
            sales = SalesPage(dialer.page)
            person = await sales.api("POST", "/api/v1/people", ada())
            [disposition, *_] = (await sales.api("GET", "/api/v1/dispositions"))["items"]

            # Find Ada by her account's name and pick her from the list.
            await sales.search.fill(ACCOUNT)
            await expect(sales.search).to_have_attribute("aria-expanded", "true")
            await expect(sales.option(NAME)).to_contain_text(ACCOUNT)
            await dialer.shot("search-results")
            await sales.option(NAME).click()
            card = sales.person(f"{NAME} · {ACCOUNT}")
            await expect(card).to_be_visible()
            await expect(sales.number).to_have_value(MOBILE)
            await expect(sales.extension).to_have_value("")
            await expect(dialer.page.locator("#number-hint")).to_have_text(
                f"{MOBILE} · (404) 555-0150"
            )
            await dialer.shot("person-picked")

            # Her office line instead: the number and its extension follow.
            office = f"office · (404) 555-0151 (ext. {OFFICE_EXTENSION})"
            await sales.person_numbers.select_option(label=office)
            await expect(sales.number).to_have_value(OFFICE)
            await expect(sales.extension).to_have_value(OFFICE_EXTENSION)
            await expect(dialer.page.locator("#number-hint")).to_have_text(
                f"{OFFICE} · (404) 555-0151"
            )
            await expect(dialer.button("Call")).to_be_enabled()
            await dialer.shot("office-line")

            await dialer.button("Call").click()
            call = await carrier.wait_for_call(OFFICE)
            assert await call.final() == 200
            await expect(dialer.call_state).to_have_text("Connected")
            assert call.media is not None
            media = call.media
            await wait_for_async(
                lambda: media.dtmf_received == OFFICE_EXTENSION,
                lambda: f"the carrier got digits {media.dtmf_received!r}",
            )
            [dial] = [m for m in sent if m.get("type") == "dial"]
            assert dial["person_id"] == person["id"], dial
            assert (dial["to"], dial["extension"]) == (OFFICE, OFFICE_EXTENSION), dial
            await dialer.shot("connected")
            await dialer.button("Hang up").click()
            await expect(dialer.call_state).to_have_text("Ended: hung up")
            await asyncio.wait_for(call.ended(), 5)

            # Log it.
            form = sales.log_form
            await expect(form).to_be_visible()
            await expect(form).to_contain_text(NAME)
            await expect(form.get_by_label("Disposition")).to_be_focused()
            await dialer.shot("log-this-call")
            await form.get_by_label("Disposition").select_option(disposition["code"])
            await form.get_by_label("Notes").fill(NOTES)

            # A second call meanwhile waits its turn: the notes being typed stay.
            await dialer.button("Call").click()
            again = await carrier.wait_for_call(OFFICE)
            assert await again.final() == 200
            await expect(dialer.call_state).to_have_text("Connected")
            await dialer.button("Hang up").click()
            await asyncio.wait_for(again.ended(), 5)
            await expect(form.get_by_label("Notes")).to_have_value(NOTES)
            await expect(form).to_contain_text("1 more call to log after this one.")
            await dialer.shot("second-call-waits")

            await form.get_by_role("button", name="Save").click()
            await expect(sales.saved).to_contain_text(f"Saved as “{disposition['label']}”")
            await expect(form.get_by_label("Notes")).to_have_value("")
            await form.get_by_role("button", name="Skip").click()
            await expect(form).to_be_hidden()
            await dialer.shot("saved")

            # History has it, with Ada's name, the disposition and the notes.
            call_id = await dialer.call_id()
            await sales.open_history()
            row = sales.history_row("Wants a demo on Friday.")
            await expect(sales.history_row(NAME)).to_have_count(2)
            await expect(row).to_have_count(1)
            await expect(row).to_contain_text(NAME)
            await expect(row).to_contain_text(ACCOUNT)
            await expect(row).to_contain_text(disposition["label"])
            await expect(row).to_contain_text(f"ext. {OFFICE_EXTENSION}")
            await dialer.shot("history")

            # Filtered to today, the disposition and Ada; the export carries the filters.
            today = await sales.local_today()
            history = sales.history
            await history.get_by_label("From", exact=True).fill(today)
            await history.get_by_label("To", exact=True).fill(today)
            await history.get_by_label("Disposition").select_option(disposition["code"])
            await history.get_by_role("combobox", name="Person").fill("Ada")
            await sales.option(NAME).click()
            await expect(history.get_by_text(f"{NAME} · {ACCOUNT}", exact=True)).to_be_visible()
            await expect(row).to_have_count(1)
            href = await sales.export.get_attribute("href")
            assert href is not None
            query = parse_qs(urlsplit(href).query)
            assert query["disposition"] == [disposition["code"]], href
            assert query["person_id"] == [str(person["id"])], href
            assert {"since", "until"} <= query.keys(), href
            assert await sales.export.get_attribute("download") is not None
            await dialer.shot("history-filtered")
            response = await sales.fetch(href)
            assert response.ok, response.status
            assert response.headers["content-type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(await response.text())))
            assert [r["call_id"] for r in rows] == [call_id], rows
            assert rows[0]["notes"] == NOTES, rows

            # Edit opens the same form with what was saved; Skip leaves it as it was.
            await row.get_by_role("button", name=re.compile("^Edit")).click()
            await expect(form).to_be_visible()
            await expect(form.get_by_label("Disposition")).to_have_value(disposition["code"])
            await expect(form.get_by_label("Notes")).to_have_value(NOTES)
            await dialer.shot("edit")
            await form.get_by_role("button", name="Skip").click()
            await expect(form).to_be_hidden()
            dialer.check_errors()

    asyncio.run(main())


@pytest.fixture
def admin_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server (HTTPS) where alice is an admin and bob a rep."""
    alice, bob = DEFAULT_USERS
    users = [TestUser(alice.username, alice.password, alice.extension, role="admin"), bob]
    proc = ServerProcess(tmp_path, users=users, https=True).start()
    yield proc
    proc.stop()


def test_on_a_phone_the_keyboard_picks_a_person_and_an_admin_filters_history_by_user(
    admin_server: ServerProcess, microphone: Path, shots: Path
) -> None:
    async def main() -> None:
        async with open_dialer(admin_server.https_port, microphone, shots, width=NARROW) as dialer:
            await dialer.signed_in("alice", "alice-secret")
            sales = SalesPage(dialer.page)
            person = await sales.api("POST", "/api/v1/people", ada())
            mobile, office = person["numbers"]

            # Arrow down to Ada, Enter picks her.
            await sales.search.fill("lovelace")
            await expect(sales.option(NAME)).to_be_visible()
            await sales.search.press("ArrowDown")
            await expect(sales.option(NAME)).to_have_attribute("aria-selected", "true")
            option_id = await sales.option(NAME).get_attribute("id")
            await expect(sales.search).to_have_attribute("aria-activedescendant", str(option_id))
            await sales.search.press("Enter")
            card = sales.person(f"{NAME} · {ACCOUNT}")
            await expect(card).to_be_visible()
            await expect(sales.search).to_have_attribute("aria-expanded", "false")
            await expect(sales.person_numbers).to_have_value(str(mobile["id"]))
            await expect(sales.number).to_have_value(MOBILE)
            await dialer.shot("person-picked-360px")
            await assert_fits(dialer, NARROW)

            # Typed by hand, her office number keeps her; an extension is not hers.
            hint = dialer.page.locator("#number-hint")
            await sales.number.fill("(404) 555-0151")
            await expect(hint).to_have_text(f"{OFFICE} · (404) 555-0151")
            await expect(sales.person_numbers).to_have_value(str(office["id"]))
            await sales.number.fill("202")
            await expect(hint).to_have_text("extension 202")
            await expect(card).to_be_hidden()
            await expect(sales.person_numbers).to_have_count(0)

            # An admin picks whose calls History shows; the export follows.
            await sales.open_history()
            user = sales.history.get_by_label("User")
            await user.select_option("bob")
            await expect(sales.history.get_by_role("status")).to_have_text("No calls match.")
            href = await sales.export.get_attribute("href")
            assert href is not None and parse_qs(urlsplit(href).query)["user"] == ["bob"], href
            await dialer.shot("history-admin-360px")
            await assert_fits(dialer, NARROW)
            dialer.check_errors()

    asyncio.run(main())
