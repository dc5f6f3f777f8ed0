"""The graduated view in the console, in real Chromium: a night check of a citizen whose care
decision says ``escalate`` starts blurred; "Show clear picture" asks for a reason, the unit
switches on central's signed word, the console shows the level the unit reports (and, beside
it, the unit's scene estimate in words), and the audit trail holds exactly one
``view_escalated`` with the reason (docs/privacy.md)."""

import asyncio

import pytest
from playwright.async_api import Browser, expect

from tests.nightcheck import UNIT
from tests.test_console_round import log_in, round_spec, wait_until_playing
from vaka.central.directory.spec import DirectorySpec
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for

pytest.register_assert_rewrite("tests.browser")
from tests.browser import new_page, page_errors  # noqa: E402
from tests.nightcheck import running_agent  # noqa: E402

pytest_plugins = ["tests.browser"]


def escalate_spec() -> DirectorySpec:
    spec = round_spec().model_dump(mode="json", exclude_none=True)
    spec["citizen"][0]["night_view"] = "escalate"
    return DirectorySpec.model_validate(spec)


async def test_show_clear_picture_asks_a_reason_and_shows_the_units_view(
    broker: Broker, central: CentralService, browser: Browser
) -> None:
    await asyncio.to_thread(central.directory.load, escalate_spec())
    page = await new_page(browser, "desktop")
    async with running_agent(broker) as unit:
        await wait_for(
            lambda: asyncio.to_thread(central.store.unit, UNIT), 10, what="unit registered"
        )
        await log_in(page, central.url, "s-nurse", "Night round")
        await page.locator(f".round-check[data-unit='{UNIT}'] button.dial").click()
        await wait_until_playing(page)
        level = page.locator("#round-view-level")
        await expect(level).to_have_text("Blurred (privacy view)")
        # Beside the blurred picture, the unit's estimate in words (the pattern moves; the
        # stack's unit has no bed region, so it does not guess whether someone is in bed).
        estimate = page.locator("#round-estimate")
        await expect(estimate).to_be_visible()
        await expect(page.locator("#round-estimate-movement")).to_have_text("Movement: yes")
        await expect(page.locator("#round-estimate-bed")).to_have_text("Person in bed: unsure")
        await expect(estimate).to_contain_text("Estimated by the unit:")
        session = unit.agent.calls.session if unit.agent.calls else None
        assert session is not None and session.view.level == "blurred"

        await page.click("#round-escalate")
        # Too short a reason is not sent.
        await page.click("#escalate-send")
        await expect(page.locator("#escalate-error")).to_have_text(
            "Choose a reason or write at least 10 characters."
        )
        await page.select_option("#escalate-choice", "no_movement")
        await page.fill("#escalate-text", "checking breathing")
        await page.click("#escalate-send")
        await expect(level).to_have_text("Clear")
        await expect(page.locator("#round-view-box")).to_have_attribute("data-level", "clear")
        await expect(page.locator("#round-escalate")).to_be_hidden()
        assert session.view.level == "clear"
        await page.click("#round-hangup")
        await expect(page.locator("#round-outcome")).to_be_visible()
        await wait_for(lambda: unit.shutter_states[-1] == "closed", 10, what="shutter closed")
    entries = await asyncio.to_thread(central.audit.entries)
    escalated = [e for e in entries if e.kind == "view_escalated"]
    assert len(escalated) == 1, escalated
    assert escalated[0].actor == "s-nurse" and escalated[0].unit == UNIT
    assert escalated[0].detail["reason"] == "No movement seen: checking breathing"
    changed = [
        e for e in entries if e.kind == "call_view_changed" and e.call_id == escalated[0].call_id
    ]
    assert len(changed) == 1
    assert page_errors(page) == []
