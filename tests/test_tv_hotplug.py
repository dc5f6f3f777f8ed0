"""Devices coming and going on a TV unit: central's health and events show it within one
reporting period, and the TV says what is wrong."""

import asyncio
from pathlib import Path

import pytest

from tests.tvunit import TV, running_tv, screen_of
from vaka.agent.hw.fake_hotplug import FakeHotplug
from vaka.agent.hw.sound import SoundPresence, UsbSoundCards
from vaka.agent.ui import Idle, Trouble
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for

pytestmark = pytest.mark.timeout(60)


def _health(central: CentralService, field: str) -> object:
    record = central.store.unit(TV)
    return None if record is None or record.health is None else record.health.get(field)


async def _hotplug_events(central: CentralService) -> list[dict[str, object]]:
    events = await asyncio.to_thread(central.store.recent_events, TV)
    return [e.detail for e in events if e.kind == "hotplug"]


async def test_unplugging_the_camera_and_the_tv_shows_up_at_central_and_on_screen(
    broker: Broker, central: CentralService
) -> None:
    async with running_tv(broker) as agent:
        # health every 30 s: the change must not wait for the next period
        await wait_for(lambda: _health(central, "camera_present") is True, 10)
        hotplug = agent.hardware.hotplug
        assert isinstance(hotplug, FakeHotplug)

        hotplug.unplug("camera")
        took = await wait_for(lambda: _health(central, "camera_present") is False, 10)
        assert took < agent.config.health.interval_s
        await wait_for(lambda: isinstance(screen_of(agent).state, Trouble), 5)
        state = screen_of(agent).state
        assert isinstance(state, Trouble) and state.reason_key == "no_camera"

        hotplug.unplug("hdmi")
        await wait_for(lambda: _health(central, "tv") == "absent", 10)
        hotplug.plug("camera")
        hotplug.unplug("audio")  # the USB speakerphone
        await wait_for(lambda: _health(central, "sound_present") is False, 10)
        await wait_for(lambda: getattr(screen_of(agent).state, "reason_key", "") == "no_sound", 5)

        async def both_reported() -> bool:
            seen = {(d["device"], d["action"]) for d in await _hotplug_events(central)}
            return {("camera", "removed"), ("hdmi", "removed"), ("audio", "removed")} <= seen

        await wait_for(both_reported, 10)

        hotplug.plug("audio")
        hotplug.plug("hdmi")
        await wait_for(lambda: _health(central, "camera_present") is True, 10)
        await wait_for(lambda: _health(central, "sound_present") is True, 10)
        await wait_for(lambda: _health(central, "tv") == "standby", 10)
        await wait_for(lambda: isinstance(screen_of(agent).state, Idle), 5)


def test_usb_sound_cards_are_read_from_alsa(tmp_path: Path) -> None:
    cards = tmp_path / "cards"
    cards.write_text(
        " 0 [vc4hdmi0       ]: vc4-hdmi - vc4-hdmi-0\n                      vc4-hdmi-0\n"
    )
    device = UsbSoundCards(cards)
    assert device.state is SoundPresence.ABSENT  # the TV's HDMI sound has no microphone
    cards.write_text(cards.read_text() + " 1 [Speak410       ]: USB-Audio - Jabra SPEAK 410 USB\n")
    assert device.refresh() is SoundPresence.PRESENT
    cards.unlink()
    assert device.refresh() is SoundPresence.ABSENT
