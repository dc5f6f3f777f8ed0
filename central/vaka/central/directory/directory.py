"""Who is who: staff, staff groups, citizens (pseudonyms only), unit assignments, permissions
and night-check schedules — and staff log-in sessions.

Loaded from a TOML file by ``vaka-central directory load`` (the care provider's systems would
feed the same tables). Nothing here names a citizen: a citizen is a pseudonym.
"""

import datetime as dt
import re
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Boolean, Column, Float, Integer, String, Table, delete, select
from sqlalchemy.engine import Connection, Engine

from vaka.central.db import metadata, upsert
from vaka.central.secret_box import SecretBox
from vaka.errors import ConfigError
from vaka.protocol.topics import DEVICE_ID_PATTERN

Purpose = Literal["night_check", "video_visit", "citizen_call", "break_glass"]
Role = Literal["night_staff", "day_staff", "support", "technician", "administrator"]
Direction = Literal["to_unit", "from_unit"]

staff = Table(
    "staff",
    metadata,
    Column("staff_id", String(64), primary_key=True),
    Column("display_name", String(120), nullable=False),
    Column("role", String(32), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
)
#: Log-in state beside each staff account (see :mod:`vaka.central.accounts`): when the password
#: was last set, the TOTP secret (confirmed or waiting for its first code).
staff_auth = Table(
    "staff_auth",
    metadata,
    Column("staff_id", String(64), primary_key=True),
    Column("password_changed_at", Float, nullable=False),
    Column("totp_secret", String(256)),  # sealed by vaka.central.secret_box when a key is set
    Column("totp_pending", String(256)),
    Column("totp_enrolled_at", Float),
)
staff_groups = Table(
    "staff_groups",
    metadata,
    Column("group_id", String(64), primary_key=True),
    Column("name", String(120), nullable=False),
)
memberships = Table(
    "memberships",
    metadata,
    Column("staff_id", String(64), primary_key=True),
    Column("group_id", String(64), primary_key=True),
)
citizens = Table("citizens", metadata, Column("citizen_id", String(64), primary_key=True))
assignments = Table(
    "unit_assignments",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("citizen_id", String(64), nullable=False, index=True),
    Column("group_id", String(64)),  # the staff group responsible for the unit (night watch)
    Column("profile", String(16)),
)
permissions = Table(
    "permissions",
    metadata,
    Column("group_id", String(64), primary_key=True),
    Column("citizen_id", String(64), primary_key=True),
    Column("purpose", String(32), primary_key=True),
    Column("direction", String(16), primary_key=True),
)
schedules = Table(
    "schedules",
    metadata,
    Column("citizen_id", String(64), primary_key=True),
    Column("purpose", String(32), primary_key=True),
    Column("at_minute", Integer, primary_key=True),
    Column("tolerance_min", Integer, nullable=False),
)
_hasher = PasswordHasher()

# ---------------------------------------------------------------- the file format

_ID = r"^[a-z0-9][a-z0-9-]{1,62}$"
_HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StaffSpec(_Spec):
    """``[[staff]]``: one staff account (``password`` is hashed on load and never stored)."""

    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1, max_length=120)
    role: Role
    groups: list[str] = []
    password: str | None = Field(default=None, min_length=12)
    password_hash: str | None = None
    active: bool = True
    #: a pre-enrolled TOTP secret (base32), for tests and the demo; else enrolled at first log-in
    totp_secret: str | None = Field(default=None, pattern=r"^[A-Z2-7]{16,64}$")
    #: when the password was set (default: when it is loaded, unless it is unchanged)
    password_changed_at: dt.datetime | None = None


class GroupSpec(_Spec):
    """``[[group]]``: a staff group (a night patrol, a home-care team)."""

    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1, max_length=120)


class CitizenSpec(_Spec):
    """``[[citizen]]``: a citizen pseudonym and the units in their home."""

    id: str = Field(pattern=_ID)
    units: list[str] = Field(default=[], max_length=4)


class PermissionSpec(_Spec):
    """``[[permission]]``: a group may call a citizen (or take their calls) for these purposes."""

    group: str = Field(pattern=_ID)
    citizen: str = Field(pattern=_ID)
    purposes: list[Purpose] = Field(min_length=1)
    direction: Direction = "to_unit"


class ScheduleSpec(_Spec):
    """``[[schedule]]``: the care decision's check times (local time) with a tolerance."""

    citizen: str = Field(pattern=_ID)
    purpose: Purpose = "night_check"
    times: list[str] = Field(min_length=1)
    tolerance_min: int = Field(default=30, ge=0, le=180)


class DirectorySpec(_Spec):
    """A whole directory file."""

    staff: list[StaffSpec] = []
    group: list[GroupSpec] = []
    citizen: list[CitizenSpec] = []
    permission: list[PermissionSpec] = []
    schedule: list[ScheduleSpec] = []


def _cross_check(spec: DirectorySpec) -> list[str]:
    problems = []
    groups = {g.id for g in spec.group}
    citizen_ids = {c.id for c in spec.citizen}
    for s in spec.staff:
        problems += [f"staff {s.id}: unknown group {g}" for g in s.groups if g not in groups]
        if (s.password is None) == (s.password_hash is None):
            problems.append(f"staff {s.id}: give exactly one of password or password_hash")
    for c in spec.citizen:
        problems += [
            f"citizen {c.id}: {u!r} is not a unit id"
            for u in c.units
            if not re.fullmatch(DEVICE_ID_PATTERN, u)
        ]
    for p in spec.permission:
        if p.group not in groups:
            problems.append(f"permission: unknown group {p.group}")
        if p.citizen not in citizen_ids:
            problems.append(f"permission: unknown citizen {p.citizen}")
    for sch in spec.schedule:
        if sch.citizen not in citizen_ids:
            problems.append(f"schedule: unknown citizen {sch.citizen}")
        problems += [
            f"schedule {sch.citizen}: {t!r} is not HH:MM"
            for t in sch.times
            if not re.fullmatch(_HHMM, t)
        ]
    return problems


def load_directory_file(path: Path) -> DirectorySpec:
    """Read and check a directory TOML file; every problem in one :class:`ConfigError`."""
    try:
        data = tomllib.loads(path.read_text())
        spec = DirectorySpec.model_validate(data)
    except OSError as err:
        raise ConfigError(f"cannot read directory file {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"directory file {path} is not valid TOML: {err}") from None
    except ValidationError as err:
        described = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in err.errors(include_url=False)
        )
        raise ConfigError(f"directory file {path} is invalid: {described}") from None
    problems = _cross_check(spec)
    if problems:
        raise ConfigError(f"directory file {path} is inconsistent: {'; '.join(problems)}")
    return spec


# ---------------------------------------------------------------- queries


@dataclass(frozen=True)
class StaffMember:
    """A staff account as the rest of central sees it (no password hash)."""

    staff_id: str
    display_name: str
    role: str
    active: bool


def _load_auth(conn: Connection, engine: Engine, s: StaffSpec, box: SecretBox) -> None:
    """Upsert one account's log-in state: a loaded password counts as set now unless it is the
    one already stored; a loaded TOTP secret is enrolled; an unnamed one is left as it is."""
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
    if s.password_changed_at is not None:
        stamp = s.password_changed_at
        changed_at = (stamp if stamp.tzinfo else stamp.astimezone()).timestamp()
    elif row is not None and row["password_changed_at"] is not None:
        same = row["password_hash"] == s.password_hash
        if s.password is not None:
            try:
                same = _hasher.verify(row["password_hash"], s.password)
            except (VerificationError, InvalidHashError):
                same = False
        if same:
            changed_at = row["password_changed_at"]
    values: dict[str, object] = {"password_changed_at": changed_at}
    if s.totp_secret is not None:
        values.update(
            totp_secret=box.seal(s.totp_secret), totp_pending=None, totp_enrolled_at=time.time()
        )
    ins = upsert(engine, staff_auth).values(staff_id=s.id, **values)
    conn.execute(ins.on_conflict_do_update(index_elements=["staff_id"], set_=values))


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


class Directory:
    """Queries and updates on the directory tables. Blocking: call from a worker thread."""

    def __init__(self, engine: Engine, secret_box: SecretBox | None = None) -> None:
        self.engine = engine
        #: seals the staff's TOTP secrets at rest (see :mod:`vaka.central.secret_box`)
        self.secret_box = secret_box or SecretBox()

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
                _load_auth(conn, self.engine, s, self.secret_box)
                hashed = s.password_hash or _hasher.hash(s.password or "")
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
            for c in spec.citizen:
                conn.execute(
                    upsert(self.engine, citizens).values(citizen_id=c.id).on_conflict_do_nothing()
                )
                for unit in c.units:
                    ins = upsert(self.engine, assignments).values(device_id=unit, citizen_id=c.id)
                    conn.execute(
                        ins.on_conflict_do_update(
                            index_elements=["device_id"], set_={"citizen_id": c.id}
                        )
                    )
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

    def set_password(self, staff_id: str, password: str) -> None:
        """Store a new password (hashed) and when it was set."""
        with self.engine.begin() as conn:
            conn.execute(
                staff.update()
                .where(staff.c.staff_id == staff_id)
                .values(password_hash=_hasher.hash(password))
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

    def check_password(self, staff_id: str, password: str) -> StaffMember | None:
        """The staff member if the password is right and the account active, else ``None``."""
        with self.engine.connect() as conn:
            row = conn.execute(select(staff).where(staff.c.staff_id == staff_id)).mappings().first()
        if row is None:
            _hasher.hash(password)  # same work whether or not the account exists
            return None
        try:
            _hasher.verify(row["password_hash"], password)
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

    def schedule(self, citizen_id: str, purpose: str = "night_check") -> list[tuple[int, int]]:
        """``(minute of day, tolerance in minutes)`` of each scheduled check, in order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schedules.c.at_minute, schedules.c.tolerance_min)
                .where(schedules.c.citizen_id == citizen_id, schedules.c.purpose == purpose)
                .order_by(schedules.c.at_minute)
            )
            return [(r[0], r[1]) for r in rows]
