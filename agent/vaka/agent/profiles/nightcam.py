"""The ``nightcam`` unit: an IR camera behind a shutter, called for night checks.

Besides what every unit has (:mod:`~vaka.agent.profiles.common`), it takes calls (with
``[calls]``): the call manager answers a verified offer at once, and nothing rings. Its button
is the citizen's privacy mode: a press starts "I have visitors" (the camera blocked for
``[privacy] duration_min``), a second press ends it.
"""

import asyncio
from collections.abc import Awaitable, Callable

from gpiozero import Button

from vaka.agent.call.manager import CallManager
from vaka.agent.call.signals import CallSignals
from vaka.agent.config import AgentConfig
from vaka.agent.config_updates import BundleUse
from vaka.agent.hw.hardware import Hardware
from vaka.agent.privacy_mode import PrivacyMode
from vaka.agent.profiles.backends import media_settings
from vaka.agent.profiles.common import (
    Unit,
    attach_calls,
    build_common,
    call_deadlines,
    call_guard,
    common_parts,
    use_bundles,
)
from vaka.agent.runner import Part


def compose_nightcam(config: AgentConfig, hardware: Hardware) -> Unit:
    """Build a night camera's parts; nothing runs until the runner starts them."""
    media = media_settings(config)
    common = build_common(config, hardware)
    guard = call_guard(config, common.device_id, common.privacy)
    calls = None
    if guard is not None:
        signals = CallSignals(common.link)
        calls = CallManager(
            signals, guard, hardware, media, common.call, deadlines=call_deadlines(config)
        )
    attach_calls(common, calls)
    max_call_s = config.calls.max_duration_s if config.calls is not None else None
    use_bundles(common, BundleUse(common.sampler, common.reporter, guard, max_call_s))
    parts = []
    if hardware.button is not None:
        start, stop = _privacy_button(hardware.button, common.privacy)
        parts.append(Part("privacy button", start=start, stop=stop))
    return Unit(common, common_parts(common, parts, calls), calls)


def _privacy_button(
    button: Button, privacy: PrivacyMode
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    """Start and stop of the button's part: a press (on gpiozero's thread) toggles the mode on
    the agent's loop."""
    tasks: set[asyncio.Task[None]] = set()

    async def start() -> None:
        loop = asyncio.get_running_loop()

        def spawn() -> None:
            task = loop.create_task(privacy.toggle("visitors"))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        button.when_pressed = lambda: loop.call_soon_threadsafe(spawn)

    async def stop() -> None:
        button.when_pressed = None
        for task in list(tasks):
            task.cancel()

    return start, stop
