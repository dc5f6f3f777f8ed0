"""The TV's privacy screens with the real window under Xvfb (docs/privacy.md):

* after a real night check through the citizen's nightcam, "Who looked in?" shows the session
  as the audit trail has it ("Night staff, 23:10, 20 s"): a role, the time, the length;
* "Visitors or away" → "I have visitors" blocks the camera: central refuses a video visit with
  the reason, the TV says until when, and "Turn the camera back on" ends it (audited).

Runs in a pytest process of its own, like the other window tests. ``VAKA_UPDATE_SCREENS=1``
writes the screenshots to ``docs/screens/``.
"""

import asyncio
import datetime as dt
import time
from zoneinfo import ZoneInfo

import cv2  # noqa: F401 - OpenCV's libraries before PyAV's (vaka/agent/gui_preload.py)
import numpy as np
import pytest

from tests.conftest import TOTP_SECRET
from tests.nightcheck import PASSWORD, UNIT, hhmm, running_agent
from tests.test_tv_window import _click, _shot, _window
from tests.tvunit import CITIZEN, DAY, NIGHT, running_tv, tv_directory
from tests.xserver import xdisplay  # noqa: F401 - a fixture
from vaka.agent.ui import ButtonId, Idle, PrivacyChoice, PrivacyOn, ViewingLogShown
from vaka.agent.ui.layout import describe
from vaka.agent.ui.privacy_layout import entry_lines
from vaka.central.directory.spec import DirectorySpec
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.staff.client import StaffClient, StaffError

pytestmark = pytest.mark.timeout(120)


def home_directory() -> DirectorySpec:
    """The TV directory, and a nightcam in the same citizen's bedroom that the night staff
    check now."""
    spec = tv_directory().model_dump(mode="json", exclude_none=True)
    spec["citizen"][0]["units"].append(UNIT)
    spec["permission"].append({"group": "g-night", "citizen": CITIZEN, "purposes": ["night_check"]})
    spec["schedule"] = [{"citizen": CITIZEN, "times": [hhmm(0)], "tolerance_min": 120}]
    return DirectorySpec.model_validate(spec)


def _inked(shot: np.ndarray, agent_state: object, catalog: object) -> None:
    """Something is written where each of the screen's texts goes."""
    layout = describe(agent_state, catalog)  # type: ignore[arg-type]
    for spec in layout.texts:
        area = shot[spec.box.y : spec.box.y + spec.box.h, spec.box.x : spec.box.x + spec.box.w]
        inked = (np.abs(area.astype(int) - spec.ink).sum(axis=2) < 60).sum()
        assert inked > 200, spec.text


async def test_the_viewing_log_on_the_tv_matches_the_audit_trail(
    broker: Broker,
    central: CentralService,
    xdisplay: str,  # noqa: F811
    tmp_path: object,
) -> None:
    await asyncio.to_thread(central.directory.load, home_directory())
    async with running_agent(broker), running_tv(broker, screen="window") as tv:
        async with StaffClient(central.url) as staff:
            await staff.login(NIGHT, PASSWORD, totp_secret=TOTP_SECRET)
            call = await staff.dial(UNIT, "night_check")
            for _ in range(15):
                await call.next_frame(timeout=10)
            assert await call.hangup() == "you hung up"

        async def ended() -> list:
            entries = await asyncio.to_thread(central.audit.entries, kind="call_ended")
            return [e for e in entries if e.unit == UNIT]

        await wait_for(ended, 10, what="the night check in the audit trail")
        (entry,) = await ended()
        started = entry.ts - float(entry.detail["duration_s"])
        expected = (
            f"Night staff, {time.strftime('%H:%M', time.localtime(started))}, "
            f"{round(float(entry.detail['duration_s']))} s"
        )

        screen = _window(tv)
        await wait_for(lambda: isinstance(screen.state, Idle), 10)
        assert screen.state.privacy  # type: ignore[union-attr]
        await _click(tv, ButtonId.VIEWING_LOG, lambda: isinstance(screen.state, ViewingLogShown))
        await wait_for(
            lambda: getattr(screen.state, "entries", None) is not None,
            15,
            what="the viewing log from central",
        )
        state = screen.state
        assert isinstance(state, ViewingLogShown)
        assert entry_lines(state, screen.catalog) == [expected]
        shot = await _shot(tv, tmp_path, "tv-viewing-log")  # type: ignore[arg-type]
        _inked(shot, state, screen.catalog)
        await _click(tv, ButtonId.BACK, lambda: isinstance(screen.state, Idle))
        shot = await _shot(tv, tmp_path, "tv-idle-privacy")  # type: ignore[arg-type]
        _inked(shot, screen.state, screen.catalog)


async def test_visitors_block_the_camera_until_the_citizen_turns_it_back_on(
    broker: Broker,
    central: CentralService,
    xdisplay: str,  # noqa: F811
    tmp_path: object,
) -> None:
    await asyncio.to_thread(central.directory.load, home_directory())
    async with running_tv(broker, screen="window") as tv:
        screen = _window(tv)
        await wait_for(lambda: isinstance(screen.state, Idle), 10)
        await _click(tv, ButtonId.PRIVACY, lambda: isinstance(screen.state, PrivacyChoice))
        shot = await _shot(tv, tmp_path, "tv-privacy-choice")  # type: ignore[arg-type]
        _inked(shot, screen.state, screen.catalog)
        await _click(tv, ButtonId.PRIVACY_VISITORS, lambda: isinstance(screen.state, PrivacyOn))
        state = tv.privacy.state
        assert state is not None and state.mode == "visitors"
        assert round(state.until - state.since) == 3600  # the default hour
        until = time.strftime("%H:%M", time.localtime(state.until))
        assert screen.state == PrivacyOn("visitors", until, screen.state.reach)  # type: ignore[union-attr]
        shot = await _shot(tv, tmp_path, "tv-privacy-on")  # type: ignore[arg-type]
        _inked(shot, screen.state, screen.catalog)

        async def central_knows() -> bool:
            return (
                await asyncio.to_thread(central.privacy.active, tv.device_id, time.time())
                is not None
            )

        await wait_for(central_knows, 10, what="central knows the privacy mode")
        active = await asyncio.to_thread(central.privacy.active, tv.device_id, time.time())
        assert active is not None
        tz = ZoneInfo(central.config.calls.timezone)
        central_until = dt.datetime.fromtimestamp(active.until, tz)
        async with StaffClient(central.url) as staff:
            await staff.login(DAY, PASSWORD, totp_secret=TOTP_SECRET)
            with pytest.raises(StaffError) as refused:
                await staff.dial(tv.device_id, purpose="video_visit")
        assert str(refused.value) == (
            f"call refused: the citizen has visitors until {central_until:%H:%M}"
        )

        await _click(tv, ButtonId.PRIVACY_END, lambda: isinstance(screen.state, Idle))
        assert tv.privacy.state is None

        async def audited() -> list:
            return await asyncio.to_thread(central.audit.entries, kind="privacy_mode_ended")

        await wait_for(audited, 10, what="the end of the privacy mode in the audit trail")
        (end,) = await audited()
        assert end.unit == tv.device_id and end.detail["reason"] == "ended by the citizen"
