"""The audit page in real Chromium (Swedish on a phone, Danish on a desktop): entries read as
sentences in the member's language, with no raw detail, the chain's status stays in view, and
the filters (kind, unit, staff member, dates) narrow the list."""

import asyncio
import time
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.test_console_i18n import log_in, no_missing_words, text_of
from tests.test_staff_access import central_with
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker

pytest.register_assert_rewrite("tests.browser")
from tests.browser import new_page, page_errors, require_chromium  # noqa: E402

pytest_plugins = ["tests.browser"]


async def audit_scene(central: CentralService) -> None:
    """Entries of several kinds, units and staff members (as the rooms write them)."""
    log = central.audit

    def write() -> None:
        log.append(
            "ticket_issued",
            actor="n-nurse",
            unit="u-cam-1",
            purpose="night_check",
            call_id="c.1",
            citizen="c-1001",
        )
        log.append(
            "supervision_outcome",
            actor="n-nurse",
            unit="u-cam-1",
            purpose="night_check",
            call_id="c.1",
            citizen="c-1001",
            outcome="all_well",
            note="sover lugnt",
        )
        log.append(
            "ticket_issued",
            actor="n-other",
            unit="u-cam-2",
            purpose="night_check",
            call_id="c.2",
            citizen="c-1002",
        )
        log.append("duty_on", actor="n-other", since=time.time())

    await asyncio.to_thread(write)


async def rows(page: Page) -> list[str]:
    kinds: list[str] = await page.locator("#audit-rows tr").evaluate_all(
        "rows => rows.map((r) => r.dataset.kind)"
    )
    return kinds


@pytest.mark.parametrize(("lang", "viewport"), [("sv", "phone"), ("da", "desktop")])
async def test_audit_page_reads_as_sentences_and_filters_narrow_it(
    broker: Broker, tmp_path: Path, browser: Browser, lang: str, viewport: str
) -> None:
    require_chromium()
    page = await new_page(browser, viewport, lang)
    async with central_with(broker, tmp_path) as central:
        await audit_scene(central)
        await log_in(page, central.url, "a-admin")
        await page.goto(central.url + "/#/audit")
        intact = {"sv": "Granskningsloggen är obruten", "da": "Revisionsloggen er intakt"}
        await expect(page.locator("#audit-chain")).to_contain_text(intact[lang])
        outcome = page.locator("#audit-rows tr[data-kind='supervision_outcome']")
        await expect(outcome).to_have_count(1)
        said = {
            "sv": "n-nurse angav resultatet av nattillsynen hos brukare c-1001 (enhet u-cam-1): "
            "Allt väl.",
            "da": "n-nurse registrerede resultatet af nattilsynet hos borger c-1001 "
            "(enhed u-cam-1): Alt vel.",
        }
        await expect(outcome.locator(".audit-what")).to_have_text(said[lang])
        await expect(outcome).to_contain_text("sover lugnt")
        await expect(outcome).not_to_contain_text("outcome=")  # no raw detail
        everything = await rows(page)
        assert {"ticket_issued", "supervision_outcome", "duty_on", "login"} <= set(everything)
        # Kind: only tickets.
        await page.select_option("#audit-kind", "ticket_issued")
        await page.click("#audit-show")
        await expect(page.locator("#audit-rows tr")).to_have_count(2)
        assert set(await rows(page)) == {"ticket_issued"}
        # Kind and unit.
        await page.fill("#audit-unit", "u-cam-2")
        await page.click("#audit-show")
        await expect(page.locator("#audit-rows tr")).to_have_count(1)
        await expect(page.locator("#audit-rows tr")).to_contain_text("c-1002")
        # Staff member alone.
        await page.click("#audit-clear")
        await expect(page.locator("#audit-rows tr")).to_have_count(len(everything))
        await page.fill("#audit-actor", "n-other")
        await page.click("#audit-show")
        await expect(page.locator("#audit-rows tr")).to_have_count(2)
        assert sorted(await rows(page)) == ["duty_on", "ticket_issued"]
        # A date range with nothing in it.
        await page.fill("#audit-actor", "")
        await page.fill("#audit-since", "2000-01-01")
        await page.fill("#audit-until", "2000-01-02")
        await page.click("#audit-show")
        await expect(page.locator("#audit-empty")).to_be_visible()
        await expect(page.locator("#audit-rows tr")).to_have_count(0)
        # The chain's status stays in view while filtering.
        await expect(page.locator("#audit-chain")).to_contain_text(intact[lang])
        no_missing_words(await text_of(page), "the audit page")
        assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    assert page_errors(page) == []
