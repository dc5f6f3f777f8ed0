"""Signed configuration bundles while the agent runs: verify and apply each one that arrives on
the ``config`` channel (the outcome goes to central as an event either way), and put the active
bundle's values into the running parts."""

import asyncio
import logging
from collections.abc import Callable

from vaka.agent.call.guard import OfferGuard
from vaka.agent.config_store import ConfigStore
from vaka.agent.health import HealthReporter, HealthSampler
from vaka.agent.link import UnitLink
from vaka.errors import ConfigError
from vaka.protocol.messages import AnyMessage, ConfigMessage, EventMessage, EventPayload
from vaka.protocol.topics import Channel
from vaka.provisioning.bundles import BadBundle, UnitConfigBundle

log = logging.getLogger(__name__)


class ConfigUpdates:
    """Receives bundles (:meth:`handle`, for the ``config`` channel) into ``store``."""

    def __init__(self, store: ConfigStore, link: UnitLink) -> None:
        self.store = store
        self.link = link

    async def handle(self, message: AnyMessage) -> None:
        """Verify and apply a signed bundle; report the outcome as an event either way."""
        assert isinstance(message, ConfigMessage)
        store, token = self.store, message.payload.bundle
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


class BundleUse:
    """Puts a verified bundle's values into the running parts: the health interval, the ticket
    key and the call limit (capped by ``[calls] max_duration_s``), the TV's language. Runs on the
    applying thread (subscribe it to the store)."""

    def __init__(
        self,
        sampler: HealthSampler,
        reporter: HealthReporter,
        guard: OfferGuard | None = None,
        max_call_s: int | None = None,
        set_language: Callable[[str], None] | None = None,
    ) -> None:
        self.sampler = sampler
        self.reporter = reporter
        self.guard = guard
        self.max_call_s = max_call_s
        self.set_language = set_language

    def __call__(self, bundle: UnitConfigBundle) -> None:
        self.sampler.interval_s = self.reporter.interval_s = bundle.health_interval_s
        if self.guard is not None and self.max_call_s is not None:
            self.guard.ticket_key = bundle.ticket_public_key()
            self.guard.max_duration_s = min(self.max_call_s, bundle.call_max_duration_s)
        if self.set_language is not None:
            self.set_language(bundle.language)
        self.reporter.trigger()
