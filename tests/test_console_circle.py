"""The console's "Citizens' circles" page in real Chromium, at phone size and in Swedish: a day
nurse is refused a contact without the home's consent (the reason in Swedish), adds one once the
consent is recorded (picture and rules), makes an invitation (code and QR shown once) that the
contact's page accepts, revokes the contact's log-ins and removes the contact, each after a
confirmation and each once in the audit trail."""

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from tests.circle import StaffApi, picture
from tests.test_console_duty import console_log_in
from tests.tvunit import CITIZEN, DAY, tv_directory
from vaka.central.service import CentralService
from vaka.central.settings.privacy import PrivacySettings
from vaka.devstack.central import running_central
from vaka.devstack.stack import LocalStack

pytest.register_assert_rewrite("tests.browser")
from tests.browser import new_page, page_errors  # noqa: E402

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.timeout(150)

PNG = base64.b64decode(picture().split(",", 1)[1])


@pytest.fixture
async def strict_central(stack: LocalStack) -> AsyncIterator[CentralService]:
    """Central as a care provider runs it: a contact needs the home's consent."""
    config = stack.central_config()
    config = config.model_copy(update={"privacy": PrivacySettings(require_consent=True)})
    async with running_central(config) as service:
        yield service


def kinds(central: CentralService, kind: str) -> int:
    return len(central.audit.entries(kind=kind))


async def test_a_nurse_looks_after_a_citizens_circle_in_swedish(
    strict_central: CentralService, browser: Any, tmp_path: Path
) -> None:
    central = strict_central
    await asyncio.to_thread(central.directory.load, tv_directory())
    page = await new_page(browser, "phone", "sv")
    await console_log_in(page, central.url, DAY)
    await page.click("#nav a[data-page=circle]")
    await expect(page.locator("h1")).to_have_text("Brukarnas kontakter")
    await expect(page.locator("#circle-citizen")).to_have_value(CITIZEN)
    await expect(page.locator("#circle-none")).to_have_text("Inga kontakter ännu.")

    # Without the home's consent: refused, and the nurse reads why in Swedish.
    await page.fill("#circle-display_name", "Anna Andersson")
    await page.fill("#circle-relation", "barnbarn")
    await page.fill("#circle-citizen_name", "Farmor Greta")
    image = tmp_path / "anna.png"
    image.write_bytes(PNG)
    await page.set_input_files("#circle-picture", str(image))
    await page.fill("#circle-from", "09:00")
    await page.fill("#circle-until", "21:30")
    await page.click("#circle-add-button")
    await expect(page.locator("#circle-error")).to_have_text(
        f"brukaren {CITIZEN} (och alla i hemmet) har inte gett ett giltigt samtycke till samtal "
        "från sina kontakter: registrera samtycket först"
    )
    assert kinds(central, "contact_added") == 0

    # A time of day that is not one is caught on the page, before central is asked.
    await asyncio.to_thread(
        central.directory.consent.give, CITIZEN, "citizen", "contact_call", time.time() - 1
    )
    await page.fill("#circle-until", "25:00")
    await page.click("#circle-add-button")
    await expect(page.locator("#circle-error")).to_have_text("25:00 är inte en tid (TT:MM, 24 h).")
    await page.fill("#circle-until", "21:30")
    await page.click("#circle-add-button")
    await expect(page.locator("#circle-note")).to_have_text(
        "Anna Andersson har lagts till. Skapa en inbjudan att lämna över."
    )
    card = page.locator("#circle-contacts li.card")
    await expect(card).to_have_count(1)
    await expect(card.locator(".card-title")).to_have_text("Anna Andersson · barnbarn")
    await expect(card).to_contain_text("får ringa 09:00\u201321:30 · TV:n får ringa")
    staff = await StaffApi.log_in(central.url, DAY)
    status, listed = await staff.request("GET", f"/api/citizens/{CITIZEN}/contacts")
    assert status == 200 and len(listed["contacts"]) == 1
    contact = listed["contacts"][0]
    assert contact["picture"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert contact["hours"] == {"from": "09:00", "until": "21:30"}
    assert contact["auto_answer"] is False
    assert kinds(central, "contact_added") == 1

    # The invitation: code and QR, shown now; the contact's page takes the code.
    await card.get_by_role("button", name="Inbjudan").click()
    await expect(page.locator("#circle-invitation h2")).to_have_text("Inbjudan till Anna Andersson")
    code = await page.locator("#circle-code").inner_text()
    assert len(code) >= 8
    # The QR code is an image that loaded (an SVG the browser could read).
    await page.wait_for_function(
        "() => { const q = document.querySelector('#circle-qr');"
        " return q.complete && q.naturalWidth > 0; }",
        timeout=5000,
    )
    await page.screenshot(path=str(tmp_path / "console-circle-phone-sv.png"), full_page=True)
    assert kinds(central, "contact_invited") == 1
    relative = await new_page(browser, "phone")
    await relative.goto(f"{central.url}/contact#code={code}")
    await relative.click("#code-form button[type=submit]")
    await expect(relative.locator("#enrol")).to_be_visible()

    # Revoke (a lost phone), then remove: each asks first, each is audited once.
    await card.get_by_role("button", name="Återkalla inloggningar").click()
    await expect(card.locator(".confirm-question")).to_contain_text("Avsluta alla inloggningar")
    await card.get_by_role("button", name="Ja").click()
    await expect(page.locator("#circle-note")).to_have_text(
        "Inloggningarna för Anna Andersson har återkallats."
    )
    assert kinds(central, "contact_revoked") == 1
    await card.get_by_role("button", name="Ta bort").click()
    await card.get_by_role("button", name="Avbryt").click()  # changed her mind: nothing happens
    assert kinds(central, "contact_removed") == 0
    await card.get_by_role("button", name="Ta bort").click()
    await card.get_by_role("button", name="Ja").click()
    await expect(page.locator("#circle-none")).to_have_text("Inga kontakter ännu.")
    assert kinds(central, "contact_removed") == 1
    assert page_errors(page) == []


async def test_the_citizens_list_is_the_members_own(strict_central: CentralService) -> None:
    central = strict_central
    await asyncio.to_thread(central.directory.load, tv_directory())
    staff = await StaffApi.log_in(central.url, DAY)
    status, answer = await staff.request("GET", "/api/circle/citizens")
    assert status == 200 and answer == {"citizens": [CITIZEN]}
    anonymous = StaffApi(central.url, "no-such-token")
    status, answer = await anonymous.request("GET", "/api/circle/citizens")
    assert status == 401, answer
