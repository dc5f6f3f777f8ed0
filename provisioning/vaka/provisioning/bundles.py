"""Signed config bundles: what central decides for one unit, as a JWS (JWT, Ed25519).

Central signs each unit's configuration (:func:`sign_bundle`) with its config-signing key; the
unit verifies it with the pinned public key (:func:`verify_bundle`) before it applies anything.
A bundle names the one unit it is for and carries a version that only goes up, so a bundle for
another unit, an old bundle replayed, or one not signed by central is refused with a reason a
support person can read, and the unit keeps its last good configuration.

The claims are the bundle's fields themselves (:class:`UnitConfigBundle`), unknown keys refused.
The JOSE header says ``typ: vaka-config+jwt``, so a call ticket (``vaka-ticket+jwt``) can never
pass for a config bundle, nor the other way round.
"""

from pathlib import Path
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from vaka.errors import ConfigError, ProvisioningError
from vaka.protocol.ice import IceServer
from vaka.protocol.messages import describe_problems
from vaka.protocol.topics import check_device_id
from vaka.provisioning.jws import TokenKind, open_token
from vaka.provisioning.tickets import ALGORITHM, Purpose

BUNDLE_TYP = "vaka-config+jwt"
#: Same limit as the ``bundle`` field of the config message on the wire.
MAX_BUNDLE_CHARS = 32 * 1024

BUNDLE = TokenKind(BUNDLE_TYP, "config bundle", "config", "not a config bundle", MAX_BUNDLE_CHARS)

Name = Annotated[str, Field(min_length=1, max_length=64)]


class BadBundle(ProvisioningError, ValueError):
    """A config bundle was malformed, wrongly signed, for another unit or not newer."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AutoAnswerRule(_Strict):
    """Calls of ``purpose`` from one of ``caller_groups`` are answered after ``countdown_s``.

    Used by the TV profile: the citizen sees who is calling and a countdown, and may decline.
    """

    purpose: Purpose
    caller_groups: list[Name] = Field(min_length=1, max_length=32)
    countdown_s: int = Field(default=10, ge=0, le=120)


ClockTime = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
"""A local time of day, ``HH:MM`` (24 h)."""
PhoneNumber = Annotated[str, Field(pattern=r"^\+?[0-9][0-9 ()-]{2,23}$")]
"""A phone number as the citizen should read it: digits, spaces, hyphens, brackets, a leading +."""


class ScheduledCheck(_Strict):
    """One check time of the care decision (local time) and its tolerance; informational on
    the unit (central enforces the schedule when it issues tickets, the ticket carries the
    window)."""

    at: ClockTime
    tolerance_min: int = Field(default=30, ge=0, le=180)


class UnitConfigBundle(_Strict):
    """One unit's configuration as central decided it. These are the signed JWT claims."""

    unit: str
    version: int = Field(ge=1, lt=2**53)
    issued_at: int = Field(ge=0)  # Unix seconds
    profile: Literal["tv", "nightcam"]
    health_interval_s: float = Field(default=30.0, ge=1, le=3600)
    call_max_duration_s: int = Field(default=1800, gt=0, le=4 * 3600)
    auto_answer: list[AutoAnswerRule] = Field(default_factory=list, max_length=16)
    ice_servers: list[IceServer] = Field(default_factory=list, max_length=8)
    ticket_key: str = Field(max_length=1024)  # central's Ed25519 ticket public key (PEM)
    language: Literal["sv", "da", "en"] = "sv"
    schedules: list[ScheduledCheck] = Field(default_factory=list, max_length=48)
    #: The unit's time zone (IANA, e.g. ``Europe/Stockholm``): its clock, the night hours and
    #: the schedules are in it. ``None``: the unit's own local time.
    timezone: str | None = Field(default=None, max_length=64)
    #: The care provider's night hours (local time, may cross midnight): the TV's button calls
    #: the night staff from ``night_from`` until ``night_until``, the staff on duty otherwise.
    night_from: ClockTime = "21:00"
    night_until: ClockTime = "07:00"
    #: Whether staff take the citizen's calls through the unit in the daytime too; if not, the TV
    #: shows ``day_phone`` (or to call the usual number) instead of the button by day.
    day_calls: bool = True
    #: The care provider's daytime phone number, shown on the TV by day.
    day_phone: PhoneNumber | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            zone_of(value)
        return value

    @model_validator(mode="after")
    def _night_hours(self) -> Self:
        check_night_hours(self.night_from, self.night_until)
        return self

    @field_validator("unit")
    @classmethod
    def _valid_unit(cls, value: str) -> str:
        return check_device_id(value)

    @field_validator("ticket_key")
    @classmethod
    def _public_ed25519(cls, value: str) -> str:
        public_ticket_key(value)
        return value

    def ticket_public_key(self) -> OKPKey:
        """Central's ticket key from this bundle, ready to verify tickets with."""
        return public_ticket_key(self.ticket_key)


def zone_of(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; :class:`ValueError` if there is no such zone here."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"{name!r} is not a known time zone (e.g. Europe/Stockholm)") from err


def check_night_hours(start: str, end: str) -> None:
    """Night hours are a span: :class:`ValueError` if they start when they end."""
    if start == end:
        raise ValueError(
            f"night_from and night_until are both {start}: the night hours need a start and an end"
        )


def public_ticket_key(pem: str) -> OKPKey:
    """Parse a PEM Ed25519 *public* key; :class:`ValueError` if it is anything else."""
    try:
        key = OKPKey.import_key(pem)
    except (JoseError, ValueError, TypeError) as err:
        raise ValueError(f"not an Ed25519 public key in PEM ({err})") from None
    if key.curve_name != "Ed25519":
        raise ValueError(f"not an Ed25519 key but {key.curve_name}")
    if key.is_private:
        raise ValueError("a private key; only central's public ticket key belongs in a bundle")
    return key


def sign_bundle(bundle: UnitConfigBundle, key: OKPKey) -> str:
    """The compact JWS of ``bundle``, signed with central's config key."""
    token = jwt.encode(
        {"alg": ALGORITHM, "typ": BUNDLE_TYP},
        bundle.model_dump(mode="json", exclude_none=True),
        key,
        algorithms=[ALGORITHM],
    )
    if len(token) > MAX_BUNDLE_CHARS:
        raise BadBundle(f"signed config is {len(token)} characters, over {MAX_BUNDLE_CHARS}")
    return token


def verify_bundle(
    token: str | None, key: OKPKey, device_id: str, current_version: int = 0
) -> UnitConfigBundle:
    """Check signature, type, schema, unit and version; return the bundle.

    ``current_version`` is the version the unit runs now (0 for none): only a newer one passes.
    Raises :class:`BadBundle` with the reason a support person can act on.
    """
    raw = open_token(token, key, BUNDLE, BadBundle)
    try:
        bundle = UnitConfigBundle.model_validate(raw)
    except ValidationError as err:
        raise BadBundle(f"config bundle is invalid: {describe_problems(err, 'bundle')}") from None
    if bundle.unit != device_id:
        raise BadBundle(f"config is for unit {bundle.unit}, not this unit ({device_id})")
    if bundle.version <= current_version:
        raise BadBundle(
            f"config version {bundle.version} is not newer than the active version "
            f"{current_version}"
        )
    return bundle


def load_config_key(path: Path) -> OKPKey:
    """Read central's pinned config-signing key (PEM); :class:`ConfigError` if unusable."""
    try:
        key = OKPKey.import_key(path.read_bytes())
    except OSError as err:
        raise ConfigError(f"cannot read config key {path}: {err.strerror}") from None
    except (JoseError, ValueError, TypeError) as err:
        raise ConfigError(f"config key {path} is not an Ed25519 key: {err}") from None
    if key.curve_name != "Ed25519":
        raise ConfigError(f"config key {path} is not an Ed25519 key but {key.curve_name}")
    return key
