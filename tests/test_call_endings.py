"""Whatever ends a call, the shutter closes: maximum duration, staff client gone or frozen; and a
lost broker link neither ends a call nor keeps its camera open."""

import asyncio
import signal

from tests.conftest import TOTP_SECRET
from tests.nightcheck import (
    PASSWORD,
    UNIT,
    audit_kinds,
    load_directory,
    running_agent,
    staff_dial_process,
)
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.central import central_config, running_central
from vaka.devstack.polling import wait_for
from vaka.staff.client import StaffClient


async def test_max_duration_ends_the_call_and_closes_the_shutter(broker: Broker, tmp_path) -> None:
    config = central_config(broker, tmp_path)
    config = config.model_copy(
        update={"calls": config.calls.model_copy(update={"night_check_max_s": 2})}
    )
    async with running_central(config) as central:
        await load_directory(central)
        async with running_agent(broker) as unit, StaffClient(central.url) as staff:
            await staff.login("s-nurse", PASSWORD, totp_secret=TOTP_SECRET)
            call = await staff.dial(UNIT, "night_check")
            await call.next_frame()
            await asyncio.wait_for(call.ended.wait(), 6)
            assert call.end_reason == "maximum duration reached"
            await wait_for(lambda: unit.shutter_states[-1] == "closed", 3, what="shutter closed")
            await call.close()
            # A scene that is not dark never switches the IR light on.
            ir = unit.agent.hardware.ir_light
            assert ir is not None and [s.value for _, s in ir.history] == ["off"]
        await wait_for(lambda: _kinds_include(central, "call_ended"), 5)


async def test_losing_the_broker_mid_call_neither_ends_the_call_nor_keeps_it_open(
    broker: Broker, central: CentralService
) -> None:
    """The camera does not depend on the broker either way: with the broker gone the call goes
    on while the viewer answers on the media path, and ends when the viewer leaves."""
    await load_directory(central)
    async with running_agent(broker) as unit, StaffClient(central.url) as staff:
        await staff.login("s-nurse", PASSWORD, totp_secret=TOTP_SECRET)
        call = await staff.dial(UNIT, "night_check")
        await call.next_frame()
        await wait_for(lambda: unit.shutter_states[-1] == "open", 3, what="shutter open")
        broker.stop()
        await wait_for(
            lambda: unit.agent.link.state.value != "online", 10, what="the unit saw the link go"
        )
        # Past the viewer's heartbeat deadline, with the broker away: still streaming.
        for _ in range(30):
            await call.next_frame()
        assert unit.shutter_states[-1] == "open"
        assert unit.agent.calls is not None and unit.agent.calls.session is not None
        await call.pc.close()  # the viewer leaves; no signalling can reach the unit
        took = await wait_for(
            lambda: unit.shutter_states[-1] == "closed", 5, what="shutter closed, viewer gone"
        )
        print(f"shutter closed {took:.2f} s after the viewer left, broker down")
        await call.close()
        broker.start()
        # The unit kept its call-ended and shutter events and delivers them after reconnecting.
        await wait_for(lambda: _kinds_include(central, "shutter_closed"), 15)
        assert "broker" not in (unit.agent.calls.last_result or "")


async def test_killing_the_staff_client_mid_call_closes_the_shutter(
    broker: Broker, central: CentralService
) -> None:
    await load_directory(central)
    async with running_agent(broker) as unit:
        with staff_dial_process(central) as proc:
            await wait_for(lambda: unit.shutter_states[-1] == "open", 20, what="call streaming")
            proc.send_signal(signal.SIGKILL)
            took = await wait_for(
                lambda: unit.shutter_states[-1] == "closed",
                10,
                what="shutter closed after the client died",
            )
            print(f"shutter closed {took:.2f} s after kill -9 of the staff client")


async def test_frozen_staff_client_is_noticed_by_the_heartbeat(
    broker: Broker, central: CentralService
) -> None:
    """A client that hangs (its WebSocket still open) stops answering the unit's pings on the
    call's data channel; the unit ends the call before ICE consent would notice."""
    await load_directory(central)
    async with running_agent(broker) as unit:
        with staff_dial_process(central) as proc:
            await wait_for(lambda: unit.shutter_states[-1] == "open", 20, what="call streaming")
            proc.send_signal(signal.SIGSTOP)
            took = await wait_for(
                lambda: unit.shutter_states[-1] == "closed",
                5,
                what="shutter closed after the viewer went silent",
            )
            print(f"shutter closed {took:.2f} s after the staff client froze")
            calls = unit.agent.calls
            assert calls is not None
            await wait_for(
                lambda: "viewer silent: no heartbeat" in (calls.last_result or ""), 5, what="reason"
            )


async def _kinds_include(central: CentralService, kind: str) -> bool:
    return kind in await audit_kinds(central)
