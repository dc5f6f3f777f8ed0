"""The agent: wires configuration, hardware, the broker link and health reporting together.

Shutdown is orderly: the shutter closes first, then health stops, then the link announces a clean
stop. Every part is started here and nowhere else.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from vaka.agent.call.guard import OfferGuard
from vaka.agent.call.manager import CallManager
from vaka.agent.config import AgentConfig
from vaka.agent.config_store import ConfigStore
from vaka.agent.health import HealthReporter, HealthSampler
from vaka.agent.hotplug_report import HotplugReporter
from vaka.agent.hw.camera import V4l2CameraDevice
from vaka.agent.hw.cec import CecDisplay
from vaka.agent.hw.hardware import Hardware, gpio_hardware, simulated
from vaka.agent.hw.hotplug import HotplugMonitor
from vaka.agent.hw.pins import load_pin_map
from vaka.agent.hw.shutter import ShutterState
from vaka.agent.hw.sound import UsbSoundCards
from vaka.agent.lifecycle import UnitLifecycle
from vaka.agent.link import LinkSettings, UnitLink
from vaka.agent.media.settings import apply_process_settings
from vaka.agent.messages import MessageInbox, event_reporter
from vaka.agent.tv.controller import TvController
from vaka.agent.tv.shown_message import ShownMessage
from vaka.agent.watchdog import LinkReadiness, SystemdNotifier, run_watchdog
from vaka.errors import ConfigError, LinkError
from vaka.protocol.messages import (
    AnyMessage,
    ConfigMessage,
    EventMessage,
    EventPayload,
    HealthMessage,
    HealthPayload,
    SignalMessage,
    SignalPayload,
)
from vaka.protocol.topics import Channel
from vaka.provisioning.bundles import (
    AutoAnswerRule,
    BadBundle,
    UnitConfigBundle,
    load_config_key,
)
from vaka.provisioning.tickets import load_ticket_key

log = logging.getLogger(__name__)


def build_hardware(config: AgentConfig) -> Hardware:
    """Fake hardware with ``simulate``; else the GPIO devices of the packaged pin map, the
    camera device the media settings name, the TV over HDMI-CEC (``tv``) and udev hotplug."""
    if config.unit.simulate:
        return simulated(config.unit.profile)
    hardware = gpio_hardware(load_pin_map(config.unit.profile))
    if config.media.source == "v4l2":
        hardware.camera = V4l2CameraDevice(Path(config.media.device))
    if config.unit.profile == "tv":
        hardware.display = CecDisplay(config.tv.cec_device, osd_name=config.tv.osd_name)
        if config.media.audio in ("alsa", "pulse"):
            hardware.sound = UsbSoundCards()
    hardware.hotplug = HotplugMonitor()
    return hardware


class Agent:
    """One unit's agent."""

    def __init__(self, config: AgentConfig, hardware: Hardware | None = None) -> None:
        self.config = config
        self.hardware = hardware or build_hardware(config)
        b = config.broker
        device_id, cert, key = config.identity()
        self.device_id = device_id
        self.link = UnitLink(
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
        trust, storage = config.trust, config.storage
        self.notifier = SystemdNotifier()
        self._unsubscribe_ready = self.link.subscribe_state(LinkReadiness(self.notifier))
        self.config_store = ConfigStore(
            storage.credentials_dir,
            load_config_key(trust.config_key) if trust.config_key else None,
            device_id,
            profile=config.unit.profile,
        )
        self.sampler = HealthSampler(
            interval_s=config.health.interval_s,
            hardware=self.hardware,
            cert_path=cert,
            broker_rtt_ms=lambda: self.link.broker_rtt_ms,
            config_version=lambda: self.config_store.version,
            refused_messages=lambda: self.link.refusals.total,
            last_call=lambda: self.calls.last_result if self.calls else None,
        )
        self.reporter = HealthReporter(
            self.sampler, interval_s=config.health.interval_s, hardware=self.hardware
        )
        self.calls: CallManager | None = None
        #: The TV unit's screen and ringing (``tv`` profile with calls configured).
        self.tv: TvController | None = None
        if config.calls is not None:
            guard = OfferGuard(
                device_id,
                config.unit.profile,
                load_ticket_key(config.calls.ticket_key),
                config.calls.max_duration_s,
            )
            if config.unit.profile == "tv":
                self.tv = TvController(
                    settings=config.tv,
                    media=config.media,
                    link=self.link,
                    hardware=self.hardware,
                    auto_answer=self._auto_answer_rules,
                    simulate=config.unit.simulate,
                )
            self.calls = CallManager(self.link, guard, self.hardware, config.media, self.tv)
            if self.tv is not None:
                self.tv.calls = self.calls
        else:
            self.link.on(Channel.SIGNAL_IN, self._on_signal)
        self.link.on(Channel.CONFIG, self._on_config)
        self.messages: MessageInbox | None = None  # messages and reminders on the TV
        if config.unit.profile == "tv":
            report = event_reporter(self.link.publish_reliably)
            self.messages = MessageInbox(
                device_id, self.config_store.key, report, refusals=self.link.refusals
            )
            self.link.on(Channel.MESSAGE, self.messages.handle)
            if self.tv is not None:  # shown on the TV, acknowledged with its button
                tv, inbox = self.tv, self.messages
                inbox.show = lambda m: tv.post_message(ShownMessage.of(m))
                inbox.hide = tv.hide_message
                tv.on_acknowledge = inbox.acknowledge
        self.lifecycle = UnitLifecycle(
            self.link,
            device_id,
            cert,
            key,
            load_config_key(trust.config_key) if trust.config_key else None,
            storage.credentials_dir,
        )
        self.config_store.subscribe(self._use_bundle)
        if self.config_store.active is not None:
            self._use_bundle(self.config_store.active)
        self._unsubscribe_link = self.link.subscribe_state(lambda _s: self.reporter.trigger())
        self._unsubscribe_shutter: Callable[[], None] = lambda: None
        self.hotplug = HotplugReporter(self.hardware, self._publish_event)
        self._background: set[asyncio.Task[None]] = set()
        apply_process_settings(config.media)

    async def _publish_health(self, payload: HealthPayload) -> None:
        with contextlib.suppress(LinkError):  # offline: the next one goes out after reconnect
            await self.link.publish(Channel.HEALTH, HealthMessage(payload=payload))

    async def _publish_event(self, message: EventMessage) -> None:
        await self.link.publish_reliably(Channel.EVENTS, message)

    def _auto_answer_rules(self) -> list[AutoAnswerRule]:
        bundle = self.config_store.active
        return list(bundle.auto_answer) if bundle is not None else []

    async def _on_signal(self, message: AnyMessage) -> None:
        assert isinstance(message, SignalMessage)
        reason = "this unit takes no calls: no ticket key in its configuration ([calls])"
        log.warning("call signalling %s refused: %s", message.payload.kind, reason)
        reply = SignalMessage(
            payload=SignalPayload(kind="error", call_id=message.payload.call_id, reason=reason)
        )
        await self.link.publish(Channel.SIGNAL_OUT, reply)

    async def _on_config(self, message: AnyMessage) -> None:
        """Verify and apply a signed bundle; report the outcome as an event either way."""
        assert isinstance(message, ConfigMessage)
        store, token = self.config_store, message.payload.bundle
        if store.is_active(token):  # the retained bundle again, after a reconnect
            log.debug("config version %d is already active", store.version)
            return
        try:
            bundle = await asyncio.to_thread(store.apply, token, message.payload.version)
        except (BadBundle, ConfigError) as err:
            reason = f"{err} (version {store.version} stays active)"
            self.link.refusals.refuse("config bundle", reason, "config")
            detail = {"topic": "config", "reason": reason[:200]}
            refused = EventMessage(payload=EventPayload(kind="refused", detail=detail))
            await self.link.publish_reliably(Channel.EVENTS, refused)
            return
        log.info("config version %d applied", bundle.version)
        detail_ok: dict[str, str | int] = {"config": "applied", "version": bundle.version}
        applied = EventMessage(payload=EventPayload(kind="info", detail=detail_ok))
        await self.link.publish_reliably(Channel.EVENTS, applied)

    def _use_bundle(self, bundle: UnitConfigBundle) -> None:
        """Put a verified bundle's values into the running parts: health interval, ticket key,
        call limit (capped by ``[calls] max_duration_s``). Runs on the applying thread."""
        self.sampler.interval_s = self.reporter.interval_s = bundle.health_interval_s
        if self.calls is not None and self.config.calls is not None:
            guard = self.calls.guard
            guard.ticket_key = bundle.ticket_public_key()
            guard.max_duration_s = min(self.config.calls.max_duration_s, bundle.call_max_duration_s)
        if self.tv is not None:
            self.tv.set_language(bundle.language)
        self.reporter.trigger()

    async def run(self) -> bool:
        """Run until cancelled or decommissioned, then shut down in order.

        Returns ``True`` when central decommissioned the unit (its credentials are wiped then).
        """
        log.info(
            "agent %s (%s) starting%s",
            self.device_id,
            self.config.unit.profile,
            " on simulated hardware" if self.config.unit.simulate else "",
        )
        self._watch_shutter()
        await self.hotplug.start()
        if self.tv is not None:
            await self.tv.start()
        tasks = [
            asyncio.create_task(self.link.run(), name="link"),
            asyncio.create_task(self.reporter.run(self._publish_health), name="health"),
            asyncio.create_task(self.lifecycle.run(), name="lifecycle"),
            asyncio.create_task(run_watchdog(self.notifier), name="watchdog"),
        ]
        watch = getattr(self.hardware.display, "watch", None)  # the real TV: poll its power
        if watch is not None:
            tasks.append(asyncio.create_task(watch(), name="tv-power"))
        decommissioned = asyncio.create_task(self.lifecycle.decommissioned.wait())
        try:
            # asyncio.wait, unlike gather, leaves the tasks running when this one is cancelled,
            # so that shutdown() can still close the shutter and leave the broker cleanly.
            # Until decommissioned or a part fails; a part that simply finishes (the watchdog
            # outside systemd) is let go.
            waiting: set[asyncio.Task[Any]] = {*tasks, decommissioned}
            while decommissioned in waiting:
                done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not decommissioned:
                        task.result()
        finally:
            decommissioned.cancel()
            await self.shutdown(tasks)
        if self.lifecycle.decommissioned.is_set():
            self.lifecycle.wipe()
            return True
        return False

    def _watch_shutter(self) -> None:
        """Report every shutter movement that ends somewhere (open, closed, fault) as an event."""
        shutter = self.hardware.shutter
        if shutter is None:
            return
        loop = asyncio.get_running_loop()

        def changed(state: ShutterState) -> None:
            if state in (ShutterState.OPEN, ShutterState.CLOSED, ShutterState.FAULT):
                session = self.calls.session if self.calls else None
                detail: dict[str, str | None] = {
                    "state": state.value,
                    "call_id": session.call_id if session else None,
                    "caller": session.claims.sub if session else None,
                    "purpose": session.claims.purpose if session else None,
                }
                event = EventMessage(
                    payload=EventPayload(
                        kind="shutter", detail={k: v for k, v in detail.items() if v is not None}
                    )
                )
                loop.call_soon_threadsafe(
                    self._spawn, self.link.publish_reliably(Channel.EVENTS, event)
                )

        self._unsubscribe_shutter = shutter.subscribe(changed)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        """End any call and close the shutter first, then stop health, then leave the broker."""
        self.notifier.stopping("stopping: closing the shutter")
        if self.calls is not None:
            with contextlib.suppress(Exception):
                await self.calls.close()
        if self.hardware.shutter is not None:
            with contextlib.suppress(Exception):
                await self.hardware.shutter.close()
        if self.messages is not None:
            self.messages.close()
        if self.tv is not None:
            with contextlib.suppress(Exception):
                await self.tv.close()
        with contextlib.suppress(Exception):
            await self.hotplug.stop()
        for task in tasks:
            if task.get_name() != "link":
                task.cancel()
        await asyncio.gather(*tasks[1:], return_exceptions=True)
        await self.link.close()
        await asyncio.sleep(0)  # let queued shutter events reach the outbox
        self._unsubscribe_link()
        self._unsubscribe_shutter()
        self.hardware.close()
        self._unsubscribe_ready()
        self.notifier.close()
        log.info("agent %s stopped", self.device_id)
