"""Units waiting to be enrolled, and the checks a signing request must pass.

A request is checked as it arrives (:meth:`EnrolmentQueue.admit`): its CSR must be valid and
its key must hash to the code it came under, so a wrong code or a forged request stores nothing.
An accepted request is kept under its code (one entry per code: the unit repeats the request
until answered, which only refreshes it); how many units may wait, and how many new ones are
taken per minute, is bounded. A technician approves the code. Codes are one-time and expire: a
unit whose code expired makes a new key, and so a new code, by itself.
"""

import time
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.sql.expression import Executable

from vaka.central.storage.engine import upsert
from vaka.central.storage.tables import enrolments
from vaka.errors import CertificateError
from vaka.protocol.enrolment import display_code, enrolment_code


class EnrolmentRefused(CertificateError):
    """An approval was refused; the message says why."""


class UnknownCitizen(EnrolmentRefused, LookupError):
    """An approval named a citizen the directory does not know (and did not ask to create it)."""


def unknown_citizen(citizen: str) -> UnknownCitizen:
    """The refusal of an approval or assignment to a citizen that is not in the directory: a
    typo must not create a citizen, so a new one is made only when asked for."""
    return UnknownCitizen(
        f"there is no citizen {citizen} in the directory: check the pseudonym, or ask for a new "
        "citizen explicitly (vaka-provision --create-citizen)"
    )


@dataclass(frozen=True)
class Enrolment:
    """One unit's request."""

    code: str
    csr: str
    profile: str
    agent_version: str | None
    first_seen: float
    last_seen: float
    state: str
    unit_id: str | None


def check_csr(csr_pem: str, code: str, *, subject: str | None = None) -> ec.EllipticCurvePublicKey:
    """The request's public key if the request is acceptable for ``code``, else refuse.

    For a renewal, ``subject`` is the unit id the request must name and ``code`` is not bound
    to the key (pass the unit id as ``code`` too).
    """
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError:
        raise EnrolmentRefused("the signing request is not a valid PEM CSR") from None
    if not csr.is_signature_valid:
        raise EnrolmentRefused("the signing request's signature is not valid")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise EnrolmentRefused("the signing request's key must be ECDSA P-256")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    expected = subject or code
    if len(csr.subject) != 1 or len(names) != 1 or names[0].value != expected:
        what = f"unit {subject}" if subject else f"code {display_code(code)}"
        raise EnrolmentRefused(
            f"the signing request's subject ({csr.subject.rfc4514_string()}) does not match its "
            f"{what}"
        )
    if len(csr.extensions):
        oids = ", ".join(ext.oid.dotted_string for ext in csr.extensions)
        raise EnrolmentRefused(f"the signing request carries extensions ({oids}); none allowed")
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if subject is None and enrolment_code(spki) != code:
        raise EnrolmentRefused(
            f"the signing request's key does not belong to code {display_code(code)}"
        )
    return key


class EnrolmentQueue:
    """Pending and approved enrolments in central's database. Blocking."""

    def __init__(
        self,
        engine: Engine,
        code_ttl_s: float,
        max_pending: int = 200,
        new_per_minute: int = 30,
    ) -> None:
        self.engine = engine
        self.code_ttl_s = code_ttl_s
        self.max_pending = max_pending
        self.new_per_minute = new_per_minute

    def admit(self, code: str, csr: str, profile: str, agent_version: str, now: float) -> bool:
        """Check a request as it arrives and store it; whether it is new. Refused
        (:class:`EnrolmentRefused`, nothing stored) if the CSR does not belong to ``code``, or a
        new code would pass the bounds on waiting units.

        The new entry is written first and counted in the same transaction (rolled back when
        over a bound), so concurrent requests cannot all pass one count: SQLite serialises the
        writers; on PostgreSQL each concurrent instance can overshoot by at most its one entry.
        """
        check_csr(csr, code)
        with self.engine.begin() as conn:
            known = conn.execute(select(enrolments.c.code).where(enrolments.c.code == code)).first()
            conn.execute(self._upsert(code, csr, profile, agent_version, now))
            if known is not None:
                return False
            waiting, recent = conn.execute(
                select(
                    func.count(),
                    func.count().filter(enrolments.c.first_seen > now - 60),
                ).where(
                    enrolments.c.state == "pending",
                    enrolments.c.first_seen > now - self.code_ttl_s,
                )
            ).one()
            if waiting > self.max_pending:
                raise EnrolmentRefused(
                    f"{waiting - 1} units are already waiting to be enrolled (the limit): "
                    "approve them or let their codes expire first"
                )
            if recent > self.new_per_minute:
                raise EnrolmentRefused(
                    f"{recent - 1} new units asked to be enrolled within a minute (the limit): "
                    "the unit asks again by itself"
                )
        return True

    def record(self, code: str, csr: str, profile: str, agent_version: str, now: float) -> None:
        """Store or refresh a request (an approved code is left as it is)."""
        with self.engine.begin() as conn:
            conn.execute(self._upsert(code, csr, profile, agent_version, now))

    def _upsert(
        self, code: str, csr: str, profile: str, agent_version: str, now: float
    ) -> Executable:
        ins = upsert(self.engine, enrolments).values(
            code=code,
            csr=csr,
            profile=profile,
            agent_version=agent_version,
            first_seen=now,
            last_seen=now,
            state="pending",
        )
        return ins.on_conflict_do_update(
            index_elements=["code"],
            set_={"last_seen": now},
            where=enrolments.c.state == "pending",
        )

    def get(self, code: str) -> Enrolment | None:
        """One enrolment by code."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(enrolments).where(enrolments.c.code == code)).mappings().first()
            )
        return None if row is None else _enrolment(dict(row))

    def pending(self, now: float | None = None) -> list[Enrolment]:
        """Requests waiting for approval whose code has not expired."""
        now = time.time() if now is None else now
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(enrolments)
                .where(
                    enrolments.c.state == "pending",
                    enrolments.c.first_seen > now - self.code_ttl_s,
                )
                .order_by(enrolments.c.first_seen)
            ).mappings()
            return [_enrolment(dict(r)) for r in rows]

    def check_approvable(self, code: str, now: float) -> Enrolment:
        """The enrolment if ``code`` may be approved now, else :class:`EnrolmentRefused`."""
        found = self.get(code)
        shown = display_code(code)
        if found is None:
            raise EnrolmentRefused(f"no unit is waiting with code {shown}")
        if found.state != "pending":
            raise EnrolmentRefused(f"code {shown} was already used (unit {found.unit_id})")
        if now - found.first_seen > self.code_ttl_s:
            raise EnrolmentRefused(
                f"code {shown} has expired; the unit shows a new code within a few minutes"
            )
        return found

    def mark_approved(self, code: str, unit_id: str, actor: str, now: float) -> None:
        """Use the code up."""
        with self.engine.begin() as conn:
            conn.execute(
                update(enrolments)
                .where(enrolments.c.code == code)
                .values(state="approved", unit_id=unit_id, approved_by=actor, approved_at=now)
            )


def _enrolment(row: dict[str, object]) -> Enrolment:
    return Enrolment(
        code=str(row["code"]),
        csr=str(row["csr"]),
        profile=str(row["profile"]),
        agent_version=None if row["agent_version"] is None else str(row["agent_version"]),
        first_seen=float(row["first_seen"]),  # type: ignore[arg-type]
        last_seen=float(row["last_seen"]),  # type: ignore[arg-type]
        state=str(row["state"]),
        unit_id=None if row["unit_id"] is None else str(row["unit_id"]),
    )
