"""The record of performed supervisions: what the care provider is paid on.

Built from the audit trail: each ``call_ended`` of a night check (or an emergency look-in) that
reached media (the unit reports ``media: false`` for a call that never did),
joined with the ``ticket_issued`` entry of the same call for the citizen pseudonym and group,
and with the ``supervision_outcome`` staff recorded after the check (``all_well`` or
``visit_needed``, and a note), if any.
"""

import datetime as dt
from dataclasses import dataclass

from vaka.central.audit.spreadsheet import csv_text
from vaka.central.audit.trail import AuditLog

SUPERVISION_PURPOSES = ("night_check", "break_glass")
COLUMNS = (
    "started",
    "ended",
    "duration_s",
    "unit",
    "citizen",
    "staff",
    "group",
    "purpose",
    "end_reason",
    "break_glass_reason",
    "call_id",
    "audit_seq",
    "outcome",
    "outcome_note",
)


@dataclass(frozen=True)
class Supervision:
    """One performed supervision."""

    started: float
    ended: float
    duration_s: float
    unit: str
    citizen: str
    staff: str
    group: str
    purpose: str
    end_reason: str
    break_glass_reason: str
    call_id: str
    audit_seq: int
    outcome: str = ""
    outcome_note: str = ""


def supervisions(audit: AuditLog, since: float, until: float) -> list[Supervision]:
    """Supervisions that ended in ``[since, until)``."""
    issued = {e.call_id: e for e in audit.entries(kind="ticket_issued") if e.call_id}
    outcomes = {e.call_id: e for e in audit.entries(kind="supervision_outcome") if e.call_id}
    found = []
    for e in audit.entries(since=since, until=until, kind="call_ended"):
        if e.purpose not in SUPERVISION_PURPOSES or e.call_id is None:
            continue
        if e.detail.get("media") is False:  # the call never reached media: nobody looked
            continue
        ticket = issued.get(e.call_id)
        detail = ticket.detail if ticket else {}
        duration = float(e.detail.get("duration_s", 0.0))
        outcome = outcomes[e.call_id].detail if e.call_id in outcomes else {}
        found.append(
            Supervision(
                started=e.ts - duration,
                ended=e.ts,
                duration_s=duration,
                unit=e.unit or "",
                citizen=str(detail.get("citizen", "")),
                staff=e.actor or "",
                group=str(detail.get("group", "")),
                purpose=e.purpose,
                end_reason=str(e.detail.get("reason", "")),
                break_glass_reason=str(detail.get("break_glass") or ""),
                call_id=e.call_id,
                audit_seq=e.seq,
                outcome=str(outcome.get("outcome") or ""),
                outcome_note=str(outcome.get("note") or ""),
            )
        )
    return found


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def supervisions_csv(rows: list[Supervision]) -> str:
    """The rows as CSV (times in UTC, ISO 8601; cells made safe for spreadsheets)."""
    return csv_text(
        COLUMNS,
        (
            [
                _iso(r.started),
                _iso(r.ended),
                f"{r.duration_s:.1f}",
                r.unit,
                r.citizen,
                r.staff,
                r.group,
                r.purpose,
                r.end_reason,
                r.break_glass_reason,
                r.call_id,
                r.audit_seq,
                r.outcome,
                r.outcome_note,
            ]
            for r in rows
        ),
    )
