"""Signed update orders: central tells one unit which system bundle to install (JWS, Ed25519,
central's config key — the same key and checks as config bundles and orders).

An order names the unit, the roll-out it belongs to, the bundle's version, where to fetch it
(central's own bundle path, or a static file server), its SHA-256 and its size. A unit installs
nothing without one, and nothing whose bytes do not hash to what the order names. The order
also serves as the unit's credential for central's bundle path: central accepts a download only
with an order it signed, for that bundle, still valid (:func:`verify_update_order` with
``unit=None``).

The JOSE header says ``typ: vaka-update+jwt``, so no other kind of token passes for one.
"""

import time
import uuid
from typing import Annotated

from joserfc import jwt
from joserfc.jwk import OKPKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vaka.errors import ProvisioningError
from vaka.protocol.messages import describe_problems
from vaka.protocol.topics import check_device_id
from vaka.provisioning.jws import ALGORITHM, TokenKind, open_token
from vaka.provisioning.tickets import LEEWAY_S

UPDATE_TYP = "vaka-update+jwt"
UPDATE = TokenKind(UPDATE_TYP, "update order", "update order", "not an update order", 4096)

#: The largest bundle an order may name (a root file system bundle is ~450 MB).
MAX_BUNDLE_BYTES = 4 * 1024**3
#: How long an order stays valid by default: long enough to wait out calls and nights.
ORDER_TTL_S = 14 * 24 * 3600

Version = Annotated[str, Field(pattern=r"^[A-Za-z0-9.+~_-]{1,64}$")]
"""A bundle version as ``image/bundle.sh`` allows it."""
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class BadUpdateOrder(ProvisioningError, ValueError):
    """An update order was refused; the message says why."""


class UpdateOrder(BaseModel):
    """What central orders a unit to install. These are the signed JWT claims."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: str
    rollout: int = Field(ge=1, lt=2**53)
    version: Version
    url: str = Field(min_length=1, max_length=1024)
    sha256: Sha256
    size: int = Field(gt=0, le=MAX_BUNDLE_BYTES)
    iat: int
    exp: int
    jti: str = Field(default_factory=lambda: uuid.uuid4().hex, max_length=64)

    @field_validator("unit")
    @classmethod
    def _valid_unit(cls, value: str) -> str:
        return check_device_id(value)

    @field_validator("url")
    @classmethod
    def _web_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("the bundle's URL must be http(s)://")
        return value


def sign_update_order(
    unit: str,
    rollout: int,
    version: str,
    url: str,
    sha256: str,
    size: int,
    key: OKPKey,
    ttl_s: int = ORDER_TTL_S,
) -> str:
    """A signed order for ``unit`` to install the bundle ``sha256``, valid for ``ttl_s``."""
    now = int(time.time())
    claims = UpdateOrder.model_validate(
        {
            "unit": unit,
            "rollout": rollout,
            "version": version,
            "url": url,
            "sha256": sha256,
            "size": size,
            "iat": now,
            "exp": now + ttl_s,
        }
    )
    return jwt.encode(
        {"alg": ALGORITHM, "typ": UPDATE_TYP}, claims.model_dump(), key, algorithms=[ALGORITHM]
    )


def verify_update_order(
    token: str | None, key: OKPKey, unit: str | None, now: float | None = None
) -> UpdateOrder:
    """The order if it is signed by ``key``, for ``unit`` (any unit when ``None``) and still
    valid; else :class:`BadUpdateOrder` with a reason a support person can act on."""
    raw = open_token(token, key, UPDATE, BadUpdateOrder)
    try:
        order = UpdateOrder.model_validate(raw)
    except ValidationError as err:
        raise BadUpdateOrder(f"update order invalid: {describe_problems(err, 'order')}") from None
    if unit is not None and order.unit != unit:
        raise BadUpdateOrder(f"update order is for unit {order.unit}, not this unit ({unit})")
    now = time.time() if now is None else now
    if now > order.exp + LEEWAY_S:
        raise BadUpdateOrder("update order expired: ask central for a new one")
    return order
