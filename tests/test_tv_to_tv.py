"""Citizen to citizen: two simulated TV units whose citizens are each other's contacts call each
other on the real stack (Mosquitto, central, two aiortc agents). Greta presses Karl on her
People screen; Karl's TV rings with her name, he answers, and each TV receives the other's
pictures and sound; her hang-up ends his side too. Central writes the call's one entry (who,
when, how long). A relation present on one side only, and a citizen whose only unit is a night
camera, are refused with their reasons; a contact of kind citizen has no log-in."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from playwright.async_api import expect

from tests.circle import ANY_HOUR, StaffApi, picture
from tests.conftest import TOTP_SECRET
from tests.nightcheck import PASSWORD, agent_config
from tests.test_console_duty import console_log_in, received_frames
from vaka.agent.app import Agent
from vaka.agent.media.audio import AudioSink
from vaka.agent.ui import ButtonId, Calling, Idle, InCall, Incoming, PeopleShown, Trouble
from vaka.agent.ui.states import PERSON_BUTTONS
from vaka.central.directory.spec import DirectorySpec
from vaka.central.service import CentralService
from vaka.central.settings.privacy import PrivacySettings
from vaka.devstack.broker import Broker
from vaka.devstack.central import push_unit_config, running_central
from vaka.devstack.polling import wait_for
from vaka.devstack.stack import LocalStack
from vaka.devstack.units import running_agent

pytest.register_assert_rewrite("tests.browser")
from tests.browser import new_page, page_errors  # noqa: E402

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.timeout(180)

GRETA, GRETA_TV = "c-3003", "u-tv"
KARL, KARL_TV = "c-4004", "u-tv2"
BERTIL, BERTIL_CAM = "c-5005", "u-cam"
DAY = "s-day"


def homes() -> DirectorySpec:
    """Three citizens served by one day group: two with a TV, one with a night camera only."""
    return DirectorySpec.model_validate(
        {
            "group": [{"id": "g-day", "name": "Home care, day"}],
            "staff": [
                {
                    "id": DAY,
                    "name": "Dana Day",
                    "role": "day_staff",
                    "groups": ["g-day"],
                    "password": PASSWORD,
                    "totp_secret": TOTP_SECRET,
                }
            ],
            "citizen": [
                {"id": GRETA, "units": [GRETA_TV]},
                {"id": KARL, "units": [KARL_TV]},
                {"id": BERTIL, "units": []},
            ],
            "permission": [
                {"group": "g-day", "citizen": c, "purposes": ["video_visit"]}
                for c in (GRETA, KARL, BERTIL)
            ],
        }
    )


@pytest.fixture
async def central(stack: LocalStack) -> AsyncIterator[CentralService]:
    """Central as a care provider runs it: consent required."""
    config = stack.central_config(identity="central-1")
    config = config.model_copy(update={"privacy": PrivacySettings(require_consent=True)})
    async with running_central(config) as service:
        yield service


async def _load(central: CentralService, consent: tuple[str, ...]) -> None:
    directory = central.directory
    await asyncio.to_thread(directory.load, homes())
    await asyncio.to_thread(directory.assign_unit, BERTIL_CAM, BERTIL, "g-day", "nightcam")
    for citizen in consent:
        give = directory.consent.give
        await asyncio.to_thread(give, citizen, "citizen", "contact_call", time.time() - 1)


async def _citizen_contact(
    staff: StaffApi, citizen: str, other: str, name: str, known_as: str
) -> dict[str, Any]:
    return await staff.add_contact(
        citizen,
        display_name=name,
        citizen_name=known_as,
        relation="friend at the day centre",
        peer_citizen=other,
    )


@contextlib.asynccontextmanager
async def running_tv(broker: Broker, central: CentralService, unit: str) -> AsyncIterator[Agent]:
    """A simulated TV unit with the People button, online and configured."""
    config = agent_config(broker, unit, audio="synthetic")
    config["unit"]["profile"] = "tv"
    # A refusal's notice shows 2 s: the test sees it, then waits for it to end, several times.
    config["tv"] = {"screen": "headless", "language": "en", "people": True, "notice_s": 2}
    async with running_agent(config) as agent:
        await wait_for(lambda: agent.tv is not None and agent.tv.screen is not None, 10)
        await push_unit_config(central, unit, "tv", 1, language="en")
        await wait_for(lambda: agent.config_store.version == 1, 10)
        yield agent


def screen(agent: Agent) -> Any:
    assert agent.tv is not None and agent.tv.screen is not None
    return agent.tv.screen


def remote_picture(agent: Agent) -> Any:
    """The other side's latest picture on the TV's in-call screen."""
    state = screen(agent).state
    assert isinstance(state, InCall) and state.remote_frame is not None
    return state.remote_frame.copy()


async def both(one: Agent, other: Agent, state: type, what: str) -> None:
    """Wait until both TVs' screens show ``state``."""
    await wait_for(lambda: isinstance(screen(one).state, state), 15, what=f"{what} ({one})")
    await wait_for(lambda: isinstance(screen(other).state, state), 15, what=f"{what} ({other})")


async def sees_and_hears_the_other(tv: Agent) -> None:
    """The other unit's moving test pattern on this TV's screen and its sound at the speaker."""
    await wait_for(lambda: received_frames(tv) > 5, 15, what="the other's frames")
    first = remote_picture(tv)
    assert first.std() > 10  # a pattern, not a blank frame
    await wait_for(
        lambda: not np.array_equal(remote_picture(tv), first), 5, what="the picture moves"
    )
    assert tv.tv is not None
    speaker = tv.tv.call_media.speaker
    assert isinstance(speaker, AudioSink)
    await wait_for(lambda: speaker.frames > 50, 10, what="the other's sound")


def rings(agent: Agent) -> int:
    """How often the TV has rung so far."""
    return sum(isinstance(state, Incoming) for _, state in screen(agent).history)


async def press_person(agent: Agent, name: str) -> None:
    """People, then the person called ``name``."""
    screen(agent).press(ButtonId.PEOPLE)
    await wait_for(lambda: isinstance(s := screen(agent).state, PeopleShown) and bool(s.people), 10)
    people = screen(agent).state.people
    names = [n for n, _picture in people]
    screen(agent).press(PERSON_BUTTONS[names.index(name)])


async def test_a_citizen_contact_needs_consent_in_both_homes_and_has_no_log_in(
    central: CentralService,
) -> None:
    await _load(central, (GRETA,))
    staff = await StaffApi.log_in(central.url, DAY)
    body = {
        "display_name": "Karl",
        "citizen_name": "Greta",
        "relation": "friend",
        "peer_citizen": KARL,
    }
    path = f"/api/citizens/{GRETA}/contacts"
    status, answer = await staff.request("POST", path, body)
    assert status == 409 and answer["error"] == (
        f"no valid consent for calls from the citizen's contacts from citizen {KARL}"
    )
    status, answer = await staff.request("POST", path, {**body, "peer_citizen": GRETA})
    assert status == 400 and answer["error"] == f"citizen {GRETA} cannot be their own contact"
    status, answer = await staff.request("POST", path, {**body, "peer_citizen": "c-nobody"})
    assert status == 400 and answer["error"] == "unknown citizen c-nobody"

    give = central.directory.consent.give
    await asyncio.to_thread(give, KARL, "citizen", "contact_call", time.time() - 1)
    karl = await _citizen_contact(staff, GRETA, KARL, "Karl", "Greta")
    assert (karl["kind"], karl["peer_citizen"], karl["mutual"]) == ("citizen", KARL, False)
    assert karl["note_code"] == "citizen_one_sided"
    assert karl["note"] == (
        "Karl's circle does not name Greta: a call between two citizens needs the relation on "
        "both sides"
    )
    status, answer = await staff.request("POST", f"/api/contacts/{karl['id']}/invitations")
    assert status == 409 and answer["error"] == (
        f"contact {karl['id']} is another citizen's TV: it has no log-in"
    )
    await _citizen_contact(staff, KARL, GRETA, "Greta", "Karl")
    status, listed = await staff.request("GET", path)
    assert status == 200
    assert [(c["id"], c["mutual"]) for c in listed["contacts"]] == [(karl["id"], True)]


async def test_a_nurse_adds_another_citizens_tv_in_the_console_in_swedish(
    central: CentralService, browser: Any
) -> None:
    await _load(central, (GRETA, KARL))
    page = await new_page(browser, "phone", "sv")
    await console_log_in(page, central.url, DAY)
    await page.click("#nav a[data-page=circle]")
    await expect(page.locator("#circle-citizen")).to_have_value(GRETA)
    await page.fill("#circle-display_name", "Karl")
    await page.fill("#circle-relation", "vän på dagverksamheten")
    await page.fill("#circle-citizen_name", "Greta")
    await page.fill("#circle-from", "00:00")
    await page.fill("#circle-until", "24:00")
    await page.select_option("#circle-peer_citizen", KARL)
    await page.click("#circle-add-button")
    await expect(page.locator("#circle-note")).to_have_text(
        "Karls TV lades till. Den har ingen inloggning att lämna över."
    )
    card = page.locator("#circle-contacts li.card")
    await expect(card).to_have_count(1)
    await expect(card.locator(".hint").first).to_contain_text(f"TV:n hos brukare {KARL}")
    # One-sided until Karl's circle names Greta: the card says so in Swedish; no log-in.
    await expect(card.locator("p.error")).to_have_text(
        "Karls krets har inte med Greta: ett samtal mellan två brukare kräver relationen åt "
        "båda hållen"
    )
    await expect(card.get_by_role("button", name="Inbjudan")).to_have_count(0)

    await page.select_option("#circle-citizen", KARL)
    await expect(card).to_have_count(0)
    await page.fill("#circle-display_name", "Greta")
    await page.fill("#circle-relation", "vän")
    await page.fill("#circle-citizen_name", "Karl")
    await page.select_option("#circle-peer_citizen", GRETA)
    await page.click("#circle-add-button")
    await expect(card).to_have_count(1)
    await page.select_option("#circle-citizen", GRETA)
    await expect(card.locator("p.hint").nth(1)).to_have_text(
        "deras krets har med den här brukaren också: TV-apparaterna kan ringa varandra"
    )
    assert page_errors(page) == []


async def test_two_citizens_call_each_other_tv_to_tv_two_way(
    broker: Broker, central: CentralService
) -> None:
    await _load(central, (GRETA, KARL, BERTIL))
    staff = await StaffApi.log_in(central.url, DAY)
    karl = await _citizen_contact(staff, GRETA, KARL, "Karl", "Greta")
    await staff.add_contact(
        KARL,
        **{
            "display_name": "Greta",
            "citizen_name": "Karl",
            "relation": "friend",
            "peer_citizen": GRETA,
            "picture": picture(),
            "hours": ANY_HOUR,
        },
    )
    bertil = await _citizen_contact(staff, GRETA, BERTIL, "Bertil", "Greta")
    await _citizen_contact(staff, BERTIL, GRETA, "Greta", "Bertil")

    async with (
        running_tv(broker, central, GRETA_TV) as greta,
        running_tv(broker, central, KARL_TV) as karls,
    ):
        await press_person(greta, "Karl")
        await wait_for(lambda: isinstance(screen(karls).state, Incoming), 15, what="ringing")
        ringing = screen(karls).state
        assert isinstance(ringing, Incoming) and ringing.caller_name == "Greta"
        assert ringing.contact
        await wait_for(lambda: screen(karls).state.picture is not None, 5, what="her picture")
        calling = screen(greta).state
        assert isinstance(calling, Calling) and calling.callee == "Karl"

        screen(karls).press(ButtonId.ANSWER)
        await both(greta, karls, InCall, "in call")
        # Pictures and sound both ways, unit to unit.
        for tv in (greta, karls):
            await sees_and_hears_the_other(tv)
        await asyncio.sleep(0.5)  # a call of some length
        screen(greta).press(ButtonId.HANG_UP)
        await both(greta, karls, Idle, "ended")

        # Karl declines the next call: Greta's TV says he is not available.
        await press_person(greta, "Karl")
        await wait_for(lambda: isinstance(screen(karls).state, Incoming), 15, what="ringing")
        screen(karls).press(ButtonId.DECLINE)
        await wait_for(lambda: isinstance(screen(greta).state, Trouble), 15, what="declined")
        notice = screen(greta).state
        assert (notice.reason_key, notice.name) == ("unavailable", "Karl")
        await wait_for(lambda: isinstance(screen(greta).state, Idle), 15)

        # A calling TV that predates calls between citizens only answers offers: it refuses
        # central's ask for an offer, and its citizen hears that Karl is not available.
        assert greta.calls is not None
        outgoing, greta.calls.outgoing = greta.calls.outgoing, None
        rang = rings(karls)
        await press_person(greta, "Karl")
        await wait_for(lambda: isinstance(screen(greta).state, Trouble), 15, what="refused")
        assert rings(karls) == rang
        greta.calls.outgoing = outgoing
        await wait_for(lambda: isinstance(screen(greta).state, Idle), 15)

        # Karl's circle loses Greta mid-call: the call ends on both TVs at once.
        await press_person(greta, "Karl")
        await wait_for(lambda: isinstance(screen(karls).state, Incoming), 15, what="ringing")
        screen(karls).press(ButtonId.ANSWER)
        await both(greta, karls, InCall, "in call")
        listed = (await staff.request("GET", f"/api/citizens/{KARL}/contacts"))[1]["contacts"]
        status, removed = await staff.request("DELETE", f"/api/contacts/{listed[0]['id']}")
        assert status == 200 and removed["call_ended"], removed
        await both(greta, karls, Idle, "ended")

        # Now the relation is on Greta's side only: her call is refused, in her TV's words.
        rang = rings(karls)
        await press_person(greta, "Karl")
        await wait_for(lambda: isinstance(screen(greta).state, Trouble), 15, what="refused")
        notice = screen(greta).state
        assert (notice.reason_key, notice.name) == ("one_sided", "Karl")
        assert rings(karls) == rang
        await wait_for(lambda: isinstance(screen(greta).state, Idle), 15)

        # Bertil has only a night camera: never the callee.
        await press_person(greta, "Bertil")
        await wait_for(lambda: isinstance(screen(greta).state, Trouble), 15, what="refused")
        notice = screen(greta).state
        assert (notice.reason_key, notice.name) == ("unavailable", "Bertil")

    entries = await asyncio.to_thread(central.audit.entries)
    ended = [e for e in entries if e.kind == "tv_to_tv_call_ended"]
    # exactly one entry per call that was answered (the first and the one ended by the removal)
    assert len(ended) == 2 and len({e.call_id for e in ended}) == 2, [e.kind for e in entries]
    assert ended[1].detail["ended_by"] == "callee"
    call = ended[0]
    assert (call.unit, call.detail["callee_unit"]) == (GRETA_TV, KARL_TV)
    assert (call.detail["caller_citizen"], call.detail["callee_citizen"]) == (GRETA, KARL)
    assert call.detail["duration_s"] > 0.5 and call.detail["ended_by"] == "caller"
    # Each unit's own record of the call, under its own call id and ticket.
    sides = ((GRETA_TV, str(call.call_id)), (KARL_TV, str(call.detail["callee_call_id"])))
    for unit, call_id in sides:
        of_call = await asyncio.to_thread(central.audit.entries_of_call, call_id)
        kinds = [e.kind for e in of_call if e.unit == unit]
        assert "ticket_issued" in kinds and "call_started" in kinds and "call_ended" in kinds
    declined = [e for e in entries if e.kind == "contact_call_declined"]
    assert [e.detail.get("contact") for e in declined] == [karl["id"]]
    first_refusal = next(e for e in entries if e.kind == "contact_call_refused")
    assert first_refusal.detail.get("reason") == (
        "the calling TV could not make the call: unexpected 'request' message"
    )
    refused = [e for e in entries if e.kind == "contact_call_refused"][1:]
    assert [(e.detail.get("contact"), e.detail.get("reason")) for e in refused] == [
        (
            karl["id"],
            "Karl's circle does not name Greta: a call between two citizens needs the "
            "relation on both sides",
        ),
        (bertil["id"], "Bertil has no TV to call"),
    ]
