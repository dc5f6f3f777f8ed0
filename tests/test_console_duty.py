"""The On duty page in real Chromium: a night nurse goes on duty, a citizen presses the TV's
night-staff button, the page rings; Answer gives a two-way call (the browser plays the unit's
pattern, the unit receives the browser's camera), Hang up returns the TV to idle. A second nurse on
duty (Python ring socket) stops ringing when the browser answers. A dropped ring connection comes
back by itself; a call the citizen cancels stops ringing with the reason; an escalation is
listed."""

import asyncio
import base64
from typing import Any

import cv2
import numpy as np
import pytest
from playwright.async_api import Page, expect

from tests.conftest import TOTP_SECRET
from tests.nightcheck import PASSWORD
from tests.tvunit import (
    CITIZEN,
    NIGHT,
    NIGHT_TWO,
    TV,
    push_tv_config,
    running_tv,
    screen_of,
    tv_directory,
)
from vaka import otp
from vaka.agent.app import Agent
from vaka.agent.ui import ButtonId, Calling, Idle, InCall, Trouble
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.rtc.pattern import PatternReading, decode_pattern
from vaka.staff.client import StaffClient

pytest.register_assert_rewrite("tests.browser")
from tests.browser import new_page, page_errors  # noqa: E402

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.timeout(120)


async def console_log_in(page: Page, url: str, staff_id: str) -> None:
    """Log in through the console's form with a fresh one-time code."""
    await page.goto(url + "/")
    await page.fill("#staff_id", staff_id)
    await page.fill("#password", PASSWORD)
    await page.fill("#totp", otp.code_now(TOTP_SECRET))
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#nav")).to_be_visible()


async def video_frame(page: Page, selector: str) -> np.ndarray[Any, Any] | None:
    """What the ``<video>`` shows now, as a BGR image (``None`` before the first frame)."""
    url = await page.evaluate(
        """(selector) => {
            const video = document.querySelector(selector);
            if (!video || !video.videoWidth) return null;
            const canvas = document.createElement("canvas");
            canvas.width = video.videoWidth;
            canvas.height = video.videoHeight;
            canvas.getContext("2d").drawImage(video, 0, 0);
            return canvas.toDataURL("image/png");
        }""",
        selector,
    )
    if url is None:
        return None
    data = base64.b64decode(url.split(",", 1)[1])
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if image is None else np.asarray(image, dtype=np.uint8)


async def read_pattern(page: Page, selector: str, attempts: int = 40) -> PatternReading:
    """The unit's synthetic pattern as the browser's ``<video>`` shows it."""
    for _ in range(attempts):
        image = await video_frame(page, selector)
        reading = None if image is None else decode_pattern(image)
        if reading is not None:
            return reading
        await asyncio.sleep(0.25)
    pytest.fail(f"the browser's {selector} never showed the unit's pattern")


async def pattern_moves_on(page: Page, selector: str, within_s: float = 15.0) -> None:
    """The unit's pattern counter, as the browser shows it, goes past its first reading.

    A loaded machine may hold the first picture for a while (the decoder waits for the next
    key frame after a lost packet); the picture must move on within ``within_s``.
    """
    first = await read_pattern(page, selector)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    later = first
    while later.counter <= first.counter and loop.time() < deadline:
        await asyncio.sleep(0.1)
        later = await read_pattern(page, selector)
    assert later.counter > first.counter, (
        f"the picture in {selector} stayed at frame {first.counter} for {within_s:g} s"
    )


async def video_plays(page: Page, selector: str) -> None:
    """The ``<video>`` has a picture and its clock runs."""
    await page.wait_for_function(
        "(s) => document.querySelector(s) && document.querySelector(s).videoWidth > 0",
        arg=selector,
    )
    first = await page.evaluate("(s) => document.querySelector(s).currentTime", selector)
    await page.wait_for_function(
        "([s, t]) => document.querySelector(s).currentTime > t", arg=[selector, first]
    )


def received_frames(agent: Agent) -> int:
    """How many of the caller's frames the TV has decoded in the current call."""
    assert agent.tv is not None
    remote = agent.tv.call_media.remote
    return 0 if remote is None else int(remote.frames)


async def test_console_rings_answers_two_way_and_hangs_up(
    broker: Broker, central: CentralService, browser: Any
) -> None:
    await asyncio.to_thread(central.directory.load, tv_directory())
    page = await new_page(browser, "phone")
    nora = StaffClient(central.url)
    await nora.__aenter__()
    try:
        await nora.login(NIGHT_TWO, PASSWORD, totp_secret=TOTP_SECRET)
        async with running_tv(broker) as agent:
            await push_tv_config(central, agent)
            await console_log_in(page, central.url, NIGHT)
            await page.click("#nav a[data-page=on-duty]")
            await expect(page.locator("h1")).to_have_text("On duty")
            await expect(page.locator("#duty-status")).to_have_text("You are off duty.")
            await page.click("#duty-toggle")
            await expect(page.locator("#duty-toggle")).to_have_text("Go off duty")
            await expect(page.locator("#duty-status")).to_contain_text("You are on duty since")
            await expect(page.locator("#ring-link")).to_contain_text("Connected")
            watch = page.locator("#watch [data-group=g-night]")
            await expect(watch).to_contain_text("Nils Night")

            await nora.duty(True)
            async with nora.ring_socket() as nora_rings:
                screen_of(agent).press(ButtonId.CALL_STAFF)
                await wait_for(lambda: isinstance(screen_of(agent).state, Calling), 5)
                ring = await nora_rings.next_ring(10)
                banner = page.locator(f".ring-banner[data-request='{ring['request_id']}']")
                await expect(banner).to_be_visible()
                await expect(banner).to_contain_text(f"Citizen {CITIZEN} is calling (unit {TV})")
                # Full width at phone size, and the tab's title blinks.
                box = await banner.bounding_box()
                assert box is not None and box["width"] >= 380
                await page.wait_for_function("() => document.title.startsWith('☎')")
                assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")

                await banner.get_by_role("button", name="Answer").click()
                stop = await nora_rings.next(10)
                assert stop["type"] == "stop_ringing"
                assert stop["request_id"] == ring["request_id"]
                assert stop["reason"] == "answered by Nils Night"
                await expect(banner).to_have_count(0)

                # The browser plays the unit's picture: the synthetic pattern, and it moves on.
                await expect(page.locator("#duty-call")).to_be_visible()
                await video_plays(page, "#duty-remote")
                await pattern_moves_on(page, "#duty-remote")
                # The unit receives the browser's camera (Chromium's fake device).
                await wait_for(lambda: isinstance(screen_of(agent).state, InCall), 10)
                await wait_for(lambda: received_frames(agent) > 5, 10, what="browser frames")
                seen = received_frames(agent)
                await wait_for(lambda: received_frames(agent) > seen + 5, 10, what="more frames")
                assert agent.tv is not None and agent.tv.call_media.picture is not None
                await expect(page.locator("#duty-call-title")).to_have_text(
                    f"Citizen {CITIZEN} (unit {TV})"
                )
                await expect(page.locator("#duty-call-state")).to_have_text("Connected")

                await page.click("#duty-hangup")
                await wait_for(lambda: isinstance(screen_of(agent).state, Idle), 10)
                await expect(page.locator("#duty-call")).to_be_hidden()
                await expect(page.locator("#ring-note")).to_contain_text("ended")
                assert not await page.evaluate("document.title.startsWith('☎')")

            entries = await asyncio.to_thread(central.audit.entries, kind="citizen_call_accepted")
            assert [e.actor for e in entries] == [NIGHT]
            await page.click("#duty-toggle")
            await expect(page.locator("#duty-status")).to_have_text("You are off duty.")
    finally:
        await nora.__aexit__(None, None, None)
    assert page_errors(page) == []


async def test_a_cancelled_call_stops_ringing_and_an_escalation_is_listed(
    broker: Broker, central: CentralService, browser: Any
) -> None:
    await asyncio.to_thread(central.directory.load, tv_directory())
    page = await new_page(browser, "desktop")
    async with running_tv(broker) as agent:
        await push_tv_config(central, agent)
        await console_log_in(page, central.url, NIGHT)
        await page.click("#nav a[data-page=on-duty]")
        await expect(page.locator("#escalations")).to_have_text("None.")
        await page.click("#duty-toggle")
        await expect(page.locator("#ring-link")).to_contain_text("Connected")

        # The ring connection drops (central closes it): the page connects again by itself.
        desk = central.citizen_calls
        (first,) = desk.sockets.of(NIGHT)
        await first.close()
        await wait_for(
            lambda: any(ws is not first for ws in desk.sockets.of(NIGHT)),
            15,
            what="the page's new ring socket",
        )
        await expect(page.locator("#ring-link")).to_contain_text("Connected")

        # The citizen changes their mind while it rings: the banner goes, with the reason.
        screen_of(agent).press(ButtonId.CALL_STAFF)
        banner = page.locator(".ring-banner")
        await expect(banner).to_be_visible()
        screen_of(agent).press(ButtonId.HANG_UP)
        await expect(banner).to_have_count(0)
        await expect(page.locator("#ring-note")).to_contain_text("cancelled by the citizen")
        await page.wait_for_function("() => !document.title.startsWith('☎')")
        await wait_for(lambda: isinstance(screen_of(agent).state, Idle), 10)

        # Off duty, nobody else on: the next press is escalated and listed on the page.
        await page.click("#duty-toggle")
        await expect(page.locator("#duty-status")).to_have_text("You are off duty.")
        await expect(page.locator("#ring-link")).to_have_text("")
        screen_of(agent).press(ButtonId.CALL_STAFF)
        await wait_for(lambda: isinstance(screen_of(agent).state, Trouble), 10)
        await page.reload()
        await expect(page.locator("#escalations li").first).to_contain_text(
            f"citizen {CITIZEN} (unit {TV}): nobody from the night staff is on duty"
        )
        await expect(page.locator(".ring-banner")).to_have_count(0)
    assert page_errors(page) == []
