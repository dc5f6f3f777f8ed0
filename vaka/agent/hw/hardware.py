"""All of a unit's hardware in one place, and the simulated set for ``--simulate``."""

import logging
from dataclasses import dataclass
from typing import Any

from vaka.agent.hw.base import StateSource
from vaka.agent.hw.camera import CameraDevice
from vaka.agent.hw.display import Display, TvState
from vaka.agent.hw.fake_camera import SimulatedCameraDevice
from vaka.agent.hw.fake_display import SimulatedDisplay
from vaka.agent.hw.fake_shutter import SimulatedShutter
from vaka.agent.hw.shutter import Shutter
from vaka.errors import ConfigError

log = logging.getLogger(__name__)

AnySource = StateSource[Any]


@dataclass
class Hardware:
    """The devices of one unit; ``None`` where the profile has no such device."""

    camera: CameraDevice | None = None
    shutter: Shutter | None = None
    display: Display | None = None

    def sources(self) -> list[AnySource]:
        """Every device present, shutter first."""
        devices: list[AnySource | None] = [self.shutter, self.camera, self.display]
        return [device for device in devices if device is not None]

    def close(self) -> None:
        """Release every device, the shutter first. Safe to call twice.

        This does not move the shutter: await ``shutter.close()`` before, while the loop runs.
        """
        for device in self.sources():
            try:
                device.release()
            except Exception:
                log.exception("releasing %s failed", device.name)


def simulated(profile: str) -> Hardware:
    """Fake hardware for a profile: ``nightcam`` has a camera and a shutter, ``tv`` also a TV."""
    if profile == "nightcam":
        return Hardware(camera=SimulatedCameraDevice(), shutter=SimulatedShutter())
    if profile == "tv":
        return Hardware(
            camera=SimulatedCameraDevice(),
            shutter=SimulatedShutter(),
            display=SimulatedDisplay(TvState.STANDBY),
        )
    raise ConfigError(f"unknown unit profile {profile!r}: expected 'tv' or 'nightcam'")
