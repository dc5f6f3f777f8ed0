"""Which of a unit's call and shutter events may enter the record, and as what.

A unit's certificate lets it publish anything on its own event topic, so its word alone cannot
write history. :func:`judge` is a pure function of central's own ticket record for the call (the
``ticket_issued`` entry), the unit events already recorded for that call, and the new event:

* a call event is recorded only for a call id central issued a ticket for, to that unit;
* only in an order that can happen: no end before start (except the end of a call that never
  reached media: ``media: false``, no shutter opened), no second start, nothing after the end, a
  shutter closes only after it opened in that call;
* who called and why come from the ticket, never from the unit's message; the entry's time is
  central's receive time, the unit's clock is kept as ``unit_ts``;
* an event whose message id is recorded already is a duplicate (a resend after a lost receipt or a
  redelivery after a crash), recorded once.

A unit's report that it *refused* an offer needs no ticket: it records an attempt on the unit
(a forged or replayed offer), not a viewing; it still counts against the unit's refusal budget
(:class:`RefusalBudget`) when there is no ticket, so it cannot grow the trail without bound.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from vaka.central.audit.trail import AuditEntry

#: Event kinds that are call records.
CALL_KINDS = frozenset({"call", "shutter"})
#: Call actions that are a citizen's request (its id is the unit's own, not a ticket's): central
#: records those itself from the request signal (``citizen_call_*``), so the unit's copy is not
#: part of the record.
REQUEST_ACTIONS = frozenset({"requested", "cancelled"})
#: What the unit may report it did with a call central issued.
CALL_ACTIONS = frozenset(
    {
        "started",
        "ended",
        "refused",
        "declined",
        "picture_shown",
        # the graduated view: the unit made the picture clear, or refused an escalation
        "view_changed",
        "escalation_refused",
    }
)
SHUTTER_STATES = frozenset({"open", "closed", "fault"})
SHUTS = frozenset({"shutter_closed", "shutter_fault"})
#: Detail keys the record takes from the ticket, never from the unit.
FROM_TICKET = ("caller", "purpose", "call_id", "action", "state")
#: The message id of the unit's event, kept in the entry's detail (how duplicates are found).
EVENT_ID = "event_id"


@dataclass(frozen=True)
class UnitEvent:
    """A unit's ``call`` or ``shutter`` event as central received it."""

    event_id: str
    device_id: str
    kind: str
    detail: Mapping[str, Any]
    unit_ts: float  # the unit's clock: kept, never trusted
    received_at: float  # central's clock: the entry's time

    @property
    def call_id(self) -> str | None:
        """The call the unit says this belongs to."""
        value = self.detail.get("call_id")
        return None if value is None else str(value)

    @property
    def entry_kind(self) -> str:
        """``call_started``, ``shutter_open``, ... (what the trail would call it)."""
        if self.kind == "shutter":
            return f"shutter_{self.detail.get('state', 'unknown')}"
        return f"call_{self.detail.get('action', 'unknown')}"


@dataclass(frozen=True)
class NewEntry:
    """The fields of the audit entry to append."""

    kind: str
    ts: float
    unit: str
    actor: str | None
    purpose: str | None
    call_id: str | None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """What :func:`judge` decided: ``record`` (with the entry), ``duplicate`` or ``refuse``."""

    outcome: Literal["record", "duplicate", "refuse"]
    reason: str = ""
    entry: NewEntry | None = None
    #: a refusal of this kind uses the unit's refusal budget when recorded
    budgeted: bool = False


def is_call_record(kind: str, detail: Mapping[str, Any]) -> bool:
    """Whether an event of ``kind`` goes through :func:`judge` (rather than plain storage)."""
    return kind in CALL_KINDS and not (kind == "call" and detail.get("action") in REQUEST_ACTIONS)


def judge(ticket: AuditEntry | None, so_far: Sequence[AuditEntry], event: UnitEvent) -> Verdict:
    """Decide ``event`` against the call's ticket and the unit events recorded for it so far.

    ``ticket`` is the ``ticket_issued`` entry of ``event.call_id`` (``None`` if there is none);
    ``so_far`` are the entries of that call that came from unit events, in order.
    """
    if any(e.detail.get(EVENT_ID) == event.event_id for e in so_far):
        return Verdict("duplicate", "already recorded")
    problem = _problem(ticket, so_far, event)
    if problem is not None:
        return Verdict("refuse", problem)
    return Verdict("record", entry=_entry(ticket, event))


def _problem(
    ticket: AuditEntry | None, so_far: Sequence[AuditEntry], event: UnitEvent
) -> str | None:
    """Why ``event`` cannot be recorded, or ``None``."""
    call_id = event.call_id
    if event.kind == "shutter":
        state = event.detail.get("state")
        if state not in SHUTTER_STATES:
            return f"unknown shutter state {str(state)[:20]!r}"
        if call_id is None:
            # Outside a call the unit may only say its shutter is shut or broken.
            return None if state in ("closed", "fault") else "shutter opened outside a call"
    else:
        action = event.detail.get("action")
        if action not in CALL_ACTIONS:
            return f"unknown call action {str(action)[:20]!r}"
        if call_id is None:
            return "a call event without a call id"
        if action == "refused":
            return None  # an attempt on the unit, recorded with or without a ticket
    if ticket is None:
        return f"central issued no ticket for call {call_id[:80]!r}" if call_id else "no call"
    if ticket.unit != event.device_id:
        return f"call {call_id!r} was issued to another unit"
    reached_media = event.detail.get("media") is not False
    return _out_of_order(
        {e.kind for e in so_far}, [e.kind for e in so_far], event.entry_kind, reached_media
    )


def _out_of_order(
    seen: set[str], order: list[str], kind: str, reached_media: bool = True
) -> str | None:
    if "call_ended" in seen and not (kind in SHUTS and not _shutter_is_closed(order)):
        # A shutter that closes (or jams) just after the end is the safe direction, and true:
        # also when it was still opening (a close wins over an open in progress).
        return f"{kind} after the call ended"
    if kind == "call_started" and "call_started" in seen:
        return "a second start of the same call"
    if kind == "call_ended" and "call_started" not in seen:
        # A call the unit took but that never reached media (no DTLS, no viewer) ends without a
        # start: ``media: false`` and no shutter opened. Nobody looked; the report skips it.
        if not reached_media and "shutter_open" not in seen:
            return None
        return "an end before the start"
    if kind == "shutter_open" and _shutter_is_open(order):
        return "the shutter opened twice"
    # A close without an open before it is true: the call ended while the shutter was still
    # opening, and a close wins over an open in progress (only movements that end are reported).
    if kind == "shutter_closed" and _shutter_is_closed(order):
        return "the shutter closed twice"
    return None


def _last_shutter(order: list[str]) -> str | None:
    last = [k for k in order if k in ("shutter_open", "shutter_closed")]
    return last[-1] if last else None


def _shutter_is_open(order: list[str]) -> bool:
    return _last_shutter(order) == "shutter_open"


def _shutter_is_closed(order: list[str]) -> bool:
    return _last_shutter(order) == "shutter_closed"


def _entry(ticket: AuditEntry | None, event: UnitEvent) -> NewEntry:
    detail = {k: v for k, v in event.detail.items() if k not in FROM_TICKET}
    detail["unit_ts"] = event.unit_ts
    detail[EVENT_ID] = event.event_id
    return NewEntry(
        kind=event.entry_kind,
        ts=event.received_at,
        unit=event.device_id,
        actor=ticket.actor if ticket else None,
        purpose=ticket.purpose if ticket else None,
        call_id=event.call_id if ticket or event.kind == "call" else None,
        detail=detail,
    )


def ticketless_refusal(ticket: AuditEntry | None, event: UnitEvent) -> bool:
    """A unit's report of a refused offer central never issued (counts against its budget)."""
    return ticket is None and event.kind == "call" and event.detail.get("action") == "refused"


@dataclass
class RefusalBudget:
    """How many refused events of one unit are still written down (a token bucket).

    ``burst`` at once, then one more every ``refill_s``; everything past that is only counted.
    """

    burst: int = 10
    refill_s: float = 60.0
    _tokens: dict[str, float] = field(default_factory=dict)
    _at: dict[str, float] = field(default_factory=dict)

    def take(self, unit: str, now: float) -> bool:
        """``True`` if one more refused event of ``unit`` may be stored now."""
        tokens = self._tokens.get(unit, float(self.burst))
        since = now - self._at.get(unit, now)
        tokens = min(float(self.burst), tokens + max(0.0, since) / self.refill_s)
        self._at[unit] = now
        if tokens < 1.0:
            self._tokens[unit] = tokens
            return False
        self._tokens[unit] = tokens - 1.0
        return True
