"""The TV calls a relative: the citizen presses "People" and the relative's picture on the
simulated TV; the relative's contact page, open in real Chromium at phone size, rings ("Grandma
Greta is calling you"), the relative answers, and both sides receive each other's pictures and
sound over the same WebRTC path as every call; the TV's hang-up ends it on the page. When the
relative declines, the TV says "Anna Andersson is not available right now". Who called whom,
when and for how long is in the audit trail (never the content)."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.test_console_duty import pattern_moves_on, received_frames, video_plays
from tests.test_contact_page import hears_sound, invited, local_url, shot, shot_tv
from tests.tvunit import TV, push_tv_config, running_tv, screen_of
from vaka.agent.media.audio import AudioSink
from vaka.agent.ui import ButtonId, Calling, Idle, InCall, PeopleShown, Trouble
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for

pytest.register_assert_rewrite("tests.browser")
from tests.browser import new_page, page_errors  # noqa: E402

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.timeout(150)


async def logged_in(page: Page, central: CentralService, code: str) -> None:
    """The relative redeems the invitation and sets a password; the page is at home."""
    await page.goto(f"{local_url(central)}/contact#code={code}")
    await page.click("#code-form button[type=submit]")
    await page.click("#enrol summary")
    await page.fill("#new-password", "a long family password")
    await page.click("#password-form button[type=submit]")
    await expect(page.locator("#home")).to_be_visible()
    await expect(page.locator("#call")).to_be_enabled()


async def press_anna(agent: Any) -> None:
    """People, then the first (and only) person."""
    screen_of(agent).press(ButtonId.PEOPLE)
    await wait_for(
        lambda: isinstance(s := screen_of(agent).state, PeopleShown) and bool(s.people), 10
    )
    screen_of(agent).press(ButtonId.PERSON_1)


async def test_the_tv_calls_a_relative_who_answers_on_her_phone_two_way(
    broker: Broker, central: CentralService, browser: Any, tmp_path: Path
) -> None:
    _staff, contact, code = await invited(central)
    page = await new_page(browser, "phone")
    async with running_tv(broker, people=True, notice_s=5) as agent:
        await push_tv_config(central, agent)
        await logged_in(page, central, code)
        await wait_for(lambda: central.tv_calls.listening(contact), 10, what="the ring socket")

        screen_of(agent).press(ButtonId.PEOPLE)
        await wait_for(
            lambda: isinstance(s := screen_of(agent).state, PeopleShown) and bool(s.people), 10
        )
        await shot_tv(agent, tmp_path, "tv-people")
        screen_of(agent).press(ButtonId.PERSON_1)
        await expect(page.locator("#ring-title")).to_have_text("Grandma Greta is calling you")
        state = screen_of(agent).state
        assert isinstance(state, Calling) and state.callee == "Anna Andersson"
        await shot_tv(agent, tmp_path, "tv-calling-contact")
        await shot(page, tmp_path, "contact-ringing-phone")
        await page.click("#answer")
        await wait_for(lambda: isinstance(screen_of(agent).state, InCall), 15, what="taken")
        # Pictures both ways: the TV's moving pattern on the phone, the phone's camera at the TV.
        await video_plays(page, "#remote")
        await pattern_moves_on(page, "#remote")
        await wait_for(lambda: received_frames(agent) > 5, 10, what="the phone's frames at the TV")
        # Sound both ways.
        assert await hears_sound(page, "#remote")
        assert agent.tv is not None
        speaker = agent.tv.call_media.speaker
        assert isinstance(speaker, AudioSink)
        await wait_for(lambda: speaker.frames > 50, 10, what="the phone's sound at the TV")
        await expect(page.locator("#hangup")).to_have_text("Hang up")
        call_id = await page.locator("#in-call").get_attribute("data-call-id")
        screen_of(agent).press(ButtonId.HANG_UP)
        await expect(page.locator("#refusal")).to_have_text("The call has ended.")
        await wait_for(lambda: isinstance(screen_of(agent).state, Idle), 10)

        # The next time she declines: the TV says so in its words.
        await press_anna(agent)
        await expect(page.locator("#ring-title")).to_be_visible()
        await page.click("#decline")
        await wait_for(lambda: isinstance(screen_of(agent).state, Trouble), 10, what="refused")
        notice = screen_of(agent).state
        assert isinstance(notice, Trouble)
        assert (notice.reason_key, notice.name) == ("unavailable", "Anna Andersson")
        await shot_tv(agent, tmp_path, "tv-contact-unavailable")
        await expect(page.locator("#home")).to_be_visible()
    assert page_errors(page) == []

    # The record: the TV's request, the ring, who answered, the ticket, how long it lasted.
    entries = await asyncio.to_thread(central.audit.entries)
    kinds = [e.kind for e in entries if e.kind.startswith("contact_call_")]
    assert kinds == [
        "contact_call_requested",
        "contact_call_rang",
        "contact_call_accepted",
        "contact_call_requested",
        "contact_call_rang",
        "contact_call_declined",
    ]
    accepted = next(e for e in entries if e.kind == "contact_call_accepted")
    assert (accepted.actor, accepted.unit) == (contact, TV)
    assert call_id
    of_call = await asyncio.to_thread(central.audit.entries_of_call, call_id)
    issued = [e for e in of_call if e.kind == "ticket_issued"]
    assert [(e.actor, e.purpose, e.detail.get("request")) for e in issued] == [
        (contact, "contact_call", accepted.call_id)
    ]
    ended = [e for e in of_call if e.kind == "call_ended"]
    assert ended and ended[0].detail.get("duration_s", 0) > 0, [e.kind for e in of_call]
