"""The staff console's log-in in real Chromium: password + one-time code, refusals shown as
central words them, first-time enrolment, an expired password, and the idle log-out."""

import asyncio
import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.conftest import TOTP_SECRET
from tests.test_staff_access import PASSWORD, central_with
from vaka import otp
from vaka.central.http.staff import LOGIN_REFUSED
from vaka.devstack.broker import Broker

pytest.register_assert_rewrite("tests.browser")  # it is also a plugin (below): no warning
from tests.browser import new_page, page_errors  # noqa: E402

pytest_plugins = ["tests.browser"]  # the `browser` and `page` fixtures


async def log_in(page: Page, url: str, staff_id: str, code: str | None = None) -> None:
    await page.goto(url + "/")
    await page.fill("#staff_id", staff_id)
    await page.fill("#password", PASSWORD)
    if code is not None:
        await page.fill("#totp", code)
    await page.click("#login-form button[type=submit]")


async def shot(page: Page, tmp_path: Path, name: str) -> None:
    await page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("viewport", ["phone", "tablet", "desktop"])
async def test_password_and_code_land_on_the_console(
    broker: Broker,
    tmp_path: Path,
    browser: Browser,
    viewport: str,
) -> None:
    page = await new_page(browser, viewport)
    async with central_with(broker, tmp_path) as central:
        await page.goto(central.url + "/")
        # Large targets and no sideways scrolling at this size.
        for selector in ("#staff_id", "#password", "#totp", "#login-form button"):
            box = await page.locator(selector).bounding_box()
            assert box is not None and box["height"] >= 48, (selector, box)
        assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        await log_in(page, central.url, "n-nurse", otp.code_now(TOTP_SECRET))
        nav = page.locator("#nav")
        await expect(nav).to_be_visible()
        await expect(nav.get_by_role("link", name="Night round")).to_be_visible()
        await expect(nav.get_by_role("link", name="Fleet")).to_have_count(0)  # not night staff
        await expect(page.locator("#who")).to_contain_text("n-nurse (night staff)")
        await expect(page.locator("h1")).to_have_text("Night round")
        assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        await shot(page, tmp_path, f"console-{viewport}")
        # The session is an HttpOnly cookie: scripts see only the CSRF token.
        assert "vaka_session" not in await page.evaluate("document.cookie")
        await page.click("#logout")
        await expect(page.locator("#logged-out")).to_have_text("You are logged out.")
    assert page_errors(page) == []


async def test_a_wrong_code_is_refused_with_the_reason(
    broker: Broker,
    tmp_path: Path,
    page: Page,
) -> None:
    async with central_with(broker, tmp_path) as central:
        await log_in(page, central.url, "n-nurse", "123456")
        await expect(page.locator("#login-error")).to_have_text(LOGIN_REFUSED)
        await expect(page.locator("#nav")).to_be_hidden()
    assert page_errors(page) == []


async def test_an_address_outside_the_allowed_networks_is_refused(
    broker: Broker,
    tmp_path: Path,
    page: Page,
) -> None:
    async with central_with(broker, tmp_path, allow={"night_staff": ["192.0.2.0/24"]}) as central:
        await log_in(page, central.url, "n-nurse", otp.code_now(TOTP_SECRET))
        # the same answer as a wrong code; the true reason is in the audit trail
        await expect(page.locator("#login-error")).to_have_text(LOGIN_REFUSED)
        refused = await asyncio.to_thread(central.audit.entries, kind="login_failed")
        assert [e.detail["reason"] for e in refused] == ["address not allowed for the role"]
        await expect(page.locator("#nav")).to_be_hidden()


async def test_an_expired_password_must_be_changed_first(
    broker: Broker,
    tmp_path: Path,
    page: Page,
) -> None:
    async with central_with(broker, tmp_path) as central:
        await log_in(page, central.url, "n-old", otp.code_now(TOTP_SECRET))
        await expect(page.locator("#password-expired")).to_be_visible()
        await expect(page.locator("#nav")).to_be_hidden()
        await shot(page, tmp_path, "expired")
        await page.fill("#old_password", PASSWORD)
        await page.fill("#new_password", PASSWORD)
        await page.fill("#repeat_password", PASSWORD)
        await page.click("#password-form button")
        await expect(page.locator("#password-error")).to_have_text(
            "the new password must differ from the old one"
        )
        await page.fill("#new_password", "a much newer password")
        await page.fill("#repeat_password", "a much newer password")
        await page.click("#password-form button")
        await expect(page.locator("#notice")).to_have_text("Your password is changed.")
        await expect(page.locator("#nav")).to_be_visible()
        await expect(page.locator("h1")).to_have_text("Night round")
    assert page_errors(page) == []


async def test_first_log_in_sets_up_the_code_and_shows_recovery_codes(
    broker: Broker,
    tmp_path: Path,
    page: Page,
) -> None:
    async with central_with(broker, tmp_path) as central:
        await log_in(page, central.url, "n-new")
        await page.click("#enrol-start")
        await expect(page.locator("#enrol-qr")).to_be_visible()
        assert (await page.locator("#enrol-qr").evaluate("img => img.naturalWidth")) > 0
        await shot(page, tmp_path, "enrol")
        secret = (await page.locator("#enrol-secret").inner_text()).strip()
        await page.fill("#enrol-code", otp.code_now(secret))
        await page.click("#enrol-form button")
        codes = page.locator("#recovery-codes li")
        await expect(codes).to_have_count(10)
        assert re.fullmatch(r"[A-Z0-9]{4}(-[A-Z0-9]{4}){3}", await codes.first.inner_text())
        await page.click("#enrol-done")
        await expect(page.locator("#nav")).to_be_visible()
    assert page_errors(page) == []


async def test_idle_time_out_logs_out_with_the_message(
    broker: Broker,
    tmp_path: Path,
    page: Page,
) -> None:
    async with central_with(broker, tmp_path, idle_timeout_s=3) as central:
        await log_in(page, central.url, "n-nurse", otp.code_now(TOTP_SECRET))
        await expect(page.locator("#nav")).to_be_visible()
        await expect(page.locator("#logged-out")).to_have_text(
            "You were logged out after 3 seconds without activity", timeout=15_000
        )
        await expect(page.locator("#nav")).to_be_hidden()
        await shot(page, tmp_path, "idle")
        entries = await asyncio.to_thread(central.audit.entries, kind="logout_idle")
        assert [e.actor for e in entries] == ["n-nurse"]
    assert page_errors(page) == []
