"""Call tickets: short-lived signed tokens (JWT, JWS with Ed25519) that let one caller reach one
unit for one purpose, once.

Central signs (:func:`sign_ticket`); the unit verifies with central's pinned public key
(:func:`verify_ticket`) and refuses anything that is not exactly right. The algorithm is
``Ed25519`` (EdDSA over Curve25519, the fully specified JOSE name of RFC 9864).
"""

import time
import uuid
from pathlib import Path
from typing import Literal

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaka.errors import CallError
from vaka.provisioning.jws import ALGORITHM, TokenKind, open_token

TICKET = TokenKind("vaka-ticket+jwt", "ticket", "ticket", "not a call ticket", 4096)
ISSUER = "vaka-central"
#: Clock difference tolerated between central and a unit.
LEEWAY_S = 30

Purpose = Literal["night_check", "video_visit", "citizen_call", "break_glass", "contact_call"]
#: What a call may show: the unit's picture blurred on the unit, or clear.
ViewLevel = Literal["blurred", "clear"]


class BadTicket(CallError, ValueError):
    """A ticket was missing, malformed, wrongly signed, expired or not meant for this unit."""


class RelayClaim(BaseModel):
    """The unit's relay credential for this call (TURN REST, see :mod:`vaka.provisioning.turn`).

    It travels inside the signed ticket, so a broker cannot point a unit's media at a relay of
    its choosing; it expires with the ticket (``username`` starts with the expiry).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: tuple[str, ...] = Field(min_length=1, max_length=4)  # stun: first, then turn(s):
    username: str = Field(max_length=120)  # "<expiry>:<call id>-unit"
    credential: str = Field(max_length=64)  # base64(HMAC-SHA1(secret, username))


class TicketClaims(BaseModel):
    """What a ticket says. Short names keep the token small; the docstrings say what they are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    iss: Literal["vaka-central"] = "vaka-central"
    aud: str  # the unit id
    sub: str  # pseudonymous staff id
    name: str = Field(max_length=120)  # the caller's display name, shown on a TV
    role: str = Field(max_length=32)
    grp: str | None = Field(default=None, max_length=64)  # the caller's permitting group
    purpose: Purpose
    cid: str = Field(max_length=80)  # call id
    jti: str = Field(default_factory=lambda: uuid.uuid4().hex, max_length=64)  # nonce
    iat: int
    nbf: int
    exp: int
    win: tuple[int, int]  # the window the call may run in (schedule window, Unix seconds)
    maxd: int = Field(gt=0, le=4 * 3600)  # maximum duration in seconds
    fp: str = Field(max_length=200)  # caller's DTLS fingerprint, "sha-256 AB:CD:..."
    brk: str | None = Field(default=None, max_length=500)  # break-glass reason
    req: str | None = Field(default=None, max_length=80)  # the citizen's request a call answers
    rly: RelayClaim | None = None  # the unit's relay credential for this call, if central has one
    view: ViewLevel | None = None  # the view the call starts in (None: see :func:`start_view`)
    # whether a signed escalation may make a blurred view clear; ``None`` (no) is left out of
    # the token, so that a ticket without a view is the same token a unit before the graduated
    # view accepts
    esc: bool | None = None
    # a contact's call that staff set to answer by itself: the countdown in seconds (``None``,
    # left out of the token: it only rings, as every other contact's call)
    aa: int | None = Field(default=None, ge=0, le=60)


def start_view(claims: TicketClaims) -> ViewLevel:
    """The view a call starts in: the ticket's, else ``blurred`` for a night check (a ticket
    from a central that predates graduated view still gets a blurred night check) and
    ``clear`` for the rest."""
    if claims.view is not None:
        return claims.view
    return "blurred" if claims.purpose == "night_check" else "clear"


def new_ticket_key() -> OKPKey:
    """A fresh Ed25519 key for signing tickets."""
    return OKPKey.generate_key("Ed25519")


def write_ticket_keys(key: OKPKey, private_path: Path, public_path: Path) -> None:
    """Write central's private key (0600) and the public key units pin."""
    private_path.parent.mkdir(parents=True, exist_ok=True)
    private_path.touch(mode=0o600, exist_ok=True)
    private_path.chmod(0o600)
    private_path.write_bytes(key.as_pem(private=True))
    public_path.write_bytes(key.as_pem(private=False))


def load_ticket_key(path: Path) -> OKPKey:
    """Read an Ed25519 key (private or public PEM)."""
    try:
        key = OKPKey.import_key(path.read_bytes())
    except OSError as err:
        raise CallError(f"cannot read ticket key {path}: {err.strerror}") from None
    except (JoseError, ValueError) as err:
        raise CallError(f"ticket key {path} is not an Ed25519 key: {err}") from None
    return key


def sign_ticket(claims: TicketClaims, key: OKPKey) -> str:
    """The compact JWS of ``claims``."""
    return jwt.encode(
        {"alg": ALGORITHM, "typ": "vaka-ticket+jwt"},
        claims.model_dump(exclude_none=True),
        key,
        algorithms=[ALGORITHM],
    )


def verify_ticket(
    token: str | None, key: OKPKey, device_id: str, now: float | None = None
) -> TicketClaims:
    """Check signature, audience, issuer, validity period and window; return the claims.

    Raises :class:`BadTicket` with the reason a support person can act on.
    """
    raw = open_token(token, key, TICKET, BadTicket)
    try:
        claims = TicketClaims.model_validate(raw)
    except ValidationError as err:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in err.errors())
        raise BadTicket(f"ticket claims invalid: {fields}") from None
    now = time.time() if now is None else now
    if claims.aud != device_id:
        raise BadTicket(f"ticket is for unit {claims.aud}, not this unit ({device_id})")
    if now < claims.nbf - LEEWAY_S:
        raise BadTicket("ticket is not valid yet")
    if now > claims.exp + LEEWAY_S:
        raise BadTicket("ticket expired")
    start, end = claims.win
    if not start - LEEWAY_S <= now <= end + LEEWAY_S:
        raise BadTicket("outside the ticket's schedule window")
    return claims
