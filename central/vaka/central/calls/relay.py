"""The signalling relay: staff client (WebSocket) -> central -> unit (MQTT) and back.

One WebSocket per call (a :class:`~vaka.central.calls.channel.StaffChannel`). The client sends
``dial`` with its SDP offer; central applies the permission matrix, signs a ticket naming the
offer's DTLS fingerprint, and sends offer and ticket to the unit in one message; the unit's
answer comes back on the same WebSocket — one round trip. Either side may hang up.

A caller may first send ``prepare`` to get the call's relay credential before it makes its
offer (:mod:`vaka.central.calls.prepare`); the ticket then carries the unit's own.

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
from typing import Any, Literal

from joserfc.jwk import OKPKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaka.central.audit.trail import AuditLog
from vaka.central.broker.mqtt import PublishToUnit
from vaka.central.calls.channel import StaffChannel
from vaka.central.calls.citizen import CitizenCallDesk
from vaka.central.calls.prepare import (
    Prepared,
    PrepareRequest,
    dial_fields,
    is_prepare,
    prepare_call,
)
from vaka.central.calls.turn import RelayCredentials, relay_claim
from vaka.central.directory.directory import Directory, StaffMember
from vaka.central.directory.policy import Authorization, CallRefused, authorize_call
from vaka.central.settings.calls import CallLimits
from vaka.errors import LinkError, ProtocolError
from vaka.protocol.inbound import read_unit_message
from vaka.protocol.messages import SignalMessage, SignalPayload, describe_problems
from vaka.protocol.refusals import Refusals
from vaka.protocol.sdp import check_sdp, preferred_fingerprint
from vaka.protocol.topics import Channel
from vaka.provisioning.tickets import TicketClaims, sign_ticket

log = logging.getLogger(__name__)


class DialRequest(BaseModel):
    """The first WebSocket message of a call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["dial"]
    unit: str = Field(max_length=64)
    purpose: Literal["night_check", "video_visit", "break_glass", "citizen_call"]
    sdp: str = Field(max_length=64 * 1024)
    reason: str | None = Field(default=None, max_length=500)
    request: str | None = Field(default=None, max_length=80)  # the citizen's request (REQ)


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
            if self.citizen_calls is not None and message.payload.kind in ("request", "hangup"):
                self.citizen_calls.on_unit_signal(where.device_id, message.payload)
            return  # another instance's call, or one that has ended
        log.debug("signal %s from %s", message.payload.kind, where.device_id)
        queue.put_nowait(message.payload)

    # ------------------------------------------------------------ from the staff client

    async def _audit(self, kind: str, **fields: Any) -> None:
        await asyncio.to_thread(self.audit.append, kind, **fields)

    async def handle(self, ws: StaffChannel, caller: StaffMember) -> None:
        """Run one call with ``caller`` on ``ws`` (the call WebSocket)."""
        call_id = f"{self.identity}.{uuid.uuid4().hex[:16]}"
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
                await _refuse(ws, str(err))
                return
        unit_relay = await self.relay_credentials.mint(call_id, "unit", expires_at, now)
        claims = self._claims(caller, dial, allowed, call_id, fingerprint, now)
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
        )
        queue: asyncio.Queue[SignalPayload] = asyncio.Queue()
        self._pending[call_id] = queue
        try:
            await self._run_call(ws, dial.unit, call_id, ticket, sdp, queue, fields)
        finally:
            self._pending.pop(call_id, None)

    async def _receive_request(self, ws: StaffChannel, opened: float) -> str | None:
        """The next text message before the dial deadline; ``None`` once the socket is closed."""
        # One deadline from the socket's opening: a receive timeout would start again after
        # every ping the client sends (aiohttp answers pings inside receive), so a socket that
        # only pings could be held open for ever.
        try:
            async with asyncio.timeout_at(opened + self.limits.dial_deadline_s):
                first = await ws.receive()
        except TimeoutError:
            deadline = self.limits.dial_deadline_s
            await _close(ws, f"no dial request within {deadline:g} s of opening")
            return None
        if not isinstance(first, str):
            await _close(ws, "expected a dial request")
            return None
        return first

    async def _read_dial(
        self, ws: StaffChannel, caller: StaffMember, opened: float, call_id: str
    ) -> tuple[DialRequest, str, str, Prepared | None] | None:
        """The dial request, its checked SDP, the fingerprint to pin and the prepared call it
        follows (if it does); ``None`` once refused."""
        first = await self._receive_request(ws, opened)
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
            first = await self._receive_request(ws, opened)
            if first is None:
                return None
        try:
            dial = DialRequest.model_validate_json(first)
            sdp = check_sdp(dial.sdp)
            fingerprint = preferred_fingerprint(sdp)
        except (ValidationError, ProtocolError) as err:
            reason = _readable(err)
            await self._audit("ticket_refused", actor=caller.staff_id, reason=reason)
            await _refuse(ws, reason)
            return None
        if prepared is not None and prepared.fields != dial_fields(dial):
            reason = "the dial request does not match the prepared call"
            await self._audit("ticket_refused", actor=caller.staff_id, reason=reason)
            await _refuse(ws, reason, call_id)
            return None
        return dial, sdp, fingerprint, prepared

    async def _authorize(
        self, caller: StaffMember, dial: DialRequest | PrepareRequest, now: float
    ) -> Authorization:
        """The permission matrix's answer (a citizen call is first won for the caller)."""
        if dial.purpose == "citizen_call":
            await self._accept_citizen_call(caller, dial)
        return await asyncio.to_thread(
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
        )

    def _claims(
        self,
        caller: StaffMember,
        dial: DialRequest,
        allowed: Authorization,
        call_id: str,
        fingerprint: str,
        now: float,
    ) -> TicketClaims:
        return TicketClaims(
            aud=dial.unit,
            sub=caller.staff_id,
            name=caller.display_name,
            role=caller.role,
            grp=allowed.group,
            purpose=dial.purpose,
            cid=call_id,
            iat=int(now),
            nbf=int(now),
            exp=int(now) + self.limits.ticket_ttl_s,
            win=allowed.window,
            maxd=allowed.max_duration_s,
            fp=fingerprint,
            brk=allowed.break_glass_reason,
            req=dial.request if dial.purpose == "citizen_call" else None,
        )

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
        ws: StaffChannel,
        unit: str,
        call_id: str,
        ticket: str,
        sdp: str,
        queue: asyncio.Queue[SignalPayload],
        fields: dict[str, Any],
    ) -> None:
        try:
            await self.publish(
                unit,
                Channel.SIGNAL_IN,
                SignalMessage(
                    payload=SignalPayload(kind="offer", call_id=call_id, ticket=ticket, sdp=sdp)
                ),
            )
        except LinkError as err:
            await _refuse(ws, f"central cannot reach the broker: {err}", call_id)
            return
        try:
            first = await asyncio.wait_for(queue.get(), self.limits.answer_timeout_s)
            while first.kind == "state":  # a TV rings before it is answered
                await ws.send_json(
                    {"type": "ringing", "call_id": call_id, "state": first.state or "ringing"}
                )
                first = await asyncio.wait_for(queue.get(), self.limits.ring_timeout_s)
        except TimeoutError:
            reason = f"the unit did not answer within {self.limits.answer_timeout_s:.0f} s"
            await self._audit("call_unanswered", **fields, reason=reason)
            await self._send_unit(
                unit, SignalPayload(kind="hangup", call_id=call_id, reason="unanswered")
            )
            await _refuse(ws, reason, call_id)
            return
        if first.kind != "answer" or not first.sdp:
            await _refuse(ws, f"the unit refused: {first.reason or first.kind}", call_id)
            return
        await ws.send_json({"type": "answer", "call_id": call_id, "sdp": first.sdp})
        await self._follow(ws, unit, call_id, queue)

    async def _follow(
        self,
        ws: StaffChannel,
        unit: str,
        call_id: str,
        queue: asyncio.Queue[SignalPayload],
    ) -> None:
        """Until one side hangs up: staff messages to the unit, the unit's end to the staff."""
        from_unit = asyncio.create_task(queue.get())
        from_staff = asyncio.create_task(ws.receive())
        try:
            while True:
                done, _ = await asyncio.wait(
                    {from_unit, from_staff}, return_when=asyncio.FIRST_COMPLETED
                )
                if from_unit in done:
                    signal = from_unit.result()
                    if signal.kind in ("hangup", "error"):
                        await ws.send_json(
                            {
                                "type": "ended",
                                "call_id": call_id,
                                "reason": signal.reason or signal.kind,
                            }
                        )
                        await ws.close()
                        return
                    from_unit = asyncio.create_task(queue.get())
                if from_staff in done:
                    msg = from_staff.result()
                    if msg is None:
                        await self._send_unit(
                            unit,
                            SignalPayload(kind="hangup", call_id=call_id, reason="caller left"),
                        )
                        return
                    if isinstance(msg, str) and '"hangup"' in msg:
                        await self._send_unit(
                            unit,
                            SignalPayload(kind="hangup", call_id=call_id, reason="caller hung up"),
                        )
                        await ws.send_json(
                            {"type": "ended", "call_id": call_id, "reason": "you hung up"}
                        )
                        await ws.close()
                        return
                    from_staff = asyncio.create_task(ws.receive())
        finally:
            for task in (from_unit, from_staff):
                task.cancel()


def _readable(err: Exception) -> str:
    if isinstance(err, ValidationError):
        return describe_problems(err, "request")
    return str(err)


async def _refuse(ws: StaffChannel, reason: str, call_id: str | None = None) -> None:
    await ws.send_json({"type": "refused", "call_id": call_id, "reason": reason})
    await ws.close()


async def _close(ws: StaffChannel, reason: str) -> None:
    with contextlib.suppress(ConnectionError):
        await ws.send_json({"type": "refused", "reason": reason})
    await ws.close()
