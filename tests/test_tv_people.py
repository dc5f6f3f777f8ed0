"""The TV's People screen and its calls to the citizen's contacts, on the real stack (broker,
central, a simulated TV unit) without a browser: the screen lists only the contacts the TV may
call, with their pictures, from central's signed list, and goes back home by itself; a press
rings the contact's page over its ring socket; a contact who declines, is not there, or may not
be called is "not available right now" on the TV, with every step in the audit trail. (The
contact's page answering in Chromium, pictures both ways: tests/test_tv_calls_contact.py.)"""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.circle import StaffApi
from tests.tvunit import CITIZEN, DAY, TV, push_tv_config, running_tv, screen_of, tv_directory
from vaka.agent.app import Agent
from vaka.agent.tv.people_list import Person
from vaka.agent.ui import ButtonId, Calling, Idle, PeopleShown, Trouble
from vaka.central.calls.requests import CallRequest
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for

pytestmark = pytest.mark.timeout(120)

PASSWORD = "a long family password"


async def contact_with_password(staff: StaffApi, url: str, **rules: Any) -> tuple[str, Any]:
    """Staff add and invite a contact, who sets a password: (contact id, their HTTP session)."""
    contact = str((await staff.add_contact(CITIZEN, **rules))["id"])
    code = str((await staff.invite(contact))["code"])
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    for path, body in (
        ("/api/contact/redeem", {"code": code}),
        ("/api/contact/password", {"password": PASSWORD}),
    ):
        async with http.post(url + path, json=body, headers={"Origin": url}) as resp:
            assert resp.status == 200, await resp.text()
    return contact, http


@pytest.fixture
async def tv(broker: Broker, central: CentralService) -> AsyncIterator[Agent]:
    """The citizen's TV, offering People, going back home after 2 s without a press; a
    refusal's notice shows 2 s."""
    await asyncio.to_thread(central.directory.load, tv_directory())
    async with running_tv(broker, people=True, people_idle_s=2, notice_s=2) as agent:
        await push_tv_config(central, agent)
        yield agent


def people_of(agent: Agent) -> PeopleShown | None:
    state = screen_of(agent).state
    return state if isinstance(state, PeopleShown) else None


async def test_the_people_screen_lists_whom_the_tv_may_call_and_goes_home_by_itself(
    central: CentralService, tv: Agent
) -> None:
    staff = await StaffApi.log_in(central.url, DAY)
    await staff.add_contact(CITIZEN, display_name="Anna Andersson")
    await staff.add_contact(CITIZEN, display_name="Bo Berg", may_be_called=False)
    gone = str((await staff.add_contact(CITIZEN, display_name="Cilla Carlsson"))["id"])
    status, _ = await staff.request("DELETE", f"/api/contacts/{gone}")
    assert status == 200

    idle = screen_of(tv).state
    assert isinstance(idle, Idle) and idle.people
    screen_of(tv).press(ButtonId.PEOPLE)
    await wait_for(lambda: (p := people_of(tv)) is not None and p.people is not None, 10)
    shown = people_of(tv)
    assert shown is not None and shown.people is not None
    assert [name for name, _ in shown.people] == ["Anna Andersson"]
    picture = shown.people[0][1]
    assert picture is not None and picture.shape == (128, 128, 3)
    # The stored picture is orange (RGB 200, 120, 40): BGR on the TV.
    assert abs(int(picture[64, 64, 2]) - 200) < 30 and abs(int(picture[64, 64, 0]) - 40) < 30
    # Nobody presses anything: home by itself.
    await wait_for(lambda: isinstance(screen_of(tv).state, Idle), 10, what="home again")
    # Back, at once.
    screen_of(tv).press(ButtonId.PEOPLE)
    await wait_for(lambda: people_of(tv) is not None, 10)
    screen_of(tv).press(ButtonId.PEOPLE_BACK)
    await wait_for(lambda: isinstance(screen_of(tv).state, Idle), 1, what="home at once")


async def ring_socket(http: Any, url: str) -> Any:
    ws = await http.ws_connect(url + "/api/contact/ring", headers={"Origin": url})
    assert (await ws.receive_json(timeout=5))["type"] == "ready"
    return ws


async def test_a_press_rings_the_contacts_page_and_a_refusal_is_said_on_the_tv(
    central: CentralService, tv: Agent
) -> None:
    staff = await StaffApi.log_in(central.url, DAY)
    anna, http = await contact_with_password(staff, central.url, display_name="Anna")
    try:
        ws = await ring_socket(http, central.url)
        screen_of(tv).press(ButtonId.PEOPLE)
        await wait_for(lambda: (p := people_of(tv)) is not None and bool(p.people), 10)
        screen_of(tv).press(ButtonId.PERSON_1)
        ring = await ws.receive_json(timeout=10)
        assert ring["type"] == "ring" and ring["unit"] == TV
        state = screen_of(tv).state
        assert isinstance(state, Calling) and state.callee == "Anna"
        # Anna declines on her page: the TV says she is not available.
        await ws.send_str(json.dumps({"type": "decline", "request_id": ring["request_id"]}))
        stop = await ws.receive_json(timeout=10)
        assert stop["type"] == "stop_ringing" and stop["reason_code"] == "contact_declined"
        await wait_for(lambda: isinstance(screen_of(tv).state, Trouble), 10, what="the notice")
        notice = screen_of(tv).state
        assert isinstance(notice, Trouble)
        assert (notice.reason_key, notice.name) == ("unavailable", "Anna")
        await ws.close()

        # Her page is closed now: the TV hears at once that she is not there.
        await wait_for(lambda: isinstance(screen_of(tv).state, Idle), 15, what="home again")
        assert tv.tv is not None and tv.tv.people is not None
        await tv.tv.people.call(Person(anna, "Anna", None))
        await wait_for(lambda: isinstance(screen_of(tv).state, Trouble), 10, what="absent")
    finally:
        await http.close()
    kinds = [
        e.kind
        for e in await asyncio.to_thread(central.audit.entries)
        if e.kind.startswith("contact_call_")
    ]
    assert kinds == [
        "contact_call_requested",
        "contact_call_rang",
        "contact_call_declined",
        "contact_call_requested",
        "contact_call_absent",
    ]


async def test_a_contact_who_may_not_be_called_is_refused_with_the_reason(
    central: CentralService, tv: Agent
) -> None:
    staff = await StaffApi.log_in(central.url, DAY)
    bo, http = await contact_with_password(
        staff, central.url, display_name="Bo", may_be_called=False
    )
    try:
        ws = await ring_socket(http, central.url)
        assert tv.tv is not None and tv.tv.people is not None
        # A unit that asks anyway (the list never offers Bo) is refused by central.
        await tv.tv.people.call(Person(bo, "Bo", None))
        await wait_for(lambda: isinstance(screen_of(tv).state, Trouble), 10, what="refused")
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive_json(timeout=1)  # Bo's page never rang
    finally:
        await http.close()
    refused = await asyncio.to_thread(central.audit.entries, kind="contact_call_refused")
    assert [(e.unit, e.detail["contact"]) for e in refused] == [(TV, bo)]
    assert "may not be called from the TV" in refused[0].detail["reason"]


async def test_a_call_to_a_contact_left_ringing_is_settled_not_escalated(
    central: CentralService, tv: Agent
) -> None:
    """A request whose instance stopped: the sweep settles it as unanswered; the staff
    button's sweep (which escalates to the night staff) leaves it alone."""
    staff = await StaffApi.log_in(central.url, DAY)
    anna = str((await staff.add_contact(CITIZEN, display_name="Anna"))["id"])
    old = time.time() - 600
    left = CallRequest(
        f"{TV}.0123456789ab", TV, CITIZEN, frozenset(), old, "ringing", None, None, None, anna
    )
    book = central.tv_calls.book
    assert await asyncio.to_thread(book.create, left, "gone-instance")
    assert await central.citizen_calls.sweep() == 0
    assert await central.tv_calls.sweep() == 1
    row = await asyncio.to_thread(book.get, left.request_id)
    assert row is not None and row.state == "unanswered"
    settled = await asyncio.to_thread(central.audit.entries, kind="contact_call_unanswered")
    assert [(e.call_id, e.detail["contact"]) for e in settled] == [(left.request_id, anna)]
    assert await asyncio.to_thread(central.audit.entries, kind="citizen_call_escalated") == []
