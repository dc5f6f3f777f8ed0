"""Screenshots of the staff console for the docs (``docs/screens/console-*.png``).

Runs the real system on this machine — Mosquitto, central, simulated units in this process — and
Debian's Chromium (headless, fake camera), logs in through the console like a person and saves
each page at phone and tablet size. One function per page; each takes the running
:class:`Scene` and a browser::

    .venv/bin/python scripts/console_screens.py              # every page
    .venv/bin/python scripts/console_screens.py fleet login  # some of them
"""

import argparse
import asyncio
import contextlib
import re
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402

from tests.browser import CHROMIUM, FLAGS, VIEWPORTS  # noqa: E402
from tests.conftest import TOTP_SECRET, Broker, central_config, wait_for  # noqa: E402
from tests.nightcheck import PASSWORD, agent_config, hhmm  # noqa: E402
from tests.tvunit import (  # noqa: E402
    DAY,
    NIGHT,
    NIGHT_TWO,
    push_tv_config,
    running_tv,
    screen_of,
    tv_directory,
)
from vaka import otp  # noqa: E402
from vaka.agent.app import Agent  # noqa: E402
from vaka.agent.config import parse_config  # noqa: E402
from vaka.agent.ui import ButtonId, Calling, Idle, InCall  # noqa: E402
from vaka.central.directory.spec import DirectorySpec  # noqa: E402
from vaka.central.service import CentralService  # noqa: E402
from vaka.central.settings.alerts import AlertSettings  # noqa: E402
from vaka.devstack.broker import free_port  # noqa: E402
from vaka.provisioning.localpki import LocalPki  # noqa: E402
from vaka.staff.client import StaffClient  # noqa: E402

SCREENS = ROOT / "docs" / "screens"
SIZES = ("phone", "tablet")
AUTO_ANSWER = [{"purpose": "video_visit", "caller_groups": ["g-day"], "countdown_s": 2}]
NIGHTCAM = "u-cam-0042"  # down, with a night check in a few minutes: an open alert
NIGHTCAM_OK = "u-cam-0043"  # online


@dataclass
class Scene:
    """What the screenshots show: central, a TV unit (u-tv), two nightcams, staff."""

    central: CentralService
    tv: Agent


def scene_directory() -> DirectorySpec:
    """The TV unit's directory (tests/tvunit.py) plus nightcams, support and a technician."""
    spec = tv_directory().model_dump()
    for staff_id, name, role in (
        ("s-support", "Siri Support", "support"),
        ("t-tech", "Tina Tech", "technician"),
    ):
        spec["staff"].append(
            {
                "id": staff_id,
                "name": name,
                "role": role,
                "groups": [],
                "password": PASSWORD,
                "totp_secret": TOTP_SECRET,
            }
        )
    spec["citizen"] += [
        {"id": "c-1001", "units": [NIGHTCAM]},
        {"id": "c-1002", "units": [NIGHTCAM_OK]},
    ]
    spec["permission"] += [
        {"group": "g-night", "citizen": "c-1001", "purposes": ["night_check"]},
        {"group": "g-night", "citizen": "c-1002", "purposes": ["night_check"]},
    ]
    spec["schedule"] = [
        {"citizen": "c-1001", "times": [hhmm(8)], "tolerance_min": 15},
        {"citizen": "c-1002", "times": [hhmm(9 * 60)], "tolerance_min": 15},
    ]
    return DirectorySpec.model_validate(spec)


@contextlib.asynccontextmanager
async def scene(workdir: Path) -> AsyncIterator[Scene]:
    """Broker, central (alerts every second), the TV unit and one nightcam, all running."""
    pki = LocalPki(workdir / "pki").ensure()
    (workdir / "broker").mkdir()
    broker = Broker(pki, workdir / "broker", free_port())
    broker.start()
    try:
        config = central_config(broker, workdir)
        config = config.model_copy(update={"alerts": AlertSettings(lead_min=60, check_every_s=1)})
        async with CentralService(config) as central:
            await asyncio.wait_for(central.link.connected.wait(), 10)
            await asyncio.to_thread(central.directory.load, scene_directory())
            camera = Agent(parse_config(agent_config(broker, NIGHTCAM_OK)))
            camera.sampler._clock_synced = lambda: True  # type: ignore[method-assign]
            camera_task = asyncio.create_task(camera.run())
            try:
                async with running_tv(broker) as tv:
                    tv.sampler._clock_synced = lambda: True  # type: ignore[method-assign]
                    await push_tv_config(central, tv, auto_answer=AUTO_ANSWER)
                    await camera.link.wait_online(10)
                    yield Scene(central, tv)
            finally:
                camera_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await camera_task
    finally:
        broker.stop()


async def new_page(browser: Browser, size: str) -> Page:
    width, height = VIEWPORTS[size]
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    page.set_default_timeout(20_000)
    return page


async def log_in(page: Page, url: str, staff_id: str) -> None:
    """Log in through the form, as a person would; a code already used (the same person at
    another size a moment ago) means waiting for the next one, as a person would."""
    for _attempt in range(3):
        await page.goto(url + "/")
        await page.fill("#staff_id", staff_id)
        await page.fill("#password", PASSWORD)
        await page.fill("#totp", otp.code_now(TOTP_SECRET))
        await page.click("#login-form button[type=submit]")
        nav, error = page.locator("#nav"), page.locator("#login-error")
        await page.wait_for_function(
            "() => !document.getElementById('nav').hidden"
            " || !document.getElementById('login-error').hidden"
        )
        if await nav.is_visible():
            return
        if "already used" not in await error.inner_text():
            raise RuntimeError(f"log-in refused: {await error.inner_text()}")
        await asyncio.sleep(otp.seconds_to_next_step() + 0.2)
    raise RuntimeError(f"could not log in as {staff_id}")


async def save(page: Page, name: str) -> None:
    path = SCREENS / f"{name}.png"
    await page.screenshot(path=str(path))
    print(f"wrote {path.relative_to(ROOT)}")


async def still(page: Page, selector: str) -> None:
    """Wait until the ``<video>`` shows a picture."""
    await page.wait_for_function(
        "(s) => document.querySelector(s) && document.querySelector(s).videoWidth > 0",
        arg=selector,
    )
    await asyncio.sleep(1.0)  # a few frames in: the picture is sharp


# ---------------------------------------------------------------- one function per page


async def shoot_login(s: Scene, browser: Browser) -> None:
    """console-login-{size}.png: the log-in form, filled in up to the code."""
    for size in SIZES:
        page = await new_page(browser, size)
        await page.goto(s.central.url + "/")
        await page.fill("#staff_id", NIGHT)
        await page.fill("#password", PASSWORD)
        await page.focus("#totp")
        await save(page, f"console-login-{size}")
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
    approvals and decommission candidates at tablet size)."""
    await wait_for(
        lambda: asyncio.to_thread(s.central.alerts.store.open_alerts), 15, what="an open alert"
    )
    for size, who in zip(SIZES, ("s-support", "t-tech"), strict=True):
        page = await new_page(browser, size)
        await log_in(page, s.central.url, who)
        await expect(page.locator(f"#alerts-list li[data-unit={NIGHTCAM}]")).to_be_visible()
        await expect(page.locator(f"#fleet-table tr[data-unit={NIGHTCAM_OK}]")).to_be_visible()
        await save(page, f"console-fleet-{size}")
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
    """console-night-round-{size}.png: a night check in progress (the nightcam's live
    picture); then hung up and recorded "All well" (which the audit and report pages show)."""
    await _round_extras(s)
    for size in SIZES:
        page = await new_page(browser, size)
        await log_in(page, s.central.url, NIGHT)
        await page.click("#nav a[data-page=night-round]")
        row = page.locator(f".round-check[data-unit={NIGHTCAM_OK}]").first
        await expect(row.locator(".unit-state")).to_have_text("Online")
        await row.locator("button.dial").click()
        await still(page, "#round-video")
        await expect(page.locator("#round-call-state")).to_have_text("Connected")
        await asyncio.sleep(3)  # a night check takes a moment: a realistic duration
        await save(page, f"console-night-round-{size}")
        await page.click("#round-hangup")
        await page.click("#outcome-all-well")
        await expect(page.locator("#round-ok")).to_be_visible()
        await page.context.close()


async def shoot_audit(s: Scene, browser: Browser) -> None:
    """console-audit-{size}.png: the trail newest first, the chain verified at the top."""
    await _round_extras(s)
    for size in SIZES:
        page = await new_page(browser, size)
        await log_in(page, s.central.url, ADMIN)
        await page.click("#nav a[data-page=audit]")
        await expect(page.locator("#audit-chain")).to_contain_text("intact")
        await page.fill("#audit-unit", NIGHTCAM_OK)
        await page.click("#audit-filters button[type=submit]")
        await expect(page.locator("#audit-rows tr").first).to_be_visible()
        await page.evaluate("window.scrollTo(0, 0)")
        await save(page, f"console-audit-{size}")
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
