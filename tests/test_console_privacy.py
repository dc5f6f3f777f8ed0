"""The citizen's privacy mode in the console, in real Chromium: the night round shows that the
camera is off and until when, and dialling in is refused with the same words (docs/privacy.md)."""

import asyncio
import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, expect

from tests.nightcheck import UNIT, agent_config
from tests.test_console_round import load_round_directory, log_in
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.devstack.units import running_agent as in_process_agent

pytest.register_assert_rewrite("tests.browser")
from tests.browser import new_page, page_errors  # noqa: E402

pytest_plugins = ["tests.browser"]


async def test_the_night_round_shows_the_privacy_mode_and_the_refusal_says_why(
    broker: Broker, central: CentralService, browser: Browser
) -> None:
    await load_round_directory(central)
    page = await new_page(browser, "desktop")
    async with in_process_agent(agent_config(broker)) as agent:
        await wait_for(
            lambda: asyncio.to_thread(central.store.unit, UNIT), 10, what="unit registered"
        )
        await agent.privacy.start("visitors")

        async def central_knows() -> bool:
            return await asyncio.to_thread(central.privacy.active, UNIT, time.time()) is not None

        await wait_for(central_knows, 10, what="central knows the privacy mode")
        active = await asyncio.to_thread(central.privacy.active, UNIT, time.time())
        assert active is not None
        tz = ZoneInfo(central.config.calls.timezone)
        until = dt.datetime.fromtimestamp(active.until, tz).strftime("%H:%M")
        await log_in(page, central.url, "s-nurse", "Night round")
        row = page.locator(f".round-check[data-unit='{UNIT}']")
        await expect(row.locator(".privacy-mode")).to_have_text(
            f"Camera off: the citizen has visitors until {until}"
        )
        await row.locator("button.dial").click()
        await expect(page.locator("#round-call-error")).to_have_text(
            f"The citizen has visitors until {until}."
        )
        shutter = agent.hardware.shutter
        assert shutter is not None
        assert [s.value for _, s in shutter.history] == ["closed"]
    assert page_errors(page) == []
