"""Helpers for night-check tests: a directory, an in-process agent, forged offers, a staff peer
in its own process."""

import asyncio
import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from aiortc import RTCPeerConnection

from tests.conftest import TOTP_SECRET, totp_secret_file
from vaka.agent.app import Agent
from vaka.central.directory.spec import DirectorySpec
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.units import running_agent as in_process_agent
from vaka.devstack.units import unit_config
from vaka.protocol.sdp import preferred_fingerprint
from vaka.rtc.ice import rtc_configuration
from vaka.rtc.presence import LABEL

PASSWORD = "correct horse battery"
UNIT = "u-cam"
OTHER_UNIT = "u-cam-two"


def hhmm(offset_min: int, tz: str = "Europe/Stockholm") -> str:
    """Local time ``offset_min`` minutes from now, as HH:MM."""
    local = dt.datetime.now(ZoneInfo(tz)) + dt.timedelta(minutes=offset_min)
    return local.strftime("%H:%M")


def directory_spec(night_view: str = "clear") -> DirectorySpec:
    """Night nurse in g-night may check c-1001 (u-cam) now; c-2002 is checked at another time.

    c-1001's night checks are ``clear`` from the start unless ``night_view`` says otherwise
    (set explicitly: these tests read the pattern's code, which the graduated view's blur hides;
    tests/test_graduated_view.py tests the blurred start and its escalation).
    """
    return DirectorySpec.model_validate(
        {
            "group": [
                {"id": "g-night", "name": "Night patrol"},
                {"id": "g-other", "name": "Other"},
            ],
            "staff": [
                {
                    "id": "s-nurse",
                    "name": "Nina Night",
                    "role": "night_staff",
                    "groups": ["g-night"],
                    "password": PASSWORD,
                    "totp_secret": TOTP_SECRET,
                },
                {
                    "id": "s-stranger",
                    "name": "Sam Stranger",
                    "role": "night_staff",
                    "groups": ["g-other"],
                    "password": PASSWORD,
                    "totp_secret": TOTP_SECRET,
                },
            ],
            "citizen": [
                {"id": "c-1001", "units": [UNIT], "night_view": night_view},
                {"id": "c-2002", "units": [OTHER_UNIT]},
            ],
            "permission": [
                {
                    "group": "g-night",
                    "citizen": "c-1001",
                    "purposes": ["night_check", "break_glass"],
                },
                {"group": "g-night", "citizen": "c-2002", "purposes": ["night_check"]},
            ],
            "schedule": [
                {"citizen": "c-1001", "times": [hhmm(0)], "tolerance_min": 120},
                {"citizen": "c-2002", "times": [hhmm(12 * 60)], "tolerance_min": 30},
            ],
        }
    )


def agent_config(broker: Broker, device_id: str = UNIT, **media: object) -> dict:
    """The stack's nightcam configuration with small frames (quick to encode in tests)."""
    return unit_config(broker, device_id, media={"width": 320, "height": 240, "fps": 15, **media})


@dataclass
class RunningAgent:
    agent: Agent

    @property
    def shutter_states(self) -> list[str]:
        shutter = self.agent.hardware.shutter
        assert shutter is not None
        return [state.value for _, state in shutter.history]


@contextlib.asynccontextmanager
async def running_agent(
    broker: Broker, device_id: str = UNIT, **media: object
) -> AsyncIterator[RunningAgent]:
    """An agent in this process (so its fake hardware can be inspected), on the real broker."""
    async with in_process_agent(agent_config(broker, device_id, **media)) as agent:
        yield RunningAgent(agent)


async def make_offer() -> tuple[RTCPeerConnection, str, str]:
    """A real recvonly offer (with the presence channel a staff peer opens), its SDP and its
    sha-256 fingerprint."""
    pc = RTCPeerConnection(rtc_configuration())
    pc.addTransceiver("video", direction="recvonly")
    pc.createDataChannel(LABEL, ordered=False, maxRetransmits=0)
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    return pc, sdp, preferred_fingerprint(sdp)


async def audit_kinds(central: CentralService, call_id: str | None = None) -> list[str]:
    entries = await asyncio.to_thread(central.audit.entries)
    return [e.kind for e in entries if call_id is None or e.call_id == call_id]


async def load_directory(central: CentralService, night_view: str = "clear") -> None:
    await asyncio.to_thread(central.directory.load, directory_spec(night_view))


def now() -> int:
    return int(time.time())


@contextlib.contextmanager
def staff_dial_process(central: CentralService) -> Iterator[subprocess.Popen[bytes]]:
    """`vaka-staff dial` in its own process (so that the test can kill or freeze it)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vaka.staff.cli",
            "--central",
            central.url,
            "dial",
            UNIT,
            "--user",
            "s-nurse",
            "--seconds",
            "60",
            "--ice-address",
            "127.0.0.1",
        ],
        env={
            **os.environ,
            "VAKA_PASSWORD": PASSWORD,
            "VAKA_TOTP_SECRET_FILE": str(totp_secret_file()),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()
