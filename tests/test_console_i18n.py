"""The console for the people who use it, in real Chromium: Swedish, Danish and English by the
browser's language and by the member's saved choice (which follows them to another browser),
24 h times, no "null"/"undefined" on any page, and the navigation by role (matching the roles
central allows). The audit page as sentences: ``tests/test_console_audit_page.py``."""

import asyncio
import datetime as dt
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy import create_engine, inspect, text

from tests.conftest import TOTP_SECRET, staff_token
from tests.test_staff_access import PASSWORD, central_with
from vaka import otp
from vaka.central.calls.round import ROUND_ROLES
from vaka.central.calls.visits import VISIT_ROLES
from vaka.central.circle.contacts import CIRCLE_ROLES
from vaka.central.directory.directory import Directory
from vaka.central.directory.policy import ROLE_PURPOSES
from vaka.central.http.audit import AUDIT_ROLES, REPORT_ROLES
from vaka.central.http.fleet import CONSOLE_DIR, FLEET_ROLES
from vaka.central.storage.migrate import upgrade
from vaka.devstack.broker import Broker

pytest.register_assert_rewrite("tests.browser")
from tests.browser import new_page, page_errors  # noqa: E402

pytest_plugins = ["tests.browser"]

#: what each role's navigation shows (page ids, in order)
NAV = {
    "n-nurse": ["night-round", "on-duty", "video-visits", "circle", "password"],
    "s-support": ["fleet", "audit", "circle", "password"],
    "t-tech": ["fleet", "circle", "password"],
    "a-admin": ["night-round", "fleet", "audit", "supervision-report", "circle", "password"],
}
LOGIN_WORDS = {
    "sv": ("Logga in", "Engångskod", "Lösenord"),
    "da": ("Log ind", "Engangskode", "Adgangskode"),
    "en": ("Log in", "One-time code", "Password"),
}
NIGHT_ROUND = {"sv": "Nattillsyn", "da": "Nattilsyn", "en": "Night round"}
NO_WORDS = re.compile(r"\b(null|undefined|NaN)\b")
TWELVE_HOUR = re.compile(r"\b(AM|PM|am|pm|a\.m\.|p\.m\.)\b")
HH_MM = re.compile(r"\b([01]\d|2[0-3]):[0-5]\d\b")


async def log_in(page: Page, url: str, staff_id: str, codes: otp.CodeSource | None = None) -> None:
    """Log in through the form (``codes``: for a second log-in of the same member, whose
    current code central has taken already)."""
    code = codes.next() if codes is not None else otp.code_now(TOTP_SECRET)
    assert code is not None
    await page.goto(url + "/")
    await page.fill("#staff_id", staff_id)
    await page.fill("#password", PASSWORD)
    await page.fill("#totp", code)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#nav")).to_be_visible()


async def text_of(page: Page) -> str:
    return str(await page.evaluate("document.body.innerText"))


async def nav_ids(page: Page) -> list[str]:
    ids: list[str] = await page.locator("#nav a").evaluate_all(
        "links => links.map((a) => a.dataset.page)"
    )
    return ids


def no_missing_words(text: str, where: str) -> None:
    found = NO_WORDS.search(text)
    assert found is None, f"{found.group(0)!r} on {where}: {text[:400]!r}"


# ---------------------------------------------------------------- item 10: languages


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
async def test_log_in_page_speaks_the_browsers_language(
    broker: Broker, tmp_path: Path, browser: Browser, viewport: str
) -> None:
    # Central gives one answer to every refused log-in; the console says it in the language.
    wrong = {
        "sv": "inloggningen nekades: fel personal-id, lösenord eller engångskod",
        "da": "log ind afvist: forkert medarbejder-id, adgangskode eller engangskode",
        "en": "log-in refused: wrong staff id, password or one-time code",
    }
    async with central_with(broker, tmp_path) as central:
        for lang in ("sv", "da", "en", "fr"):
            page = await new_page(browser, viewport, lang)
            expected = "en" if lang == "fr" else lang  # anything else: English
            await page.goto(central.url + "/")
            title, code, password = LOGIN_WORDS[expected]
            await expect(page.locator("h1")).to_have_text(title)
            await expect(page.locator("label", has_text=code)).to_be_visible()
            await expect(page.locator("label", has_text=password)).to_be_visible()
            await expect(page.locator("#login-submit")).to_have_text(title)
            assert await page.evaluate("document.documentElement.lang") == expected
            assert await page.locator("#language").input_value() == expected
            no_missing_words(await text_of(page), f"the log-in page ({lang})")
            assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
            # A refusal is shown in the same language.
            await page.fill("#staff_id", "n-nurse")
            await page.fill("#password", "not the password")
            await page.click("#login-submit")
            await expect(page.locator("#login-error")).to_contain_text(wrong[expected])
            assert page_errors(page) == [], lang
            await page.context.close()


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
async def test_a_saved_choice_overrides_the_browser_and_follows_the_member(
    broker: Broker, tmp_path: Path, browser: Browser, viewport: str
) -> None:
    swedish = await new_page(browser, viewport, "sv")
    codes = otp.CodeSource(TOTP_SECRET)
    async with central_with(broker, tmp_path) as central:
        await log_in(swedish, central.url, "n-nurse", codes)
        nav = swedish.locator("#nav")
        await expect(nav.locator("a[data-page='night-round']")).to_have_text("Nattillsyn")
        await expect(nav.locator("a[data-page='on-duty']")).to_have_text("I tjänst")
        await expect(nav.locator("a[data-page='video-visits']")).to_have_text("Videobesök")
        await expect(swedish.locator("#logout")).to_have_text("Logga ut")
        await expect(swedish.locator("#who")).to_have_text("n-nurse (nattpersonal)")
        # The nurse prefers Danish: the console changes at once and central remembers it.
        await swedish.select_option("#language", "da")
        await expect(nav.locator("a[data-page='night-round']")).to_have_text("Nattilsyn")
        await expect(nav.locator("a[data-page='on-duty']")).to_have_text("På vagt")
        await expect(nav.locator("a[data-page='video-visits']")).to_have_text("Skærmbesøg")
        await expect(swedish.locator("h1")).to_have_text("Nattilsyn")
        assert await swedish.evaluate("document.documentElement.lang") == "da"
        assert await asyncio.to_thread(central.directory.language_of, "n-nurse") == "da"
        # Another browser that asks for English: the log-in page is English, the console
        # after log-in is Danish.
        english = await new_page(browser, viewport, "en")
        await english.goto(central.url + "/")
        await expect(english.locator("h1")).to_have_text("Log in")
        await log_in(english, central.url, "n-nurse", codes)
        await expect(english.locator("#nav a[data-page='night-round']")).to_have_text("Nattilsyn")
        await expect(english.locator("#logout")).to_have_text("Log ud")
        # Logged out: the browser's language again.
        await english.click("#logout")
        await expect(english.locator("#logged-out")).to_have_text("You are logged out.")
        await expect(english.locator("h1")).to_have_text("Log in")
    assert page_errors(swedish) == []
    assert page_errors(english) == []


async def test_language_api_accepts_our_three_and_null(broker: Broker, tmp_path: Path) -> None:
    async with central_with(broker, tmp_path) as central:
        token = await staff_token(central.url, "n-nurse", PASSWORD)
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=auth) as http:

            async def me() -> dict[str, Any]:
                async with http.get(central.url + "/api/me") as resp:
                    body: dict[str, Any] = await resp.json()
                    return body

            async def choose(language: Any) -> tuple[int, dict[str, Any]]:
                async with http.post(
                    central.url + "/api/me/language", json={"language": language}
                ) as resp:
                    return resp.status, await resp.json()

            assert (await me())["language"] is None  # nothing chosen: the browser's
            assert await choose("sv") == (200, {"language": "sv"})
            assert (await me())["language"] == "sv"
            status, body = await choose("no")
            assert status == 400 and body["error"] == "invalid language choice: language"
            assert (await me())["language"] == "sv"
            assert await choose(None) == (200, {"language": None})
            assert (await me())["language"] is None


@pytest.mark.parametrize("lang", ["sv", "da", "en"])
async def test_times_are_24_hour_in_every_language(
    broker: Broker, tmp_path: Path, browser: Browser, lang: str
) -> None:
    page = await new_page(browser, "desktop", lang)
    async with central_with(broker, tmp_path) as central:
        await page.goto(central.url + "/")
        await expect(page.locator("h1")).to_have_text(LOGIN_WORDS[lang][0])
        # The one formatter, for an afternoon time: 24 h, HH:MM, the language's date order.
        afternoon = dt.datetime(2026, 12, 4, 15, 7, tzinfo=ZoneInfo("Europe/Stockholm")).timestamp()
        shown: dict[str, str] = await page.evaluate(
            """async (ts) => {
              const i18n = await import("/console/i18n.js");
              const zone = "Europe/Stockholm";
              return {
                full: i18n.when(ts, { timeZone: zone }),
                clock: i18n.when(ts, { date: false, timeZone: zone }),
                night: i18n.when(ts + 7 * 3600 + 30 * 60, { timeZone: zone }),
              };
            }""",
            afternoon,
        )
        dates = {"sv": "2026-12-04", "da": "04.12.2026", "en": "04/12/2026"}
        assert shown["clock"] == "15:07", shown
        assert shown["full"] == f"{dates[lang]} 15:07", shown
        assert shown["night"].endswith(" 22:37"), shown
        # The pages an administrator reads: no AM/PM anywhere, times as HH:MM.
        await asyncio.to_thread(central.audit.append, "duty_on", actor="n-nurse")
        await log_in(page, central.url, "a-admin")
        await page.goto(central.url + "/#/audit")
        await expect(page.locator("#audit-rows tr").first).to_be_visible()
        text = await text_of(page)
        assert TWELVE_HOUR.search(text) is None, text[:400]
        assert HH_MM.search(text) is not None, text[:400]
    assert page_errors(page) == []


# ---------------------------------------------------------------- no "null" on any page


@pytest.mark.parametrize(("lang", "viewport"), [("sv", "phone"), ("da", "desktop")])
async def test_no_null_or_undefined_on_any_page(
    broker: Broker, tmp_path: Path, browser: Browser, lang: str, viewport: str
) -> None:
    page = await new_page(browser, viewport, lang)
    async with central_with(broker, tmp_path) as central:
        await page.goto(central.url + "/")
        await expect(page.locator("#login-form")).to_be_visible()
        no_missing_words(await text_of(page), "the log-in page")
        await log_in(page, central.url, "a-admin")
        for page_id in await nav_ids(page):
            await page.goto(f"{central.url}/#/{page_id}")
            await expect(page.locator(f"#nav a[data-page='{page_id}']")).to_have_attribute(
                "aria-current", "page"
            )
            await page.wait_for_load_state("networkidle")
            await expect(page.locator("#view h1")).to_be_visible()
            no_missing_words(await text_of(page), f"#/{page_id}")
            assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth"), (
                page_id
            )
        await page.click("#logout")
        await expect(page.locator("#logged-out")).to_be_visible()
        no_missing_words(await text_of(page), "the logged-out page")
        # The expired-password page (it showed "null" before).
        await log_in_expired(page, central.url)
        await expect(page.locator("#password-expired")).to_be_visible()
        no_missing_words(await text_of(page), "the expired-password page")
    assert page_errors(page) == []


async def log_in_expired(page: Page, url: str) -> None:
    await page.goto(url + "/")
    await page.fill("#staff_id", "n-old")
    await page.fill("#password", PASSWORD)
    await page.fill("#totp", otp.code_now(TOTP_SECRET))
    await page.click("#login-submit")


# ---------------------------------------------------------------- item 11: navigation by role


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
async def test_the_navigation_shows_what_the_role_may_use(
    broker: Broker, tmp_path: Path, browser: Browser, viewport: str
) -> None:
    async with central_with(broker, tmp_path) as central:
        for staff_id, expected in NAV.items():
            page = await new_page(browser, viewport, "da")
            await log_in(page, central.url, staff_id)
            assert await nav_ids(page) == expected, staff_id
            # A page the role may not use, asked for by address, is not shown either.
            await page.goto(central.url + "/#/audit")
            await expect(page.locator("#nav a[aria-current='page']")).to_have_count(1)
            current = await page.locator("#nav a[aria-current='page']").get_attribute("data-page")
            assert current == ("audit" if "audit" in expected else expected[0]), staff_id
            no_missing_words(await text_of(page), f"{staff_id}'s console")
            assert page_errors(page) == [], staff_id
            await page.context.close()


def test_the_navigation_roles_are_the_roles_central_allows() -> None:
    pages = (CONSOLE_DIR / "pages.js").read_text()
    roles = {
        m.group(1): set(re.findall(r'"(\w+)"', m.group(2)))
        for m in re.finditer(r'id: "([\w-]+)".*?roles: \[([^\]]*)\]', pages)
    }
    takes_calls = {r for r, purposes in ROLE_PURPOSES.items() if "citizen_call" in purposes}
    assert roles == {
        "night-round": set(ROUND_ROLES),
        "on-duty": takes_calls,
        "video-visits": set(VISIT_ROLES),
        "fleet": set(FLEET_ROLES),
        "units": set(FLEET_ROLES),  # a unit's page (linked from the fleet, not in the navigation)
        "audit": set(AUDIT_ROLES),
        "supervision-report": set(REPORT_ROLES),
        "circle": set(CIRCLE_ROLES),
    }


def test_an_older_staff_table_gets_the_language_column(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE staff (staff_id VARCHAR(64) PRIMARY KEY, display_name VARCHAR(120)"
                " NOT NULL, role VARCHAR(32) NOT NULL, password_hash VARCHAR(200) NOT NULL,"
                " active BOOLEAN NOT NULL)"
            )
        )
        conn.execute(text("INSERT INTO staff VALUES ('n-old', 'Old', 'night_staff', 'x', 1)"))
    upgrade(engine)
    assert "language" in {c["name"] for c in inspect(engine).get_columns("staff")}
    directory = Directory(engine)
    assert directory.language_of("n-old") is None
    directory.set_language("n-old", "da")
    assert directory.language_of("n-old") == "da"
    upgrade(engine)  # a second start changes nothing
    assert directory.language_of("n-old") == "da"
