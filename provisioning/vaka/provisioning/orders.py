"""Signed orders from central to one unit (JWS, Ed25519, central's config key).

A unit obeys an order only if it is signed by the key it pins, names it, is fresh and not seen
before: a compromised broker cannot wipe or restart units.
"""

import time
import uuid
from typing import Literal

from joserfc import jwt
from joserfc.jwk import OKPKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaka.errors import ProvisioningError
from vaka.provisioning.jws import TokenKind, open_token
from vaka.provisioning.tickets import ALGORITHM, LEEWAY_S

TOKEN_TYPE = "vaka-order+jwt"  # noqa: S105 (a JWS type, not a secret)

ORDER = TokenKind(TOKEN_TYPE, "order", "order", "not an order", 4096)


class BadOrder(ProvisioningError, ValueError):
    """An order was refused; the message says why."""


class Order(BaseModel):
    """What central orders a unit to do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: str
    order: Literal["decommission", "renew"]
    reason: str = Field(default="", max_length=200)
    iat: int
    exp: int
    jti: str = Field(default_factory=lambda: uuid.uuid4().hex, max_length=64)


def sign_order(unit: str, order: str, key: OKPKey, reason: str = "", ttl_s: int = 3600) -> str:
    """A signed order for ``unit``, valid for ``ttl_s``."""
    now = int(time.time())
    claims = Order.model_validate(
        {"unit": unit, "order": order, "reason": reason, "iat": now, "exp": now + ttl_s}
    )
    return jwt.encode(
        {"alg": ALGORITHM, "typ": TOKEN_TYPE}, claims.model_dump(), key, algorithms=[ALGORITHM]
    )


def verify_order(token: str, key: OKPKey, unit: str, now: float | None = None) -> Order:
    """The order if it is signed by ``key``, for ``unit`` and fresh; else :class:`BadOrder`."""
    raw = open_token(token, key, ORDER, BadOrder)
    try:
        order = Order.model_validate(raw)
    except ValidationError as err:
        raise BadOrder(f"order invalid: {err.error_count()} problem(s)") from None
    if order.unit != unit:
        raise BadOrder(f"order is for unit {order.unit}, not this unit ({unit})")
    now = time.time() if now is None else now
    if now > order.exp + LEEWAY_S:
        raise BadOrder("order expired")
    return order
