"""Whom the citizen's button reaches now: the night staff in the care provider's night hours, the
staff on duty (or the provider's day number) otherwise.

The hours, the day number and the unit's time zone come from the signed configuration
(:class:`~vaka.provisioning.bundles.UnitConfigBundle`: ``night_from``, ``night_until``,
``day_calls``, ``day_phone``, ``timezone``); a unit without one uses the defaults, 21:00-07:00 in
its own local time. The same citizen-call request serves night and day: central rings whoever
is on duty in the groups that take the citizen's calls, night staff or day staff.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from vaka.agent.ui import StaffReach
from vaka.provisioning.bundles import UnitConfigBundle, zone_of


def _clock_time(text: str) -> dt.time:
    hours, minutes = text.split(":")
    return dt.time(int(hours), int(minutes))


@dataclass(frozen=True)
class StaffHours:
    """The care provider's night hours and daytime number, in the unit's time zone."""

    night_from: dt.time = dt.time(21, 0)
    night_until: dt.time = dt.time(7, 0)
    zone: dt.tzinfo | None = None
    "The unit's time zone; ``None`` for the system's local time."
    day_calls: bool = True
    "Whether the button rings the staff on duty in the daytime too."
    day_phone: str | None = None

    @classmethod
    def of(cls, bundle: UnitConfigBundle | None) -> StaffHours:
        """The hours of a signed configuration (the defaults without one)."""
        if bundle is None:
            return cls()
        return cls(
            _clock_time(bundle.night_from),
            _clock_time(bundle.night_until),
            zone_of(bundle.timezone) if bundle.timezone is not None else None,
            bundle.day_calls,
            bundle.day_phone,
        )

    def local(self, at: float) -> dt.datetime:
        """The wall-clock time at the Unix time ``at`` where the unit is."""
        return dt.datetime.fromtimestamp(at, self.zone)

    def is_night(self, at: float) -> bool:
        """Whether ``at`` is in the night hours (from ``night_from``, until ``night_until``)."""
        now = self.local(at).time()
        start, end = self.night_from, self.night_until
        if start < end:
            return start <= now < end
        return now >= start or now < end  # the night crosses midnight

    def reach(self, at: float) -> StaffReach:
        """What the idle screen offers at ``at``."""
        if self.is_night(at):
            return StaffReach.NIGHT
        return StaffReach.DAY if self.day_calls else StaffReach.PHONE
