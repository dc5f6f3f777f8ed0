"""The citizen's "do not disturb for the evening": contacts' calls are refused until the morning.

The citizen sets it with one press on a contact's ringing call ("Not this evening"); it lasts
until the next ``[tv] quiet_until`` (local time, 07:00 unless configured) in the unit's time zone.
While it is on, the unit refuses every call from a contact at once with :data:`DO_NOT_DISTURB`
(central gives the contact's page the code ``do_not_disturb``); staff calls ring as always.
It is kept in memory only, like everything else the citizen does on the unit: a restart ends it.
"""

from __future__ import annotations

import datetime as dt
import logging

log = logging.getLogger(__name__)

#: The unit's reason for a contact's call refused while "do not disturb" is on (and for the
#: call that set it); central maps it to the code ``do_not_disturb``.
DO_NOT_DISTURB = "do not disturb: the citizen does not want calls this evening"

#: The purpose of a contact's call (the one kind of call "do not disturb" refuses).
CONTACT_CALL = "contact_call"


def _clock_time(text: str) -> dt.time:
    hours, minutes = text.split(":")
    return dt.time(int(hours), int(minutes))


class DoNotDisturb:
    """Whether contacts' calls are refused now, and until when."""

    def __init__(self, until_text: str = "07:00") -> None:
        self.until_time = _clock_time(until_text)
        #: Unix time at which it ends; ``None`` when it is off.
        self.until: float | None = None

    def start(self, now: dt.datetime) -> float:
        """Turn it on at the local time ``now`` (aware): it lasts until the next ``until_time``."""
        end = now.replace(
            hour=self.until_time.hour, minute=self.until_time.minute, second=0, microsecond=0
        )
        if end <= now:
            end += dt.timedelta(days=1)
        self.until = end.timestamp()
        log.info("do not disturb: contacts' calls are refused until %s", end.isoformat())
        return self.until

    def stop(self) -> None:
        """Turn it off."""
        self.until = None

    def refuses(self, purpose: str, at: float) -> bool:
        """Whether a call of ``purpose`` at Unix time ``at`` is refused (contacts' calls only)."""
        if self.until is None:
            return False
        if at >= self.until:
            self.until = None
            return False
        return purpose == CONTACT_CALL
