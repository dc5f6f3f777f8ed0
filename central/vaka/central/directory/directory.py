"""Who is who: staff, staff groups, citizens (pseudonyms only), unit assignments, permissions
and night-check schedules, loaded from a directory file (:mod:`vaka.central.directory.spec`).

The care provider's systems would feed the same tables. Nothing here names a citizen: a citizen
is a pseudonym.
"""

import time
from dataclasses import dataclass
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.engine import Connection, Engine

from vaka.central.directory.consent import ConsentRecord
from vaka.central.directory.spec import DirectorySpec, StaffSpec
from vaka.central.settings.passwords import PasswordHashing
from vaka.central.storage.engine import upsert
from vaka.central.storage.tables import (
    assignments,
    citizen_privacy,
    citizens,
    memberships,
    permissions,
    schedules,
    staff,
    staff_auth,
    staff_groups,
)


class Sealer(Protocol):
    """What seals the staff's TOTP secrets at rest
    (:class:`vaka.central.access.secret_box.SecretBox`)."""

    def seal(self, secret: str) -> str:
        """``secret`` as it is stored."""

    def open(self, stored: str) -> str:
        """The secret of a stored value."""


@dataclass(frozen=True)
class StaffMember:
    """A staff account as the rest of central sees it (no password hash)."""

    staff_id: str
    display_name: str
    role: str
    active: bool


def _load_auth(
    conn: Connection, engine: Engine, s: StaffSpec, box: Sealer | None, hasher: PasswordHasher
) -> str | None:
    """Upsert one account's log-in state: a loaded password counts as set now unless it is the
    one already stored; a loaded TOTP secret is enrolled; an unnamed one is left as it is.
    The stored hash when the loaded password is the one it was made from (kept, not made
    again: a reload costs no new hash), else ``None``."""
    row = (
        conn.execute(
            select(staff.c.password_hash, staff_auth.c.password_changed_at)
            .select_from(staff.outerjoin(staff_auth, staff.c.staff_id == staff_auth.c.staff_id))
            .where(staff.c.staff_id == s.id)
        )
        .mappings()
        .first()
    )
    changed_at = time.time()
    kept = None
    if s.password_changed_at is not None:
        stamp = s.password_changed_at
        changed_at = (stamp if stamp.tzinfo else stamp.astimezone()).timestamp()
    elif row is not None and row["password_changed_at"] is not None:
        same = row["password_hash"] == s.password_hash
        if s.password is not None:
            try:
                same = hasher.verify(row["password_hash"], s.password)
            except (VerificationError, InvalidHashError):
                same = False
            if same:
                kept = str(row["password_hash"])
        if same:
            changed_at = row["password_changed_at"]
    values: dict[str, object] = {"password_changed_at": changed_at}
    if s.totp_secret is not None:
        values.update(
            totp_secret=box.seal(s.totp_secret) if box else s.totp_secret,
            totp_pending=None,
            totp_enrolled_at=time.time(),
        )
    ins = upsert(engine, staff_auth).values(staff_id=s.id, **values)
    conn.execute(ins.on_conflict_do_update(index_elements=["staff_id"], set_=values))
    return kept


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


class Directory:
    """Queries and updates on the directory tables. Blocking: call from a worker thread."""

    def __init__(
        self,
        engine: Engine,
        secret_box: Sealer | None = None,
        passwords: PasswordHashing | None = None,
    ) -> None:
        self.engine = engine
        #: seals the staff's TOTP secrets at rest; ``None``: they are stored as they are
        self.secret_box = secret_box
        #: hashes the passwords set from now on (``[passwords]``; default: argon2's own cost)
        self.hasher = (passwords or PasswordHashing()).hasher()
        #: consent per citizen and cohabitant (docs/privacy.md)
        self.consent = ConsentRecord(engine)

    def load(self, spec: DirectorySpec) -> None:
        """Upsert everything in ``spec``; permissions and schedules of named citizens are
        replaced, memberships of named staff are replaced."""
        with self.engine.begin() as conn:
            for g in spec.group:
                ins = upsert(self.engine, staff_groups).values(group_id=g.id, name=g.name)
                conn.execute(
                    ins.on_conflict_do_update(index_elements=["group_id"], set_={"name": g.name})
                )
            for s in spec.staff:
                kept = _load_auth(conn, self.engine, s, self.secret_box, self.hasher)
                hashed = s.password_hash or kept or self.hasher.hash(s.password or "")
                values = {
                    "display_name": s.name,
                    "role": s.role,
                    "password_hash": hashed,
                    "active": s.active,
                }
                ins = upsert(self.engine, staff).values(staff_id=s.id, **values)
                conn.execute(ins.on_conflict_do_update(index_elements=["staff_id"], set_=values))
                conn.execute(delete(memberships).where(memberships.c.staff_id == s.id))
                for g_id in s.groups:
                    conn.execute(memberships.insert().values(staff_id=s.id, group_id=g_id))
            self._load_citizens(conn, spec)
            named = {p.citizen for p in spec.permission}
            conn.execute(delete(permissions).where(permissions.c.citizen_id.in_(named)))
            for p in spec.permission:
                for purpose in p.purposes:
                    conn.execute(
                        permissions.insert().values(
                            group_id=p.group,
                            citizen_id=p.citizen,
                            purpose=purpose,
                            direction=p.direction,
                        )
                    )
            named = {s.citizen for s in spec.schedule}
            conn.execute(delete(schedules).where(schedules.c.citizen_id.in_(named)))
            for sch in spec.schedule:
                for t in sorted(set(sch.times)):
                    conn.execute(
                        schedules.insert().values(
                            citizen_id=sch.citizen,
                            purpose=sch.purpose,
                            at_minute=_minutes(t),
                            tolerance_min=sch.tolerance_min,
                        )
                    )

    def _load_citizens(self, conn: Connection, spec: DirectorySpec) -> None:
        """Upsert the citizens of ``spec``, their privacy choices and their units."""
        for c in spec.citizen:
            conn.execute(
                upsert(self.engine, citizens).values(citizen_id=c.id).on_conflict_do_nothing()
            )
            view = {"night_view": c.night_view}
            ins = upsert(self.engine, citizen_privacy).values(citizen_id=c.id, **view)
            conn.execute(ins.on_conflict_do_update(index_elements=["citizen_id"], set_=view))
            self.consent.load(conn, c)
            for unit in c.units:
                ins = upsert(self.engine, assignments).values(device_id=unit, citizen_id=c.id)
                conn.execute(
                    ins.on_conflict_do_update(
                        index_elements=["device_id"], set_={"citizen_id": c.id}
                    )
                )

    def set_password(self, staff_id: str, password: str) -> None:
        """Store a new password (hashed) and when it was set."""
        with self.engine.begin() as conn:
            conn.execute(
                staff.update()
                .where(staff.c.staff_id == staff_id)
                .values(password_hash=self.hasher.hash(password))
            )
            values = {"password_changed_at": time.time()}
            ins = upsert(self.engine, staff_auth).values(staff_id=staff_id, **values)
            conn.execute(ins.on_conflict_do_update(index_elements=["staff_id"], set_=values))

    def staff_member(self, staff_id: str) -> StaffMember | None:
        """One staff account, or ``None``."""
        with self.engine.connect() as conn:
            row = conn.execute(select(staff).where(staff.c.staff_id == staff_id)).mappings().first()
        if row is None:
            return None
        return StaffMember(row["staff_id"], row["display_name"], row["role"], row["active"])

    def language_of(self, staff_id: str) -> str | None:
        """The console language the member chose, or ``None`` (the browser's decides)."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(staff.c.language).where(staff.c.staff_id == staff_id)
            ).scalar_one_or_none()

    def set_language(self, staff_id: str, language: str | None) -> None:
        """Remember the member's console language (``None``: follow the browser again)."""
        with self.engine.begin() as conn:
            conn.execute(
                staff.update().where(staff.c.staff_id == staff_id).values(language=language)
            )

    def check_password(self, staff_id: str, password: str) -> StaffMember | None:
        """The staff member if the password is right and the account active, else ``None``."""
        with self.engine.connect() as conn:
            row = conn.execute(select(staff).where(staff.c.staff_id == staff_id)).mappings().first()
        if row is None:
            self.hasher.hash(password)  # same work whether or not the account exists
            return None
        try:
            self.hasher.verify(row["password_hash"], password)
        except (VerificationError, InvalidHashError):
            return None
        if not row["active"]:
            return None
        return StaffMember(row["staff_id"], row["display_name"], row["role"], row["active"])

    def assign_unit(
        self, device_id: str, citizen_id: str, group_id: str | None, profile: str
    ) -> None:
        """Put a unit in a citizen's home (a citizen may have several units)."""
        with self.engine.begin() as conn:
            conn.execute(
                upsert(self.engine, citizens).values(citizen_id=citizen_id).on_conflict_do_nothing()
            )
            values = {"citizen_id": citizen_id, "group_id": group_id, "profile": profile}
            ins = upsert(self.engine, assignments).values(device_id=device_id, **values)
            conn.execute(ins.on_conflict_do_update(index_elements=["device_id"], set_=values))

    def unassign_unit(self, device_id: str) -> None:
        """Take a unit out of the citizen's home (decommissioning)."""
        with self.engine.begin() as conn:
            conn.execute(delete(assignments).where(assignments.c.device_id == device_id))

    def group_exists(self, group_id: str) -> bool:
        """Whether a staff group of that id exists."""
        with self.engine.connect() as conn:
            found = conn.execute(
                select(staff_groups.c.group_id).where(staff_groups.c.group_id == group_id)
            ).first()
        return found is not None

    def citizen_exists(self, citizen_id: str) -> bool:
        """Whether the directory knows a citizen of that pseudonym."""
        with self.engine.connect() as conn:
            found = conn.execute(
                select(citizens.c.citizen_id).where(citizens.c.citizen_id == citizen_id)
            ).first()
        return found is not None

    def assigned_profile(self, device_id: str) -> str | None:
        """The profile a unit was assigned with (at enrolment or by ``assign``), or ``None``."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(assignments.c.profile).where(assignments.c.device_id == device_id)
            ).scalar()

    def citizen_of(self, device_id: str) -> str | None:
        """The citizen pseudonym a unit is assigned to."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(assignments.c.citizen_id).where(assignments.c.device_id == device_id)
            ).scalar()

    def groups_of(self, staff_id: str) -> set[str]:
        """The groups a staff member belongs to."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(memberships.c.group_id).where(memberships.c.staff_id == staff_id)
            )
            return {r[0] for r in rows}

    def permitting_groups(self, citizen_id: str, purpose: str, direction: str) -> set[str]:
        """The groups that may reach ``citizen_id`` for ``purpose`` in ``direction``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(permissions.c.group_id).where(
                    permissions.c.citizen_id == citizen_id,
                    permissions.c.purpose == purpose,
                    permissions.c.direction == direction,
                )
            )
            return {r[0] for r in rows}

    def night_view(self, citizen_id: str) -> str:
        """How ``citizen_id``'s night checks look: ``blurred``, ``escalate`` (the default, also
        for a citizen no directory file named) or ``clear``."""
        with self.engine.connect() as conn:
            found = conn.execute(
                select(citizen_privacy.c.night_view).where(
                    citizen_privacy.c.citizen_id == citizen_id
                )
            ).scalar()
        return str(found) if found is not None else "escalate"

    def schedule(self, citizen_id: str, purpose: str = "night_check") -> list[tuple[int, int]]:
        """``(minute of day, tolerance in minutes)`` of each scheduled check, in order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schedules.c.at_minute, schedules.c.tolerance_min)
                .where(schedules.c.citizen_id == citizen_id, schedules.c.purpose == purpose)
                .order_by(schedules.c.at_minute)
            )
            return [(r[0], r[1]) for r in rows]
