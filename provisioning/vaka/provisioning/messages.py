"""Signed messages and reminders for the TV: what staff send, as a JWS (JWT, Ed25519).

Central signs each message (:func:`sign_message`) with its *config key*, the key every unit
already pins in ``[trust] config_key``; the unit verifies it (:func:`verify_message`) before it
shows anything. A message names the one unit it is for and an expiry, so a message for another
unit, a stale one replayed, or one not signed by central is refused with a reason a support person
can read. The JOSE header says ``typ: vaka-message+jwt``: a config bundle or an order, signed with
the same key, never passes for a message, nor the other way round.

The claims are :class:`SignedMessage` itself, unknown keys refused. An optional picture travels
inline as base64 JPEG; it is decoded and checked with Pillow on both sides (size, format,
dimensions) and is never written to disk.
"""

import base64
import binascii
import io
import time
import uuid
from typing import Annotated, Any, Literal

from joserfc import jwt
from joserfc.jwk import OKPKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vaka.errors import ProvisioningError
from vaka.protocol.messages import describe_problems
from vaka.protocol.topics import check_device_id
from vaka.provisioning.jws import TokenKind, open_token
from vaka.provisioning.tickets import ALGORITHM, LEEWAY_S

MESSAGE_TYP = "vaka-message+jwt"
#: Same limit as the ``token`` field of the message envelope on the wire.
MAX_TOKEN_CHARS = 60 * 1024

MESSAGE = TokenKind(MESSAGE_TYP, "message token", "message", "not a message", MAX_TOKEN_CHARS)
MAX_TEXT_CHARS = 500
MAX_PICTURE_BYTES = 40 * 1024
MAX_PICTURE_SIZE = (1280, 720)
#: Base64 of the largest picture (4 characters per 3 bytes, padded).
MAX_PICTURE_CHARS = 4 * ((MAX_PICTURE_BYTES + 2) // 3)
DEFAULT_ACK_WITHIN_S = 900

MessageId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class BadMessageToken(ProvisioningError, ValueError):
    """A signed message was malformed, wrongly signed, for another unit or expired.

    ``mid`` is the message id when the signature checked out (so the refusal can be reported
    against the right message), else ``None``.
    """

    def __init__(self, reason: str, mid: str | None = None) -> None:
        super().__init__(reason)
        self.mid = mid


def new_message_id() -> str:
    """A fresh random message id."""
    return "m-" + uuid.uuid4().hex


def check_picture(data: bytes) -> tuple[int, int]:
    """Check that ``data`` is a JPEG within the limits; return its ``(width, height)``.

    Raises :class:`ValueError` saying what is wrong. Pillow is imported here so that code that
    never sees a picture does not pay for it.
    """
    if len(data) > MAX_PICTURE_BYTES:
        raise ValueError(f"picture is {len(data)} bytes, over the {MAX_PICTURE_BYTES}-byte limit")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
            width, height = image.size
            if width > MAX_PICTURE_SIZE[0] or height > MAX_PICTURE_SIZE[1]:
                raise ValueError(
                    f"picture is {width}x{height}, larger than "
                    f"{MAX_PICTURE_SIZE[0]}x{MAX_PICTURE_SIZE[1]}"
                )
            image.load()  # decodes it all: a truncated or corrupt JPEG fails here
    except UnidentifiedImageError:
        raise ValueError("picture is not a JPEG image") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"picture does not decode as a JPEG ({err})") from None
    return width, height


def decode_picture(text: str) -> bytes:
    """The bytes of a base64 picture; :class:`ValueError` if it is not base64."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("picture is not valid base64") from None


class SignedMessage(BaseModel):
    """A message or reminder for one unit. These are the signed JWT claims."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: str
    mid: MessageId
    kind: Literal["message", "reminder"]
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    #: base64 JPEG, at most 40 KiB decoded and 1280x720; left out of ``repr``
    picture: str | None = Field(default=None, max_length=2 * MAX_PICTURE_CHARS, repr=False)
    sender_name: str = Field(max_length=120)
    iat: int = Field(ge=0, lt=2**53)
    exp: int = Field(ge=0, lt=2**53)
    ack_within_s: int = Field(default=DEFAULT_ACK_WITHIN_S, ge=1, le=86_400)

    @field_validator("unit")
    @classmethod
    def _valid_unit(cls, value: str) -> str:
        return check_device_id(value)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is blank")
        return value

    @field_validator("picture")
    @classmethod
    def _jpeg(cls, value: str | None) -> str | None:
        if value is not None:
            check_picture(decode_picture(value))
        return value

    @model_validator(mode="after")
    def _expires_after_issue(self) -> "SignedMessage":
        if self.exp <= self.iat:
            raise ValueError("exp must be after iat")
        return self

    def picture_bytes(self) -> bytes | None:
        """The picture as JPEG bytes (for the screen), or ``None``."""
        return None if self.picture is None else base64.b64decode(self.picture)


def make_message(**claims: Any) -> SignedMessage:
    """Build the claims, with a fresh ``mid`` and ``iat`` = now unless given.

    Raises :class:`BadMessageToken` listing every invalid field.
    """
    claims.setdefault("mid", new_message_id())
    claims.setdefault("iat", int(time.time()))
    try:
        return SignedMessage.model_validate(claims)
    except ValidationError as err:
        raise BadMessageToken(f"message is invalid: {describe_problems(err)}") from None


def sign_message(claims: SignedMessage, key: OKPKey) -> str:
    """The compact JWS of ``claims``, signed with central's config key.

    Raises :class:`BadMessageToken` if the token would not fit on the wire (a large picture).
    """
    token = jwt.encode(
        {"alg": ALGORITHM, "typ": MESSAGE_TYP},
        claims.model_dump(mode="json", exclude_none=True),
        key,
        algorithms=[ALGORITHM],
    )
    if len(token) > MAX_TOKEN_CHARS:
        raise BadMessageToken(
            f"signed message is {len(token)} characters, over {MAX_TOKEN_CHARS}: "
            "send a smaller picture"
        )
    return token


def verify_message(
    token: str, public_key: OKPKey, unit: str, now: float | None = None
) -> SignedMessage:
    """Check size, signature, type, schema, unit and expiry; return the message.

    Raises :class:`BadMessageToken` with the reason a support person can act on.
    """
    raw = open_token(token, public_key, MESSAGE, BadMessageToken)
    raw_mid = raw.get("mid")
    mid = raw_mid[:64] if isinstance(raw_mid, str) else None
    try:
        message = SignedMessage.model_validate(raw)
    except ValidationError as err:
        raise BadMessageToken(f"message is invalid: {describe_problems(err)}", mid) from None
    if message.unit != unit:
        raise BadMessageToken(
            f"message is for unit {message.unit}, not this unit ({unit})", message.mid
        )
    now = time.time() if now is None else now
    if now > message.exp + LEEWAY_S:
        raise BadMessageToken("message expired", message.mid)
    if now < message.iat - LEEWAY_S:
        raise BadMessageToken("message is issued in the future: check the clock", message.mid)
    return message
