"""The permission matrix applied to one call request: who may reach which unit, for what, when.

A request is refused with a reason the staff member (and the audit trail) can read; an allowed
one yields the window and limits that go into the ticket.
"""

import datetime as dt
from dataclasses import dataclass
from typing import Protocol
from zoneinfo import ZoneInfo

from vaka.central.directory.directory import Directory, StaffMember
from vaka.central.settings.calls import CallLimits
from vaka.errors import CallError
from vaka.provisioning.tickets import ViewLevel


class CallRefused(CallError, PermissionError):
    """A call request was refused by central's policy."""


#: Which roles may make which calls to a unit.
ROLE_PURPOSES = {
    "night_staff": {"night_check", "video_visit", "citizen_call", "break_glass"},
    "day_staff": {"video_visit", "citizen_call", "break_glass"},
}


class CitizenCallLedger(Protocol):
    """What the policy needs to know about duty and citizen-call requests (blocking)."""

    def on_duty(self, staff_id: str) -> bool:
        """Whether ``staff_id`` is on duty."""

    def holder(self, request_id: str) -> tuple[str, str] | None:
        """``(staff id, unit)`` of whoever accepted ``request_id``, or ``None``."""


@dataclass(frozen=True)
class Authorization:
    """An allowed call request: what goes into the ticket."""

    citizen: str
    #: the caller's permitting group (``None`` for a contact of the citizen: no staff group)
    group: str | None
    window: tuple[int, int]
    max_duration_s: int
    break_glass_reason: str | None = None
    #: the view the call starts in (``None``: the unit's default for the purpose)
    view: ViewLevel | None = None
    #: whether the staff member may escalate a blurred view to clear (with a reason)
    may_escalate: bool = False
    #: a contact's call the TV answers by itself after this many seconds (``None``: it rings)
    auto_answer_s: int | None = None


def schedule_window(
    schedule: list[tuple[int, int]], now: dt.datetime
) -> tuple[dt.datetime, dt.datetime] | None:
    """The scheduled check window that contains ``now`` (local time), if any.

    Checks near midnight are found on either side of it.
    """
    for minute, tolerance in schedule:
        for day in (-1, 0, 1):
            base = now.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=day)
            at = base + dt.timedelta(minutes=minute)
            start, end = at - dt.timedelta(minutes=tolerance), at + dt.timedelta(minutes=tolerance)
            if start <= now <= end:
                return start, end
    return None


@dataclass(frozen=True)
class ScheduledCheck:
    """One occurrence of a scheduled check: its time and its window (local time)."""

    at: dt.datetime
    start: dt.datetime
    end: dt.datetime


def next_check(schedule: list[tuple[int, int]], now: dt.datetime) -> ScheduledCheck | None:
    """The earliest scheduled check whose window has not closed at ``now`` (local time).

    A check whose window is still open counts even if its time has passed (it can still be done);
    across midnight, yesterday's late checks and tomorrow's early ones are found. ``None`` only
    for an empty schedule.
    """
    found: list[ScheduledCheck] = []
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for minute, tolerance in schedule:
        for day in (-1, 0, 1):
            at = midnight + dt.timedelta(days=day, minutes=minute)
            spread = dt.timedelta(minutes=tolerance)
            if at + spread >= now:
                found.append(ScheduledCheck(at, at - spread, at + spread))
    return min(found, key=lambda c: c.at) if found else None


def _describe_schedule(schedule: list[tuple[int, int]]) -> str:
    return ", ".join(f"{m // 60:02d}:{m % 60:02d} (±{t} min)" for m, t in schedule)


def authorize_call(
    directory: Directory,
    caller: StaffMember,
    device_id: str,
    purpose: str,
    now: float,
    limits: CallLimits,
    reason: str | None = None,
    request: str | None = None,
    ledger: CitizenCallLedger | None = None,
    *,
    require_consent: bool = True,
) -> Authorization:
    """Apply the permission matrix; raise :class:`CallRefused` with the reason.

    With ``require_consent`` a night check, video visit or break-glass call also needs valid
    consent from the citizen and every cohabitant (:mod:`vaka.central.directory.consent`).

    A ``citizen_call`` answers the citizen's request ``request``: it needs a ``ledger`` (the
    citizen-call desk) that says the caller is on duty and accepted that request.
    """
    if purpose not in ROLE_PURPOSES.get(caller.role, set()):
        raise CallRefused(f"the role {caller.role} may not make {purpose} calls")
    citizen = directory.citizen_of(device_id)
    if citizen is None:
        raise CallRefused(f"unit {device_id} is not assigned to a citizen")
    if purpose == "citizen_call":
        return _authorize_citizen_call(
            directory, caller, device_id, citizen, now, limits, request, ledger
        )
    groups = directory.groups_of(caller.staff_id) & directory.permitting_groups(
        citizen, purpose, "to_unit"
    )
    if not groups:
        raise CallRefused(
            f"staff {caller.staff_id} is not in a group allowed {purpose} calls "
            f"to citizen {citizen}"
        )
    if require_consent:
        missing = directory.consent.refusal(citizen, purpose, now)
        if missing is not None:
            raise CallRefused(missing)
    group = sorted(groups)[0]
    max_s = limits.max_duration(purpose)
    start = int(now)
    if purpose == "break_glass":
        text = (reason or "").strip()
        if len(text) < limits.break_glass_min_reason:
            raise CallRefused(
                f"an emergency (break-glass) call needs a typed reason of at least "
                f"{limits.break_glass_min_reason} characters"
            )
        return Authorization(citizen, group, (start, start + max_s), max_s, text, view="clear")
    if purpose == "night_check":
        return _authorize_night_check(directory, citizen, group, now, limits)
    return Authorization(citizen, group, (start, start + max_s), max_s)


def _authorize_night_check(
    directory: Directory, citizen: str, group: str, now: float, limits: CallLimits
) -> Authorization:
    """A night check inside the care decision's schedule, in the citizen's night view."""
    max_s = limits.max_duration("night_check")
    schedule = directory.schedule(citizen, "night_check")
    if not schedule:
        raise CallRefused(f"citizen {citizen} has no night checks in their care decision")
    local = dt.datetime.fromtimestamp(now, ZoneInfo(limits.timezone))
    window = schedule_window(schedule, local)
    if window is None:
        raise CallRefused(
            f"outside the night-check schedule for citizen {citizen}: "
            f"{_describe_schedule(schedule)}"
        )
    night_view = directory.night_view(citizen)
    # The call may run past the window's end by at most its maximum duration.
    return Authorization(
        citizen,
        group,
        (int(window[0].timestamp()), int(window[1].timestamp())),
        max_s,
        view="clear" if night_view == "clear" else "blurred",
        may_escalate=night_view == "escalate",
    )


def citizen_call_groups(directory: Directory, caller: StaffMember, citizen: str) -> set[str]:
    """The caller's groups that may take ``citizen``'s calls; :class:`CallRefused` if none."""
    groups = directory.groups_of(caller.staff_id) & directory.permitting_groups(
        citizen, "citizen_call", "from_unit"
    )
    if not groups:
        raise CallRefused(
            f"staff {caller.staff_id} is not in a group that takes citizen calls "
            f"from citizen {citizen}"
        )
    return groups


def _authorize_citizen_call(
    directory: Directory,
    caller: StaffMember,
    device_id: str,
    citizen: str,
    now: float,
    limits: CallLimits,
    request: str | None,
    ledger: CitizenCallLedger | None,
) -> Authorization:
    groups = citizen_call_groups(directory, caller, citizen)
    if not request:
        raise CallRefused("a citizen call answers a citizen's request: name the request")
    if ledger is None:
        raise CallRefused("citizen calls are not taken on this central")
    if not ledger.on_duty(caller.staff_id):
        raise CallRefused(f"staff {caller.staff_id} is not on duty")
    holder = ledger.holder(request)
    if holder is None or holder[0] != caller.staff_id:
        raise CallRefused(f"staff {caller.staff_id} has not accepted the request {request}")
    if holder[1] != device_id:
        raise CallRefused(f"the request {request} came from another unit")
    max_s = limits.citizen_call_max_s
    return Authorization(citizen, sorted(groups)[0], (int(now), int(now) + max_s), max_s)
