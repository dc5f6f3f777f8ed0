"""The citizen's privacy mode on the real stack (docs/privacy.md): the nightcam's button starts
"I have visitors"; central refuses night checks with the reason and raises a physical visit
(the default rule), the unit refuses a ticket itself, the mode is in its health, and it ends by
itself — audited start and end — after which the next night check goes through. Each morning
the TV shows the viewing log by itself, once."""

import asyncio
import datetime as dt
import time
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import TOTP_SECRET
from tests.nightcheck import PASSWORD, UNIT, RunningAgent, agent_config, load_directory, make_offer
from tests.test_call_refusals import claims, offer_directly
from tests.tvunit import cec_bus, running_tv, screen_of, shown, tv_directory
from vaka.agent.ui import Idle, ViewingLogShown
from vaka.central.alerts.privacy_visit import VISIT_REASON
from vaka.central.alerts.store import PRIVACY_STATUS
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.devstack.units import running_agent as in_process_agent
from vaka.provisioning.tickets import load_ticket_key, sign_ticket
from vaka.staff.client import StaffClient, StaffError

#: The mode's length in the test: long enough to dial into it, short enough to see it end.
DURATION_MIN = 0.15


async def _kinds(central: CentralService, kind: str) -> list[Any]:
    return await asyncio.to_thread(central.audit.entries, kind=kind)


async def test_the_nightcams_button_blocks_night_checks_until_the_mode_ends_by_itself(
    broker: Broker, central: CentralService
) -> None:
    await load_directory(central)
    config = {**agent_config(broker), "privacy": {"duration_min": DURATION_MIN}}
    async with in_process_agent(config) as agent, StaffClient(central.url) as staff:
        unit = RunningAgent(agent)
        await staff.login("s-nurse", PASSWORD, totp_secret=TOTP_SECRET)
        await wait_for(
            lambda: asyncio.to_thread(central.store.unit, UNIT), 10, what="unit registered"
        )
        button = agent.hardware.button
        assert button is not None
        button.pin.drive_low()  # the citizen presses the button ...
        button.pin.drive_high()  # ... and lets go
        await wait_for(lambda: agent.privacy.state is not None, 5, what="privacy mode on")

        async def central_knows() -> Any:
            return await asyncio.to_thread(central.privacy.active, UNIT, time.time())

        await wait_for(central_knows, 10, what="central knows the privacy mode")
        active = await central_knows()
        tz = ZoneInfo(central.config.calls.timezone)
        until = dt.datetime.fromtimestamp(active.until, tz).strftime("%H:%M")
        words = f"the citizen has visitors until {until}"

        # Central refuses the night check, with the reason.
        with pytest.raises(StaffError) as refused:
            await staff.dial(UNIT, "night_check")
        assert str(refused.value) == f"call refused: {words}"
        reasons = [e.detail["reason"] for e in await _kinds(central, "ticket_refused")]
        assert reasons == [words]

        # The unit refuses a ticket itself: the record does not rest on central alone.
        key = load_ticket_key(broker.pki.ticket_keys()[0])
        pc, sdp, fp = await make_offer()
        try:
            reply = await offer_directly(broker, unit, sign_ticket(claims(fp), key), sdp)
        finally:
            await pc.close()
        assert reply["kind"] == "error"
        running = agent.privacy.state
        assert running is not None
        local_until = time.strftime("%H:%M", time.localtime(running.until))
        assert reply["reason"] == f"privacy mode: the citizen has visitors until {local_until}"
        assert unit.shutter_states == ["closed"]

        # The care provider's rule (the default): a physical visit replaces the night check.
        alerts = await asyncio.to_thread(central.alerts.store.open_alerts_of, UNIT)
        visits = [a for a in alerts if a.status == PRIVACY_STATUS]
        assert len(visits) == 1 and visits[0].citizen == "c-1001"
        assert [str(r) for r in visits[0].reasons] == [words, VISIT_REASON]

        # The unit says so in its health too.
        agent.reporter.trigger()

        async def in_health() -> bool:
            record = await asyncio.to_thread(central.store.unit, UNIT)
            health = record.health if record is not None else None
            return bool(health and (health.get("privacy") or {}).get("mode") == "visitors")

        await wait_for(in_health, 10, what="the privacy mode in the unit's health")

        # It ends by itself, and the next night check goes through.
        async def ended() -> bool:
            return bool(await _kinds(central, "privacy_mode_ended"))

        await wait_for(ended, DURATION_MIN * 60 + 10, what="the privacy mode ended")
        assert agent.privacy.state is None
        assert await central_knows() is None
        call = await staff.dial(UNIT, "night_check")
        for _ in range(15):
            await call.next_frame(timeout=10)
        assert await call.hangup() == "you hung up"
    started = await _kinds(central, "privacy_mode_started")
    finished = await _kinds(central, "privacy_mode_ended")
    assert [(e.unit, e.detail["mode"]) for e in started] == [(UNIT, "visitors")]
    assert [(e.unit, e.detail["reason"]) for e in finished] == [(UNIT, "time is up")]
    assert started[0].detail["reason"] == words
    assert (await asyncio.to_thread(central.audit.verify)).ok


async def test_each_morning_the_tv_shows_the_viewing_log_by_itself_then_goes_back(
    broker: Broker, central: CentralService
) -> None:
    await asyncio.to_thread(central.directory.load, tv_directory())
    async with running_tv(broker, viewing_log_morning="07:00", viewing_log_show_s=1.5) as agent:
        tv = agent.tv
        assert tv is not None
        await wait_for(lambda: isinstance(screen_of(agent).state, Idle), 10)
        morning = dt.datetime.now().replace(hour=7, minute=0, second=5).timestamp()
        sent_before = len(cec_bus(agent).sent)
        tv.clock = lambda: morning  # the TV's clock says 07:00

        def log_shown() -> bool:
            return any(isinstance(s, ViewingLogShown) and s.entries == () for s in shown(agent))

        await wait_for(log_shown, 15, what="the morning's viewing log (nobody looked in)")
        assert ("image-view-on",) in cec_bus(agent).sent[sent_before:]  # the TV set was woken
        await wait_for(
            lambda: isinstance(screen_of(agent).state, Idle), 10, what="back to the idle screen"
        )
        await asyncio.sleep(2.5)  # once a day: the same morning does not show it again
        assert sum(isinstance(s, ViewingLogShown) and s.entries == () for s in shown(agent)) == 1
