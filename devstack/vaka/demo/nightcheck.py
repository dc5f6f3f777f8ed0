"""The demo's night check: a night nurse dials in to the simulated night camera."""

import datetime as dt
import time
from typing import Any
from zoneinfo import ZoneInfo

from vaka.central.directory.spec import DirectorySpec
from vaka.rtc.pattern import decode_pattern
from vaka.staff.client import StaffClient

NURSE = "s-demo-nurse"
ADMIN = "a-demo-admin"  # sees every page of the console, the fleet too
TECHNICIAN = "t-demo-tech"  # approves the demo's new unit with vaka-provision
#: the citizen whose home gets the demo's new TV (in the directory before the unit arrives)
NEW_CITIZEN = "c-demo-3"
PASSWORD = "demo-password-change-me"  # noqa: S105 (the demo's own account, printed for the user)
#: the demo nurse's second factor, pre-enrolled (printed for the user to add to an app)
TOTP_SECRET = "KVKFKRCPNZQUYMLXOVYDSQKJKZDTSRLD"  # noqa: S105


def demo_directory(timezone: str = "Europe/Stockholm") -> DirectorySpec:
    """A night patrol that may check the demo citizen now (the schedule is set around now)."""
    local = dt.datetime.now(ZoneInfo(timezone))
    return DirectorySpec.model_validate(
        {
            "group": [{"id": "g-demo-night", "name": "Night patrol (demo)"}],
            "staff": [
                {
                    "id": NURSE,
                    "name": "Demo Night Nurse",
                    "role": "night_staff",
                    "groups": ["g-demo-night"],
                    "password": PASSWORD,
                    "totp_secret": TOTP_SECRET,
                },
                {
                    "id": ADMIN,
                    "name": "Demo Administrator",
                    "role": "administrator",
                    "password": PASSWORD,
                    "totp_secret": TOTP_SECRET,
                },
                {
                    "id": TECHNICIAN,
                    "name": "Demo Technician",
                    "role": "technician",
                    "password": PASSWORD,
                    "totp_secret": TOTP_SECRET,
                },
            ],
            "citizen": [
                # Clear from the start, set explicitly: the demo checks the picture's test pattern,
                # which the graduated view's blur (the default, docs/privacy.md) hides.
                {"id": "c-demo-1", "units": ["u-demo-nightcam"], "night_view": "clear"},
                {"id": "c-demo-2", "units": ["u-demo-tv"]},
                {"id": NEW_CITIZEN},
            ],
            "permission": [
                {
                    "group": "g-demo-night",
                    "citizen": "c-demo-1",
                    "purposes": ["night_check", "break_glass"],
                },
                {"group": "g-demo-night", "citizen": "c-demo-2", "purposes": ["video_visit"]},
                {"group": "g-demo-night", "citizen": NEW_CITIZEN, "purposes": ["video_visit"]},
            ],
            "schedule": [
                {"citizen": "c-demo-1", "times": [local.strftime("%H:%M")], "tolerance_min": 180}
            ],
        }
    )


async def dial_night_check(central_url: str, unit: str, seconds: float = 2.0) -> dict[str, Any]:
    """Log in as the demo nurse, dial in, watch for ``seconds``, hang up; what was seen."""
    async with StaffClient(central_url) as staff:
        await staff.login(NURSE, PASSWORD, totp_secret=TOTP_SECRET)
        call = await staff.dial(unit, "night_check")
        frames, checked, latencies = 0, 0, []
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                frame = await call.next_frame(timeout=5)
                frames += 1
                reading = decode_pattern(frame.to_ndarray(format="bgr24"))
                if reading is not None:
                    checked += 1
                    latencies.append(reading.age_s(time.time()) * 1000)
        finally:
            reason = await call.hangup()
        latencies.sort()
        return {
            "call_id": call.call_id,
            "frames": frames,
            "pattern_frames": checked,
            "median_latency_ms": round(latencies[len(latencies) // 2], 1) if latencies else None,
            "timings_ms": call.timings.as_ms(),
            "ended": reason,
        }
