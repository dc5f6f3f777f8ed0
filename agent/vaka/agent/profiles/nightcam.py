"""The ``nightcam`` unit: an IR camera behind a shutter, called for night checks.

Besides what every unit has (:mod:`~vaka.agent.profiles.common`), it takes calls (with
``[calls]``): the call manager answers a verified offer at once, and nothing rings.
"""

from vaka.agent.call.manager import CallManager
from vaka.agent.call.signals import CallSignals
from vaka.agent.config import AgentConfig
from vaka.agent.config_updates import BundleUse
from vaka.agent.hw.hardware import Hardware
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


def compose_nightcam(config: AgentConfig, hardware: Hardware) -> Unit:
    """Build a night camera's parts; nothing runs until the runner starts them."""
    media = media_settings(config)
    common = build_common(config, hardware)
    guard = call_guard(config, common.device_id)
    calls = None
    if guard is not None:
        signals = CallSignals(common.link)
        calls = CallManager(
            signals, guard, hardware, media, common.call, deadlines=call_deadlines(config)
        )
    attach_calls(common, calls)
    max_call_s = config.calls.max_duration_s if config.calls is not None else None
    use_bundles(common, BundleUse(common.sampler, common.reporter, guard, max_call_s))
    return Unit(common, common_parts(common, [], calls), calls)
