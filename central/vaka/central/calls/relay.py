"""The signalling relay: staff client (WebSocket) -> central -> unit (MQTT) and back.

One WebSocket per call (a :class:`~vaka.central.calls.channel.StaffChannel`). The client sends
``dial`` with its SDP offer; central applies the permission matrix, signs a ticket naming the
offer's DTLS fingerprint, and sends offer and ticket to the unit in one message; the unit's
answer comes back on the same WebSocket — one round trip. Either side may hang up.

A TV rings first: the offer carries ``[calls] ring_timeout_s`` as the unit's ringing deadline,
the unit says ``ringing`` and gives up by itself when the deadline passes ("no answer after
30 s"); central waits :data:`RING_GRACE_S` longer before it gives up on a silent unit. Central
reads the staff side all along, so a ``hangup`` (or ``cancel``) while the unit rings cancels the
call there and then, and the socket's pings are answered while it rings. What the staff side is
told carries an ``outcome`` (``cancelled``, ``no_answer``, ``declined``, ``busy``). A refused or
cancelled call is a normal outcome: one log line with its reason, and no error.

Once the unit answered, :func:`~vaka.central.calls.in_call.follow` carries the call to its end,
the staff side's view escalation of a blurred night check among it
(:mod:`vaka.central.calls.escalation`).

Contacts of the citizen call on this path too (role ``contact``, :mod:`vaka.central.circle`).

A caller may first send ``prepare`` to get the call's relay credential before it makes its
offer (:mod:`vaka.central.calls.prepare`); the ticket then carries the unit's own.

While a call is being set up (from the socket's opening to the unit's answer and
:data:`~vaka.central.broker.calls_first.MEDIA_SETTLE_S` after it) the relay holds health back
(:mod:`vaka.central.broker.calls_first`): a restart's backlog of reports does not take the CPU
the call's set-up needs.

Several central instances may run: each subscribes to ``signal/out`` without sharing and keeps
only answers to calls whose id it issued (call ids start with the instance's identity). What
the unit *did* (call started, ended, refused; shutter moved) reaches the audit trail through the
unit's events, which exactly one instance ingests.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from joserfc.jwk import OKPKey

from vaka.central.audit.trail import AuditLog
from vaka.central.broker.calls_first import MEDIA_SETTLE_S, CallsFirst, SetUpHold
from vaka.central.broker.mqtt import PublishToUnit
from vaka.central.calls import reasons
from vaka.central.calls.channel import StaffChannel
from vaka.central.calls.citizen import CitizenCallDesk
from vaka.central.calls.dial import (
    DialRefused,
    DialRequest,
    parse_dial,
    read_dial_text,
    ticket_claims,
)
from vaka.central.calls.escalation import ViewEscalation
from vaka.central.calls.in_call import follow
from vaka.central.calls.prepare import (
    Prepared,
    PrepareRequest,
    dial_fields,
    is_prepare,
    prepare_call,
)
from vaka.central.calls.staff_side import StaffSide, next_said, refuse, say
from vaka.central.calls.turn import RelayCredentials, relay_claim
from vaka.central.calls.tv_calls import TvCalls
from vaka.central.circle.calls import CONTACT_PURPOSE, CONTACT_ROLE, ContactCalls
from vaka.central.directory.directory import Directory, StaffMember
from vaka.central.directory.policy import Authorization, CallRefused, authorize_call
from vaka.central.fleet.privacy_mode import PrivacyModes
from vaka.central.settings.calls import CallLimits
from vaka.errors import LinkError
from vaka.protocol.inbound import read_unit_message
from vaka.protocol.messages import SignalMessage, SignalPayload
from vaka.protocol.reasons import reason_of, with_code
from vaka.protocol.refusals import Refusals
from vaka.protocol.topics import Channel
from vaka.provisioning.tickets import TicketClaims, sign_ticket

log = logging.getLogger(__name__)

#: How much longer than the ringing deadline central waits for the unit to say it gave up.
RING_GRACE_S = 5.0


class CallRelay:
    """Relays calls for one central instance."""

    def __init__(
        self,
        identity: str,
        directory: Directory,
        audit: AuditLog,
        ticket_key: OKPKey,
        limits: CallLimits,
        publish: PublishToUnit,
        citizen_calls: CitizenCallDesk | None = None,
        relay_credentials: RelayCredentials | None = None,
        *,
        require_consent: bool = True,
        privacy: PrivacyModes | None = None,
        contacts: ContactCalls | None = None,
        tv_calls: TvCalls | None = None,
        calls_first: CallsFirst | None = None,
    ) -> None:
        self.identity = identity
        self.directory = directory
        self.audit = audit
        self.ticket_key = ticket_key
        self.limits = limits
        self.publish = publish
        self._pending: dict[str, asyncio.Queue[SignalPayload]] = {}
        #: refused ``signal/out`` messages, by reason
        self.refusals = Refusals(log, "signal")
        #: takes the citizens' requests (see :mod:`vaka.central.calls.citizen`), if any
        self.citizen_calls = citizen_calls
        #: mints the unit's and the caller's relay credentials (none without ``[turn]``)
        self.relay_credentials = relay_credentials or RelayCredentials(None)
        #: whether calls need the consent record (``[privacy] require_consent``)
        self.require_consent = require_consent
        #: the citizens' privacy modes: a night check or video visit inside one is refused
        self.privacy = privacy
        #: checks, audits and signs the staff side's view escalations
        self.escalation = ViewEscalation(directory, audit, ticket_key, limits, publish)
        self.contacts = contacts  # the rules of contacts' calls (none: contacts cannot call)
        self.tv_calls = tv_calls  # the TV's calls to contacts (none: the TV cannot call them)
        #: health gives way while a call is being set up (none: it never does)
        self.calls_first = calls_first or CallsFirst(0)

    # ------------------------------------------------------------ from the units

    def on_signal_out(self, topic: str, payload: Any) -> None:
        """A unit's ``signal/out`` message (every instance sees every one)."""
        read = read_unit_message(topic, payload, (Channel.SIGNAL_OUT,), self.refusals)
        if read is None:
            return
        where, message = read
        assert isinstance(message, SignalMessage)
        queue = self._pending.get(message.payload.call_id)
        if queue is None:
            unit, said = where.device_id, message.payload
            if self.tv_calls is not None and self.tv_calls.on_unit_signal(unit, said):
                return
            if self.citizen_calls is not None and said.kind in ("request", "hangup"):
                self.citizen_calls.on_unit_signal(unit, said)
            return  # another instance's call, or one that has ended
        log.debug("signal %s from %s", message.payload.kind, where.device_id)
        queue.put_nowait(message.payload)

    # ------------------------------------------------------------ from the staff client

    async def _audit(self, kind: str, **fields: Any) -> None:
        await asyncio.to_thread(self.audit.append, kind, **fields)

    async def handle(self, ws: StaffChannel, caller: StaffMember) -> None:
        """Run one call with ``caller`` on ``ws`` (the call WebSocket)."""
        call_id = f"{self.identity}.{uuid.uuid4().hex[:16]}"
        setting_up = self.calls_first.hold()  # until the answer, and the media's first moments
        try:
            await self._handle(ws, caller, call_id, setting_up)
        finally:
            setting_up.release()

    async def _handle(
        self, ws: StaffChannel, caller: StaffMember, call_id: str, setting_up: SetUpHold
    ) -> None:
        dialled = await self._read_dial(ws, caller, asyncio.get_running_loop().time(), call_id)
        if dialled is None:
            return
        dial, sdp, fingerprint, prepared = dialled
        fields = {
            "actor": caller.staff_id,
            "unit": dial.unit,
            "purpose": dial.purpose,
            "call_id": call_id,
        }
        if dial.request is not None:
            fields["request"] = dial.request
        if prepared is not None:
            allowed, now, expires_at = prepared.allowed, prepared.now, prepared.expires_at
        else:
            now = time.time()
            expires_at = int(now) + self.limits.ticket_ttl_s
            try:
                allowed = await self._authorize(caller, dial, now)
            except CallRefused as err:
                await self._audit("ticket_refused", **fields, reason=str(err))
                await refuse(ws, reason_of(err), None)
                return
        unit_relay = await self.relay_credentials.mint(call_id, "unit", expires_at, now)
        claims = ticket_claims(caller, dial, allowed, call_id, fingerprint, now, self.limits)
        claims = claims.model_copy(update={"rly": relay_claim(unit_relay)})
        ticket = sign_ticket(claims, self.ticket_key)
        await self._audit(
            "ticket_issued",
            **fields,
            citizen=allowed.citizen,
            group=allowed.group,
            nonce=claims.jti,
            window=list(allowed.window),
            max_duration_s=allowed.max_duration_s,
            break_glass=allowed.break_glass_reason,
            view=claims.view,
        )
        queue: asyncio.Queue[SignalPayload] = asyncio.Queue()
        self._pending[call_id] = queue
        staff = StaffSide(ws)
        contact = self.contacts if self.contacts and caller.role == CONTACT_ROLE else None
        if contact is not None:
            await contact.call_opened(caller.staff_id, call_id, dial.unit)
        try:
            await self._run_call(staff, claims, ticket, sdp, queue, fields, setting_up)
        except ConnectionError as err:  # the staff side went while central spoke to it
            log.info("call %s: the caller's channel closed (%s)", call_id, err)
            await self._send_unit(
                dial.unit, SignalPayload(kind="hangup", call_id=call_id, reason="caller left")
            )
        finally:
            staff.close()
            self._pending.pop(call_id, None)
            if contact is not None:
                await asyncio.to_thread(contact.book.call_closed, caller.staff_id, call_id)

    async def _read_dial(
        self, ws: StaffChannel, caller: StaffMember, opened: float, call_id: str
    ) -> tuple[DialRequest, str, str, Prepared | None] | None:
        """The dial request, its checked SDP, the fingerprint to pin and the prepared call it
        follows (if it does); ``None`` once refused."""
        first = await read_dial_text(ws, opened, self.limits.dial_deadline_s)
        if first is None:
            return None
        prepared = None
        if is_prepare(first):
            prepared = await prepare_call(
                ws,
                caller,
                first,
                call_id,
                self._authorize,
                self.audit,
                self.relay_credentials,
                self.limits.ticket_ttl_s,
            )
            if prepared is None:
                return None
            first = await read_dial_text(ws, opened, self.limits.dial_deadline_s)
            if first is None:
                return None
        try:
            dial, sdp, fingerprint = parse_dial(first)
        except DialRefused as err:
            reason = str(err)
            await self._audit("ticket_refused", actor=caller.staff_id, reason=reason)
            await refuse(ws, reason, None)
            return None
        if prepared is not None and prepared.fields != dial_fields(dial):
            reason = "the dial request does not match the prepared call"
            await self._audit("ticket_refused", actor=caller.staff_id, reason=reason)
            await refuse(ws, reason, call_id)
            return None
        return dial, sdp, fingerprint, prepared

    async def _authorize(
        self, caller: StaffMember, dial: DialRequest | PrepareRequest, now: float
    ) -> Authorization:
        """The permission matrix's (or a contact's rules') answer; a citizen call is won first."""
        if caller.role == CONTACT_ROLE or dial.purpose == CONTACT_PURPOSE:
            if self.contacts is None:
                raise CallRefused("contacts' calls are not taken on this central")
            if caller.role == CONTACT_ROLE and dial.request and self.tv_calls is not None:
                return await self.tv_calls.answer(caller.staff_id, dial.request, dial.unit, now)
            check = self.contacts.authorize_caller
            return await asyncio.to_thread(check, caller, dial.purpose, dial.unit, now)
        if dial.purpose == "citizen_call":
            await self._accept_citizen_call(caller, dial)
        allowed = await asyncio.to_thread(
            authorize_call,
            self.directory,
            caller,
            dial.unit,
            dial.purpose,
            now,
            self.limits,
            dial.reason,
            dial.request,
            self.citizen_calls,
            require_consent=self.require_consent,
        )
        if self.privacy is not None:  # after the permission checks: only they learn of it
            blocked = await asyncio.to_thread(self.privacy.refusal, dial.unit, dial.purpose, now)
            if blocked is not None:
                raise CallRefused(blocked)
        return allowed

    async def _accept_citizen_call(
        self, caller: StaffMember, dial: DialRequest | PrepareRequest
    ) -> None:
        """Win the citizen's request for ``caller`` (first accept wins) or raise CallRefused."""
        if self.citizen_calls is None:
            raise CallRefused("citizen calls are not taken on this central")
        if not dial.request:
            raise CallRefused("a citizen call answers a citizen's request: name the request")
        await self.citizen_calls.accept(caller, dial.request, dial.unit)

    async def _send_unit(self, unit: str, payload: SignalPayload) -> None:
        with contextlib.suppress(LinkError):
            await self.publish(unit, Channel.SIGNAL_IN, SignalMessage(payload=payload))

    async def _run_call(
        self,
        staff: StaffSide,
        claims: TicketClaims,
        ticket: str,
        sdp: str,
        queue: asyncio.Queue[SignalPayload],
        fields: dict[str, Any],
        setting_up: SetUpHold,
    ) -> None:
        ws, ring_s = staff.ws, self.limits.ring_timeout_s
        unit, call_id = claims.aud, claims.cid
        offer = SignalPayload(kind="offer", call_id=call_id, ticket=ticket, sdp=sdp, ring_s=ring_s)
        try:
            await self.publish(unit, Channel.SIGNAL_IN, SignalMessage(payload=offer))
        except LinkError as err:
            await refuse(ws, f"central cannot reach the broker: {err}", call_id)
            return
        timeout, ringing = self.limits.answer_timeout_s, False
        try:
            first = await next_said(queue, staff, timeout)
            while isinstance(first, SignalPayload) and first.kind == "state":
                if not ringing:  # a TV rings before it is answered (by a person: no hurry)
                    setting_up.release()
                    said = {"type": "ringing", "call_id": call_id, "state": "ringing"}
                    await ws.send_json({**said, "ring_s": ring_s})
                timeout, ringing = ring_s + RING_GRACE_S, True
                first = await next_said(queue, staff, timeout)
        except TimeoutError:
            await self._unanswered(staff, unit, call_id, fields, ringing)
            return
        if isinstance(first, str):
            await self._staff_ended(staff, unit, call_id, fields, first)
            return
        if first.kind != "answer" or not first.sdp:
            await self._not_taken(ws, call_id, first)
            return
        # The view the call starts in: a night check without one in its ticket starts blurred.
        view = claims.view or ("blurred" if claims.purpose == "night_check" else "clear")
        answer = {"type": "answer", "call_id": call_id, "sdp": first.sdp, "view": view}
        await ws.send_json({**answer, "may_escalate": bool(claims.esc)})
        setting_up.again()  # a TV answered by a person: its media sets up now
        setting_up.release_after(MEDIA_SETTLE_S)
        await follow(staff, claims, queue, next_said, self._send_unit, self.escalation)

    async def _unanswered(
        self,
        staff: StaffSide,
        unit: str,
        call_id: str,
        fields: dict[str, Any],
        ringing: bool,
    ) -> None:
        """Central gave up on the unit: it never replied, or it rang and then fell silent."""
        limits = self.limits
        reason = reasons.unanswered(ringing, limits.ring_timeout_s, limits.answer_timeout_s)
        await self._audit("call_unanswered", **fields, reason=reason)
        await self._send_unit(
            unit, SignalPayload(kind="hangup", call_id=call_id, reason="unanswered")
        )
        extra = {"outcome": "no_answer", "ring_s": self.limits.ring_timeout_s} if ringing else {}
        await refuse(staff.ws, reason, call_id, **extra)

    async def _staff_ended(
        self, staff: StaffSide, unit: str, call_id: str, fields: dict[str, Any], how: str
    ) -> None:
        """The staff side cancelled (or left) before the unit answered: the unit stops ringing."""
        why = "cancelled by the caller" if how == "cancel" else "caller left"
        await self._send_unit(unit, SignalPayload(kind="hangup", call_id=call_id, reason=why))
        await self._audit("call_cancelled", **fields, reason=why)
        log.info("call %s to %s: %s before it was answered", call_id, unit, why)
        if how == "cancel":
            ended = {"type": "ended", "call_id": call_id, **with_code(reasons.CANCELLED)}
            await say(staff.ws, {**ended, "outcome": "cancelled"})
        await staff.ws.close()

    async def _not_taken(self, ws: StaffChannel, call_id: str, said: SignalPayload) -> None:
        """The unit refused the call, or rang and did not take it: tell the staff side why."""
        extra: dict[str, Any] = {}
        if said.outcome is not None:
            extra["outcome"] = said.outcome
        ring_s = self.limits.ring_timeout_s
        if said.outcome == "no_answer":
            extra["ring_s"] = ring_s
        reason = reasons.unit_refusal(said.reason or said.kind, said.outcome, ring_s)
        await refuse(ws, reason, call_id, **extra)
