"""The Video visits page in real Chromium: a day nurse's citizens' TV units, a call that rings on
the TV and is answered by the unit's auto-answer rule (two-way video checked at both ends), a
citizen who declines (central's reason shown), and ``GET /api/visits`` for other roles."""

import asyncio
from typing import Any

import aiohttp
import pytest
from playwright.async_api import expect

from tests.conftest import TOTP_SECRET, staff_token
from tests.nightcheck import PASSWORD
from tests.test_console_duty import (
    console_log_in,
    pattern_moves_on,
    received_frames,
    video_plays,
)
from tests.tvunit import (
    CITIZEN,
    DAY,
    NIGHT,
    OUTSIDER,
    TV,
    push_tv_config,
    running_tv,
    screen_of,
    tv_directory,
)
from vaka.agent.ui import ButtonId, Idle, InCall, Incoming
from vaka.central.directory.spec import DirectorySpec
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for

pytest.register_assert_rewrite("tests.browser")
from tests.browser import new_page, page_errors  # noqa: E402

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.timeout(120)

RULES = [{"purpose": "video_visit", "caller_groups": ["g-day"], "countdown_s": 2}]


async def test_a_video_visit_rings_on_the_tv_and_goes_two_way(
    broker: Broker, central: CentralService, browser: Any
) -> None:
    await asyncio.to_thread(central.directory.load, tv_directory())
    page = await new_page(browser, "phone")
    async with running_tv(broker) as agent:
        # A unit whose clock is not synchronised is degraded; this machine's clock may not be.
        agent.sampler._clock_synced = lambda: True
        await push_tv_config(central, agent, auto_answer=RULES)
        await console_log_in(page, central.url, DAY)
        await page.click("#nav a[data-page=video-visits]")
        entry = page.locator(f"#visits li[data-unit={TV}]")
        await expect(entry).to_contain_text(f"Citizen {CITIZEN}")
        await expect(entry.locator(".unit-state")).to_have_text("online", timeout=15_000)
        await expect(page.locator("#visits-summary")).to_contain_text("1 TV unit you may visit")

        await entry.get_by_role("button", name="Call").click()
        # The TV rings (its auto-answer countdown runs) before it answers.
        await expect(page.locator("#visit-call-state")).to_have_text("Ringing on the TV…")
        await wait_for(lambda: isinstance(screen_of(agent).state, InCall), 15, what="answered")
        await video_plays(page, "#visit-remote")
        await pattern_moves_on(page, "#visit-remote")
        await wait_for(lambda: received_frames(agent) > 5, 10, what="browser frames at the TV")
        seen = received_frames(agent)
        await wait_for(lambda: received_frames(agent) > seen + 5, 10, what="more frames")
        await expect(entry.get_by_role("button", name="Call")).to_be_disabled()
        await expect(page.locator("#visit-call-title")).to_have_text(
            f"Video visit: citizen {CITIZEN} (TV unit {TV})"
        )
        await expect(page.locator("#visit-call-state")).to_have_text("Connected")

        await page.click("#visit-hangup")
        await wait_for(lambda: isinstance(screen_of(agent).state, Idle), 10)
        await expect(page.locator("#visit-call")).to_be_hidden()
        await expect(page.locator("#visit-note")).to_contain_text(
            f"The visit to citizen {CITIZEN} ended"
        )
        await expect(entry.get_by_role("button", name="Call")).to_be_enabled()
    entries = await asyncio.to_thread(central.audit.entries, kind="ticket_issued")
    assert [(e.actor, e.unit, e.purpose) for e in entries] == [(DAY, TV, "video_visit")]
    assert page_errors(page) == []


async def test_a_citizen_who_declines_is_shown_with_centrals_reason(
    broker: Broker, central: CentralService, browser: Any
) -> None:
    await asyncio.to_thread(central.directory.load, tv_directory())
    page = await new_page(browser, "desktop")
    async with running_tv(broker) as agent:
        await push_tv_config(central, agent, auto_answer=RULES)  # g-other is not in the rules
        await console_log_in(page, central.url, OUTSIDER)
        await page.click("#nav a[data-page=video-visits]")
        await page.locator(f"#visits li[data-unit={TV}]").get_by_role("button", name="Call").click()
        await expect(page.locator("#visit-call-state")).to_have_text("Ringing on the TV…")
        await wait_for(lambda: isinstance(screen_of(agent).state, Incoming), 10)
        screen_of(agent).press(ButtonId.DECLINE)
        await expect(page.locator("#visit-error")).to_have_text(
            "The unit refused: declined by the citizen."
        )
        await expect(page.locator("#visit-call")).to_be_hidden()
        await wait_for(lambda: isinstance(screen_of(agent).state, Idle), 10)
    assert page_errors(page) == []


async def test_the_visit_list_is_per_group_and_role(central: CentralService) -> None:
    spec = tv_directory().model_dump()
    spec["staff"].append(
        {
            "id": "s-support",
            "name": "Sam Support",
            "role": "support",
            "password": PASSWORD,
            "totp_secret": TOTP_SECRET,
        }
    )
    spec["citizen"].append({"id": "c-4004", "units": ["u-cam"]})
    spec["permission"].append({"group": "g-day", "citizen": "c-4004", "purposes": ["video_visit"]})
    await asyncio.to_thread(central.directory.load, DirectorySpec.model_validate(spec))
    # A nightcam is no place for a video visit, even where the permission exists.
    await asyncio.to_thread(central.directory.assign_unit, "u-cam", "c-4004", "g-day", "nightcam")

    async def visits(staff_id: str, query: str = "") -> tuple[int, Any]:
        token = await staff_token(central.url, staff_id, PASSWORD)
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{central.url}/api/visits{query}", headers={"Authorization": f"Bearer {token}"}
            ) as resp,
        ):
            return resp.status, await resp.json()

    status, body = await visits(DAY)
    assert status == 200 and body["count"] == 1
    (entry,) = body["visits"]
    assert entry["unit"] == TV and entry["citizen"] == CITIZEN and entry["groups"] == ["g-day"]
    # Never connected and no profile in the directory: listed, offline, profile unknown.
    assert entry["profile"] is None and entry["status"] == "offline" and not entry["online"]
    assert entry["reasons"] == ["never connected to central"]
    status, body = await visits(NIGHT)  # night patrol: citizen calls only, no visits
    assert status == 200 and body == {"visits": [], "count": 0}
    status, body = await visits("s-support")
    assert status == 403 and body["error"] == "the role support may not make video visits"
    status, body = await visits(DAY, "?all=1")
    assert status == 400 and body["error"] == "unknown query parameter(s): all"
