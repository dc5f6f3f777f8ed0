"""The staff's second factor: TOTP codes (enrolment by QR, ±1 step, each step's code usable once)
and one-time recovery codes (stored hashed). The TOTP secrets are sealed at rest by the
directory's :class:`~vaka.central.access.secret_box.SecretBox`.
"""

import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass

import pyotp
import qrcode
import qrcode.image.svg
from sqlalchemy import delete, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from vaka.central.access.secret_box import SecretBox, SecretBoxError
from vaka.central.audit.trail import AuditLog
from vaka.central.directory.directory import Directory, Sealer, StaffMember
from vaka.central.storage.engine import upsert
from vaka.central.storage.tables import recovery_codes, staff_auth, totp_used
from vaka.errors import VakaError

log = logging.getLogger(__name__)

ISSUER = "Vaka"
TOTP_STEP_S = 30
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class AccessRefused(VakaError, PermissionError):
    """A log-in or request refused; ``str()`` is the reason for the staff member, ``status``
    the HTTP status to answer with."""

    def __init__(self, reason: str, status: int = 401, *, counts: bool = True) -> None:
        super().__init__(reason)
        self.status = status
        #: whether the refusal counts as a failed attempt of the client's address (a reused
        #: code came with the right password: it is a replay, not a guess)
        self.counts = counts


@dataclass(frozen=True)
class Enrolment:
    """A TOTP secret waiting for its first code: show the QR, then confirm a code."""

    secret: str
    uri: str
    qr_svg: str


def _recovery_hash(code: str) -> str:
    normal = re.sub(r"[\s-]", "", code).upper()
    return hashlib.sha256(normal.encode()).hexdigest()


def new_recovery_code() -> str:
    """A random one-time recovery code, ``XXXX-XXXX-XXXX-XXXX`` (80 bits)."""
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(16))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def qr_svg(text: str) -> str:
    """``text`` as a QR code in SVG."""
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, border=2)
    svg: bytes = image.to_string()
    return svg.decode()


class SecondFactor:
    """TOTP and recovery codes for the staff accounts in ``engine``. Blocking."""

    engine: Engine
    directory: Directory
    audit: AuditLog

    def _box(self) -> Sealer:
        return self.directory.secret_box or SecretBox()

    # ------------------------------------------------------------ TOTP

    def verify_totp(self, staff_id: str, code: str, now: float | None = None) -> str:
        """``"ok"``, ``"wrong"`` or ``"reused"`` for a code against the enrolled secret."""
        with self.engine.connect() as conn:
            secret = conn.execute(
                select(staff_auth.c.totp_secret).where(staff_auth.c.staff_id == staff_id)
            ).scalar()
        if secret is None:
            return "wrong"
        plain = self._open(secret)
        return self._check_code(staff_id, plain, code, time.time() if now is None else now)

    def _open(self, stored: str) -> str:
        try:
            return self._box().open(stored)
        except SecretBoxError as err:
            log.error("cannot check a one-time code: %s", err)
            raise AccessRefused(
                "central cannot check one-time codes: its TOTP key does not fit (tell the "
                "administrator: [staff_access] totp_key_file)",
                503,
                counts=False,
            ) from None

    def _check_code(self, staff_id: str, secret: str, code: str, now: float) -> str:
        code = re.sub(r"\s", "", code)
        if not re.fullmatch(r"\d{6}", code):
            return "wrong"
        totp = pyotp.TOTP(secret)
        current = int(now // TOTP_STEP_S)
        matched = next(
            (
                c
                for c in (current - 1, current, current + 1)
                if hmac.compare_digest(totp.generate_otp(c), code)
            ),
            None,
        )
        if matched is None:
            return "wrong"
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    delete(totp_used).where(
                        totp_used.c.staff_id == staff_id, totp_used.c.counter < current - 2
                    )
                )
                conn.execute(totp_used.insert().values(staff_id=staff_id, counter=matched))
        except IntegrityError:
            return "reused"
        return "ok"

    def reset_totp(self, staff_id: str, actor: str) -> None:
        """Forget the account's TOTP secret and recovery codes (a lost phone): the next log-in
        sets up a new one. An administrator's action, audited."""
        with self.engine.begin() as conn:
            conn.execute(
                staff_auth.update()
                .where(staff_auth.c.staff_id == staff_id)
                .values(totp_secret=None, totp_pending=None, totp_enrolled_at=None)
            )
            conn.execute(delete(recovery_codes).where(recovery_codes.c.staff_id == staff_id))
        self.audit.append("totp_reset", actor=actor, staff=staff_id)

    def totp_enrolled(self, staff_id: str) -> bool:
        """Whether the account has a confirmed TOTP secret."""
        with self.engine.connect() as conn:
            secret = conn.execute(
                select(staff_auth.c.totp_secret).where(staff_auth.c.staff_id == staff_id)
            ).scalar()
        return secret is not None

    def start_totp_enrolment(self, member: StaffMember) -> Enrolment:
        """A new secret waiting for its first code (replaces one that was never confirmed)."""
        if self.totp_enrolled(member.staff_id):
            raise AccessRefused(
                "a one-time code is already set up for you: ask an administrator to reset it",
                409,
            )
        secret = pyotp.random_base32()
        with self.engine.begin() as conn:
            # An account from before log-in state was kept has no row: its password age is
            # unknown, so it counts as expired.
            sealed = self._box().seal(secret)
            ins = upsert(self.engine, staff_auth).values(
                staff_id=member.staff_id, password_changed_at=0.0, totp_pending=sealed
            )
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["staff_id"], set_={"totp_pending": sealed}
                )
            )
        uri = pyotp.TOTP(secret).provisioning_uri(name=member.staff_id, issuer_name=ISSUER)
        return Enrolment(secret, uri, qr_svg(uri))

    def confirm_totp(self, member: StaffMember, code: str, address: str) -> list[str]:
        """Enrol the waiting secret if ``code`` fits it; the new recovery codes (shown once)."""
        with self.engine.connect() as conn:
            pending = conn.execute(
                select(staff_auth.c.totp_pending).where(staff_auth.c.staff_id == member.staff_id)
            ).scalar()
        if pending is None:
            raise AccessRefused("start the set-up first (no one-time code is waiting)", 409)
        if self._check_code(member.staff_id, self._open(pending), code, time.time()) != "ok":
            self.audit.append(
                "totp_enrol_failed", actor=member.staff_id, address=address, reason="wrong code"
            )
            raise AccessRefused(
                "wrong one-time code: check the clock of your phone and try again", 400
            )
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        with self.engine.begin() as conn:
            conn.execute(
                staff_auth.update()
                .where(staff_auth.c.staff_id == member.staff_id)
                .values(totp_secret=pending, totp_pending=None, totp_enrolled_at=time.time())
            )
            self._store_recovery_codes(conn, member.staff_id, codes)
        self.audit.append("totp_enrolled", actor=member.staff_id, address=address)
        return codes

    def _store_recovery_codes(self, conn: Connection, staff_id: str, codes: list[str]) -> None:
        conn.execute(delete(recovery_codes).where(recovery_codes.c.staff_id == staff_id))
        for code in codes:
            conn.execute(
                recovery_codes.insert().values(staff_id=staff_id, code_hash=_recovery_hash(code))
            )

    def new_recovery_codes(self, staff_id: str) -> list[str]:
        """Replace the account's recovery codes (e.g. after using some); shown once."""
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        with self.engine.begin() as conn:
            self._store_recovery_codes(conn, staff_id, codes)
        return codes

    def use_recovery_code(self, staff_id: str, code: str) -> bool:
        """Spend one recovery code; ``False`` if it is wrong or was used before."""
        with self.engine.begin() as conn:
            result = conn.execute(
                recovery_codes.update()
                .where(
                    recovery_codes.c.staff_id == staff_id,
                    recovery_codes.c.code_hash == _recovery_hash(code),
                    recovery_codes.c.used_at.is_(None),
                )
                .values(used_at=time.time())
            )
        return result.rowcount == 1
