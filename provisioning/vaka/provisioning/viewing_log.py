"""The citizen's viewing log as central sends it to the TV: who looked in, and when.

When the TV asks (a ``viewing_log`` event), central reads the camera sessions of the unit's last
24 hours from its audit trail and sends them, signed with its config key (the key every unit
pins in ``[trust] config_key``), on the unit's ``message`` channel. Each entry names a role, not
a person ("night_staff"), the purpose, the start (unix time) and how many seconds the camera
ran. The unit verifies the token (:func:`verify_viewing_log`) and shows the entries in the
citizen's language; it keeps nothing once the screen is closed.

The JOSE header says ``typ: vaka-viewlog+jwt``: neither a staff message nor any other token signed
with the same key passes for a viewing log, nor the other way round.
"""

import base64
import binascii
import json
import time
from typing import Annotated, Any

from joserfc import jwt
from joserfc.jwk import OKPKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vaka.errors import ProvisioningError
from vaka.protocol.messages import describe_problems
from vaka.protocol.topics import check_device_id
from vaka.provisioning.jws import ALGORITHM, TokenKind, open_token
from vaka.provisioning.tickets import LEEWAY_S

VIEWING_LOG_TYP = "vaka-viewlog+jwt"
MAX_TOKEN_CHARS = 16 * 1024
VIEWING_LOG = TokenKind(
    VIEWING_LOG_TYP, "viewing log", "viewing log", "not a viewing log", MAX_TOKEN_CHARS
)
#: The most entries one log carries (the newest are kept).
MAX_ENTRIES = 40
#: How long a signed log may be shown after central made it.
VALID_S = 600

Word = Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")]


class BadViewingLog(ProvisioningError, ValueError):
    """A viewing log token was malformed, wrongly signed, for another unit or expired."""


class ViewingEntry(BaseModel):
    """One camera session: a role (not a name), the purpose, when, and how long."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Word
    purpose: Word
    at: float = Field(ge=0, lt=2**53)
    seconds: int = Field(ge=0, le=24 * 3600)


class ViewingLog(BaseModel):
    """The signed claims: the unit, the period, the sessions (oldest first)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: str
    since: float = Field(ge=0, lt=2**53)
    iat: int = Field(ge=0, lt=2**53)
    exp: int = Field(ge=0, lt=2**53)
    entries: list[ViewingEntry] = Field(max_length=MAX_ENTRIES)

    @field_validator("unit")
    @classmethod
    def _valid_unit(cls, value: str) -> str:
        return check_device_id(value)


def sign_viewing_log(log: ViewingLog, key: OKPKey) -> str:
    """The compact JWS of ``log``, signed with central's config key."""
    return jwt.encode(
        {"alg": ALGORITHM, "typ": VIEWING_LOG_TYP},
        log.model_dump(mode="json"),
        key,
        algorithms=[ALGORITHM],
    )


def is_viewing_log(token: str) -> bool:
    """Whether ``token``'s header names a viewing log (unverified: only to route it)."""
    head = token.split(".", 1)[0]
    try:
        header: Any = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(header, dict) and header.get("typ") == VIEWING_LOG_TYP


def verify_viewing_log(
    token: str, public_key: OKPKey, unit: str, now: float | None = None
) -> ViewingLog:
    """Check size, signature, type, schema, unit and freshness; return the log.

    Raises :class:`BadViewingLog` with the reason a support person can act on.
    """
    raw = open_token(token, public_key, VIEWING_LOG, BadViewingLog)
    try:
        log = ViewingLog.model_validate(raw)
    except ValidationError as err:
        raise BadViewingLog(f"viewing log is invalid: {describe_problems(err)}") from None
    if log.unit != unit:
        raise BadViewingLog(f"viewing log is for unit {log.unit}, not this unit ({unit})")
    now = time.time() if now is None else now
    if now > log.exp + LEEWAY_S:
        raise BadViewingLog("viewing log expired")
    return log
