"""Calls that are not taken, in real Chromium against the real TV agent: the nurse cancels a
visit while the TV rings (the Cancel button is there while it rings; the TV leaves the incoming
call within a second), and a visit nobody answers says so with the real number of seconds — in
English, Swedish and Danish."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser import new_page, page_errors
from tests.test_console_duty import console_log_in
from tests.tvunit import DAY, TV, push_tv_config, running_tv, screen_of, tv_directory
from vaka.agent.app import Agent
from vaka.agent.ui import Idle, Incoming
from vaka.central.service import CentralService
from vaka.central.settings.calls import CallLimits
from vaka.devstack.central import running_central
from vaka.devstack.polling import wait_for
from vaka.devstack.stack import LocalStack

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.timeout(120)

WORDS = {
    "en": {"ringing": "Ringing on the TV…", "cancel": "Cancel", "hangup": "Hang up"},
    "sv": {"ringing": "Det ringer på TV:n…", "cancel": "Avbryt", "hangup": "Lägg på"},
    "da": {"ringing": "Det ringer på TV'et…", "cancel": "Annuller", "hangup": "Læg på"},
}
CANCELLED = {"en": "Call cancelled.", "sv": "Samtalet avbröts.", "da": "Opkaldet blev annulleret."}
NO_ANSWER = {
    "en": "No answer after 2 s.",
    "sv": "Inget svar efter 2 s.",
    "da": "Intet svar efter 2 s.",
}


@contextlib.asynccontextmanager
async def tv_and_central(stack: LocalStack, ring_s: float) -> AsyncIterator[tuple[Any, Agent]]:
    config = stack.central_config()
    config = config.model_copy(update={"calls": CallLimits(ring_timeout_s=ring_s)})
    async with running_central(config) as central, running_tv(stack.broker) as agent:
        await asyncio.to_thread(central.directory.load, tv_directory())
        agent.sampler._clock_synced = lambda: True  # this machine's clock may not be synced
        await push_tv_config(central, agent)  # no auto-answer: the TV only rings
        yield central, agent


async def call_the_tv(page: Page, central: CentralService, lang: str) -> None:
    await console_log_in(page, central.url, DAY)
    await page.click("#nav a[data-page=video-visits]")
    entry = page.locator(f"#visits li[data-unit={TV}]")
    await entry.locator("button.call-button").click()
    await expect(page.locator("#visit-call-state")).to_have_text(WORDS[lang]["ringing"])


def ringing(agent: Agent) -> bool:
    return isinstance(screen_of(agent).state, Incoming)


@pytest.mark.parametrize(("lang", "viewport"), [("en", "desktop"), ("sv", "phone")])
async def test_the_nurse_cancels_a_ringing_visit_and_the_tv_stops_within_a_second(
    stack: LocalStack, browser: Any, lang: str, viewport: str
) -> None:
    page = await new_page(browser, viewport, lang)
    async with tv_and_central(stack, ring_s=30) as (central, agent):
        await call_the_tv(page, central, lang)
        await wait_for(lambda: ringing(agent), 10, what="the TV ringing")
        cancel = page.locator("#visit-hangup")
        await expect(cancel).to_be_enabled()
        await expect(cancel).to_have_text(WORDS[lang]["cancel"])
        await cancel.click()
        clicked = time.monotonic()
        await wait_for(lambda: not ringing(agent), 1.0, what="the TV leaving the incoming call")
        assert time.monotonic() - clicked < 1.0
        await expect(page.locator("#visit-note")).to_have_text(CANCELLED[lang])
        await expect(page.locator("#visit-error")).to_be_hidden()
        await expect(page.locator("#visit-call")).to_be_hidden()
        await expect(cancel).to_have_text(WORDS[lang]["hangup"])
        assert isinstance(screen_of(agent).state, Idle)
        kinds = [e.kind for e in await asyncio.to_thread(central.audit.entries)]
        assert "call_cancelled" in kinds
    assert page_errors(page) == []


@pytest.mark.parametrize(("lang", "viewport"), [("en", "desktop"), ("da", "phone")])
async def test_a_visit_nobody_answers_says_so_with_the_real_seconds(
    stack: LocalStack, browser: Any, lang: str, viewport: str
) -> None:
    page = await new_page(browser, viewport, lang)
    async with tv_and_central(stack, ring_s=2) as (central, agent):
        await call_the_tv(page, central, lang)
        await wait_for(lambda: ringing(agent), 10, what="the TV ringing")
        await expect(page.locator("#visit-error")).to_have_text(NO_ANSWER[lang], timeout=10_000)
        assert not ringing(agent)
        await expect(page.locator("#visit-call")).to_be_hidden()
    assert page_errors(page) == []
