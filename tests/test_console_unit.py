"""A fleet that tells the truth, a unit's own page and the night check's outcome, in real Chromium
at desktop and phone size, in Swedish and Danish.

* The fleet table shows each unit's lifecycle and links to its page; on a phone it is a list of
  cards that fits the screen.
* The unit page shows status, lifecycle, open alerts, health history and last calls; a
  technician's actions ask for confirmation first; suspending closes the unit's open alert (once,
  audited) and decommissioning takes it out of service for good; support sees no actions.
* A unit enrolled from the console is *enrolling*, then *active*; revoked from its page, it is
  *revoked* and its alert is closed.
* During a night check a timer runs (mm:ss); afterwards the two outcomes sit on one line and
  "Visit needed" is not green.

Re-enrolling a unit from its page: ``tests/test_console_reenrol.py``.
"""

import asyncio
import functools
import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.browser import new_page, page_errors
from tests.conftest import TOTP_SECRET
from tests.consoleunit import (
    RUNS,
    VIEWPORTS,
    WORDS,
    assert_cards,
    fits,
    log_in,
    no_missing_words,
)
from tests.nightcheck import PASSWORD, UNIT, running_agent
from tests.test_alerts import (
    FAR,
    SOON,
    central_with_alerts,
    nightcam,
    online,
    watch_rounds,
    watch_schedules,
)
from tests.test_console_round import load_round_directory, wait_until_playing
from tests.test_enrolment import generic_unit, pending_code
from tests.test_notify import WebhookReceiver, webhook_server
from vaka import otp
from vaka.central.directory.spec import DirectorySpec
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.protocol.enrolment import display_code

pytest.register_assert_rewrite("tests.browser")

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.timeout(180)


async def add_staff(central: CentralService) -> None:
    """A technician beside the alert scene's support member."""
    spec = DirectorySpec.model_validate(
        {
            "staff": [
                {"id": "t-tech", "name": "Tina Tech", "role": "technician", "password": PASSWORD}
            ]
        }
    )
    await asyncio.to_thread(central.directory.load, spec)


async def reported_health(central: CentralService, unit: str) -> bool:
    return bool(await asyncio.to_thread(central.store.health_history, unit))


async def open_alert_ids(central: CentralService, unit: str) -> list[str]:
    return [a.id for a in await asyncio.to_thread(central.alerts.store.open_alerts_of, unit)]


# ---------------------------------------------------------------- items 6 and 7


@pytest.mark.parametrize(("lang", "viewport"), RUNS)
async def test_the_fleet_links_to_a_unit_page_whose_actions_change_its_lifecycle(
    broker: Broker, tmp_path: Path, browser: Browser, lang: str, viewport: str
) -> None:
    words = WORDS[lang]
    page = await new_page(browser, viewport, lang)
    async with (
        webhook_server(WebhookReceiver()) as hook,
        central_with_alerts(broker, tmp_path, hook.url) as central,
    ):
        await add_staff(central)
        async with nightcam(broker, SOON), nightcam(broker, FAR):
            for unit in (SOON, FAR):
                await wait_for(functools.partial(online, central, unit), 10, what=f"{unit} online")
                await wait_for(
                    functools.partial(reported_health, central, unit), 10, what="a health report"
                )
            await watch_schedules(central)
        # Both stopped; the one with a check in a few minutes raises an alert.
        await wait_for(lambda: open_alert_ids(central, SOON), 15, what="an alert")
        (alert_id,) = await open_alert_ids(central, SOON)

        await log_in(page, central.url, "t-tech")
        await expect(page.locator("h1")).to_have_text(words["fleet"])
        row = page.locator(f"#fleet-table tr[data-unit={SOON}]")
        await expect(row).to_have_attribute("data-lifecycle", "active")
        await expect(row).to_contain_text(words["active"])
        await expect(page.locator(f"#alerts-list li[data-unit={SOON}]")).to_be_visible()
        assert await fits(page)
        if viewport == "phone":
            await assert_cards(page, "#fleet-table")
        await no_missing_words(page, "the fleet")

        # Each unit links to its own page.
        await row.get_by_role("link", name=SOON).click()
        await expect(page).to_have_url(re.compile(f"#/units/{SOON}$"))
        await expect(page.locator("h1")).to_have_text(f"{words['unit']} {SOON}")
        await expect(page.locator("#nav a[aria-current=page]")).to_have_attribute(
            "data-page", "fleet"
        )
        await expect(page.locator("#unit-lifecycle")).to_contain_text(words["active"])
        await expect(page.locator("#unit-citizen")).to_have_text("c-1001")
        await expect(page.locator(f"#unit-alerts li[data-alert='{alert_id}']")).to_be_visible()
        await expect(page.locator("#unit-health tbody tr").first).to_contain_text(
            re.compile(r"\d\d:\d\d")
        )
        await expect(page.locator("#unit-calls")).to_have_text(words["no_calls"])
        assert await fits(page)
        if viewport == "phone":
            await assert_cards(page, "#unit-health")
        await no_missing_words(page, "the unit page")

        # Suspend: a confirmation first (cancel leaves everything as it was).
        await page.click("#action-suspend")
        await expect(page.locator("#confirm-suspend")).to_be_visible()
        await page.click("#confirm-cancel")
        await expect(page.locator("#confirm-suspend")).to_have_count(0)
        assert await open_alert_ids(central, SOON) == [alert_id]
        await page.click("#action-suspend")
        await page.click("#confirm-yes")  # no reason given: asked for one, nothing done
        await expect(page.locator("#unit-error")).to_be_visible()
        await page.fill("#confirm-reason", "i sjukhus")
        await page.click("#confirm-yes")
        await expect(page.locator("#unit-lifecycle")).to_contain_text(words["suspended"])
        await expect(page.locator("#unit-lifecycle")).to_contain_text("i sjukhus")
        await expect(page.locator("#unit-alerts")).to_have_text(words["no_alerts"])
        await expect(page.locator("#action-resume")).to_have_text(words["resume"])
        await watch_rounds(central)  # rounds of the watch: still no alert for a suspended unit
        assert await open_alert_ids(central, SOON) == []
        cleared = await asyncio.to_thread(central.audit.entries, kind="alert_cleared")
        assert [(e.unit, e.actor, e.detail["reason"]) for e in cleared] == [
            (SOON, "t-tech", "unit suspended: i sjukhus")
        ]

        # Decommission: confirmed with a reason, the unit is out of service for good.
        await page.click("#action-decommission")
        await expect(page.locator("#confirm-decommission")).to_have_class(re.compile("danger"))
        await page.fill("#confirm-reason", "flyttat")
        await page.click("#confirm-yes")
        await expect(page.locator("#unit-lifecycle")).to_contain_text(
            words["decommissioned"], timeout=20_000
        )
        await expect(page.locator("#unit-actions button[id^=action-]")).to_have_count(0)
        await expect(page.locator("#enrol-again")).to_be_visible()
        await page.click("#unit-back")
        row = page.locator(f"#fleet-table tr[data-unit={SOON}]")
        await expect(row).to_have_attribute("data-lifecycle", "decommissioned")
        await expect(row).to_contain_text(words["decommissioned"])
        kinds = [e.kind for e in await asyncio.to_thread(central.audit.entries)]
        assert kinds.count("unit_suspended") == 1 and kinds.count("unit_decommissioned") == 1
        assert kinds.count("alert_cleared") == 1
        assert page_errors(page) == []

        # Support sees the page but no actions, and central refuses them the change.
        support = await new_page(browser, viewport, lang)
        await log_in(support, central.url, "s-support")
        await support.goto(f"{central.url}/#/units/{FAR}")
        await expect(support.locator("#unit-lifecycle")).to_contain_text(words["active"])
        await expect(support.locator("#unit-actions")).to_be_hidden()
        answer = await support.evaluate(
            """async (unit) => {
              const { api } = await import('/console/api.js');
              try { await api('POST', `/api/units/${unit}/suspend`, { reason: 'no way' }); }
              catch (err) { return err.status; }
              return 200;
            }""",
            FAR,
        )
        assert answer == 403
        assert page_errors(support) == []


@pytest.mark.parametrize(("lang", "viewport"), [("sv", "desktop"), ("da", "phone")])
async def test_an_enrolled_unit_is_enrolling_then_active_and_revoked_from_its_page(
    broker: Broker, central: CentralService, tmp_path: Path, browser: Browser, lang: str,
    viewport: str,
) -> None:  # fmt: skip
    words = WORDS[lang]
    spec = DirectorySpec.model_validate(
        {
            "group": [{"id": "g-night", "name": "Night patrol"}],
            "citizen": [{"id": "c-9"}],
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
        await log_in(page, central.url, "t-tech", otp.code_now(TOTP_SECRET))
        await page.fill("#approve-code", code)
        await page.select_option("#approve-profile", "nightcam")
        await page.fill("#approve-citizen", "c-9")
        await page.click("#approve-form button[type=submit]")
        unit = f"u-{code.replace('-', '').lower()}"
        await expect(page.locator("#approve-ok")).to_contain_text(unit)
        row = page.locator(f"#fleet-table tr[data-unit={unit}]")
        # Enrolling until its first connection with the new certificate, then active.
        await expect(row).to_have_attribute(
            "data-lifecycle", re.compile("enrolling|active"), timeout=20_000
        )
        await expect(row).to_have_attribute("data-lifecycle", "active", timeout=25_000)
        activated = await asyncio.to_thread(central.audit.entries, kind="unit_activated")
        assert [e.unit for e in activated] == [unit]

        await row.get_by_role("link", name=unit).click()
        await expect(page.locator("#unit-lifecycle")).to_contain_text(words["active"])
        # Push config, confirmed: the unit gets its next version.
        await page.click("#action-push-config")
        await expect(page.locator("#confirm-push-config")).to_be_visible()
        await page.click("#confirm-yes")
        await expect(page.locator("#unit-ok")).to_contain_text(unit)
        pushed = await asyncio.to_thread(central.audit.entries, kind="config_pushed")
        assert [(e.unit, e.actor, e.detail["version"]) for e in pushed] == [(unit, "t-tech", 1)]
        await page.click("#action-revoke")
        await expect(page.locator("#confirm-revoke")).to_be_visible()
        await page.fill("#confirm-reason", "stulen")
        await page.click("#confirm-yes")
        await expect(page.locator("#unit-lifecycle")).to_contain_text(
            words["revoked"], timeout=20_000
        )
        await expect(page.locator("#action-decommission")).to_be_visible()
        await expect(page.locator("#action-revoke")).to_have_count(0)
        assert await fits(page)
        # A change the rules forbid is refused with the reason.
        answer = await page.evaluate(
            """async (unit) => {
              const { api } = await import('/console/api.js');
              try { await api('POST', `/api/units/${unit}/suspend`, { reason: 'later' }); }
              catch (err) { return `${err.status} ${err.message}`; }
              return 'done';
            }""",
            unit,
        )
        assert answer == f"409 unit {unit} is revoked: it cannot be made suspended"
    revoked = await asyncio.to_thread(central.audit.entries, kind="unit_revoked")
    assert [(e.unit, e.actor, e.detail["reason"]) for e in revoked] == [(unit, "t-tech", "stulen")]
    assert page_errors(page) == []


# ---------------------------------------------------------------- item 5


@pytest.mark.parametrize(("lang", "viewport"), RUNS)
async def test_the_night_check_shows_a_timer_and_one_line_of_outcomes(
    broker: Broker, central: CentralService, browser: Browser, lang: str, viewport: str
) -> None:
    words = WORDS[lang]
    await load_round_directory(central)
    page = await new_page(browser, viewport, lang)
    async with running_agent(broker) as unit:
        await wait_for(
            lambda: asyncio.to_thread(central.store.unit, UNIT), 10, what="unit registered"
        )
        await log_in(page, central.url, "s-nurse", otp.code_now(TOTP_SECRET))
        await expect(page.locator("h1")).to_have_text(words["round"])
        await page.locator(f".round-check[data-unit='{UNIT}'] button.dial").click()
        await wait_until_playing(page)
        timer = page.locator("#round-timer")
        await expect(timer).to_be_visible()
        await expect(page.locator(".call-timer-line")).to_contain_text(words["timer"])
        await expect(timer).to_have_text(re.compile(r"^00:0[1-9]$"), timeout=10_000)
        first = await timer.inner_text()
        await expect(timer).not_to_have_text(first, timeout=5_000)  # it runs
        assert await fits(page)
        await page.click("#round-hangup")
        await wait_for(lambda: unit.shutter_states[-1] == "closed", 10, what="shutter closed")
        await expect(page.locator("#round-outcome")).to_be_visible()
        ended_at = await timer.inner_text()
        await asyncio.sleep(1.5)
        assert await timer.inner_text() == ended_at  # stopped with the call

        well, visit = page.locator("#outcome-all-well"), page.locator("#outcome-visit-needed")
        await expect(well).to_contain_text(words["well"])
        await expect(visit).to_contain_text(words["visit"])
        a, b = await well.bounding_box(), await visit.bounding_box()
        assert a is not None and b is not None
        assert abs(a["y"] - b["y"]) < 2 and a["x"] + a["width"] <= b["x"], (a, b)  # one line
        assert b["x"] + b["width"] <= VIEWPORTS[viewport][0]
        assert min(a["height"], b["height"]) >= 48
        colour = await visit.evaluate("(b) => getComputedStyle(b).backgroundColor")
        red, green, blue = (int(c) for c in re.findall(r"\d+", colour)[:3])
        assert not (green > red and green > blue), colour  # "Visit needed" is not green
        assert red > blue, colour  # the warning colour
        assert await fits(page)
        await no_missing_words(page, "the night round")
        await visit.click()
        await expect(page.locator("#round-ok")).to_contain_text(words["visit"])
    outcomes = await asyncio.to_thread(central.audit.entries, kind="supervision_outcome")
    assert [e.detail["outcome"] for e in outcomes] == ["visit_needed"]
    assert page_errors(page) == []
    # The unit's page lists the check among its last calls, with its length.
    admin = await new_page(browser, viewport, lang)
    await log_in(admin, central.url, "s-admin", otp.code_now(TOTP_SECRET))
    await admin.goto(f"{central.url}/#/units/{UNIT}")
    call = admin.locator(f"#unit-calls li[data-call-id='{outcomes[0].call_id}']")
    await expect(call).to_have_attribute("data-kind", "call_ended")
    await expect(call).to_contain_text(re.compile(r"\b00:\d\d\b"))
    await expect(call).to_contain_text(words["round"])
    assert await fits(admin)
    await no_missing_words(admin, "the unit page after a night check")
    assert page_errors(admin) == []
