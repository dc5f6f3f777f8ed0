"""Calls first: the health connection gives way while a call is being set up.

A night check dialled while central drains a backlog of health reports (after a restart, or a
broker that held them) competes for the same CPU: central parsing and committing reports, the
broker sending them, and the call's two ends on the same machine making and checking the offer
and the answer. Measured on 2 cores with 60 000 reports queued, the set-up took 0.6-0.9 s
against 0.4 s before (docs/benchmarks.md). Health is superseded by the next report and waits at
the broker (the window is held, :mod:`vaka.central.broker.health_link`), so while a call is
being set up central stops reading health and handing it to ingest; signalling, state and
events go on, on their own connection.

The pause is bounded so that calls can never starve health: a pause lasts until the last call
set-up ends, and at most ``longest_s``; after a pause that long, health reads on for at least as
long again before calls may pause it once more. Health keeps half of central's time at worst:
3000 reports/s of the 6000/s measured, against 667/s from 20 000 units reporting every 30 s.
``longest_s`` 0 turns it off.

A call's set-up holds (:meth:`CallsFirst.hold`) from the caller's first word to the unit's
answer, and for :data:`MEDIA_SETTLE_S` after it (the two ends connect and the first frame
arrives then); a TV that rings releases it (a person is answering, not the machine).
"""

import asyncio
import logging

log = logging.getLogger(__name__)

#: how long after the unit's answer a call's set-up still holds health (ICE, DTLS, first frame)
MEDIA_SETTLE_S = 1.0


class SetUpHold:
    """One call set-up's hold on health; :meth:`release` ends it (safe to call again)."""

    def __init__(self, owner: "CallsFirst") -> None:
        self._owner = owner
        #: whether this hold counts now
        self.held = False
        self._timer: asyncio.TimerHandle | None = None
        self.again()

    def again(self) -> None:
        """Hold (once more: a TV answered by a person, whose media sets up now)."""
        if not self.held:
            self.held = True
            self._owner._held()

    def release(self) -> None:
        """The set-up is done (or gone): health may read on, as far as this call goes."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.held:
            self.held = False
            self._owner._released()

    def release_after(self, seconds: float) -> None:
        """Release in ``seconds`` (the media's first moments), or earlier by :meth:`release`."""
        if self.held and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(seconds, self.release)


class CallsFirst:
    """Whether the health connection may read now (:attr:`free`), and the holds of calls."""

    def __init__(self, longest_s: float) -> None:
        self.longest_s = longest_s
        #: set while health may be read and handed to ingest
        self.free = asyncio.Event()
        self.free.set()
        self._holds = 0
        self._paused_at = 0.0
        #: loop time before which no hold pauses health (it read on after a long pause)
        self._reading_until = 0.0
        self._timer: asyncio.TimerHandle | None = None
        #: how often health gave way, and for how long in all (seconds)
        self.pauses = 0
        self.paused_s = 0.0
        #: pauses that reached ``longest_s`` with a call set-up still going on
        self.cut_short = 0

    def hold(self) -> SetUpHold:
        """A call's set-up begins: health pauses (within the bounds above) until it is released."""
        return SetUpHold(self)

    def _held(self) -> None:
        self._holds += 1
        self._update()

    def _released(self) -> None:
        self._holds -= 1
        self._update()

    def _update(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._holds == 0:
            if not self.free.is_set():
                self._read_on(now)
        elif self.free.is_set() and self.longest_s > 0 and now >= self._reading_until:
            self.free.clear()
            self.pauses += 1
            self._paused_at = now
            self._cancel_timer()
            self._timer = loop.call_later(self.longest_s, self._long_enough)

    def _long_enough(self) -> None:
        """The pause reached ``longest_s``: health reads on, for at least as long again."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.cut_short += 1
        log.info("health reads on after %.1f s paused for call set-ups", self.longest_s)
        self._read_on(now)
        self._reading_until = now + self.longest_s
        self._timer = loop.call_later(self.longest_s, self._update)

    def _read_on(self, now: float) -> None:
        self._cancel_timer()
        self.paused_s += now - self._paused_at
        self.free.set()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def stats(self) -> dict[str, float | int]:
        """Counters for central's stats: pauses, seconds paused, pauses cut short."""
        return {
            "pauses": self.pauses,
            "paused_s": round(self.paused_s, 3),
            "cut_short": self.cut_short,
            "holding": self._holds,
        }
