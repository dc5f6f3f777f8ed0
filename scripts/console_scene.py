"""The scene the console screenshots show (``scripts/console_screens.py``): the local stack with
central, a TV unit and a nightcam, the directory of staff, citizens and schedules, and the names
the pictures use."""

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from vaka.agent.app import Agent
from vaka.agent.ui import HeadlessScreen
from vaka.central.directory.spec import DirectorySpec
from vaka.central.service import CentralService
from vaka.central.settings.alerts import AlertSettings
from vaka.central.settings.fleet import Thresholds
from vaka.devstack.central import load_directory, push_unit_config
from vaka.devstack.polling import wait_for
from vaka.devstack.stack import LocalStack

AUTO_ANSWER = [{"purpose": "video_visit", "caller_groups": ["g-day"], "countdown_s": 2}]
TV = "u-tv"
NIGHTCAM = "u-cam-0042"  # down, with a night check in a few minutes: an open alert
NIGHTCAM_OK = "u-cam-0043"  # online
DAY = "s-day"
NIGHT = "s-night"
NIGHT_TWO = "s-night-two"
PASSWORD = "correct horse battery"  # noqa: S105 (the scene's own accounts)
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # noqa: S105
SMALL = {"width": 320, "height": 240, "fps": 15}


@dataclass
class Scene:
    """What the screenshots show: central, a TV unit (u-tv), two nightcams, staff."""

    central: CentralService
    tv: Agent


def hhmm(offset_min: int, tz: str = "Europe/Stockholm") -> str:
    """Local time ``offset_min`` minutes from now, as HH:MM."""
    local = dt.datetime.now(ZoneInfo(tz)) + dt.timedelta(minutes=offset_min)
    return local.strftime("%H:%M")


def scene_directory() -> DirectorySpec:
    """Day and night staff of a TV unit's citizen (c-3003), nightcams, support and a technician."""
    people = [
        (DAY, "Dana Day", "day_staff", ["g-day"]),
        (NIGHT, "Nils Night", "night_staff", ["g-night"]),
        (NIGHT_TWO, "Nora Night", "night_staff", ["g-night"]),
        ("s-outsider", "Otto Other", "day_staff", ["g-other"]),
        ("s-support", "Siri Support", "support", []),
        ("t-tech", "Tina Tech", "technician", []),
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
                    "id": staff_id,
                    "name": name,
                    "role": role,
                    "groups": groups,
                    "password": PASSWORD,
                    "totp_secret": TOTP_SECRET,
                }
                for staff_id, name, role, groups in people
            ],
            "citizen": [
                {"id": "c-3003", "units": [TV]},
                {"id": "c-1001", "units": [NIGHTCAM]},
                {"id": "c-1002", "units": [NIGHTCAM_OK]},
            ],
            "permission": [
                {"group": "g-day", "citizen": "c-3003", "purposes": ["video_visit"]},
                {"group": "g-other", "citizen": "c-3003", "purposes": ["video_visit"]},
                {
                    "group": "g-night",
                    "citizen": "c-3003",
                    "purposes": ["citizen_call"],
                    "direction": "from_unit",
                },
                {"group": "g-night", "citizen": "c-1001", "purposes": ["night_check"]},
                {"group": "g-night", "citizen": "c-1002", "purposes": ["night_check"]},
            ],
            "schedule": [
                {"citizen": "c-1001", "times": [hhmm(8)], "tolerance_min": 15},
                {"citizen": "c-1002", "times": [hhmm(9 * 60)], "tolerance_min": 15},
            ],
        }
    )


def _clock_synced(agent: Agent) -> None:
    """This machine's clock may be unsynchronised; the pictures show healthy units."""
    agent.sampler._clock_synced = lambda: True


@contextlib.asynccontextmanager
async def scene(workdir: Path) -> AsyncIterator[Scene]:
    """The local stack: broker, central (alerts every second), the TV unit and one nightcam."""
    async with LocalStack(workdir) as stack:
        stack.start_broker()
        config = stack.central_config()
        config = config.model_copy(
            update={
                "alerts": AlertSettings(lead_min=60, check_every_s=1),
                # a unit's page shows some history within the few minutes the pictures take
                "fleet": Thresholds(health_history_period_s=10),
            }
        )
        central = await stack.start_central(config=config)
        await load_directory(central, scene_directory())
        tv_unit = stack.running_unit(
            TV,
            "tv",
            prepare=_clock_synced,
            media={**SMALL, "audio": "synthetic"},
            tv={"screen": "headless", "language": "en", "idle_standby_s": 2},
        )
        camera_unit = stack.running_unit(
            NIGHTCAM_OK, prepare=_clock_synced, media=SMALL, interval_s=5
        )
        async with camera_unit, tv_unit as tv:
            await wait_for(lambda: tv.tv is not None and tv.tv.screen is not None, 10)
            await push_unit_config(central, TV, "tv", 1, language="en", auto_answer=AUTO_ANSWER)
            await wait_for(lambda: tv.config_store.version == 1, 10)
            yield Scene(central, tv)


def screen_of(agent: Agent) -> HeadlessScreen:
    """The TV unit's (headless) screen."""
    assert agent.tv is not None and isinstance(agent.tv.screen, HeadlessScreen)
    return agent.tv.screen
