"""The Fleet page in real Chromium: a nightcam that stops ahead of its scheduled night check shows
as an open alert on top of the page (and the webhook is called); a technician approves a waiting
unit's enrolment from the page."""

import asyncio
import functools
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from tests.conftest import TOTP_SECRET
from tests.consoleunit import log_in as console_log_in
from tests.nightcheck import PASSWORD
from tests.test_alerts import FAR, SOON, central_with_alerts, nightcam, online, watch_schedules
from tests.test_enrolment import generic_unit, pending_code
from tests.test_notify import SECRET, WebhookReceiver, webhook_server
from vaka import otp
from vaka.central.directory.spec import DirectorySpec
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.protocol.enrolment import display_code

pytest.register_assert_rewrite("tests.browser")
from tests.browser import new_page, page_errors  # noqa: E402

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.timeout(120)


async def test_a_unit_down_before_its_check_shows_on_the_fleet_page(
    broker: Broker, tmp_path: Path, browser: Any
) -> None:
    page = await new_page(browser, "tablet")
    async with (
        webhook_server(WebhookReceiver()) as hook,
        central_with_alerts(broker, tmp_path, hook.url) as central,
    ):
        async with nightcam(broker, SOON), nightcam(broker, FAR):
            for unit in (SOON, FAR):
                await wait_for(functools.partial(online, central, unit), 10, what=f"{unit} online")
            await watch_schedules(central)
            await console_log_in(page, central.url, "s-support")
            await expect(page.locator("h1")).to_have_text("Fleet")
            await expect(page.locator("#alerts-none")).to_be_visible()
            await expect(page.locator(f"#fleet-table tr[data-unit={SOON}]")).to_contain_text(
                "online"
            )
        # Both units stopped: the one with a check in a few minutes raises an alert.

        item = page.locator(f"#alerts-list li[data-unit={SOON}]")
        await expect(item).to_be_visible(timeout=25_000)
        await expect(item).to_contain_text(f"Unit {SOON} is offline")
        await expect(item).to_contain_text("citizen c-1001")
        await expect(item).to_contain_text("agent stopped")
        await expect(page.locator(f"#alerts-list li[data-unit={FAR}]")).to_have_count(0)
        await expect(page.locator("#alerts")).to_have_class("alerts raised")
        await expect(page.locator("#alerts-none")).to_be_hidden()
        # On top of the page, above the unit list, and the reasons in the list too.
        alerts_box = await page.locator("#alerts").bounding_box()
        table_box = await page.locator("#fleet-table").bounding_box()
        assert alerts_box is not None and table_box is not None
        assert alerts_box["y"] < table_box["y"]
        await expect(page.locator(f"#fleet-table tr[data-unit={SOON}]")).to_contain_text(
            "agent stopped"
        )

        await wait_for(lambda: hook.delivered("unit_down_before_check"), 10, what="the webhook")
        (down,) = [r for r in hook.requests if r.event["kind"] == "unit_down_before_check"]
        assert down.signed_with(SECRET)
        shown_id = await item.get_attribute("data-alert")
        assert down.event["detail"]["alert_id"] == shown_id
        # Support sees no technician sections.
        await expect(page.locator("#approve-form")).to_have_count(0)
    assert page_errors(page) == []


async def test_a_technician_approves_a_waiting_unit_from_the_fleet_page(
    broker: Broker, central: CentralService, tmp_path: Path, browser: Any
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
            "citizen": [{"id": "c-9"}],
        }
    )
    await asyncio.to_thread(central.directory.load, spec)
    page = await new_page(browser, "phone")
    async with generic_unit(broker, tmp_path / "creds"):
        code = display_code(await pending_code(central))
        await console_log_in(page, central.url, "t-tech", otp.code_now(TOTP_SECRET))
        waiting = page.locator(f"#enrolments li[data-code='{code}']")
        await expect(waiting).to_be_visible()
        await expect(page.locator("#candidates-note")).to_contain_text("No unit has been silent")
        # A refusal is shown as central words it.
        await page.fill("#approve-code", code)
        await page.fill("#approve-citizen", "C 1")
        await page.click("#approve-form button[type=submit]")
        await expect(page.locator("#approve-error")).to_contain_text("invalid approval: citizen")

        await waiting.get_by_role("button", name="Approve this one").click()
        await expect(page.locator("#approve-code")).to_have_value(code)
        await page.select_option("#approve-profile", "nightcam")
        await page.fill("#approve-citizen", "c-9")
        await page.fill("#approve-group", "g-night")
        await page.click("#approve-form button[type=submit]")
        unit = f"u-{code.replace('-', '').lower()}"
        await expect(page.locator("#approve-ok")).to_contain_text(f"the unit is {unit}")
        await expect(waiting).to_have_count(0)
        entries = await asyncio.to_thread(central.audit.entries, kind="unit_enrolled")
        assert [(e.unit, e.actor) for e in entries] == [(unit, "t-tech")]
        assert await asyncio.to_thread(central.directory.citizen_of, unit) == "c-9"
        # It connects with its new certificate (degraded where this machine's clock is not
        # synchronised).
        await expect(page.locator(f"#fleet-table tr[data-unit={unit}]")).to_contain_text(
            re.compile("online|degraded"), timeout=25_000
        )
    assert page_errors(page) == []
