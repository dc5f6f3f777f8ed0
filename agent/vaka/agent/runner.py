"""The small runner: starts a unit's parts in order, keeps systemd's watchdog fed, and on the way
out (SIGTERM cancels it, a part fails, or the unit is decommissioned) stops them in reverse.

A profile's composition (:mod:`vaka.agent.profiles`) lists its parts so that reverse order is the
safe order: the part that closes the shutter is started last and so stopped first, the broker
link is stopped after every part that may still report something, and the hardware is released
at the very end.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from vaka.agent.watchdog import SystemdNotifier, run_watchdog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Part:
    """One part of a running unit: what starts it, what runs while the unit runs, what stops it.

    ``start`` runs before the next part starts (a failure stops the parts started so far);
    ``run`` becomes a task that may finish (it is let go) or fail (the unit stops); ``stop`` runs
    in reverse order on the way out, before the part's task is cancelled and gathered.
    """

    name: str
    start: Callable[[], Awaitable[None]] | None = None
    run: Callable[[], Coroutine[Any, Any, None]] | None = None
    stop: Callable[[], Awaitable[object]] | None = None


class Runner:
    """Runs ``parts`` until ``until`` is set, a part's task fails, or the runner is cancelled."""

    def __init__(
        self, parts: Sequence[Part], notifier: SystemdNotifier, until: asyncio.Event
    ) -> None:
        self.parts = list(parts)
        self.notifier = notifier
        self.until = until
        self._started: list[tuple[Part, asyncio.Task[None] | None]] = []

    async def run(self) -> None:
        """Start every part, wait, then stop them in reverse (also when cancelled)."""
        watchdog = asyncio.create_task(run_watchdog(self.notifier), name="watchdog")
        try:
            for part in self.parts:
                if part.start is not None:
                    await part.start()
                task = None
                if part.run is not None:
                    task = asyncio.create_task(part.run(), name=part.name)
                self._started.append((part, task))
            await self._wait([t for _, t in self._started if t is not None] + [watchdog])
        finally:
            await self._stop(watchdog)

    async def _wait(self, tasks: list[asyncio.Task[None]]) -> None:
        # asyncio.wait, unlike gather, leaves the tasks running when this one is cancelled, so
        # that the parts can still be stopped in order (the shutter first, the link last).
        until = asyncio.create_task(self.until.wait(), name="until")
        waiting: set[asyncio.Task[Any]] = {*tasks, until}
        try:
            while until in waiting:
                done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not until:
                        task.result()  # a part that simply finishes is let go
        finally:
            until.cancel()

    async def _stop(self, watchdog: asyncio.Task[None]) -> None:
        self.notifier.stopping("stopping: closing the shutter")
        for part, task in reversed(self._started):
            if part.stop is not None:
                try:
                    await part.stop()
                except Exception:
                    log.exception("stopping %s failed", part.name)
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._started.clear()
        watchdog.cancel()
        await asyncio.gather(watchdog, return_exceptions=True)
        with contextlib.suppress(Exception):
            self.notifier.close()
