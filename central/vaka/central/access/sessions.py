"""Staff log-in sessions: random tokens whose hashes live in the database, so that any central
instance can check them and a stolen database holds no usable token.

A session ends at its absolute expiry (``session_ttl_s``) or when it has been idle longer than
its idle time-out (``[staff_access] idle_timeout_s``); every use moves ``last_seen``. An idle
session is kept, marked, until it expires, so that every later request is told why it ended.
Console sessions (a cookie) also carry the hash of their CSRF token.
"""

import hashlib
import secrets
import time
from dataclasses import dataclass, replace

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from vaka.central.directory.directory import Directory, StaffMember
from vaka.central.storage.tables import staff_sessions


def digest(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewSession:
    """What :meth:`StaffSessions.create` hands out (the only time the tokens exist in clear)."""

    token: str
    csrf_token: str | None
    expires_at: float
    idle_deadline: float


@dataclass(frozen=True)
class SessionInfo:
    """A session as found for a token."""

    staff_id: str
    token_hash: str
    expires_at: float
    last_seen: float
    idle_timeout_s: float
    csrf_hash: str | None
    #: ``None`` when live, ``"idle"`` (ended for inactivity, ``newly`` on the first request that
    #: found out) or ``"expired"``
    ended: str | None
    newly_ended: bool = False

    @property
    def idle_deadline(self) -> float:
        """When the session ends unless it is used before."""
        return self.last_seen + self.idle_timeout_s


class StaffSessions:
    """Creates, checks and ends staff sessions. Blocking: call from a worker thread."""

    def __init__(self, engine: Engine, directory: Directory, idle_timeout_s: float = 900) -> None:
        self.engine = engine
        self.directory = directory
        self.idle_timeout_s = idle_timeout_s

    def create(
        self,
        staff_id: str,
        ttl_s: float,
        *,
        csrf: bool = False,
        address: str | None = None,
        idle_timeout_s: float | None = None,
    ) -> NewSession:
        """A new random session token (only its hash is stored) and, for the console, a CSRF
        token."""
        token = secrets.token_urlsafe(32)
        csrf_token = secrets.token_urlsafe(32) if csrf else None
        now = time.time()
        idle = self.idle_timeout_s if idle_timeout_s is None else idle_timeout_s
        with self.engine.begin() as conn:
            conn.execute(delete(staff_sessions).where(staff_sessions.c.expires_at < now))
            conn.execute(
                staff_sessions.insert().values(
                    token_hash=digest(token),
                    staff_id=staff_id,
                    expires_at=now + ttl_s,
                    created_at=now,
                    last_seen=now,
                    idle_timeout_s=idle,
                    csrf_hash=None if csrf_token is None else digest(csrf_token),
                    address=address,
                )
            )
        return NewSession(token, csrf_token, now + ttl_s, now + idle)

    def find(self, token: str, now: float | None = None) -> SessionInfo | None:
        """The session behind ``token``, ending it if it has been idle too long; ``None`` if
        unknown."""
        now = time.time() if now is None else now
        token_hash = digest(token)
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(staff_sessions).where(staff_sessions.c.token_hash == token_hash)
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        last_seen = row["last_seen"] or row["created_at"] or now
        idle = row["idle_timeout_s"] or self.idle_timeout_s
        info = SessionInfo(
            row["staff_id"], token_hash, row["expires_at"], last_seen, idle, row["csrf_hash"], None
        )
        if row["expires_at"] < now:
            return replace(info, ended="expired")
        if row["ended"] is not None:
            return replace(info, ended=row["ended"])
        if last_seen + idle < now:
            with self.engine.begin() as conn:
                result = conn.execute(
                    staff_sessions.update()
                    .where(
                        staff_sessions.c.token_hash == token_hash, staff_sessions.c.ended.is_(None)
                    )
                    .values(ended="idle")
                )
            return replace(info, ended="idle", newly_ended=result.rowcount == 1)
        return info

    def touch(self, token_hash: str, now: float | None = None) -> float:
        """Mark a session used now; its new idle deadline."""
        now = time.time() if now is None else now
        with self.engine.begin() as conn:
            conn.execute(
                staff_sessions.update()
                .where(staff_sessions.c.token_hash == token_hash, staff_sessions.c.ended.is_(None))
                .values(last_seen=now)
            )
        return now

    def staff_for(self, token: str) -> StaffMember | None:
        """The staff member a live session token belongs to, or ``None``."""
        info = self.find(token)
        if info is None or info.ended is not None:
            return None
        member = self.directory.staff_member(info.staff_id)
        return member if member is not None and member.active else None

    def end(self, token: str) -> None:
        """Log out: forget the session."""
        self.end_hash(digest(token))

    def end_hash(self, token_hash: str) -> None:
        """Forget the session with this stored hash."""
        with self.engine.begin() as conn:
            conn.execute(delete(staff_sessions).where(staff_sessions.c.token_hash == token_hash))

    def end_others(self, staff_id: str, keep_hash: str) -> int:
        """End every other session of ``staff_id`` (after a password change); how many."""
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(staff_sessions).where(
                    staff_sessions.c.staff_id == staff_id,
                    staff_sessions.c.token_hash != keep_hash,
                )
            )
        return int(result.rowcount)
