"""Real Chromium for the console's tests: Debian's ``/usr/bin/chromium`` driven by Playwright.

Playwright's own browser downloads are never used (``playwright install`` is not run): the
browser is the distribution's, started headless with the flags of :mod:`vaka.devstack.browser`.
Without it the tests are skipped with the reason — unless ``CI`` is set, where a missing browser
is a failure.

Use: ``pytest_plugins = ["tests.browser"]`` in the test module, then take the ``page`` fixture
(desktop size) or ``browser`` with :func:`new_page` for a phone or tablet viewport.

One Chromium serves the whole run (started by Playwright in a helper process, this module run
as a program): each test connects to it afresh and gets its own connection, whose contexts
(cookies, storage, pages, calls) are all closed when the test ends. Starting Playwright's
driver, launching Chromium and closing it again cost two to three seconds a test.
"""

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from vaka.devstack.browser import CHROMIUM, FLAGS, VIEWPORTS
from vaka.devstack.ports import free_port

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


READY = "ready"


class SharedChromium:
    """The run's Chromium: Playwright launches it (its own switches and :data:`FLAGS`, plus a
    DevTools port) in a child process that holds it until its stdin closes — at the end of the
    run, or when the run dies."""

    def __init__(self, log: Path) -> None:
        self._log = log
        self._proc: subprocess.Popen[str] | None = None
        self.endpoint = ""

    def start(self) -> None:
        """Start it (again, after a crash)."""
        self.stop()
        port = free_port()
        with self._log.open("a") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tests.browser", str(port)],
                cwd=Path(__file__).resolve().parent.parent,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if line != READY:
            self.stop()
            pytest.fail(f"Chromium did not start: {self._log.read_text()[-2000:]}")
        self.endpoint = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def shared_chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedChromium]:
    """The run's one Chromium, started when a test first needs it."""
    require_chromium()
    shared = SharedChromium(tmp_path_factory.mktemp("chromium") / "chromium.log")
    shared.start()
    try:
        yield shared
    finally:
        shared.stop()


@pytest.fixture
async def browser(shared_chromium: SharedChromium) -> AsyncIterator["Browser"]:
    """The run's Chromium, on a connection of this test's own: the contexts it makes (and their
    pages and calls) are closed with it when the test ends."""
    from playwright.async_api import Error, async_playwright

    async with async_playwright() as playwright:
        try:
            instance = await playwright.chromium.connect_over_cdp(shared_chromium.endpoint)
        except Error:  # it crashed under an earlier test: a new one
            await asyncio.to_thread(shared_chromium.start)
            instance = await playwright.chromium.connect_over_cdp(shared_chromium.endpoint)
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


async def _hold_chromium(port: int) -> None:
    """Launch Chromium with a DevTools port, say so, and hold it until stdin closes."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=[*FLAGS, f"--remote-debugging-port={port}"]
        )
        print(READY, flush=True)
        await asyncio.to_thread(sys.stdin.read)
        await instance.close()


if __name__ == "__main__":
    asyncio.run(_hold_chromium(int(sys.argv[1])))
