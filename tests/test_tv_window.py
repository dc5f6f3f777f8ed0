"""The TV unit with its real window under Xvfb: a call rings on screen (screenshot), and real X
clicks (xdotool) on Not now, Answer, Hang up and Decline do what they say.

Runs in a pytest process of its own (``make test`` does that), like test_tv_screen.py: OpenCV's
Qt window binds the process to one X display. ``VAKA_UPDATE_SCREENS=1`` writes the screenshots
to ``docs/screens/``.
"""

import asyncio
import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2  # noqa: F401 - OpenCV's libraries before PyAV's (vaka/agent/gui_preload.py)
import numpy as np
import pytest

from tests.conftest import TOTP_SECRET
from tests.nightcheck import PASSWORD
from tests.tvunit import DAY, TV, cec_bus, push_tv_config, running_tv, tv_directory
from tests.xserver import screenshot, xdisplay, xdotool  # noqa: F401 - xdisplay is a fixture
from vaka.agent.app import Agent
from vaka.agent.ui import ButtonId, Idle, Incoming, TvScreen
from vaka.agent.ui.layout import buttons, describe
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.staff.call import PatternVideoTrack
from vaka.staff.client import StaffClient, StaffError

pytestmark = pytest.mark.timeout(120)

SCREENS = Path(__file__).resolve().parent.parent / "docs" / "screens"
RULES = [{"purpose": "video_visit", "caller_groups": ["g-day"], "countdown_s": 5}]


def _window(agent: Agent) -> TvScreen:
    assert agent.tv is not None and isinstance(agent.tv.screen, TvScreen)
    return agent.tv.screen


async def _shot(agent: Agent, tmp_path: Path, name: str) -> np.ndarray:
    assert await asyncio.to_thread(_window(agent).wait_shown, 5.0)
    path = tmp_path / f"{name}.png"
    pixels = await asyncio.to_thread(screenshot, path)
    if os.environ.get("VAKA_UPDATE_SCREENS"):
        shutil.copy(path, SCREENS / f"{name}.png")
    return pixels


async def _click(agent: Agent, button: ButtonId, done: Callable[[], object]) -> None:
    """Click ``button`` on what the window shows now, with real X events, until ``done()``.

    Under load Xvfb/Qt now and then lose a click outright; then it is clicked again (what is
    under test is what a click that arrives does)."""
    screen = _window(agent)
    assert await asyncio.to_thread(screen.wait_shown, 5.0)
    state = screen.state
    assert state is not None
    x, y = next(b.rect.center for b in buttons(state, screen.size) if b.id == button)
    for attempt in range(3):
        # xdotool's --sync waits long for a move to where the pointer already is: wiggle first.
        await asyncio.to_thread(xdotool, "mousemove", "--sync", str(x + 7), str(y + 5))
        await asyncio.to_thread(
            xdotool, "mousemove", "--sync", str(x + attempt), str(y), "click", "1"
        )
        with contextlib.suppress(AssertionError):
            await wait_for(done, 4, what=f"{button} to take effect")
            return
    raise AssertionError(f"three clicks on {button} did nothing")


async def test_call_rings_on_the_tv_and_clicks_do_what_they_say(
    broker: Broker,
    central: CentralService,
    xdisplay: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    await asyncio.to_thread(central.directory.load, tv_directory())
    async with running_tv(broker, screen="window") as agent:
        await push_tv_config(central, agent, auto_answer=RULES)
        async with StaffClient(central.url) as staff:
            await staff.login(DAY, PASSWORD, totp_secret=TOTP_SECRET)
            dial = asyncio.create_task(
                staff.dial(TV, purpose="video_visit", send_video=PatternVideoTrack(640, 480))
            )
            await wait_for(lambda: isinstance(_window(agent).state, Incoming), 10)
            assert cec_bus(agent).sent[:2] == [("image-view-on",), ("active-source", "1.0.0.0")]
            pixels = await _shot(agent, tmp_path, "tv-call-ringing")
            # The big green Answer and red Decline buttons are on the X screen.
            ringing = _window(agent).state
            assert ringing is not None
            answer = next(b for b in buttons(ringing) if b.id is ButtonId.ANSWER)
            cx, cy = answer.rect.center
            r, g, b = (int(v) for v in pixels[cy + 60, cx])
            assert g > 100 and g > r + 40 and g > b + 40, (r, g, b)

            # "Not now" stops the auto-answer: the call keeps ringing past the countdown.
            await _click(
                agent,
                ButtonId.CANCEL_AUTO_ANSWER,
                lambda: getattr(_window(agent).state, "countdown_s", 0) is None,
            )
            await asyncio.sleep(5.5)
            assert not dial.done()

            await _click(agent, ButtonId.ANSWER, dial.done)
            call = await dial
            await call.next_frame()
            await wait_for(
                lambda: getattr(_window(agent).state, "remote_frame", None) is not None, 10
            )
            await wait_for(
                lambda: getattr(_window(agent).state, "self_frame", None) is not None, 10
            )
            pixels = await _shot(agent, tmp_path, "tv-call-in-progress")
            # The caller's 4:3 pattern fills the screen above the bar with the Hang up button:
            # its white and green bars are where they should be, and no button covers it.
            in_call = _window(agent).state
            assert in_call is not None
            picture = describe(in_call, _window(agent).catalog).videos[0].placed()
            assert (picture.y, picture.h) == (0, 540)
            assert not any(b.rect.overlaps(picture) for b in buttons(in_call))
            y = picture.y + round(picture.h * 0.278)
            white = pixels[y, picture.x + round(picture.w * 0.0625)]
            assert min(int(v) for v in white) > 200, white
            r, g, b = (int(v) for v in pixels[y, picture.x + round(picture.w * 0.4375)])
            assert g > 180 and r < 80 and b < 80, (r, g, b)
            await _click(agent, ButtonId.HANG_UP, call.ended.is_set)
            assert call.end_reason is not None and "citizen" in call.end_reason
            await wait_for(lambda: isinstance(_window(agent).state, Idle), 5)

            # A second call, declined.
            dial = asyncio.create_task(staff.dial(TV, purpose="video_visit"))
            await wait_for(lambda: isinstance(_window(agent).state, Incoming), 10)
            await _click(agent, ButtonId.DECLINE, dial.done)
            with pytest.raises(StaffError, match="declined by the citizen"):
                await dial
            await wait_for(lambda: isinstance(_window(agent).state, Idle), 5)
