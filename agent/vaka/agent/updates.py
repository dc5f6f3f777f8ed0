"""System updates on central's signed order: verify the order, wait for a quiet moment, download
the bundle (:mod:`vaka.agent.download`), install it through the hardware factory's installer,
reboot, and report every step to central as an ``update`` event.

No order, no install. An order must be signed by central's config key (the one the unit pins for
config bundles), name this unit, be valid, and name a bundle the unit does not already run. The
unit neither starts nor installs an update while a call (or the citizen's request for one) is
under way, nor inside the care provider's night hours from its signed configuration (the
defaults 21:00-07:00 without one): that is when night checks happen. It waits, says once why,
and goes on when the call ends or the day starts.

The order is retained on the ``update`` channel: after the reboot the new root's agent gets it
again, sees that it runs the version ordered, and reports ``running``. A newer order replaces
one not yet installed. If instead the old root's agent gets it again (the new root was not
healthy in time and boot counting went back), the unit knows it installed that bundle (a note in
its credentials directory) and reports ``rolled_back`` with boot counting's cause, rather than
installing it once more.

Steps reported (``kind: update``, ``detail.step``): ``ordered``, ``waiting`` (with the
``reason``), ``downloaded``, ``refused`` (with the ``reason``), ``installed``, ``rebooting``,
``running``, ``marked_good`` (boot counting ended the new system's trial: it is kept),
``rolled_back`` (with the ``reason``).
"""

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from joserfc.jwk import OKPKey

from vaka.agent.call.state import UnitCall
from vaka.agent.download import (
    Download,
    DownloadInterrupted,
    DownloadRefused,
    Wanted,
    unreachable_server,
)
from vaka.agent.hw.installer import Installer, InstallFailed
from vaka.agent.link import UnitLink
from vaka.protocol.backoff import backoff_delay
from vaka.protocol.messages import (
    AnyMessage,
    EventMessage,
    EventPayload,
    EventValue,
    UpdateMessage,
    UpdatePayload,
)
from vaka.protocol.topics import Channel
from vaka.provisioning.bundles import UnitConfigBundle, zone_of
from vaka.provisioning.updates import BadUpdateOrder, UpdateOrder, verify_update_order

log = logging.getLogger(__name__)

#: How often a waiting update looks again whether the call or the night is over.
RECHECK_S = 5.0


@dataclass(frozen=True)
class UpdateSettings:
    """Where and how fast bundles are fetched (``[update]``)."""

    download_dir: Path
    max_rate_bps: float = 0
    server_ca: Path | None = None
    recheck_s: float = RECHECK_S
    #: which bundle this unit last installed (its SHA-256), kept over the reboot (``None``: in
    #: memory only)
    installed_note: Path | None = None
    #: how long a unit back on its old system waits for boot counting's cause (vaka-mark-good
    #: starts after the agent)
    cause_wait_s: float = 30.0
    #: how long a unit running a new system looks for boot counting's end of its trial (past the
    #: image's 10-minute health deadline) and how often
    proven_wait_s: float = 1200.0
    proven_poll_s: float = 2.0
    #: the bundle servers (``host:port``) this unit's firewall lets it reach
    servers: tuple[str, ...] = ()


def night_reason(bundle: UnitConfigBundle | None, at: float) -> str | None:
    """Why ``at`` is no time to update (inside the care provider's night hours), or ``None``."""
    start_text = bundle.night_from if bundle else "21:00"
    end_text = bundle.night_until if bundle else "07:00"
    zone = zone_of(bundle.timezone) if bundle and bundle.timezone else None
    now = dt.datetime.fromtimestamp(at, zone).time()
    start, end = dt.time.fromisoformat(start_text), dt.time.fromisoformat(end_text)
    inside = start <= now < end if start < end else (now >= start or now < end)
    if inside:
        return f"night-check hours {start_text}-{end_text}: the update waits until {end_text}"
    return None


class Updater:
    """Handles update orders (:meth:`on_order`, for the ``update`` channel) and carries out the
    newest one (:meth:`run`)."""

    def __init__(
        self,
        link: UnitLink,
        device_id: str,
        order_key: OKPKey | None,
        installer: Installer | None,
        call: UnitCall,
        bundle: Callable[[], UnitConfigBundle | None],
        settings: UpdateSettings,
    ) -> None:
        self.link = link
        self.device_id = device_id
        self.order_key = order_key
        self.installer = installer
        self.call = call
        self.bundle = bundle
        self.settings = settings
        self.order: UpdateOrder | None = None
        self._token = ""
        self._seen: set[str] = set()
        self._wake = asyncio.Event()
        self._download: Download | None = None
        self._installing = False
        #: the bundle installed last, when no note is kept in a file
        self._installed: str | None = None
        #: the current order's work, cancelled when a newer order replaces it
        self._work: asyncio.Task[None] | None = None
        #: the report of a rollback, once boot counting has said why
        self._came_back_task: asyncio.Task[None] | None = None
        #: the report of the new system marked good, once boot counting has ended its trial
        self._proven_task: asyncio.Task[None] | None = None
        link.on(Channel.UPDATE, self.on_order, cleared=self.on_withdrawn)

    async def on_order(self, message: AnyMessage) -> None:
        """A signed update order from central: refuse it with the reason, or take it."""
        assert isinstance(message, UpdateMessage)
        token = message.payload.order
        if self.order_key is None:
            await self._refuse(None, "this unit pins no config key ([trust] config_key)")
            return
        try:
            order = verify_update_order(token, self.order_key, self.device_id)
        except BadUpdateOrder as err:
            await self._refuse(None, str(err))
            return
        if order.jti in self._seen:
            return  # the retained order again after a reconnect
        self._seen.add(order.jti)
        if self.installer is None:
            await self._refuse(order, "this unit has no installer")
            return
        running = await asyncio.to_thread(self.installer.running)
        if running.version == order.version:
            self._note_install(None)
            await self._report(order, "running", slot=running.slot)
            self._watch_trial(order, running.slot)
            return
        if self._installed_sha() == order.sha256:
            # Boot counting's cause may take a moment (vaka-mark-good starts after the agent):
            # waited for in a task of its own, not in the link's message handling.
            self._came_back_task = asyncio.create_task(
                self._came_back(order, running.slot), name="update-came-back"
            )
            self._came_back_task.add_done_callback(self._finished)
            return
        unreachable = unreachable_server(order.url, self.settings.servers)
        if unreachable is not None:  # the firewall would drop it: refused before any download
            await self._refuse(order, unreachable)
            return
        if self._installing:
            await self._refuse(order, "another update is being installed; order again later")
            return
        log.warning("central orders update to %s (roll-out %d)", order.version, order.rollout)
        self.order, self._token = order, token
        await self._report(order, "ordered")
        self._wake.set()

    async def on_withdrawn(self) -> None:
        """Central cleared the order (done with it, or the unit came back from it on its old
        system): nothing more is done for it, unless it is being installed."""
        if self.order is None or self._installing:
            return
        log.warning("central withdrew the update order to %s", self.order.version)
        self.order = None
        await self._cancel_work()

    async def run(self) -> None:
        """Carry out the newest order, forever; a newer order replaces the one in hand."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._cancel_work()
            if self.order is not None:
                self._work = asyncio.create_task(
                    self._carry_out(self.order, self._token), name="update"
                )
                self._work.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("the update stopped: %r", task.exception())

    async def close(self) -> None:
        """Stop any download (the part file stays for the next start)."""
        await self._cancel_work()
        for task in (self._came_back_task, self._proven_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _cancel_work(self) -> None:
        work, self._work = self._work, None
        if work is None or work.done():
            return
        if self._download is not None:
            self._download.stopped.set()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work

    async def _carry_out(self, order: UpdateOrder, token: str) -> None:
        await self._until_quiet(order)
        path = await self._fetch(order, token)
        if path is None:
            return
        await self._report(order, "downloaded", size=order.size)
        await self._until_quiet(order)
        self._installing = True  # from here on a newer order is refused, not let in
        try:
            came_back = await self._install_and_reboot(order, path)
        finally:
            self._installing = False
        if came_back:
            # The new root was not healthy in time and boot counting went back to the old one.
            # A unit comes back as a new process that gets the retained order again; the
            # simulated one (still running) takes it again the same way.
            self._seen.discard(order.jti)
            await self.on_order(UpdateMessage(payload=UpdatePayload(order=token)))

    async def _install_and_reboot(self, order: UpdateOrder, path: Path) -> bool:
        """Install and reboot; whether the unit came back on its old system (simulated only)."""
        assert self.installer is not None
        # Noted first: the helper reboots the unit by itself soon after the install.
        self._note_install(order.sha256)
        try:
            await asyncio.to_thread(self.installer.install, path)
        except InstallFailed as err:
            self._note_install(None)
            await self._refuse(order, f"the installer refused the bundle: {err}")
            return False
        finally:
            if self._download is not None:
                self._download.discard()
        await self._report(order, "installed")
        await self._report(order, "rebooting")
        try:
            await asyncio.to_thread(self.installer.reboot)
        except InstallFailed as err:
            await self._refuse(order, str(err))
            return False
        # On a unit the reboot ends this process; the simulated one comes back at once.
        running = await asyncio.to_thread(self.installer.running)
        if running.version != order.version:
            return True
        await self._report(order, "running", slot=running.slot)
        self._watch_trial(order, running.slot)
        return False

    async def _until_quiet(self, order: UpdateOrder) -> None:
        """Return when no call is under way and it is not the night hours; report once why not."""
        said: str | None = None
        while True:
            reason = self.quiet_reason()
            if reason is None:
                return
            if reason != said:
                log.info("update to %s waits: %s", order.version, reason)
                await self._report(order, "waiting", reason=reason)
                said = reason
            await asyncio.sleep(self.settings.recheck_s)

    def quiet_reason(self, at: float | None = None) -> str | None:
        """Why now is no time to update, or ``None``."""
        if self.call.busy:
            return "a call is under way: the update waits until it ends"
        return night_reason(self.bundle(), time.time() if at is None else at)

    async def _fetch(self, order: UpdateOrder, token: str) -> Path | None:
        """The verified bundle, or ``None`` after reporting why it was refused. An interrupted
        download is resumed, with growing pauses, until it completes or is refused."""
        s = self.settings
        wanted = Wanted(order.url, order.sha256, order.size, token)
        download = Download(wanted, s.download_dir, s.max_rate_bps, s.server_ca)
        self._download = download
        attempt = 0
        while True:
            try:
                return await asyncio.to_thread(download.fetch)
            except DownloadRefused as err:
                download.discard()
                await self._refuse(order, str(err))
                return None
            except DownloadInterrupted as err:
                if download.stopped.is_set():
                    raise asyncio.CancelledError from None
                delay = backoff_delay(attempt, 1.0, 300.0)
                attempt += 1
                log.warning("%s; resuming in %.0f s", err, delay)
                await asyncio.sleep(delay)

    async def _came_back(self, order: UpdateOrder, slot: str | None) -> None:
        """This unit installed ``order``'s bundle, rebooted, and runs its old system again."""
        assert self.installer is not None
        cause = None
        deadline = time.monotonic() + self.settings.cause_wait_s
        while True:
            cause = await asyncio.to_thread(self.installer.came_back)
            if cause is not None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(1.0)
        self._note_install(None)
        cause = cause or "the new system was not healthy in time and boot counting went back"
        log.warning("update to %s rolled back, on slot %s again: %s", order.version, slot, cause)
        await self._report(order, "rolled_back", reason=f"back on slot {slot}: {cause}")

    def _watch_trial(self, order: UpdateOrder, slot: str | None) -> None:
        """Report ``marked_good`` once boot counting ends the new system's trial (it waits for
        the agent to be online first; a task of its own, the link's messages do not wait)."""
        if self._proven_task is not None and not self._proven_task.done():
            return
        self._proven_task = asyncio.create_task(
            self._until_proven(order, slot), name="update-proven"
        )
        self._proven_task.add_done_callback(self._finished)

    async def _until_proven(self, order: UpdateOrder, slot: str | None) -> None:
        assert self.installer is not None
        deadline = time.monotonic() + self.settings.proven_wait_s
        while not await asyncio.to_thread(self.installer.proven):
            if time.monotonic() >= deadline:
                return  # a slot proven before this boot, or a trial that failed
            await asyncio.sleep(self.settings.proven_poll_s)
        log.warning("update to %s: slot %s marked good, its trial is over", order.version, slot)
        await self._report(order, "marked_good", slot=slot)

    def _installed_sha(self) -> str | None:
        note = self.settings.installed_note
        if note is None:
            return self._installed
        try:
            return note.read_text().strip() or None
        except OSError:
            return None

    def _note_install(self, sha256: str | None) -> None:
        """Keep (``None``: forget) which bundle this unit installed, over the reboot."""
        self._installed = sha256
        note = self.settings.installed_note
        if note is None:
            return
        try:
            if sha256 is None:
                note.unlink(missing_ok=True)
            else:
                tmp = note.with_name(note.name + ".tmp")
                tmp.write_text(sha256 + "\n")
                tmp.replace(note)
        except OSError as err:
            log.warning("could not note the installed bundle in %s: %s", note, err)

    async def _refuse(self, order: UpdateOrder | None, reason: str) -> None:
        self.link.refusals.refuse("update order", reason, "update")
        await self._report(order, "refused", reason=reason)

    async def _report(self, order: UpdateOrder | None, step: str, **more: EventValue) -> None:
        detail: dict[str, EventValue] = {"step": step}
        if order is not None:
            detail.update(version=order.version, rollout=order.rollout, sha256=order.sha256)
        for key, value in more.items():
            detail[key] = value[:200] if isinstance(value, str) else value
        event = EventMessage(payload=EventPayload(kind="update", detail=detail))
        await self.link.publish_reliably(Channel.EVENTS, event)
