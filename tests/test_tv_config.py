"""Technicians set a TV's auto-answer rules, language, night hours and day number through
central; bad values are refused with the reason."""

import argparse
import asyncio
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.test_enrolment import technician
from tests.tvunit import TV, running_tv, screen_of, shown, tv_directory
from vaka.agent.tv.staff_hours import StaffHours
from vaka.agent.ui import ButtonId, Calling, Catalog, Idle, StaffReach, Trouble
from vaka.agent.ui.layout import describe
from vaka.agent.ui.spec import YELLOW
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.provisioning.technician import auto_answer_rule, ice_servers_file, night_hours

RULE = {"purpose": "video_visit", "caller_groups": ["g-day"], "countdown_s": 7}


async def test_auto_answer_rules_reach_the_tv(broker: Broker, central: CentralService) -> None:
    http = await technician(central)
    await asyncio.to_thread(central.directory.load, tv_directory())
    async with http, running_tv(broker) as agent:
        path = f"/api/units/{TV}/config"
        # a relay without a credential (each call's comes in its ticket)
        turn = {"urls": ["turn:turn.example.org:3478"], "username": "u"}
        body = {"profile": "tv", "language": "da", "auto_answer": [RULE], "ice_servers": [turn]}
        async with http.post(path, json=body) as resp:
            assert resp.status == 200, await resp.text()
        # The store activates the bundle, then its listeners put the values in (the language).
        await wait_for(
            lambda: (
                agent.config_store.active is not None
                and agent.tv is not None
                and agent.tv.catalog.language == "da"
            ),
            10,
        )
        bundle = agent.config_store.active
        assert bundle is not None and bundle.language == "da"
        assert [r.model_dump() for r in bundle.auto_answer] == [RULE]
        assert agent.tv is not None and agent.tv.catalog.language == "da"
        assert bundle.ice_servers[0].urls == turn["urls"]

        bad = [
            ({"profile": "nightcam", "auto_answer": [RULE]}, "apply to tv units only"),
            (
                {"profile": "tv", "auto_answer": [{**RULE, "caller_groups": ["g-nowhere"]}]},
                "unknown group g-nowhere",
            ),
            ({"profile": "tv", "auto_answer": [{**RULE, "countdown_s": 999}]}, "countdown_s"),
            ({"profile": "tv", "ice_servers": [{"urls": ["http://x.example"]}]}, "stun:"),
            (
                {"profile": "tv", "ice_servers": [{**turn, "credential": "s3cret"}]},
                "a TURN server in the unit's configuration must not carry a credential: "
                "central hands out per-call credentials",
            ),
        ]
        for body, reason in bad:
            async with http.post(path, json=body) as resp:
                assert resp.status == 400 and reason in await resp.text()


def test_the_cli_reads_ice_servers_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "ice.json"
    path.write_text('[{"urls": ["stun:stun.example.org"]}]')
    assert ice_servers_file(str(path)) == [{"urls": ["stun:stun.example.org"]}]
    path.write_text('{"urls": []}')
    with pytest.raises(argparse.ArgumentTypeError, match="JSON list"):
        ice_servers_file(str(path))
    with pytest.raises(argparse.ArgumentTypeError, match="cannot read"):
        ice_servers_file(str(tmp_path / "missing.json"))


def test_the_cli_reads_a_rule() -> None:
    assert auto_answer_rule("video_visit:g-a, g-b:10") == {
        "purpose": "video_visit",
        "caller_groups": ["g-a", "g-b"],
        "countdown_s": 10,
    }
    with pytest.raises(argparse.ArgumentTypeError, match="expected PURPOSE"):
        auto_answer_rule("video_visit:10")


def _at(hour: int, minute: int) -> float:
    """A frozen instant: ``hour:minute`` in Stockholm on a winter day (UTC+1)."""
    return dt.datetime(2025, 1, 15, hour, minute, tzinfo=ZoneInfo("Europe/Stockholm")).timestamp()


async def test_night_hours_and_day_number_reach_the_tv_screen(
    broker: Broker, central: CentralService
) -> None:
    http = await technician(central)
    await asyncio.to_thread(central.directory.load, tv_directory())
    async with http, running_tv(broker) as agent:
        tv = agent.tv
        assert tv is not None
        path = f"/api/units/{TV}/config"
        body = {
            "profile": "tv",
            "night_from": "22:00",
            "night_until": "06:30",
            "day_phone": "08-123 45 67",
        }
        async with http.post(path, json=body) as resp:
            assert resp.status == 200, await resp.text()
        await wait_for(lambda: agent.config_store.version == 1, 10)
        bundle = agent.config_store.active
        assert bundle is not None
        # central's time zone travels with the hours
        assert (bundle.timezone, bundle.night_from, bundle.night_until) == (
            "Europe/Stockholm",
            "22:00",
            "06:30",
        )
        catalog = Catalog("en")

        async def screen_at(hour: int, minute: int) -> Idle:
            tv.clock = lambda: _at(hour, minute)  # the frozen clock
            tv.refresh()
            state = screen_of(agent).state
            assert isinstance(state, Idle)
            return state

        def words(state: Idle) -> list[str]:
            layout = describe(state, catalog)
            return [catalog.text(b.label_key) for b in layout.buttons] + [
                t.text for t in layout.texts[1:] if t.background != YELLOW
            ]

        day = await screen_at(21, 59)
        assert day.reach is StaffReach.DAY and day.now is not None and day.now.hour == 21
        assert "Call the staff" in words(day) and "Home care: 08-123 45 67" in words(day)
        night = await screen_at(22, 0)
        assert night.reach is StaffReach.NIGHT
        assert "Call the night staff" in words(night)
        assert not any("08-123" in w for w in words(night))
        assert (await screen_at(6, 29)).reach is StaffReach.NIGHT
        assert (await screen_at(6, 30)).reach is StaffReach.DAY

        # By day the button rings whoever is on duty; nobody is: the day's words for it.
        await screen_at(12, 0)
        screen_of(agent).press(ButtonId.CALL_STAFF)
        await wait_for(lambda: isinstance(screen_of(agent).state, Trouble), 10)
        trouble = screen_of(agent).state
        assert isinstance(trouble, Trouble) and trouble.reason_key == "no_staff"
        texts = [t.text for t in describe(trouble, catalog).texts]
        assert "Nobody from the staff can answer right now." in texts
        assert any(isinstance(s, Calling) and not s.night for s in shown(agent))

        # Staff that take no calls through the unit by day: the number instead of the button.
        no_day_calls = {"profile": "tv", "day_calls": False, "day_phone": "08-123 45 67"}
        async with http.post(path, json=no_day_calls) as resp:
            assert resp.status == 200, await resp.text()
        await wait_for(lambda: agent.config_store.version == 2, 10)
        tv.troubles.clear_notice()
        phone = await screen_at(12, 0)
        assert phone.reach is StaffReach.PHONE
        # no button to the staff (the privacy mode's and the viewing log's stay)
        assert ButtonId.CALL_STAFF not in {b.id for b in describe(phone, catalog).buttons}
        assert "Call home care: 08-123 45 67" in [t.text for t in describe(phone, catalog).texts]
        with pytest.raises(ValueError, match="no 'call_staff' button"):
            screen_of(agent).press(ButtonId.CALL_STAFF)
        assert (await screen_at(21, 0)).reach is StaffReach.NIGHT  # the default night hours

        bad = [
            ({"profile": "tv", "night_from": "22:00", "night_until": "22:00"}, "need a start"),
            ({"profile": "tv", "night_from": "25:00"}, "night_from"),
            ({"profile": "tv", "timezone": "Mars/Olympus"}, "not a known time zone"),
            ({"profile": "tv", "day_phone": "ring me"}, "day_phone"),
        ]
        for body, reason in bad:
            async with http.post(path, json=body) as resp:
                assert resp.status == 400 and reason in await resp.text(), body
        assert agent.config_store.version == 2


def test_the_cli_reads_night_hours() -> None:
    assert night_hours("21:30-06:00") == ("21:30", "06:00")
    with pytest.raises(argparse.ArgumentTypeError, match="expected HH:MM-HH:MM"):
        night_hours("21:30")


def test_staff_hours_without_a_bundle_are_21_to_7_local_time() -> None:
    hours = StaffHours.of(None)
    assert (hours.night_from, hours.night_until, hours.zone) == (
        dt.time(21),
        dt.time(7),
        None,
    )
    evening = dt.datetime(2025, 1, 15, 20, 59).timestamp()  # the machine's local time
    assert hours.reach(evening) is StaffReach.DAY
    assert hours.reach(evening + 60) is StaffReach.NIGHT
