"""Re-enrolling a unit from its page, in real Chromium (Danish on a desktop, Swedish on a phone).

A technician orders the re-enrolment with a reason; the unit wipes its key and shows a new code,
stays with its citizen as *enrolling*, and the code entered on the same page brings the same unit
back *active*; the audit trail tells the whole story once.
"""

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.browser import new_page, page_errors
from tests.conftest import TOTP_SECRET
from tests.consoleunit import WORDS, fits, log_in, no_missing_words
from tests.test_enrolment import approve, generic_unit, pending_code, technician
from vaka import otp
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.protocol.enrolment import display_code

pytest.register_assert_rewrite("tests.browser")

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize(("lang", "viewport"), [("da", "desktop"), ("sv", "phone")])
async def test_re_enrol_from_the_unit_page_brings_the_same_unit_back(
    broker: Broker, central: CentralService, tmp_path: Path, browser: Browser, lang: str,
    viewport: str,
) -> None:  # fmt: skip
    words = WORDS[lang]
    page = await new_page(browser, viewport, lang)
    creds = tmp_path / "creds"
    async with generic_unit(broker, creds):
        first = await pending_code(central)
        async with await technician(central) as http:
            status, answer = await approve(http, first)
        assert status == 200, answer
        unit = answer["unit"]
        await wait_for(lambda: is_active(central, unit), 20, what=f"{unit} active")
        # The API log-in above took this step's code: the next one central accepts.
        codes = otp.CodeSource(TOTP_SECRET, f"{central.url} t-tech")
        code = codes.next()
        assert code is not None
        await log_in(page, central.url, "t-tech", code)
        codes.accepted()
        await page.goto(f"{central.url}/#/units/{unit}")
        await expect(page.locator("#unit-lifecycle")).to_contain_text(words["active"])
        await page.click("#action-reenrol")
        await expect(page.locator("#confirm-reenrol")).to_be_visible()
        await page.fill("#confirm-reason", "nyt kort")
        await page.click("#confirm-yes")
        # The unit wipes its key and shows a new code; it stays with its citizen, enrolling.
        await expect(page.locator("#unit-lifecycle")).to_contain_text(
            words["enrolling"], timeout=20_000
        )
        await wait_for(lambda: new_code(central, first), 30, what="a new code")
        fresh = await new_code(central, first)
        assert fresh is not None
        code = display_code(fresh)
        form = page.locator("#enrol-again")
        await expect(form).to_be_visible()
        await expect(page.locator("#enrol-citizen")).to_have_value("c-9")
        await page.fill("#enrol-code", code)
        await page.select_option("#enrol-profile", "nightcam")
        await page.click("#enrol-submit")
        await expect(page.locator("#unit-ok")).to_contain_text(unit)
        await expect(page.locator("#unit-lifecycle")).to_contain_text(
            words["active"], timeout=25_000
        )
        assert await fits(page)
        await no_missing_words(page, "the re-enrolled unit's page")
    kinds = [e.kind for e in await asyncio.to_thread(central.audit.entries) if e.unit == unit]
    assert [k for k in kinds if k.startswith("unit_")] == [
        "unit_enrolled",
        "unit_activated",
        "unit_revoked",
        "unit_reenrol_ordered",
        "unit_enrolled",
        "unit_activated",
    ]
    assert await asyncio.to_thread(central.directory.citizen_of, unit) == "c-9"
    assert page_errors(page) == []


async def is_active(central: CentralService, unit: str) -> bool:
    return (await central.standing.get(unit)).state.value == "active"


async def new_code(central: CentralService, old: str) -> str | None:
    assert central.provisioner is not None
    pending = await asyncio.to_thread(central.provisioner.queue.pending)
    return next((e.code for e in pending if e.code != old), None)
