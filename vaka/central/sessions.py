"""Staff log-in sessions: random bearer tokens whose hashes live in the database, so that any
central instance can check them and a stolen database holds no usable token."""

import hashlib
import secrets
import time

from sqlalchemy import Column, Float, String, Table, delete, select
from sqlalchemy.engine import Engine

from vaka.central.db import metadata
from vaka.central.directory import Directory, StaffMember

staff_sessions = Table(
    "staff_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("staff_id", String(64), nullable=False),
    Column("expires_at", Float, nullable=False),
)


class StaffSessions:
    """Creates, checks and ends staff sessions. Blocking: call from a worker thread."""

    def __init__(self, engine: Engine, directory: Directory) -> None:
        self.engine = engine
        self.directory = directory

    def create(self, staff_id: str, ttl_s: float) -> tuple[str, float]:
        """A new random session token (only its hash is stored) and its expiry."""
        token = secrets.token_urlsafe(32)
        expires = time.time() + ttl_s
        with self.engine.begin() as conn:
            conn.execute(
                staff_sessions.insert().values(
                    token_hash=hashlib.sha256(token.encode()).hexdigest(),
                    staff_id=staff_id,
                    expires_at=expires,
                )
            )
        return token, expires

    def staff_for(self, token: str) -> StaffMember | None:
        """The staff member a live session token belongs to, or ``None``."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(staff_sessions).where(staff_sessions.c.token_hash == digest))
                .mappings()
                .first()
            )
        if row is None or row["expires_at"] < time.time():
            return None
        member = self.directory.staff_member(row["staff_id"])
        return member if member is not None and member.active else None

    def end(self, token: str) -> None:
        """Log out: forget the session."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self.engine.begin() as conn:
            conn.execute(delete(staff_sessions).where(staff_sessions.c.token_hash == digest))
