"""``[calls]``: the time zone of schedules, ticket lifetime, ring and answer times, and how long
each kind of call may last."""

from pydantic import BaseModel, ConfigDict, Field


class CallLimits(BaseModel):
    """``[calls]`` in central's configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "Europe/Stockholm"
    ticket_ttl_s: int = Field(default=60, ge=5, le=600)
    #: a call WebSocket that has not sent its dial request this long after opening is closed
    #: (one deadline from the opening; pings do not extend it)
    dial_deadline_s: float = Field(default=15.0, gt=0, le=120)
    answer_timeout_s: float = Field(default=10.0, gt=0, le=60)
    #: How long a call may ring on a TV unit: the unit stops ringing by itself then ("no answer
    #: after 30 s"); central waits a few seconds more for it to say so.
    ring_timeout_s: float = Field(default=30.0, gt=0, le=600)
    night_check_max_s: int = Field(default=300, gt=0, le=3600)
    video_visit_max_s: int = Field(default=1800, gt=0, le=7200)
    citizen_call_max_s: int = Field(default=1800, gt=0, le=7200)
    citizen_call_ring_s: float = Field(default=60, ge=5, le=600)
    #: a call from one of the citizen's contacts (:mod:`vaka.central.circle`)
    contact_call_max_s: int = Field(default=3600, gt=0, le=4 * 3600)
    #: the countdown before the TV answers a contact's call by itself, for a contact whom staff
    #: set to be answered so (by default a contact's call only rings)
    contact_auto_answer_s: int = Field(default=10, ge=0, le=60)
    break_glass_max_s: int = Field(default=600, gt=0, le=3600)
    break_glass_min_reason: int = Field(default=10, ge=1)

    def max_duration(self, purpose: str) -> int:
        """The longest a call for ``purpose`` may last, in seconds."""
        return int(getattr(self, f"{purpose}_max_s"))
