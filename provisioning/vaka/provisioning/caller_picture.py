"""A contact's picture as central sends it to the TV for one call: small, signed, short-lived.

When a contact dials the citizen's TV, central sends the contact's picture as a thumbnail (a
JPEG of at most :data:`MAX_JPEG_BYTES`, made from the picture staff stored) on the unit's
``message`` channel, signed with its config key (the key every unit pins in ``[trust]
config_key``), naming the unit and the call. The TV shows it beside the caller's name while that
call rings, and keeps it in memory only for that call: the unit stores no pictures of people.
The call ticket stays small (it names the caller; the picture does not travel in it).

The JOSE header says ``typ: vaka-callerpic+jwt``: no other token signed with the same key passes
for a caller's picture, nor the other way round.
"""

import base64
import binascii
import json
import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import OKPKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vaka.errors import ProvisioningError
from vaka.protocol.messages import describe_problems
from vaka.protocol.topics import check_device_id
from vaka.provisioning.jws import ALGORITHM, TokenKind, open_token
from vaka.provisioning.tickets import LEEWAY_S

CALLER_PICTURE_TYP = "vaka-callerpic+jwt"
#: the largest thumbnail (bytes of JPEG, before base64)
MAX_JPEG_BYTES = 24 * 1024
MAX_TOKEN_CHARS = 40 * 1024
CALLER_PICTURE = TokenKind(
    CALLER_PICTURE_TYP, "caller picture", "caller picture", "not a caller picture", MAX_TOKEN_CHARS
)
#: How long a signed picture may be shown after central made it (a call rings for less).
VALID_S = 300


class BadCallerPicture(ProvisioningError, ValueError):
    """A caller picture token was malformed, wrongly signed, for another unit or expired."""


class CallerPicture(BaseModel):
    """The signed claims: the unit, the call, the JPEG (base64)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: str
    cid: str = Field(min_length=1, max_length=80)
    jpeg: str = Field(min_length=4, max_length=(MAX_JPEG_BYTES + 2) // 3 * 4)
    iat: int = Field(ge=0, lt=2**53)
    exp: int = Field(ge=0, lt=2**53)

    @field_validator("unit")
    @classmethod
    def _valid_unit(cls, value: str) -> str:
        return check_device_id(value)

    def jpeg_bytes(self) -> bytes:
        """The thumbnail's JPEG bytes."""
        return base64.b64decode(self.jpeg)


def sign_caller_picture(picture: CallerPicture, key: OKPKey) -> str:
    """The compact JWS of ``picture``, signed with central's config key."""
    return jwt.encode(
        {"alg": ALGORITHM, "typ": CALLER_PICTURE_TYP},
        picture.model_dump(mode="json"),
        key,
        algorithms=[ALGORITHM],
    )


def is_caller_picture(token: str) -> bool:
    """Whether ``token``'s header names a caller picture (unverified: only to route it)."""
    head = token.split(".", 1)[0]
    try:
        header: Any = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(header, dict) and header.get("typ") == CALLER_PICTURE_TYP


def verify_caller_picture(
    token: str, public_key: OKPKey, unit: str, now: float | None = None
) -> CallerPicture:
    """Check size, signature, type, schema, unit and freshness; return the picture.

    Raises :class:`BadCallerPicture` with the reason a support person can act on.
    """
    raw = open_token(token, public_key, CALLER_PICTURE, BadCallerPicture)
    try:
        picture = CallerPicture.model_validate(raw)
    except ValidationError as err:
        raise BadCallerPicture(f"caller picture is invalid: {describe_problems(err)}") from None
    if picture.unit != unit:
        raise BadCallerPicture(f"caller picture is for unit {picture.unit}, not this unit ({unit})")
    now = time.time() if now is None else now
    if now > picture.exp + LEEWAY_S:
        raise BadCallerPicture("caller picture expired")
    try:
        picture.jpeg_bytes()
    except (binascii.Error, ValueError):
        raise BadCallerPicture("caller picture is not valid base64") from None
    return picture
