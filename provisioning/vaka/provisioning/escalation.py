"""View escalations: central's signed word that one call's blurred view may become clear.

A night check starts blurred (the ticket's ``view``); the unit blurs its picture itself, so no
staff client, however modified, can see more. When the staff member asks for the clear view with
a reason, central checks the permission, audits it and signs an escalation (:func:`sign_escalation`)
with the ticket key: a short token bound to the unit, the call id and the caller's DTLS
fingerprint. The unit checks it (:func:`verify_escalation`) against the call's ticket before it
sends a single clear frame.
"""

import time
import uuid
from typing import Literal

from joserfc import jwt
from joserfc.jwk import OKPKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaka.errors import CallError
from vaka.provisioning.jws import ALGORITHM, TokenKind, open_token
from vaka.provisioning.tickets import LEEWAY_S, TicketClaims

ESCALATION = TokenKind(
    "vaka-escalation+jwt", "escalation", "escalation", "not a view escalation", 2048
)
#: How long a signed escalation is good for (it travels at once; a late one is refused).
ESCALATION_TTL_S = 60


class BadEscalation(CallError, ValueError):
    """An escalation was missing, forged, expired or not meant for this call."""


class EscalationClaims(BaseModel):
    """What an escalation says (short names, as in a ticket)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    iss: Literal["vaka-central"] = "vaka-central"
    aud: str = Field(max_length=64)  # the unit id
    cid: str = Field(max_length=80)  # the call id
    fp: str = Field(max_length=200)  # the caller's DTLS fingerprint, as in the ticket
    view: Literal["clear"] = "clear"
    jti: str = Field(default_factory=lambda: uuid.uuid4().hex, max_length=64)
    iat: int
    exp: int


def sign_escalation(ticket: TicketClaims, key: OKPKey, now: float | None = None) -> str:
    """An escalation to ``clear`` for the call of ``ticket`` (compact JWS)."""
    issued = int(time.time() if now is None else now)
    claims = EscalationClaims(
        aud=ticket.aud, cid=ticket.cid, fp=ticket.fp, iat=issued, exp=issued + ESCALATION_TTL_S
    )
    return jwt.encode(
        {"alg": ALGORITHM, "typ": ESCALATION.typ}, claims.model_dump(), key, algorithms=[ALGORITHM]
    )


def verify_escalation(
    token: str | None, key: OKPKey, ticket: TicketClaims, now: float | None = None
) -> EscalationClaims:
    """Check an escalation against the call's ``ticket``; :class:`BadEscalation` with the
    reason if it is not central's, not for this unit, call and caller, or not fresh."""
    raw = open_token(token, key, ESCALATION, BadEscalation)
    try:
        claims = EscalationClaims.model_validate(raw)
    except ValidationError as err:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in err.errors())
        raise BadEscalation(f"escalation claims invalid: {fields}") from None
    now = time.time() if now is None else now
    if claims.aud != ticket.aud:
        raise BadEscalation(f"escalation is for unit {claims.aud}, not this unit")
    if claims.cid != ticket.cid:
        raise BadEscalation("escalation is for another call")
    if claims.fp != ticket.fp:
        raise BadEscalation("escalation names another caller's DTLS fingerprint")
    if not ticket.esc:
        raise BadEscalation("the call's ticket does not allow escalation")
    if now > claims.exp + LEEWAY_S or now < claims.iat - LEEWAY_S:
        raise BadEscalation("escalation expired")
    return claims
