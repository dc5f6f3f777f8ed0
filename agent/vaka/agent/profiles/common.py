"""The parts every unit has, whatever its profile, and :class:`Unit`, what a composition builds.

Every unit has: the broker link (with systemd told when it is up), the signed configuration
(store and updates), health, the lifecycle (certificate renewal, decommission), hotplug and
shutter events, and the unit's call state. :func:`build_common` builds them;
:func:`common_parts` lists them around the profile's own parts in the order the runner starts
them, so that stopping in reverse closes the shutter first and leaves the broker last.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vaka.agent.call.guard import OfferGuard
from vaka.agent.call.manager import CallManager
from vaka.agent.call.presence import MediaDeadlines
from vaka.agent.call.state import UnitCall
from vaka.agent.config import AgentConfig, UpdateSection
from vaka.agent.config_store import ConfigStore
from vaka.agent.config_updates import BundleUse, ConfigUpdates
from vaka.agent.health import HealthReporter, HealthSampler
from vaka.agent.hotplug_report import HotplugReporter
from vaka.agent.hw.hardware import Hardware
from vaka.agent.lifecycle import UnitLifecycle
from vaka.agent.link import LinkSettings, LinkState, UnitLink
from vaka.agent.link.outages import LinkOutages
from vaka.agent.privacy_mode import PrivacyMode
from vaka.agent.profiles.backends import installer_for
from vaka.agent.runner import Part
from vaka.agent.shutter_report import ShutterReporter
from vaka.agent.updates import Updater, UpdateSettings
from vaka.agent.watchdog import LinkReadiness, SystemdNotifier
from vaka.errors import LinkError
from vaka.protocol.messages import (
    AnyMessage,
    EventMessage,
    HealthMessage,
    HealthPayload,
    SignalMessage,
    SignalPayload,
)
from vaka.protocol.topics import Channel
from vaka.provisioning.bundles import load_config_key
from vaka.provisioning.tickets import load_ticket_key

if TYPE_CHECKING:
    from vaka.agent.messages import MessageInbox
    from vaka.agent.tv.controller import TvController

log = logging.getLogger(__name__)

#: Why a unit without ``[calls]`` refuses call signalling.
NO_CALLS = "this unit takes no calls: no ticket key in its configuration ([calls])"


@dataclass
class Common:
    """The parts every unit has, before the profile adds its own."""

    config: AgentConfig
    hardware: Hardware
    device_id: str
    link: UnitLink
    notifier: SystemdNotifier
    config_store: ConfigStore
    call: UnitCall
    sampler: HealthSampler
    reporter: HealthReporter
    lifecycle: UnitLifecycle
    hotplug: HotplugReporter
    shutter: ShutterReporter
    #: the citizen's privacy mode ("I have visitors", "I am away")
    privacy: PrivacyMode
    #: system updates on central's signed order
    updater: Updater
    unsubscribe: list[Callable[[], None]] = field(default_factory=list)
    "Subscriptions to end when the link has closed."


@dataclass(frozen=True)
class Unit:
    """One unit, as its profile's composition built it; :attr:`parts` in start order."""

    common: Common
    parts: list[Part]
    calls: CallManager | None = None
    #: The TV unit's screen and ringing (``tv`` profile with calls configured).
    tv: TvController | None = None
    #: Messages and reminders on the TV (``tv`` profile).
    messages: MessageInbox | None = None


def _link(config: AgentConfig) -> UnitLink:
    b = config.broker
    device_id, cert, key = config.identity()
    return UnitLink(
        LinkSettings(
            device_id=device_id,
            profile=config.unit.profile,
            host=b.host,
            port=b.port,
            server_ca=b.server_ca,
            cert=cert,
            key=key,
            keepalive_s=b.keepalive_s,
            reconnect_min_s=b.reconnect_min_s,
            reconnect_max_s=b.reconnect_max_s,
        )
    )


def build_common(config: AgentConfig, hardware: Hardware) -> Common:
    """Build the parts every unit has (nothing runs yet)."""
    device_id, cert, key = config.identity()
    trust, storage = config.trust, config.storage
    config_key = load_config_key(trust.config_key) if trust.config_key else None
    link = _link(config)
    notifier = SystemdNotifier()
    store = ConfigStore(storage.credentials_dir, config_key, device_id, profile=config.unit.profile)
    call = UnitCall()

    async def publish_event(message: EventMessage) -> None:
        await link.publish_reliably(Channel.EVENTS, message)

    privacy = PrivacyMode(publish_event, config.privacy.duration_min)
    outages = LinkOutages()
    link.subscribe_state(outages.on_state)
    sampler = HealthSampler(
        interval_s=config.health.interval_s,
        hardware=hardware,
        cert_path=cert,
        broker_rtt_ms=lambda: link.broker_rtt_ms,
        config_version=lambda: store.version,
        refused_messages=lambda: link.refusals.total,
        last_call=lambda: call.last_result,
        link_outages=outages.snapshot,
        privacy=lambda: privacy.state,
    )
    reporter = HealthReporter(sampler, interval_s=config.health.interval_s, hardware=hardware)
    lifecycle = UnitLifecycle(link, device_id, cert, key, config_key, storage.credentials_dir)

    link.on(Channel.CONFIG, ConfigUpdates(store, link).handle)
    return Common(
        config,
        hardware,
        device_id,
        link,
        notifier,
        store,
        call,
        sampler,
        reporter,
        lifecycle,
        HotplugReporter(hardware, publish_event),
        ShutterReporter(hardware.shutter, call, publish_event),
        privacy,
        _updater(config, hardware, link, store, call),
        [
            link.subscribe_state(LinkReadiness(notifier)),
            link.subscribe_state(lambda _s: reporter.trigger()),
            privacy.subscribe(lambda _s: reporter.trigger()),
        ],
    )


def _updater(
    config: AgentConfig, hardware: Hardware, link: UnitLink, store: ConfigStore, call: UnitCall
) -> Updater:
    """The unit's updater, on the hardware's installer (the factory's when none was given)."""
    if hardware.installer is None:
        hardware.installer = installer_for(config)
    device_id = config.identity()[0]
    return Updater(
        link,
        device_id,
        store.key,
        hardware.installer,
        call,
        lambda: store.active,
        update_settings(config, device_id),
    )


def update_settings(config: AgentConfig, device_id: str) -> UpdateSettings:
    """``[update]`` as the updater takes it; a simulated unit (with the fake installer) and the
    default directory downloads under the machine's temporary directory instead of ``/run``."""
    update = config.update
    directory = update.download_dir
    # A simulated unit with RAUC (a card in a virtual machine) keeps the image's directory: the
    # root helper takes bundles from there only.
    fake = config.unit.simulate and update.installer == "auto"
    if fake and directory == UpdateSection().download_dir:
        # Named, not probed: tempfile.gettempdir() writes a file into /tmp to find a usable
        # directory (a write at rest at every start), and raises in a sandbox without one. The
        # directory is made only when a download starts, and refused with its reason then.
        temporary = os.environ.get("TMPDIR") or "/tmp"  # noqa: S108 (a simulated unit only)
        directory = Path(temporary) / f"vaka-update-{device_id}"
    credentials = config.storage.credentials_dir
    return UpdateSettings(
        directory,
        update.max_rate_kbps * 1000,
        update.server_ca or config.broker.server_ca,
        installed_note=credentials / "update-installed" if credentials else None,
        servers=tuple(update.servers),
    )


def call_guard(
    config: AgentConfig, device_id: str, privacy: PrivacyMode | None = None
) -> OfferGuard | None:
    """The unit's own checks of call offers, if it takes calls (``[calls]``); with ``privacy``,
    calls the citizen's privacy mode blocks are refused too."""
    if config.calls is None:
        return None
    return OfferGuard(
        device_id,
        config.unit.profile,
        load_ticket_key(config.calls.ticket_key),
        config.calls.max_duration_s,
        blocked=privacy.refusal if privacy is not None else None,
    )


def call_deadlines(config: AgentConfig) -> MediaDeadlines:
    """How long a call may take to reach media and how quickly a silent viewer ends it."""
    if config.calls is None:
        return MediaDeadlines()
    c = config.calls
    return MediaDeadlines(c.setup_timeout_s, c.heartbeat_interval_s, c.heartbeat_timeout_s)


def attach_calls(common: Common, calls: CallManager | None) -> None:
    """Route ``signal/in`` and the link's state to the call manager; without one, refuse every
    call with the reason (a unit without ``[calls]``)."""
    link = common.link
    if calls is None:
        link.on(Channel.SIGNAL_IN, _refuse_calls(link))
        return
    link.on(Channel.SIGNAL_IN, calls.on_signal)
    common.unsubscribe.append(
        link.subscribe_state(lambda state: calls.link_changed(state is LinkState.ONLINE))
    )


def _refuse_calls(link: UnitLink) -> Callable[[AnyMessage], Awaitable[None]]:
    async def refuse(message: AnyMessage) -> None:
        assert isinstance(message, SignalMessage)
        log.warning("call signalling %s refused: %s", message.payload.kind, NO_CALLS)
        payload = SignalPayload(kind="error", call_id=message.payload.call_id, reason=NO_CALLS)
        await link.publish(Channel.SIGNAL_OUT, SignalMessage(payload=payload))

    return refuse


def use_bundles(common: Common, use: BundleUse) -> None:
    """Put the active bundle's values into the parts now, and every new one's later."""
    common.config_store.subscribe(use)
    if common.config_store.active is not None:
        use(common.config_store.active)


def common_parts(common: Common, profile: list[Part], calls: CallManager | None) -> list[Part]:
    """Every part in start order: the hardware, shutter events, the link, health, lifecycle,
    hotplug, then the profile's ``profile`` parts, and last the one that ends any call and
    closes the shutter (so that it is the first to stop)."""
    link, shutter = common.link, common.hardware.shutter

    async def publish_health(payload: HealthPayload) -> None:
        with contextlib.suppress(LinkError):  # offline: the next one goes out after reconnect
            await link.publish(Channel.HEALTH, HealthMessage(payload=payload))

    async def close_link() -> None:
        await link.close()
        for unsubscribe in common.unsubscribe:
            unsubscribe()

    async def release_hardware() -> None:
        common.hardware.close()

    async def end_calls_and_close_shutter() -> None:
        if calls is not None:
            with contextlib.suppress(Exception):
                await calls.close()
        if shutter is not None:
            await shutter.close()

    return [
        Part("hardware", stop=release_hardware),
        Part("shutter events", start=common.shutter.start, stop=common.shutter.stop),
        Part("link", run=link.run, stop=close_link),
        Part("health", run=lambda: common.reporter.run(publish_health)),
        Part("lifecycle", run=common.lifecycle.run),
        Part("hotplug", start=common.hotplug.start, stop=common.hotplug.stop),
        Part("privacy mode", stop=_stopper(common.privacy.close)),
        Part("updates", run=common.updater.run, stop=common.updater.close),
        *profile,
        Part("shutter", stop=end_calls_and_close_shutter),
    ]


def _stopper(close: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def stop() -> None:
        close()

    return stop
