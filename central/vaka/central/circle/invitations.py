"""Invitations: how a contact gets their first log-in without e-mail.

Staff create an invitation for a contact and hand it over in person (printed: a QR code and the
short code beside it) or read the code over the phone. The contact opens the contact page,
types or scans the code and then sets a passkey or a password. An invitation is good once and
only until it expires; a new one withdraws the contact's earlier ones. Only the code's hash is
stored. Codes are 10 characters from an alphabet without look-alikes (0/O, 1/I/L), shown in two
groups of five ("K7QXM-3RW9T"); dashes, spaces and case do not matter when typed.

Blocking: call from a worker thread.
"""

import hashlib
import secrets
import time
from dataclasses import dataclass

import segno
from sqlalchemy import select
from sqlalchemy.engine import Engine

from vaka.central.storage.tables import contact_invitations
from vaka.errors import VakaError

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 10
#: how long an invitation is good for unless staff say otherwise
DEFAULT_TTL_S = 7 * 24 * 3600


class InvitationRefused(VakaError, PermissionError):
    """An invitation code that cannot be used; ``code`` says which case for the page."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.code = code


def normalise(code: str) -> str:
    """What was typed, without dashes and spaces, in capitals."""
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _hash(code: str) -> str:
    return hashlib.sha256(normalise(code).encode()).hexdigest()


def shown(code: str) -> str:
    """``"K7QXM3RW9T"`` -> ``"K7QXM-3RW9T"``."""
    return f"{code[:5]}-{code[5:]}"


def invitation_qr(url: str) -> str:
    """An SVG of the QR code that opens ``url`` (the contact page with the code)."""
    return segno.make(url, error="m").svg_inline(scale=6, border=2)


@dataclass(frozen=True)
class NewInvitation:
    """What staff hand over (the only time the code exists in clear)."""

    code: str
    expires_at: float


class Invitations:
    """Creates and redeems invitations."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self, contact_id: str, actor: str, ttl_s: float = DEFAULT_TTL_S, now: float | None = None
    ) -> NewInvitation:
        """A new invitation for ``contact_id``; the contact's unused earlier ones are withdrawn."""
        at = time.time() if now is None else now
        code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
        with self.engine.begin() as conn:
            conn.execute(
                contact_invitations.update()
                .where(
                    contact_invitations.c.contact_id == contact_id,
                    contact_invitations.c.used_at.is_(None),
                    contact_invitations.c.withdrawn_at.is_(None),
                )
                .values(withdrawn_at=at)
            )
            conn.execute(
                contact_invitations.insert().values(
                    code_hash=_hash(code),
                    contact_id=contact_id,
                    created_by=actor,
                    created_at=at,
                    expires_at=at + ttl_s,
                )
            )
        return NewInvitation(code, at + ttl_s)

    def redeem(self, code: str, now: float | None = None) -> str:
        """Use the invitation once; the contact it is for.

        :raises InvitationRefused: unknown, already used, withdrawn or expired.
        """
        at = time.time() if now is None else now
        key = _hash(code)
        with self.engine.begin() as conn:
            row = (
                conn.execute(
                    select(contact_invitations).where(contact_invitations.c.code_hash == key)
                )
                .mappings()
                .first()
            )
            if row is None or len(normalise(code)) != CODE_LENGTH:
                raise InvitationRefused("this invitation code is not known", "invitation_unknown")
            if row["used_at"] is not None:
                raise InvitationRefused("this invitation was already used", "invitation_used")
            if row["withdrawn_at"] is not None:
                raise InvitationRefused(
                    "this invitation was replaced by a newer one", "invitation_withdrawn"
                )
            if row["expires_at"] < at:
                raise InvitationRefused("this invitation has expired", "invitation_expired")
            done = conn.execute(
                contact_invitations.update()
                .where(
                    contact_invitations.c.code_hash == key, contact_invitations.c.used_at.is_(None)
                )
                .values(used_at=at)
            )
            if done.rowcount != 1:  # another request used it at the same moment
                raise InvitationRefused("this invitation was already used", "invitation_used")
        return str(row["contact_id"])

    def withdraw_all(self, contact_id: str, now: float | None = None) -> None:
        """Withdraw the contact's unused invitations (the contact was removed or revoked)."""
        at = time.time() if now is None else now
        with self.engine.begin() as conn:
            conn.execute(
                contact_invitations.update()
                .where(
                    contact_invitations.c.contact_id == contact_id,
                    contact_invitations.c.used_at.is_(None),
                    contact_invitations.c.withdrawn_at.is_(None),
                )
                .values(withdrawn_at=at)
            )
