"""Screenshots of the staff console for the docs (``docs/screens/console-*.png``).

Runs the real system on this machine — Mosquitto, central, simulated units in this process — and
Debian's Chromium (headless, fake camera), logs in through the console like a person and saves
each page at phone and tablet size (the log-in, audit, fleet, unit and night-round pages also in
Swedish and Danish: ``console-<page>-<size>-sv.png``, ``-da.png``). One function per page; each
takes the running :class:`Scene` and a browser::

    .venv/bin/python scripts/console_screens.py              # every page
    .venv/bin/python scripts/console_screens.py fleet login  # some of them
"""

import argparse
import asyncio
import contextlib
import re
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from console_scene import (  # scripts/: this script's own scene
    DAY,
    NIGHT,
    NIGHT_TWO,
    NIGHTCAM,
    NIGHTCAM_OK,
    PASSWORD,
    TOTP_SECRET,
    Scene,
    hhmm,
    scene,
    screen_of,
)
from playwright.async_api import Browser, Page, async_playwright, expect

from vaka import otp
from vaka.agent.ui import ButtonId, Calling, Idle, InCall
from vaka.central.directory.spec import DirectorySpec
from vaka.devstack.browser import CHROMIUM, FLAGS, VIEWPORTS
from vaka.devstack.polling import wait_for
from vaka.staff.client import StaffClient

ROOT = Path(__file__).resolve().parent.parent
SCREENS = ROOT / "docs" / "screens"
SIZES = ("phone", "tablet")
#: the console's languages; English shots keep the plain names
LANGS = ("en", "sv", "da")
LOCALES = {"en": "en-GB", "sv": "sv-SE", "da": "da-DK"}
CHANGE_PASSWORD = {"en": "Change password", "sv": "Byt lösenord", "da": "Skift adgangskode"}


def suffix(lang: str) -> str:
    return "" if lang == "en" else f"-{lang}"


async def new_page(browser: Browser, size: str, lang: str = "en") -> Page:
    """A page whose browser asks for ``lang`` (the console follows it until someone chooses)."""
    width, height = VIEWPORTS[size]
    context = await browser.new_context(
        viewport={"width": width, "height": height},
        locale=LOCALES[lang],
        timezone_id="Europe/Stockholm",
    )
    page = await context.new_page()
    page.set_default_timeout(20_000)
    return page


#: the one-time-code step each member last logged in with (central takes each code once)
_used_steps: dict[str, int] = {}


async def log_in(page: Page, url: str, staff_id: str) -> None:
    """Log in through the form, as a person would; the same person again within one code's
    step (at another size a moment ago) waits for the next code, as a person would."""
    if _used_steps.get(staff_id) == int(time.time() // 30):
        await asyncio.sleep(otp.seconds_to_next_step() + 0.2)
    await page.goto(url + "/")
    await page.fill("#staff_id", staff_id)
    await page.fill("#password", PASSWORD)
    await page.fill("#totp", otp.code_now(TOTP_SECRET))
    _used_steps[staff_id] = int(time.time() // 30)
    await page.click("#login-form button[type=submit]")
    nav, error = page.locator("#nav"), page.locator("#login-error")
    await page.wait_for_function(
        "() => !document.getElementById('nav').hidden"
        " || !document.getElementById('login-error').hidden"
    )
    if not await nav.is_visible():
        raise RuntimeError(f"log-in refused: {await error.inner_text()}")


async def save(page: Page, name: str) -> None:
    text = await page.evaluate("document.body.innerText")
    if re.search(r"\b(null|undefined)\b", text):
        raise RuntimeError(f"{name}: the page shows null/undefined: {text[:300]!r}")
    path = SCREENS / f"{name}.png"
    await page.screenshot(path=str(path))
    print(f"wrote {path.relative_to(ROOT)}")


async def choose_language(page: Page, lang: str) -> None:
    """Pick the console's language as the member would (central remembers it)."""
    await page.select_option("#language", lang)
    # The navigation is drawn again once central has the choice.
    await expect(page.locator("#nav a[data-page=password]")).to_have_text(CHANGE_PASSWORD[lang])


async def still(page: Page, selector: str) -> None:
    """Wait until the ``<video>`` shows a picture."""
    await page.wait_for_function(
        "(s) => document.querySelector(s) && document.querySelector(s).videoWidth > 0",
        arg=selector,
    )
    await asyncio.sleep(1.0)  # a few frames in: the picture is sharp


# ---------------------------------------------------------------- one function per page


async def shoot_login(s: Scene, browser: Browser) -> None:
    """console-login-{size}[-sv|-da].png: the log-in form in the browser's language, filled in
    up to the code."""
    for lang in LANGS:
        for size in SIZES:
            page = await new_page(browser, size, lang)
            await page.goto(s.central.url + "/")
            await page.fill("#staff_id", NIGHT)
            await page.fill("#password", PASSWORD)
            await page.focus("#totp")
            await save(page, f"console-login-{size}{suffix(lang)}")
            await page.context.close()


async def shoot_on_duty(s: Scene, browser: Browser) -> None:
    """console-on-duty-{size}.png: a citizen's call ringing; -call-{size}: answered."""
    async with StaffClient(s.central.url) as nora:
        await nora.login(NIGHT_TWO, PASSWORD, totp_secret=TOTP_SECRET)
        await nora.duty(True)
        async with nora.ring_socket() as rings:
            # Read her rings as her client would (an unread socket stops answering pings).
            reader = asyncio.create_task(_drain(rings))
            for size in SIZES:
                page = await new_page(browser, size)
                await log_in(page, s.central.url, NIGHT)
                await page.click("#nav a[data-page=on-duty]")
                toggle = page.locator("#duty-toggle")
                await expect(toggle).to_have_text(re.compile("Go (on|off) duty"))
                if await toggle.inner_text() == "Go on duty":
                    await page.click("#duty-toggle")
                await expect(page.locator("#ring-link")).to_contain_text("Connected")
                screen_of(s.tv).press(ButtonId.CALL_STAFF)
                await wait_for(lambda: isinstance(screen_of(s.tv).state, Calling), 10)
                banner = page.locator(".ring-banner")
                await expect(banner).to_be_visible()
                await save(page, f"console-on-duty-{size}")
                await banner.get_by_role("button", name="Answer").click()
                await still(page, "#duty-remote")
                await save(page, f"console-on-duty-call-{size}")
                await page.click("#duty-hangup")
                await wait_for(lambda: isinstance(screen_of(s.tv).state, Idle), 10)
                await page.context.close()
            reader.cancel()
        await nora.duty(False)


async def _drain(rings: Any) -> None:
    with contextlib.suppress(Exception):
        while True:
            await rings.next(3600)


async def shoot_video_visits(s: Scene, browser: Browser) -> None:
    """console-video-visits-{size}.png: the list; -call-{size}: a visit in progress."""
    for size in SIZES:
        page = await new_page(browser, size)
        await log_in(page, s.central.url, DAY)
        await page.click("#nav a[data-page=video-visits]")
        entry = page.locator("#visits li").first
        await expect(entry.locator(".unit-state")).to_have_text("online")
        await save(page, f"console-video-visits-{size}")
        await entry.get_by_role("button", name="Call").click()
        await wait_for(lambda: isinstance(screen_of(s.tv).state, InCall), 15)
        await still(page, "#visit-remote")
        await save(page, f"console-video-visits-call-{size}")
        await page.click("#visit-hangup")
        await wait_for(lambda: isinstance(screen_of(s.tv).state, Idle), 10)
        await page.context.close()


async def shoot_fleet(s: Scene, browser: Browser) -> None:
    """console-fleet-{size}.png with an open alert (support at phone size, a technician with
    approvals and decommission candidates at tablet size); console-fleet-units-phone.png: the
    units as a list of cards on a phone, each linking to its page."""
    await wait_for(
        lambda: asyncio.to_thread(s.central.alerts.store.open_alerts), 15, what="an open alert"
    )
    for size, who in zip(SIZES, ("s-support", "t-tech"), strict=True):
        page = await new_page(browser, size)
        await log_in(page, s.central.url, who)
        for lang in LANGS:
            await choose_language(page, lang)
            await expect(page.locator(f"#alerts-list li[data-unit={NIGHTCAM}]")).to_be_visible()
            row = page.locator(f"#fleet-table tr[data-unit={NIGHTCAM_OK}]")
            await expect(row).to_be_visible()
            await save(page, f"console-fleet-{size}{suffix(lang)}")
            if size == "phone":  # the units as cards, further down
                await page.locator("#fleet-table").scroll_into_view_if_needed()
                await save(page, f"console-fleet-units-{size}{suffix(lang)}")
                await page.evaluate("window.scrollTo(0, 0)")
        await choose_language(page, "en")
        await page.context.close()


ADMIN = "s-admin"


async def _round_extras(s: Scene) -> None:
    """An administrator, and a night check due now at the online nightcam (c-1002)."""
    extra = DirectorySpec.model_validate(
        {
            "staff": [
                {
                    "id": ADMIN,
                    "name": "Ada Admin",
                    "role": "administrator",
                    "password": PASSWORD,
                    "totp_secret": TOTP_SECRET,
                }
            ],
            "schedule": [
                {"citizen": "c-1002", "times": [hhmm(-5), hhmm(9 * 60)], "tolerance_min": 30}
            ],
        }
    )
    await asyncio.to_thread(s.central.directory.load, extra)


async def shoot_night_round(s: Scene, browser: Browser) -> None:
    """console-night-round-{size}[-sv|-da].png: a night check in progress (the nightcam's live
    picture and the call's timer); -outcome-{size}: hung up, the two outcomes on one line; then
    recorded "All well" (which the audit, unit and report pages show)."""
    await _round_extras(s)
    for lang in LANGS:
        page = await new_page(browser, SIZES[0], lang)
        await log_in(page, s.central.url, NIGHT)
        for size in SIZES:
            width, height = VIEWPORTS[size]
            await page.set_viewport_size({"width": width, "height": height})
            await page.click("#nav a[data-page=night-round]")
            row = page.locator(f".round-check[data-unit={NIGHTCAM_OK}]").first
            await expect(row.locator("button.dial")).to_be_enabled()
            await row.locator("button.dial").click()
            await still(page, "#round-video")
            await expect(page.locator("#round-timer")).to_have_text(re.compile(r"00:0[1-9]"))
            await asyncio.sleep(3)  # a night check takes a moment: a realistic duration
            await save(page, f"console-night-round-{size}{suffix(lang)}")
            await page.click("#round-hangup")
            await expect(page.locator("#round-outcome")).to_be_visible()
            await page.locator("#round-outcome").scroll_into_view_if_needed()
            await save(page, f"console-night-round-outcome-{size}{suffix(lang)}")
            await page.click("#outcome-all-well")
            await expect(page.locator("#round-ok")).to_be_visible()
        await page.context.close()


async def shoot_unit(s: Scene, browser: Browser) -> None:
    """console-unit-{size}[-sv|-da].png: the online nightcam's page as a technician sees it
    (status, lifecycle, health history, last calls, actions); console-unit-confirm-{size}.png:
    revoking it asks for a reason and a confirmation first (and is cancelled here)."""

    async def history() -> bool:
        return len(await asyncio.to_thread(s.central.store.health_history, NIGHTCAM_OK)) >= 4

    await wait_for(history, 60, what="a few health reports")
    page = await new_page(browser, SIZES[0])
    await log_in(page, s.central.url, "t-tech")
    for lang in LANGS:
        await choose_language(page, lang)
        for size in SIZES:
            width, height = VIEWPORTS[size]
            await page.set_viewport_size({"width": width, "height": height})
            await page.goto(f"{s.central.url}/#/units/{NIGHTCAM_OK}")
            await expect(page.locator("#unit-health tbody tr").nth(3)).to_be_visible()
            await expect(page.locator("#unit-actions")).to_be_visible()
            await page.evaluate("window.scrollTo(0, 0)")
            await save(page, f"console-unit-{size}{suffix(lang)}")
            if lang == "en":
                await page.click("#action-revoke")
                await page.fill("#confirm-reason", "stolen from the home")
                await page.locator("#confirm-revoke").scroll_into_view_if_needed()
                await save(page, f"console-unit-confirm-{size}")
                await page.click("#confirm-cancel")
    await choose_language(page, "en")
    await page.context.close()


async def shoot_audit(s: Scene, browser: Browser) -> None:
    """console-audit-{size}[-sv|-da].png: the trail newest first as sentences, filtered to one
    unit, the chain verified at the top."""
    await _round_extras(s)
    page = await new_page(browser, SIZES[0])
    await log_in(page, s.central.url, ADMIN)
    for lang in LANGS:
        await choose_language(page, lang)
        for size in SIZES:
            width, height = VIEWPORTS[size]
            await page.set_viewport_size({"width": width, "height": height})
            await page.click("#nav a[data-page=audit]")
            await expect(page.locator("#audit-chain.ok")).to_be_visible()
            await page.fill("#audit-unit", NIGHTCAM_OK)
            await page.click("#audit-filters button[type=submit]")
            await expect(page.locator("#audit-rows tr").first).to_be_visible()
            await page.evaluate("window.scrollTo(0, 0)")
            await save(page, f"console-audit-{size}{suffix(lang)}")
    await choose_language(page, "en")
    await page.context.close()


async def shoot_supervision_report(s: Scene, browser: Browser) -> None:
    """console-supervision-report-{size}.png: the last 7 days' supervisions and the CSV link."""
    await _round_extras(s)

    async def performed() -> bool:
        entries = await asyncio.to_thread(s.central.audit.entries, kind="call_ended")
        return any(e.purpose == "night_check" for e in entries)

    await wait_for(performed, 10, what="a performed night check (run night_round first)")
    for size in SIZES:
        page = await new_page(browser, size)
        await log_in(page, s.central.url, ADMIN)
        await page.click("#nav a[data-page=supervision-report]")
        await expect(page.locator("#report-rows tr").first).to_be_visible()
        await save(page, f"console-supervision-report-{size}")
        await page.context.close()


PAGES: dict[str, Callable[[Scene, Browser], Awaitable[None]]] = {
    "login": shoot_login,
    "on_duty": shoot_on_duty,
    "video_visits": shoot_video_visits,
    "fleet": shoot_fleet,
    "night_round": shoot_night_round,
    "unit": shoot_unit,
    "audit": shoot_audit,
    "supervision_report": shoot_supervision_report,
}


async def main(names: list[str]) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vaka-screens-") as tmp:
        async with scene(Path(tmp)) as s, async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            try:
                for name in names:
                    await PAGES[name](s, browser)
            finally:
                await browser.close()


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*", help=f"some of {', '.join(PAGES)} (default: all)")
    args: Any = parser.parse_args(argv)
    unknown = [p for p in args.pages if p not in PAGES]
    if unknown:
        parser.error(f"no such page: {', '.join(unknown)} (pages: {', '.join(PAGES)})")
    asyncio.run(main(args.pages or list(PAGES)))


if __name__ == "__main__":
    cli()
