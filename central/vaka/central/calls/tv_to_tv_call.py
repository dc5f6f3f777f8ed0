"""One call between two citizens' TVs as central runs it (:mod:`vaka.central.calls.tv_to_tv`):
the two sides' call ids, the tickets each side gets, and how a callee's refusal is told."""

import asyncio
from dataclasses import dataclass, field

from vaka.central.calls.requests import CallRequest
from vaka.central.circle.calls import CONTACT_PURPOSE, CONTACT_ROLE, PeerCall
from vaka.central.settings.calls import CallLimits
from vaka.protocol.messages import SignalPayload
from vaka.protocol.reasons import Reason
from vaka.provisioning.tickets import RelayClaim, TicketClaims


@dataclass
class TvToTvCall:
    """One call between two TVs, as this instance runs it."""

    request: CallRequest
    peer: PeerCall
    caller_cid: str
    callee_cid: str
    said: "asyncio.Queue[tuple[str, SignalPayload]]" = field(default_factory=asyncio.Queue)

    def side(self, unit: str, call_id: str) -> str | None:
        """``caller`` or ``callee`` for a message of ``unit`` about ``call_id`` (else ``None``)."""
        if call_id == self.caller_cid and unit == self.request.unit:
            return "caller"
        if call_id == self.callee_cid and unit == self.peer.callee_unit:
            return "callee"
        return None


class NotTaken(Exception):
    """The call ended before it was answered, with the reason the caller's citizen is told."""

    def __init__(self, state: str, reason: Reason) -> None:
        super().__init__(str(reason))
        self.state, self.reason = state, reason


def ticket_claims(
    limits: CallLimits, call: "TvToTvCall", side: str, fp: str, relay: RelayClaim | None, now: float
) -> TicketClaims:
    """A ticket for one side: the other side's contact as the caller, the call's limits."""
    peer = call.peer
    unit, cid, who = (
        (call.request.unit, call.caller_cid, peer.callee)
        if side == "caller"
        else (peer.callee_unit, call.callee_cid, peer.caller)
    )
    return TicketClaims(
        aud=unit,
        sub=who.contact_id,
        name=who.display_name,
        role=CONTACT_ROLE,
        purpose=CONTACT_PURPOSE,
        cid=cid,
        iat=int(now),
        nbf=int(now),
        exp=int(now) + limits.ticket_ttl_s,
        win=(int(now), int(now) + peer.max_s),
        maxd=peer.max_s,
        fp=fp,
        req=call.request.request_id if side == "caller" else None,
        rly=relay,
        aa=peer.auto_answer_s if side == "callee" else None,
    )


def refusal(said: SignalPayload, name: str) -> tuple[str, Reason]:
    """How the callee's ``hangup``/``error`` settles the request, and the reason for it."""
    text = said.reason or said.kind
    if said.outcome == "declined" or "do not disturb" in text or "evening" in text:
        return "declined", Reason(f"{name} did not take the call", "contact_declined")
    if said.outcome == "no_answer":
        return "unanswered", Reason(f"{name} did not answer", "contact_no_answer")
    if said.outcome == "busy":
        return "declined", Reason(f"{name} is busy in another call", "contact_busy")
    return "refused", Reason(f"{name}'s TV did not take the call: {text}"[:200], "tv_not_taken")
