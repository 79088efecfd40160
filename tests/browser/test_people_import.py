"""Import people from a CSV file in the dialer page, in headless Chromium: the page reads the
header row and guesses the mapping, Check reports every rejected row with its line and
reason and stores nothing, Import stores the rest, and an imported person's number and
extension fill the dial pad once picked in the people search."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.dialer import RESOURCE_ERROR, browser_missing, expect, open_dialer
from tests.browser.people import SalesPage
from tests.browser.test_dialer import NARROW, assert_fits
from tests.harness import ServerProcess

if TYPE_CHECKING:
    from playwright.async_api import Locator

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing())),
]

#: A CRM export: a quoted header holding a comma, Ada's notes over two lines (so the rows
#: after hers start a line later), Grace's extension written in her number, Ada's in a
#: column of its own, a number too short and a row with no name.
CONTACTS = (
    '\ufeffFull Name,Company,"Job Title",E-mail,Mobile Phone,Office Phone,Office Ext,'
    '"Owner, region",Notes\r\n'
    "Ada Lovelace,Analytical Engines,Head of Engineering,ada@example.com,(404) 555-0150,"
    '404-555-0151,45,"Babbage, south","Met at the fair.\r\nWants a demo."\r\n'
    "Grace Hopper,Navy,Rear Admiral,grace@example.com,,404-555-0160 x123,,East,\r\n"
    "Bad Number,Acme,Buyer,bad@example.com,555-01,,,East,\r\n"
    ",Acme,Buyer,nobody@example.com,(404) 555-0170,,,East,\r\n"
    "Alan Turing,Bletchley Park,,alan@example.com,(404) 555-0180,,,,\r\n"
)
COLUMNS = [
    "Full Name",
    "Company",
    "Job Title",
    "E-mail",
    "Mobile Phone",
    "Office Phone",
    "Office Ext",
    "Owner, region",
    "Notes",
]
#: The person fields' selects and the column each should guess ("" for none).
GUESSED = {
    "Name": "Full Name",
    "First name": "",
    "Last name": "",
    "Account": "Company",
    "Title": "Job Title",
    "Email": "E-mail",
    "Notes": "Notes",
}


def test_a_csv_file_is_mapped_checked_and_imported_and_its_people_can_be_dialled(
    server: ServerProcess, tmp_path: Path, microphone: Path, shots: Path
) -> None:
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(CONTACTS, encoding="utf-8", newline="")
    twins = tmp_path / "twins.csv"
    twins.write_text("Name,Mobile,Phone,Phone\nAda Lovelace,(404) 555-0150,,\n", encoding="utf-8")

    async def main() -> None:
        async with open_dialer(server.https_port, microphone, shots) as dialer:
            await dialer.signed_in("alice", "alice-secret")
            page = dialer.page
            sales = SalesPage(page)
            region = page.get_by_role("region", name="Import people")

            # The button opens the region, from the keyboard too.
            toggle = dialer.button("Import people")
            await expect(toggle).to_have_attribute("aria-expanded", "false")
            await toggle.focus()
            await page.keyboard.press("Enter")
            await expect(toggle).to_have_attribute("aria-expanded", "true")
            await expect(region).to_be_visible()
            await expect(region.get_by_role("form")).to_be_hidden()
            await dialer.shot("import-open")

            # A file with two columns of one name: the server refuses the second number
            # row's column, and says so below that row's select.
            await region.get_by_label("CSV file").set_input_files(twins)
            twin = number_row(region, 2).get_by_label("Number column")
            await expect(twin).to_have_value("Phone")
            await region.get_by_role("button", name="Check").click()
            await expect(twin).to_have_attribute("aria-invalid", "true")
            await expect(twin).to_be_focused()
            await expect(number_row(region, 2)).to_contain_text("2 columns named 'Phone'")
            await expect(region.get_by_role("status")).to_have_text("")
            await dialer.shot("number-column-refused")

            # The header row (quoted cells and all) gives the choices and the guesses.
            await region.get_by_label("CSV file").set_input_files(contacts)
            await expect(region.locator("#import-file-status")).to_have_text(
                "9 columns. Check the guesses below, then press Check."
            )
            for label, column in GUESSED.items():
                await expect(region.get_by_label(label, exact=True)).to_have_value(column)
            await expect(region.get_by_label("Name", exact=True).locator("option")).to_have_text(
                ["— none —", *COLUMNS]
            )
            mobile, office = number_row(region, 1), number_row(region, 2)
            await expect(number_row(region, 3)).to_have_count(0)
            await expect(mobile.get_by_label("Number column")).to_have_value("Mobile Phone")
            await expect(mobile.get_by_label("Label")).to_have_value("mobile")
            await expect(mobile.get_by_label("Extension column")).to_have_value("")
            await expect(office.get_by_label("Number column")).to_have_value("Office Phone")
            await expect(office.get_by_label("Label")).to_have_value("office")
            await expect(office.get_by_label("Extension column")).to_have_value("Office Ext")
            await dialer.shot("mapping-guessed")

            # A number row comes and goes; the new one has the focus.
            await region.get_by_role("button", name="Add a number column").click()
            added = number_row(region, 3)
            await expect(added.get_by_label("Number column")).to_be_focused()
            await expect(added.get_by_label("Number column")).to_have_value("Full Name")
            await added.get_by_role("button", name="Remove number 3").click()
            await expect(added).to_have_count(0)

            # A mapping the server refuses: the error sits below the select it names.
            name = region.get_by_label("Name", exact=True)
            await region.get_by_label("First name").select_option("Full Name")
            await region.get_by_role("button", name="Check").click()
            await expect(name).to_have_attribute("aria-invalid", "true")
            await expect(name).to_be_focused()
            await expect(region.locator("#import-name-error")).to_contain_text("not both")
            await dialer.shot("mapping-refused")
            await region.get_by_label("First name").select_option("")
            await expect(name).not_to_have_attribute("aria-invalid", "true")

            # Check: every row accounted for, the rejected ones by line; nothing stored.
            await region.get_by_role("button", name="Check").click()
            status = region.get_by_role("status")
            await expect(status).to_have_text("5 rows: 3 would be imported, 2 rejected.")
            rejected = region.get_by_role("table", name="Rejected rows")
            await expect(rejected.get_by_role("row")).to_have_count(3)
            await expect(rejected.get_by_role("row").nth(1).get_by_role("cell")).to_have_text(
                ["5", "Mobile Phone", re.compile(r"\S")]
            )
            await expect(rejected.get_by_role("row").nth(2).get_by_role("cell")).to_have_text(
                ["6", "Full Name", re.compile(r"\S")]
            )
            await dialer.shot("checked")
            assert (await sales.api("GET", "/api/v1/people"))["items"] == []
            await sales.search.fill("Lovelace")
            await expect(page.locator("#people-search-status")).to_have_text(
                "No people or accounts match."
            )

            # Import: the same report, and how many people are in the book now.
            await region.get_by_role("button", name="Import", exact=True).click()
            await expect(status).to_have_text("5 rows: 3 imported, 2 rejected.")
            await expect(region.get_by_text("3 people imported.")).to_be_visible()
            await expect(rejected.get_by_role("row")).to_have_count(3)
            await dialer.shot("imported")
            people = (await sales.api("GET", "/api/v1/people"))["items"]
            assert sorted(p["name"] for p in people) == [
                "Ada Lovelace",
                "Alan Turing",
                "Grace Hopper",
            ], people

            # Grace's extension came out of her number: both fill the dial pad.
            await sales.search.fill("Hopper")
            await sales.option("Grace Hopper").click()
            await expect(sales.person("Grace Hopper · Navy")).to_be_visible()
            await expect(sales.number).to_have_value("+14045550160")
            await expect(sales.extension).to_have_value("123")
            await expect(page.locator("#number-hint")).to_have_text("+14045550160 · (404) 555-0160")
            await dialer.shot("grace-picked")

            # Ada's mobile is her main number; her office line takes the extension column's.
            await sales.search.fill("Lovelace")
            await sales.option("Ada Lovelace").click()
            await expect(sales.number).to_have_value("+14045550150")
            await expect(sales.extension).to_have_value("")
            await sales.person_numbers.select_option(label="office · (404) 555-0151 (ext. 45)")
            await expect(sales.number).to_have_value("+14045550151")
            await expect(sales.extension).to_have_value("45")
            await dialer.shot("ada-office-line")

            # The region on a phone's screen.
            await page.set_viewport_size({"width": NARROW, "height": 800})
            await region.scroll_into_view_if_needed()
            await dialer.shot("imported-360px")
            await assert_fits(dialer, NARROW)
            # The one error allowed: Chromium's own line about the refused mappings' 400s.
            dialer.check_errors(allowed=re.compile(RESOURCE_ERROR.pattern + " 400"))

    asyncio.run(main())


def number_row(region: Locator, index: int) -> Locator:
    """The ``index``-th number row of the mapping (from 1), a group named "Number N"."""
    return region.get_by_role("group", name=f"Number {index}", exact=True)
