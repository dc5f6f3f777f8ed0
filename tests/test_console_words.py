"""The console says what central and the units said in the reader's language, in real Chromium
against the real agents: a video visit that the nurse hangs up and one the citizen declines (the
Video visits page), and a unit that stops before its night check (its status reasons and the open
alert on the Fleet page and the unit's page) — in Swedish and in Danish, at phone and desktop
size, with none of central's English reasons left on the page; and the approval form's "New
citizen" choice (``vaka-provision approve --create-citizen``)."""

import asyncio
import functools
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser import new_page, page_errors
from tests.conftest import TOTP_SECRET
from tests.nightcheck import PASSWORD
from tests.test_alerts import FAR, SOON, central_with_alerts, nightcam, online, watch_schedules
from tests.test_console_alerts import console_log_in as support_log_in
from tests.test_console_duty import console_log_in
from tests.test_console_visits import RULES
from tests.test_enrolment import generic_unit, pending_code
from tests.test_notify import WebhookReceiver, webhook_server
from tests.tvunit import (
    CITIZEN,
    DAY,
    OUTSIDER,
    TV,
    push_tv_config,
    running_tv,
    screen_of,
    tv_directory,
)
from vaka import otp
from vaka.agent.ui import ButtonId, Idle, InCall, Incoming
from vaka.central.directory.spec import DirectorySpec
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.central import unit_status
from vaka.devstack.polling import wait_for
from vaka.protocol.enrolment import display_code

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.timeout(150)

#: central's and the units' English reasons (and the console's English words around them):
#: none may reach a Swedish or Danish page
ENGLISH = [
    "you hung up",
    "declined by the citizen",
    "The unit refused",
    "agent stopped",
    "connection lost",
    "never connected",
    "not connected yet",
    "Why:",
]
HUNG_UP = {
    "sv": f"Besöket hos brukare {CITIZEN} avslutades: du lade på.",
    "da": f"Besøget hos borger {CITIZEN} sluttede: du lagde på.",
}
DECLINED = {"sv": "Brukaren avböjde samtalet.", "da": "Borgeren afviste opkaldet."}
STOPPED = {"sv": "enhetens program har stoppats", "da": "enhedens program er stoppet"}
WHY = {"sv": "Orsak:", "da": "Årsag:"}
OFFLINE = {"sv": "ej ansluten", "da": "ikke forbundet"}


async def no_english(page: Page) -> None:
    """The page's visible text holds none of the English reasons."""
    text = await page.locator("body").inner_text()
    left = [words for words in ENGLISH if words in text]
    assert left == [], f"English on the page: {left}\n{text}"


async def stopped(central: CentralService, unit: str) -> bool:
    return await unit_status(central, unit) in ("stopped", "offline")


async def open_alerts_of(central: CentralService, unit: str) -> bool:
    return bool(await asyncio.to_thread(central.alerts.store.open_alerts_of, unit))


async def visits_page(page: Page, central: CentralService, staff_id: str) -> None:
    await console_log_in(page, central.url, staff_id)
    await page.click("#nav a[data-page=video-visits]")


@pytest.mark.parametrize(("lang", "viewport"), [("sv", "phone"), ("da", "desktop")])
async def test_a_visit_hung_up_and_one_declined_say_why_in_the_readers_language(
    broker: Broker, central: CentralService, browser: Any, lang: str, viewport: str
) -> None:
    await asyncio.to_thread(central.directory.load, tv_directory())
    nurse = await new_page(browser, viewport, lang)
    outsider = await new_page(browser, viewport, lang)
    async with running_tv(broker) as agent:
        agent.sampler._clock_synced = lambda: True  # this machine's clock may not be synced
        await push_tv_config(central, agent, auto_answer=RULES)

        # The nurse's visit is answered (auto-answer) and she hangs up.
        await visits_page(nurse, central, DAY)
        entry = nurse.locator(f"#visits li[data-unit={TV}]")
        await expect(entry.locator(".unit-state")).to_have_text(
            "ansluten" if lang == "sv" else "forbundet", timeout=15_000
        )
        await entry.locator("button.call-button").click()
        await wait_for(lambda: isinstance(screen_of(agent).state, InCall), 15, what="answered")
        await expect(nurse.locator("#visit-hangup")).to_be_enabled()
        await nurse.click("#visit-hangup")
        await expect(nurse.locator("#visit-note")).to_have_text(HUNG_UP[lang])
        await wait_for(lambda: isinstance(screen_of(agent).state, Idle), 10, what="idle")
        await no_english(nurse)

        # A caller the rules do not auto-answer rings; the citizen declines.
        await visits_page(outsider, central, OUTSIDER)
        await outsider.locator(f"#visits li[data-unit={TV}] button.call-button").click()
        await wait_for(lambda: isinstance(screen_of(agent).state, Incoming), 10, what="ringing")
        screen_of(agent).press(ButtonId.DECLINE)
        await expect(outsider.locator("#visit-error")).to_have_text(DECLINED[lang])
        await no_english(outsider)

    # The TV stopped: its state on the list says why, in the page's language. The list is
    # loaded again once central knows, rather than at its next refresh (every 15 s).
    await wait_for(lambda: stopped(central, TV), 15, what="the TV stopped in central")
    await nurse.reload()
    entry = nurse.locator(f"#visits li[data-unit={TV}] .unit-state")
    await expect(entry).to_contain_text(OFFLINE[lang])
    await expect(entry).not_to_contain_text("agent stopped")
    await expect(entry).not_to_contain_text("connection lost")
    await no_english(nurse)
    assert page_errors(nurse) == [] and page_errors(outsider) == []


@pytest.mark.parametrize(("lang", "viewport"), [("sv", "desktop"), ("da", "phone")])
async def test_an_offline_unit_and_its_alert_say_why_in_the_readers_language(
    broker: Broker, tmp_path: Path, browser: Any, lang: str, viewport: str
) -> None:
    page = await new_page(browser, viewport, lang)
    async with (
        webhook_server(WebhookReceiver()) as hook,
        central_with_alerts(broker, tmp_path, hook.url) as central,
    ):
        async with nightcam(broker, SOON), nightcam(broker, FAR):
            for unit in (SOON, FAR):
                await wait_for(functools.partial(online, central, unit), 10, what=f"{unit} online")
            await watch_schedules(central)
            await support_log_in(page, central.url, "s-support")
        # Both units stopped; the one with a check in a few minutes raises an alert. The page
        # is loaded again once central has it, rather than at its next refresh (every 10 s;
        # tests/test_console_alerts.py waits for that one).
        await wait_for(lambda: open_alerts_of(central, SOON), 25, what="the alert")
        await page.reload()
        item = page.locator(f"#alerts-list li[data-unit={SOON}]")
        await expect(item).to_be_visible()
        await expect(item).to_contain_text(f"{WHY[lang]} {STOPPED[lang]}")
        row = page.locator(f"#fleet-table tr[data-unit={SOON}]")
        await expect(row).to_contain_text(STOPPED[lang])
        await no_english(page)
        # A reason the catalog knows is not marked as English; the page's language is lang.
        assert await page.locator("#fleet-table [lang=en]").count() == 0
        assert await page.evaluate("() => document.documentElement.lang") == lang

        # The unit's own page: its status and its open alert, likewise.
        await page.goto(f"{central.url}/#/units/{SOON}")
        await expect(page.locator("#unit-status")).to_contain_text(STOPPED[lang])
        await expect(page.locator(".alert-item").first).to_contain_text(STOPPED[lang])
        await no_english(page)
    assert page_errors(page) == []


UNKNOWN_CITIZEN = {
    "sv": "det finns ingen brukare c-new i katalogen: kontrollera pseudonymen, eller kryssa i "
    "”Ny brukare” om brukaren verkligen är ny",
    "en": "there is no citizen c-new in the directory: check the pseudonym, or tick "
    '"New citizen" if the citizen is truly new',
}


@pytest.mark.parametrize(("lang", "viewport"), [("sv", "phone"), ("en", "desktop")])
async def test_the_approval_form_creates_a_citizen_only_when_new_citizen_is_ticked(
    broker: Broker, central: CentralService, tmp_path: Path, browser: Any, lang: str, viewport: str
) -> None:
    spec = DirectorySpec.model_validate(
        {
            "group": [{"id": "g-night", "name": "Night patrol"}],
            "staff": [
                {
                    "id": "t-tech",
                    "name": "Tina Tech",
                    "role": "technician",
                    "password": PASSWORD,
                    "totp_secret": TOTP_SECRET,
                }
            ],
        }
    )
    await asyncio.to_thread(central.directory.load, spec)
    page = await new_page(browser, viewport, lang)
    async with generic_unit(broker, tmp_path / "creds"):
        code = display_code(await pending_code(central))
        await support_log_in(page, central.url, "t-tech", otp.code_now(TOTP_SECRET))
        ticked = page.locator("#approve-create-citizen")
        await expect(ticked).not_to_be_checked()  # a typo must not create a citizen
        await page.fill("#approve-code", code)
        await page.select_option("#approve-profile", "nightcam")
        await page.fill("#approve-citizen", "c-new")
        await page.click("#approve-form button[type=submit]")
        await expect(page.locator("#approve-error")).to_have_text(UNKNOWN_CITIZEN[lang])
        assert await asyncio.to_thread(central.directory.citizen_exists, "c-new") is False

        await ticked.check()
        await page.click("#approve-form button[type=submit]")
        unit = f"u-{code.replace('-', '').lower()}"
        await expect(page.locator("#approve-ok")).to_contain_text(unit)
        await expect(ticked).not_to_be_checked()  # the form is ready for the next unit
        assert await asyncio.to_thread(central.directory.citizen_of, unit) == "c-new"
        row = page.locator(f"#fleet-table tr[data-unit={unit}]")
        await expect(row).to_be_visible()  # listed at once, not at the page's next refresh
        if lang != "en":
            await no_english(page)
    assert page_errors(page) == []
