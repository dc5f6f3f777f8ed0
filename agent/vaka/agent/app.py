"""The agent: one unit, composed for its profile and run until stopped or decommissioned.

:func:`compose` builds the profile's parts (:mod:`vaka.agent.profiles`);
:class:`~vaka.agent.runner.Runner` starts them in order and stops them in reverse: the shutter
closes first, then the TV, hotplug, health and lifecycle stop, then the link announces a clean
stop, and the hardware is released last.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from vaka.agent.call.manager import CallManager
from vaka.agent.config import AgentConfig
from vaka.agent.config_store import ConfigStore
from vaka.agent.health import HealthReporter, HealthSampler
from vaka.agent.hw.hardware import Hardware
from vaka.agent.link import UnitLink
from vaka.agent.messages import MessageInbox
from vaka.agent.privacy_mode import PrivacyMode
from vaka.agent.profiles.backends import build_hardware
from vaka.agent.profiles.common import Unit
from vaka.agent.profiles.nightcam import compose_nightcam
from vaka.agent.runner import Runner

if TYPE_CHECKING:
    from vaka.agent.tv.controller import TvController

log = logging.getLogger(__name__)


def compose(config: AgentConfig, hardware: Hardware | None = None) -> Unit:
    """The unit ``config`` describes, on ``hardware`` (default: :func:`build_hardware`'s)."""
    hardware = hardware or build_hardware(config)
    try:
        if config.unit.profile == "tv":
            # Imported here: the TV's screen and media draw with NumPy and Pillow (~17 MB of
            # RSS), which a nightcam never needs.
            from vaka.agent.profiles.tv import compose_tv

            return compose_tv(config, hardware)
        return compose_nightcam(config, hardware)
    except BaseException:
        hardware.close()
        raise


class Agent:
    """One unit's agent."""

    def __init__(self, config: AgentConfig, hardware: Hardware | None = None) -> None:
        self.config = config
        self.unit = compose(config, hardware)

    # The parts tests and benchmarks look at.

    @property
    def device_id(self) -> str:
        return self.unit.common.device_id

    @property
    def hardware(self) -> Hardware:
        return self.unit.common.hardware

    @property
    def link(self) -> UnitLink:
        return self.unit.common.link

    @property
    def config_store(self) -> ConfigStore:
        return self.unit.common.config_store

    @property
    def sampler(self) -> HealthSampler:
        return self.unit.common.sampler

    @property
    def reporter(self) -> HealthReporter:
        return self.unit.common.reporter

    @property
    def privacy(self) -> PrivacyMode:
        return self.unit.common.privacy

    @property
    def calls(self) -> CallManager | None:
        return self.unit.calls

    @property
    def tv(self) -> TvController | None:
        return self.unit.tv

    @property
    def messages(self) -> MessageInbox | None:
        return self.unit.messages

    async def run(self) -> bool:
        """Run until cancelled or decommissioned, then shut down in order.

        Returns ``True`` when central decommissioned the unit (its credentials are wiped then).
        """
        common = self.unit.common
        log.info("agent %s (%s) starting", common.device_id, self.config.unit.profile)
        lifecycle = common.lifecycle
        try:
            await Runner(self.unit.parts, common.notifier, lifecycle.decommissioned).run()
        finally:  # cancelled (SIGTERM) too: the runner has stopped every part by then
            log.info("agent %s stopped", common.device_id)
        if lifecycle.decommissioned.is_set():
            lifecycle.wipe()
            return True
        return False
