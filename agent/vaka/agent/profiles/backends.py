"""The hardware factory: real devices or fakes (``--simulate``), chosen here and nowhere else.

With ``[unit] simulate`` (``--simulate``) every device is a fake (:func:`~vaka.agent.hw.hardware.
simulated`). Otherwise the GPIO devices of the packaged pin map, the V4L2 camera device when the
media settings name one, the TV over HDMI-CEC and its USB sound (``tv``) and udev hotplug. The
media factory (:func:`~vaka.agent.media.settings.settings_in_force`) makes the same choice for
the camera source and the sound.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from vaka.agent.config import AgentConfig
from vaka.agent.hw.camera import V4l2CameraDevice
from vaka.agent.hw.cec import CecDisplay
from vaka.agent.hw.fake_installer import FakeInstaller
from vaka.agent.hw.hardware import Hardware, gpio_hardware, simulated
from vaka.agent.hw.hotplug import HotplugMonitor
from vaka.agent.hw.installer import Installer, RaucInstaller
from vaka.agent.hw.pins import load_pin_map
from vaka.agent.hw.sound import UsbSoundCards
from vaka.agent.media.settings import MediaSettings, settings_in_force

if TYPE_CHECKING:  # the TV package draws with NumPy: a nightcam never imports it
    from vaka.agent.tv.controller import ScreenMode

log = logging.getLogger(__name__)


def media_settings(config: AgentConfig) -> MediaSettings:
    """The media settings in force (camera source and sound chosen).

    :raises ConfigError: a real unit whose configuration names no camera source.
    """
    return settings_in_force(config.media, simulate=config.unit.simulate)


def build_hardware(config: AgentConfig) -> Hardware:
    """The unit's hardware, real or fake.

    :raises ConfigError: a real unit whose configuration names no camera source (checked first,
        before any device is touched).
    """
    media = media_settings(config)
    if config.unit.simulate:
        log.info("simulated hardware (%s)", config.unit.profile)
        hardware = simulated(config.unit.profile)
        hardware.installer = installer_for(config)
        return hardware
    hardware = gpio_hardware(load_pin_map(config.unit.profile))
    if media.source == "v4l2":
        hardware.camera = V4l2CameraDevice(Path(media.device))
    if config.unit.profile == "tv":
        hardware.display = CecDisplay(config.tv.cec_device, osd_name=config.tv.osd_name)
        if media.audio in ("alsa", "pulse"):
            hardware.sound = UsbSoundCards()
    hardware.hotplug = HotplugMonitor()
    hardware.installer = installer_for(config)
    return hardware


def installer_for(config: AgentConfig) -> Installer:
    """RAUC on a unit; the recording fake (running ``[update] simulated_version``) simulated,
    unless ``[update] installer`` says ``rauc``."""
    if config.unit.simulate and config.update.installer == "auto":
        return FakeInstaller(config.update.simulated_version)
    # The root helper accepts bundles only from the agent's download directory (its request
    # file lives there too): a download_dir other than the image's needs the helper told as well.
    return RaucInstaller(request_dir=config.update.download_dir)


def screen_mode(config: AgentConfig) -> ScreenMode:
    """How the TV screen is shown: ``[tv] screen``, where ``auto`` is a window when ``$DISPLAY``
    is set (warned about on a real unit without one)."""
    mode = config.tv.screen
    if mode != "auto":
        return mode
    if os.environ.get("DISPLAY"):
        return "window"
    if not config.unit.simulate:
        log.warning("no $DISPLAY: the TV screen is not shown (set up the display session)")
    return "headless"
