"""How often, and for how long, the unit lost its broker link: what its health reports.

A link that leaves ``online`` starts an outage; the next ``online`` ends it. The count and the
length of the last one go into every health sample (``link_outages``, ``last_outage_s``), so
that central can show what a unit went through while it could not say so: central itself saw
only the will and, later, the birth.
"""

import threading
import time
from collections.abc import Callable

from vaka.agent.link.settings import LinkState


class LinkOutages:
    """Follows a link's states (see :meth:`LinkSession.subscribe_state`); thread-safe to read."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._was_online = False
        self._lost_at: float | None = None
        self.count = 0
        "Outages that ended (the link came back) since the agent started."
        self.last_s: float | None = None
        "Seconds the last ended outage lasted (``None``: none yet)."

    def on_state(self, state: LinkState) -> None:
        """A state change of the link."""
        with self._lock:
            if state is LinkState.ONLINE:
                if self._lost_at is not None:
                    self.count += 1
                    self.last_s = round(self._clock() - self._lost_at, 1)
                    self._lost_at = None
                self._was_online = True
            elif self._was_online and self._lost_at is None:
                self._lost_at = self._clock()

    def snapshot(self) -> tuple[int, float | None]:
        """``(count, last_s)``."""
        with self._lock:
            return self.count, self.last_s
