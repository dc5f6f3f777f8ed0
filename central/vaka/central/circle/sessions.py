"""Contacts' sessions: random tokens whose hashes live in their own table, apart from staff
sessions, so that a contact's token opens only the contact routes and a staff token none of
them.

A session starts at ``enrol`` when an invitation is redeemed (it may only register a passkey or
a password) and is ``full`` after a credential is set or a log-in. Removing or revoking a contact
ends all its sessions: the next request is refused with the reason.

Blocking: call from a worker thread.
"""

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from vaka.central.storage.tables import contact_sessions

Stage = Literal["enrol", "full"]
#: how long a contact stays logged in on their own device
FULL_TTL_S = 90 * 24 * 3600
#: how long the step from redeeming an invitation to setting a credential may take
ENROL_TTL_S = 30 * 60


def digest(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class ContactSession:
    """A live contact session."""

    token_hash: str
    contact_id: str
    stage: Stage
    expires_at: float
    challenge: str | None


class ContactSessions:
    """Creates, finds and ends contact sessions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, contact_id: str, stage: Stage, now: float | None = None) -> tuple[str, float]:
        """A new session token (only its hash is stored) and its expiry."""
        at = time.time() if now is None else now
        token = secrets.token_urlsafe(32)
        expires = at + (FULL_TTL_S if stage == "full" else ENROL_TTL_S)
        with self.engine.begin() as conn:
            conn.execute(delete(contact_sessions).where(contact_sessions.c.expires_at < at))
            conn.execute(
                contact_sessions.insert().values(
                    token_hash=digest(token),
                    contact_id=contact_id,
                    stage=stage,
                    created_at=at,
                    expires_at=expires,
                )
            )
        return token, expires

    def find(self, token: str, now: float | None = None) -> ContactSession | None:
        """The live session behind ``token``, or ``None``."""
        at = time.time() if now is None else now
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(contact_sessions).where(contact_sessions.c.token_hash == digest(token))
                )
                .mappings()
                .first()
            )
        if row is None or row["expires_at"] < at:
            return None
        return ContactSession(
            row["token_hash"], row["contact_id"], row["stage"], row["expires_at"], row["challenge"]
        )

    def set_challenge(self, token_hash: str, challenge: str | None) -> None:
        """Keep the WebAuthn challenge of the ceremony under way (``None``: it is done)."""
        with self.engine.begin() as conn:
            conn.execute(
                contact_sessions.update()
                .where(contact_sessions.c.token_hash == token_hash)
                .values(challenge=challenge)
            )

    def end(self, token_hash: str) -> None:
        """Log out."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(contact_sessions).where(contact_sessions.c.token_hash == token_hash)
            )

    def end_all(self, contact_id: str) -> int:
        """End every session of the contact; how many."""
        with self.engine.begin() as conn:
            done = conn.execute(
                delete(contact_sessions).where(contact_sessions.c.contact_id == contact_id)
            )
        return int(done.rowcount)
