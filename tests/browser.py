"""Real Chromium for the console's tests: Debian's ``/usr/bin/chromium`` driven by Playwright.

Playwright's own browser downloads are never used (``playwright install`` is not run): the
browser is the distribution's, started headless with the flags of :mod:`vaka.devstack.browser`.
Without it the tests are skipped with the reason — unless ``CI`` is set, where a missing browser
is a failure.

Use: ``pytest_plugins = ["tests.browser"]`` in the test module, then take the ``page`` fixture
(desktop size) or ``browser`` with :func:`new_page` for a phone or tablet viewport.
"""

import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from vaka.devstack.browser import CHROMIUM, FLAGS, VIEWPORTS

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, ViewportSize

TIMEOUT_MS = 15_000


def require_chromium() -> None:
    """Skip (or, under CI, fail) when the browser is missing."""
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup.sh does)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
async def browser() -> AsyncIterator["Browser"]:
    """A headless Chromium for one test."""
    require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield instance
        finally:
            await instance.close()


_errors: dict[int, list[str]] = {}


#: the browser locale a page asks for, by the console's language
LOCALES = {"sv": "sv-SE", "da": "da-DK", "en": "en-US"}


async def new_page(
    browser: "Browser", viewport: str = "desktop", lang: str | None = None
) -> "Page":
    """A fresh page (own cookies) of the named viewport; see :func:`page_errors`. With ``lang``
    the browser asks for that language first and lives in Stockholm's time zone."""
    width, height = VIEWPORTS[viewport]
    size: ViewportSize = {"width": width, "height": height}
    if lang is None:
        context = await browser.new_context(viewport=size)
    else:
        context = await browser.new_context(
            viewport=size, locale=LOCALES.get(lang, lang), timezone_id="Europe/Stockholm"
        )
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors = _errors.setdefault(id(page), [])
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    return page


def page_errors(page: "Page") -> list[str]:
    """Script errors and console errors the page has shown so far (an answer of 401 or 403
    from central, which the console handles, is not one)."""
    return _errors.get(id(page), [])


@pytest.fixture
async def page(browser: "Browser") -> "Page":
    """A desktop-sized page."""
    return await new_page(browser)
