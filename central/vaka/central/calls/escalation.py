"""Escalating a night check's view from blurred to clear, on the staff member's word and reason.

During a call the staff side may send ``{"type": "escalate", "reason": "…"}`` on the call
WebSocket. Central checks that the call's ticket allows escalation (the citizen's ``night_view``
is ``escalate``), that the citizen's directory entry still says so, and that the reason is at
least ``[calls] break_glass_min_reason`` characters; it audits ``view_escalated`` (who, which
call, the reason) and sends the unit a signed escalation (:mod:`vaka.provisioning.escalation`),
bound to the unit, the call id and the caller's DTLS fingerprint. The unit checks it and answers
with the view it now sends, which :func:`vaka.central.calls.in_call.follow` passes on to the
staff side as ``{"type": "view", "level": "clear"}``. A refused request is audited
(``view_escalation_refused``) and answered with ``{"type": "view", "level": "blurred",
"reason": …}``.
"""

import asyncio
import logging

from joserfc.jwk import OKPKey

from vaka.central.audit.trail import AuditLog
from vaka.central.broker.mqtt import PublishToUnit
from vaka.central.calls.channel import StaffChannel
from vaka.central.calls.staff_side import say
from vaka.central.directory.directory import Directory
from vaka.central.settings.calls import CallLimits
from vaka.errors import LinkError
from vaka.protocol.messages import SignalMessage, SignalPayload
from vaka.protocol.topics import Channel
from vaka.provisioning.escalation import sign_escalation
from vaka.provisioning.tickets import TicketClaims

log = logging.getLogger(__name__)


class ViewEscalation:
    """Checks, audits and signs view escalations for one central instance."""

    def __init__(
        self,
        directory: Directory,
        audit: AuditLog,
        ticket_key: OKPKey,
        limits: CallLimits,
        publish: PublishToUnit,
    ) -> None:
        self.directory = directory
        self.audit = audit
        self.ticket_key = ticket_key
        self.limits = limits
        self.publish = publish

    def _refusal(self, claims: TicketClaims, reason: str) -> str | None:
        """Why this escalation may not happen (blocking), or ``None``."""
        if claims.view != "blurred":
            return "this call's view is not blurred"
        if not claims.esc:
            return "this call's ticket does not allow escalation to the clear view"
        citizen = self.directory.citizen_of(claims.aud)
        if citizen is None or self.directory.night_view(citizen) != "escalate":
            return "the citizen's care decision does not allow the clear view now"
        if len(reason) < self.limits.break_glass_min_reason:
            return (
                f"escalating to the clear view needs a typed reason of at least "
                f"{self.limits.break_glass_min_reason} characters"
            )
        return None

    def _audit(self, kind: str, claims: TicketClaims, reason: str) -> None:
        self.audit.append(
            kind,
            actor=claims.sub,
            unit=claims.aud,
            purpose=claims.purpose,
            call_id=claims.cid,
            reason=reason,
        )

    async def escalate(self, ws: StaffChannel, claims: TicketClaims, reason: str | None) -> None:
        """Handle the staff side's request to see ``claims``' call clearly."""
        text = (reason or "").strip()[:500]
        refused = await asyncio.to_thread(self._refusal, claims, text)
        if refused is not None:
            await asyncio.to_thread(self._audit, "view_escalation_refused", claims, refused)
            log.info("call %s: escalation refused: %s", claims.cid, refused)
            await say(
                ws, {"type": "view", "call_id": claims.cid, "level": "blurred", "reason": refused}
            )
            return
        await asyncio.to_thread(self._audit, "view_escalated", claims, text)
        token = sign_escalation(claims, self.ticket_key)
        payload = SignalPayload(kind="escalate", call_id=claims.cid, ticket=token)
        try:
            await self.publish(claims.aud, Channel.SIGNAL_IN, SignalMessage(payload=payload))
        except LinkError as err:
            reason = f"central cannot reach the broker: {err}"
            await say(
                ws, {"type": "view", "call_id": claims.cid, "level": "blurred", "reason": reason}
            )
