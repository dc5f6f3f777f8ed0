"""The directory file (TOML) that ``vaka-central directory load`` reads: staff, groups, citizens
(pseudonyms and their units), permissions and night-check schedules, checked as a whole."""

import datetime as dt
import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaka.errors import ConfigError
from vaka.protocol.topics import DEVICE_ID_PATTERN

Purpose = Literal["night_check", "video_visit", "citizen_call", "break_glass"]
Role = Literal["night_staff", "day_staff", "support", "technician", "administrator"]
Direction = Literal["to_unit", "from_unit"]
#: How a citizen's night checks look: ``blurred`` only; ``escalate`` (blurred, clear after the
#: staff member escalates with a reason); ``clear`` from the start (the care decision says so).
NightView = Literal["blurred", "escalate", "clear"]
#: What a consent covers (a citizen_call is the citizen's own call and needs none).
ConsentScope = Literal["night_check", "video_visit", "break_glass", "contact_call"]
#: The person id of the citizen themself in a consent entry.
CITIZEN_SELF = "citizen"

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


class ConsentSpec(_Spec):
    """``[[citizen.consent]]``: one person's consent to some scopes, from a date (or time), and
    its withdrawal if it was withdrawn. ``person`` is ``citizen`` or a cohabitant's pseudonym."""

    person: str = Field(default=CITIZEN_SELF, pattern=_ID)
    scope: list[ConsentScope] = Field(min_length=1)
    given: dt.datetime | dt.date
    withdrawn: dt.datetime | dt.date | None = None


class CitizenSpec(_Spec):
    """``[[citizen]]``: a citizen pseudonym, the units in their home, who else lives there
    (``cohabitants``, pseudonyms) and everyone's consent (docs/privacy.md)."""

    id: str = Field(pattern=_ID)
    units: list[str] = Field(default=[], max_length=4)
    #: what night checks show (docs/privacy.md); a night check starts blurred unless ``clear``
    night_view: NightView = "escalate"
    cohabitants: list[str] = Field(default=[], max_length=8)
    consent: list[ConsentSpec] = Field(default=[], max_length=64)


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
    for c in spec.citizen:
        problems += [
            f"citizen {c.id}: consent from {k.person}, who is not a cohabitant"
            for k in c.consent
            if k.person != CITIZEN_SELF and k.person not in c.cohabitants
        ]
        problems += [
            f"citizen {c.id}: {p!r} cannot be a cohabitant's pseudonym"
            for p in c.cohabitants
            if p == CITIZEN_SELF or not re.fullmatch(_ID, p)
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
