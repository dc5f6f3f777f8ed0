"""The audit trail: append-only and tamper-evident (a hash chain), in central's database.

Every entry carries the hash of the one before; the chain starts from a fixed genesis value.
:meth:`AuditLog.verify` recomputes the chain and names the first entry that was changed, removed
or inserted. Deleting the newest entries leaves a valid but shorter chain: :meth:`AuditLog.head`
gives the newest sequence number and hash to anchor elsewhere (the journal, a report), and
``verify(expect_head=...)`` checks against such an anchor.

It is also the record of performed supervisions that the care provider is paid on.
"""

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from vaka.central.storage.locks import WriteLock, write_locked
from vaka.central.storage.tables import audit
from vaka.errors import RegistryError

log = logging.getLogger(__name__)

GENESIS = "0" * 64


FIELDS = ("seq", "ts", "kind", "actor", "unit", "purpose", "call_id", "detail")


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the trail."""

    seq: int
    ts: float
    kind: str
    actor: str | None
    unit: str | None
    purpose: str | None
    call_id: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


def entry_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """The chained hash of one entry (canonical JSON of its fields after the previous hash)."""
    body = json.dumps({k: row[k] for k in FIELDS}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    """What :meth:`AuditLog.verify` found."""

    ok: bool
    entries: int
    problem: str | None = None


class AuditLog:
    """Appends to and checks the audit trail. Blocking: call from a worker thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def append(
        self,
        kind: str,
        *,
        actor: str | None = None,
        unit: str | None = None,
        purpose: str | None = None,
        call_id: str | None = None,
        ts: float | None = None,
        **detail: Any,
    ) -> AuditEntry:
        """Append one entry; concurrent writers (several central instances) take turns."""
        fields = {"actor": actor, "unit": unit, "purpose": purpose, "call_id": call_id}
        entry = self.append_decided(None, lambda _: {"kind": kind, "ts": ts, **fields, **detail})
        assert entry is not None
        return entry

    def append_decided(
        self,
        call_id: str | None,
        decide: Callable[[list["AuditEntry"]], dict[str, Any] | None],
    ) -> "AuditEntry | None":
        """Append what ``decide`` makes of the entries of ``call_id`` so far, in one transaction.

        ``decide`` gets the call's entries (none if ``call_id`` is ``None``) and returns the new
        entry's fields (``kind``, ``ts``, ``actor``, ``unit``, ``purpose``, ``call_id``, the rest
        detail) or ``None`` to append nothing. Writers take turns on the chain's lock
        (:data:`WriteLock.AUDIT_CHAIN`: an advisory lock on PostgreSQL, the write lock on
        SQLite) from before reading until their commit, so ``decide`` runs once and sees every
        entry another writer made before it, and the next sequence number is never taken twice.
        """
        try:
            with write_locked(self.engine, WriteLock.AUDIT_CHAIN) as conn:
                so_far = (
                    [
                        _entry(dict(r))
                        for r in conn.execute(
                            select(audit).where(audit.c.call_id == call_id).order_by(audit.c.seq)
                        ).mappings()
                    ]
                    if call_id is not None
                    else []
                )
                fields = decide(so_far)
                if fields is None:
                    return None
                fields = dict(fields)
                last = conn.execute(
                    select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)
                ).first()
                seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
                ts = fields.pop("ts", None)
                row: dict[str, Any] = {
                    "seq": seq,
                    "ts": round(time.time() if ts is None else ts, 6),
                    "kind": fields.pop("kind"),
                    **{k: fields.pop(k, None) for k in ("actor", "unit", "purpose", "call_id")},
                }
                row["detail"] = json.dumps(fields, sort_keys=True, separators=(",", ":"))
                row["prev_hash"] = prev
                row["hash"] = entry_hash(prev, row)
                conn.execute(audit.insert().values(**row))
        except OperationalError as err:  # the database is away or busy: the caller may retry
            raise RegistryError(f"audit append failed: {err}") from err
        log.info(
            "audit %d %s unit=%s actor=%s %s",
            seq,
            row["kind"],
            row["unit"],
            row["actor"],
            fields,
        )
        return _entry(row)

    def entries(
        self, *, since: float | None = None, until: float | None = None, kind: str | None = None
    ) -> list[AuditEntry]:
        """Entries in order, optionally by time range and kind."""
        query = select(audit).order_by(audit.c.seq)
        if since is not None:
            query = query.where(audit.c.ts >= since)
        if until is not None:
            query = query.where(audit.c.ts < until)
        if kind is not None:
            query = query.where(audit.c.kind == kind)
        with self.engine.connect() as conn:
            return [_entry(dict(r)) for r in conn.execute(query).mappings()]

    def head(self) -> tuple[int, str]:
        """The newest ``(seq, hash)``, to anchor outside the database."""
        with self.engine.connect() as conn:
            last = conn.execute(
                select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)
            ).first()
        return (last[0], last[1]) if last else (0, GENESIS)

    def verify(self, expect_head: tuple[int, str] | None = None) -> VerifyResult:
        """Recompute the chain; report the first entry that does not fit."""
        prev, expected_seq, count = GENESIS, 1, 0
        with self.engine.connect() as conn:
            for r in conn.execute(select(audit).order_by(audit.c.seq)).mappings():
                row = dict(r)
                count += 1
                if row["seq"] != expected_seq:
                    return VerifyResult(
                        False,
                        count,
                        f"entry {expected_seq} is missing (the sequence jumps from "
                        f"{expected_seq - 1} to {row['seq']})",
                    )
                if row["prev_hash"] != prev:
                    return VerifyResult(
                        False, count, f"entry {row['seq']} does not follow entry {row['seq'] - 1}"
                    )
                if entry_hash(prev, row) != row["hash"]:
                    return VerifyResult(False, count, f"entry {row['seq']} was changed")
                prev, expected_seq = row["hash"], expected_seq + 1
        if expect_head is not None:
            seq, digest = expect_head
            if count < seq:
                return VerifyResult(
                    False, count, f"entries after {count} are missing (anchored head is {seq})"
                )
            if self._hash_at(seq) != digest:
                return VerifyResult(False, count, f"entry {seq} does not match the anchored hash")
        return VerifyResult(True, count)

    def entries_of_call(self, call_id: str) -> list[AuditEntry]:
        """The entries of one call (the column is indexed), in order."""
        query = select(audit).where(audit.c.call_id == call_id).order_by(audit.c.seq)
        with self.engine.connect() as conn:
            return [_entry(dict(r)) for r in conn.execute(query).mappings()]

    def _hash_at(self, seq: int) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(audit.c.hash).where(audit.c.seq == seq)).scalar()


def _entry(row: dict[str, Any]) -> AuditEntry:
    return AuditEntry(
        seq=row["seq"],
        ts=row["ts"],
        kind=row["kind"],
        actor=row["actor"],
        unit=row["unit"],
        purpose=row["purpose"],
        call_id=row["call_id"],
        detail=json.loads(row["detail"]),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )
