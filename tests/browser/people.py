"""The dialer page's sales features in Chromium: seeding people through the REST API with
the page's own session, and finding the people search, "Log this call" and History by
role and name (docs/browser-protocol.md, "The page's names")."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from tests.browser.dialer import expect

if TYPE_CHECKING:
    from playwright.async_api import APIResponse, Locator, Page

#: History's status once a load has answered ("1 call.", "No calls match.").
LOADED = re.compile(r"^(\d+ calls?\b.*|No calls match\.)$")


@dataclass(frozen=True, slots=True)
class SalesPage:
    """The people search, the picked person, "Log this call" and History of one page."""

    page: Page

    async def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """``method path`` on the REST API with the page's session cookie; the JSON reply
        (None for 204), failing on an error status."""
        response = await self.fetch(path, method=method, body=body)
        assert response.ok, f"{method} {path}: {response.status} {await response.text()}"
        return None if response.status == 204 else await response.json()

    async def fetch(
        self, path: str, method: str = "GET", body: dict[str, Any] | None = None
    ) -> APIResponse:
        """The raw response to ``method path`` (a path or a URL on the page's origin)."""
        return await self.page.request.fetch(
            urljoin(self.page.url, path),
            method=method,
            headers={"Content-Type": "application/json"} if body is not None else None,
            data=json.dumps(body) if body is not None else None,
        )

    async def local_today(self) -> str:
        """Today in the browser's time zone, as ``<input type=date>`` takes it."""
        day: str = await self.page.evaluate("new Date().toLocaleDateString('en-CA')")
        return day

    # -- people search ------------------------------------------------------

    @property
    def search(self) -> Locator:
        return self.page.get_by_role("combobox", name="Search people or accounts")

    def option(self, name: str) -> Locator:
        """A person in the search's list, by the start of its text (name, title, account)."""
        return (
            self.page.get_by_role("listbox", name="People")
            .get_by_role("option")
            .filter(has_text=name)
        )

    @property
    def number(self) -> Locator:
        """The dialer's Number field (a text box; the person's drop-down is a combobox)."""
        return self.page.get_by_role("textbox", name="Number", exact=True)

    @property
    def extension(self) -> Locator:
        return self.page.get_by_role("textbox", name="Extension", exact=True)

    @property
    def person_numbers(self) -> Locator:
        """The picked person's "Number" drop-down."""
        return self.page.get_by_role("combobox", name="Number", exact=True)

    def person(self, line: str) -> Locator:
        """The picked person's card, named by its "name · account" line."""
        return self.page.get_by_role("group", name=line, exact=True)

    # -- log this call -----------------------------------------------------

    @property
    def log_form(self) -> Locator:
        return self.page.get_by_role("form", name="Log this call")

    @property
    def saved(self) -> Locator:
        """The confirmation after Save."""
        return self.page.locator("#call-log-saved")

    # -- history -------------------------------------------------------------

    @property
    def history(self) -> Locator:
        return self.page.get_by_role("region", name="History")

    def history_row(self, text: str) -> Locator:
        return self.history.get_by_role("row").filter(has_text=text)

    @property
    def export(self) -> Locator:
        return self.history.get_by_role("link", name="Export CSV")

    async def open_history(self) -> None:
        """Click "History" (a disclosure button) and wait until its calls are loaded."""
        await self.page.get_by_role("button", name="History", exact=True).click()
        await expect(self.history.get_by_role("status")).to_have_text(LOADED)
