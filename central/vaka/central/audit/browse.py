"""Reading the audit trail a page at a time, newest first, with the chain's verification on the
first page (``GET /api/audit``), or as a CSV download (``GET /api/audit.csv``)."""

import datetime as dt
import json
from typing import Any

from sqlalchemy import select

from vaka.central.audit.spreadsheet import csv_text
from vaka.central.audit.trail import AuditLog
from vaka.central.storage.tables import audit
from vaka.protocol.reasons import unit_said, with_code


def audit_page(
    log_: AuditLog,
    *,
    since: float | None,
    until: float | None,
    kind: str | None,
    unit: str | None,
    limit: int,
    actor: str | None = None,
    before: int | None,
) -> dict[str, Any]:
    """One page of entries, newest first, and the chain's verification on the first page
    (blocking)."""
    query = select(audit).order_by(audit.c.seq.desc()).limit(limit + 1)
    if since is not None:
        query = query.where(audit.c.ts >= since)
    if until is not None:
        query = query.where(audit.c.ts < until)
    if kind is not None:
        query = query.where(audit.c.kind == kind)
    if unit is not None:
        query = query.where(audit.c.unit == unit)
    if actor is not None:
        query = query.where(audit.c.actor == actor)
    if before is not None:
        query = query.where(audit.c.seq < before)
    with log_.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    entries = [
        {
            "seq": r["seq"],
            "ts": r["ts"],
            "kind": r["kind"],
            "actor": r["actor"],
            "unit": r["unit"],
            "purpose": r["purpose"],
            "call_id": r["call_id"],
            "detail": json.loads(r["detail"]),
            "hash": r["hash"],
        }
        for r in rows
    ]
    page: dict[str, Any] = {
        "entries": entries,
        "next_before": entries[-1]["seq"] if more and entries else None,
    }
    if before is None:
        result = log_.verify()
        seq, digest = log_.head()
        page["verify"] = {"ok": result.ok, "entries": result.entries, "problem": result.problem}
        page["head"] = {"seq": seq, "hash": digest}
    return page


#: the audit CSV's columns (``detail`` is the entry's JSON detail as text)
AUDIT_COLUMNS = ("seq", "time_utc", "kind", "actor", "unit", "purpose", "call_id", "detail", "hash")


def audit_csv(entries: list[dict[str, Any]]) -> str:
    """Entries of :func:`audit_page` as CSV, cells made safe for spreadsheets."""
    return csv_text(
        AUDIT_COLUMNS,
        (
            [
                e["seq"],
                dt.datetime.fromtimestamp(e["ts"], dt.UTC).isoformat(timespec="seconds"),
                e["kind"],
                e["actor"],
                e["unit"],
                e["purpose"],
                e["call_id"],
                json.dumps(e["detail"], ensure_ascii=False, sort_keys=True),
                e["hash"],
            ]
            for e in entries
        ),
    )


#: the entries that end a call (one per call that reached the unit, or was refused by it)
CALL_ENDINGS = ("call_ended", "call_unanswered", "call_refused")


def last_calls(log_: AuditLog, unit: str, limit: int = 10) -> list[dict[str, Any]]:
    """The unit's newest calls as the trail ended them, newest first (blocking)."""
    query = (
        select(audit)
        .where(audit.c.unit == unit, audit.c.kind.in_(CALL_ENDINGS))
        .order_by(audit.c.seq.desc())
        .limit(limit)
    )
    with log_.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    calls = []
    for r in rows:
        detail = json.loads(r["detail"])
        calls.append(
            {
                "ts": r["ts"],
                "kind": r["kind"],
                "actor": r["actor"],
                "purpose": r["purpose"],
                "call_id": r["call_id"],
                "duration_s": detail.get("duration_s"),
                **_reason(detail.get("reason")),
            }
        )
    return calls


def _reason(text: object) -> dict[str, Any]:
    """A call's recorded reason, with its code where it is the unit's known words."""
    return {"reason": None} if text is None else with_code(unit_said(str(text)))
