"""Helpers for TV-unit tests: a directory with a TV unit, an in-process TV agent with its
signed configuration, and what its screen and fake CEC bus saw."""

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from tests.conftest import TOTP_SECRET
from tests.nightcheck import PASSWORD, agent_config
from vaka.agent.app import Agent
from vaka.agent.hw.fake_cec import FakeCecBus, FakeCecDisplay
from vaka.agent.ui import HeadlessScreen, ScreenState
from vaka.central.directory.spec import DirectorySpec
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.central import push_unit_config
from vaka.devstack.polling import wait_for
from vaka.devstack.units import running_agent

TV = "u-tv"
CITIZEN = "c-3003"
DAY = "s-day"
NIGHT = "s-night"
NIGHT_TWO = "s-night-two"
OUTSIDER = "s-outsider"


def tv_directory() -> DirectorySpec:
    """Day staff (g-day) visit c-3003's TV; night staff (g-night) take c-3003's calls."""
    staff = [
        (DAY, "Dana Day", "day_staff", "g-day"),
        (NIGHT, "Nils Night", "night_staff", "g-night"),
        (NIGHT_TWO, "Nora Night", "night_staff", "g-night"),
        (OUTSIDER, "Otto Other", "day_staff", "g-other"),
    ]
    return DirectorySpec.model_validate(
        {
            "group": [
                {"id": "g-day", "name": "Home care, day"},
                {"id": "g-night", "name": "Night patrol"},
                {"id": "g-other", "name": "Other district"},
            ],
            "staff": [
                {
                    "id": i,
                    "name": n,
                    "role": r,
                    "groups": [g],
                    "password": PASSWORD,
                    "totp_secret": TOTP_SECRET,
                }
                for i, n, r, g in staff
            ],
            "citizen": [{"id": CITIZEN, "units": [TV]}],
            "permission": [
                {"group": "g-day", "citizen": CITIZEN, "purposes": ["video_visit"]},
                {"group": "g-other", "citizen": CITIZEN, "purposes": ["video_visit"]},
                {
                    "group": "g-night",
                    "citizen": CITIZEN,
                    "purposes": ["citizen_call"],
                    "direction": "from_unit",
                },
            ],
        }
    )


def tv_agent_config(broker: Broker, *, screen: str = "headless", **tv: Any) -> dict[str, Any]:
    """The night check's unit configuration, made a TV with synthetic sound and its screen."""
    config = agent_config(broker, TV, audio="synthetic")
    config["unit"]["profile"] = "tv"
    config["tv"] = {"screen": screen, "language": "en", "idle_standby_s": 2, **tv}
    return config


async def push_tv_config(
    central: CentralService, agent: Agent, version: int = 1, **settings: Any
) -> None:
    """Sign and push a TV bundle (English screen by default) and wait until the unit uses it."""
    settings.setdefault("language", "en")
    await push_unit_config(central, TV, "tv", version, **settings)
    await wait_for(lambda: agent.config_store.version == version, 10)


@contextlib.asynccontextmanager
async def running_tv(broker: Broker, **options: Any) -> AsyncIterator[Agent]:
    """A simulated TV unit in this process, online."""
    async with running_agent(tv_agent_config(broker, **options)) as agent:
        await wait_for(lambda: agent.tv is not None and agent.tv.screen is not None, 10)
        yield agent


def screen_of(agent: Agent) -> HeadlessScreen:
    assert agent.tv is not None and isinstance(agent.tv.screen, HeadlessScreen)
    return agent.tv.screen


def shown(agent: Agent) -> list[ScreenState]:
    """Every state the TV's (headless) screen showed, oldest first."""
    return [state for _, state in screen_of(agent).history]


def cec_bus(agent: Agent) -> FakeCecBus:
    """The fake CEC bus the simulated TV hangs on (it records what the unit sent)."""
    display = agent.hardware.display
    assert isinstance(display, FakeCecDisplay)
    return display.bus
