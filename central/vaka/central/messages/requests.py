"""What staff ask for when they send a message (``POST /api/messages``), when it is due, and why
a request is refused."""

import datetime as dt
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from vaka.errors import VakaError
from vaka.provisioning.messages import DEFAULT_ACK_WITHIN_S, MAX_PICTURE_CHARS, MAX_TEXT_CHARS

#: How far ahead a message may be scheduled.
MAX_AHEAD_S = 7 * 86400


class MessageRefused(VakaError, PermissionError):
    """A staff member may not send this message; the text says why."""


class BadMessageRequest(VakaError, ValueError):
    """A message request was invalid; the text says why."""


class MessageRequest(BaseModel):
    """``POST /api/messages`` body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: str = Field(max_length=64)
    kind: Literal["message", "reminder"] = "message"
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    picture: str | None = Field(default=None, max_length=2 * MAX_PICTURE_CHARS)
    #: "HH:MM" local time (today, or tomorrow if already past) or an ISO 8601 time; None: now
    at: str | None = Field(default=None, max_length=40)
    ack_within_s: int = Field(default=DEFAULT_ACK_WITHIN_S, ge=1, le=86_400)


def resolve_at(at: str | None, now: float, timezone: str) -> float:
    """When a message is due: ``now`` if ``at`` is ``None``, else the time ``at`` names.

    ``HH:MM`` is local time in ``timezone``, today or tomorrow if that is past; an ISO 8601 time
    without an offset is local time too. Raises :class:`BadMessageRequest` if ``at`` is
    unreadable, in the past, or more than seven days ahead.
    """
    if at is None:
        return now
    zone = ZoneInfo(timezone)
    local_now = dt.datetime.fromtimestamp(now, zone)
    try:
        if len(at) == 5 and at[2] == ":":
            hour, minute = int(at[:2]), int(at[3:])
            when = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
            if when.timestamp() <= now:
                when = (when + dt.timedelta(days=1)).replace(hour=hour, minute=minute)
        else:
            when = dt.datetime.fromisoformat(at)
            if when.tzinfo is None:
                when = when.replace(tzinfo=zone)
    except ValueError:
        raise BadMessageRequest(
            f"at {at!r} is neither HH:MM nor an ISO 8601 time (2025-03-01T14:00)"
        ) from None
    due = when.timestamp()
    if due < now - 60:
        raise BadMessageRequest(f"at {at!r} is in the past")
    if due > now + MAX_AHEAD_S:
        raise BadMessageRequest(f"at {at!r} is more than {MAX_AHEAD_S // 86400} days ahead")
    return max(due, now)
