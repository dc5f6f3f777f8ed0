"""Messages and reminders for TV units: created by staff, signed, sent on time, followed up.

Staff create a message (``POST /api/messages``) for a unit in the home of a citizen their group
is assigned to. Central signs it at once with its config key (see
:mod:`vaka.provisioning.messages`) and keeps it in the ``messages`` table as *scheduled*; the
scheduler (:meth:`MessageDesk.run`) publishes it on the unit's ``message`` channel when it is due
(QoS 1, not retained) and forgets the signed token (and with it the picture). The unit reports
what happened as ``message`` events, which move the status on: *sent* -> *shown* ->
*acknowledged*, *missed* or *refused*.

Several central instances may run: every row lives in the database, and an instance takes a due
message only by moving it from *scheduled* to *sent* in one conditional update, so exactly one
instance sends it. Unit events are stored once (by message id) and only the instance that stores
one updates the status.
"""

import asyncio
import contextlib
import logging
import time
from typing import Any

from joserfc.jwk import OKPKey
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from vaka.central.audit.trail import AuditLog
from vaka.central.broker.mqtt import PublishToUnit
from vaka.central.directory.directory import Directory, StaffMember
from vaka.central.fleet.store import EventRecord
from vaka.central.messages.requests import (
    BadMessageRequest,
    MessageRefused,
    MessageRequest,
    resolve_at,
)
from vaka.central.storage.background import Bookkeeping, Gathered
from vaka.central.storage.tables import assignments, messages, permissions
from vaka.errors import BadTopic, LinkError
from vaka.protocol.messages import MessageMessage, MessagePayload
from vaka.protocol.topics import Channel, check_device_id
from vaka.provisioning.messages import BadMessageToken, make_message, sign_message

log = logging.getLogger(__name__)

#: How long after its time a message may still be shown, beyond the time to acknowledge it.
EXPIRY_SLACK_S = {"message": 3600, "reminder": 600}
#: How long after a message's expiry central waits for the unit's report before calling it missed.
REPORT_SLACK_S = 120
#: The statuses a unit's report may move a message from, per reported action.
_FROM = {
    "shown": ("sent",),
    "acknowledged": ("sent", "shown"),
    "missed": ("sent", "shown"),
    "refused": ("sent", "shown"),
}


def _row(row: Any) -> dict[str, Any]:
    return {
        "mid": row["mid"],
        "unit": row["unit"],
        "kind": row["kind"],
        "text": row["text"],
        "has_picture": row["has_picture"],
        "sender": row["sender"],
        "send_at": row["send_at"],
        "exp": row["exp"],
        "status": row["status"],
        "updated_at": row["updated_at"],
        "reason": row["reason"],
    }


class MessageDesk:
    """Creates, schedules, sends and follows up messages for one central instance.

    :meth:`create`, :meth:`statuses` and :meth:`on_event` block (database): call them from a
    worker thread. :meth:`run` is the scheduler task.
    """

    def __init__(
        self,
        engine: Engine,
        directory: Directory,
        audit: AuditLog,
        config_key: OKPKey | None,
        publish: PublishToUnit,
        timezone: str = "Europe/Stockholm",
        poll_s: float = 0.5,
        bookkeeping: Bookkeeping | None = None,
    ) -> None:
        self.engine = engine
        #: where a unit's missed messages are looked up when it comes online
        self.bookkeeping = bookkeeping or Bookkeeping()
        #: the messages units that came online may have missed, looked up in one statement
        self._missed: Gathered[list[tuple[str, str]]] = Gathered(
            self.bookkeeping, lambda units: self._undelivered_many(units, time.time()), []
        )
        self.directory = directory
        self.audit = audit
        self.config_key = config_key
        self.publish = publish
        self.timezone = timezone
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._resends: set[asyncio.Task[int]] = set()

    # ---------------------------------------------------------------- who may

    def citizen_for(self, member: StaffMember, unit: str) -> str:
        """The citizen of ``unit`` if ``member`` is in a group assigned to them, else
        :class:`MessageRefused` saying why."""
        citizen = self.directory.citizen_of(unit)
        if citizen is None:
            raise MessageRefused(f"unit {unit} is not assigned to a citizen")
        with self.engine.connect() as conn:
            permitted = {
                r[0]
                for r in conn.execute(
                    select(permissions.c.group_id).where(permissions.c.citizen_id == citizen)
                )
            }
            responsible = {
                r[0]
                for r in conn.execute(
                    select(assignments.c.group_id).where(assignments.c.citizen_id == citizen)
                )
                if r[0] is not None
            }
        if not self.directory.groups_of(member.staff_id) & (permitted | responsible):
            raise MessageRefused(
                f"staff {member.staff_id} is not in a group assigned to citizen {citizen}"
            )
        return citizen

    # ---------------------------------------------------------------- creating

    def create(
        self, member: StaffMember, request: MessageRequest, now: float | None = None
    ) -> dict[str, Any]:
        """Check, sign and schedule one message; its row as a dict.

        Raises :class:`MessageRefused` or :class:`BadMessageRequest` (both audited as
        ``message_refused``) with the reason.
        """
        now = time.time() if now is None else now
        try:
            return self._create(member, request, now)
        except (MessageRefused, BadMessageRequest) as err:
            self.audit.append(
                "message_refused",
                actor=member.staff_id,
                unit=request.unit[:64],
                message_kind=request.kind,
                reason=str(err)[:200],
            )
            raise

    def _create(self, member: StaffMember, request: MessageRequest, now: float) -> dict[str, Any]:
        try:
            unit = check_device_id(request.unit)
        except BadTopic as err:
            raise BadMessageRequest(str(err)) from None
        if self.config_key is None:
            raise BadMessageRequest("central has no config key: messages cannot be signed")
        citizen = self.citizen_for(member, unit)
        send_at = resolve_at(request.at, now, self.timezone)
        exp = int(send_at) + request.ack_within_s + EXPIRY_SLACK_S[request.kind]
        try:
            claims = make_message(
                unit=unit,
                kind=request.kind,
                text=request.text,
                picture=request.picture,
                sender_name=member.display_name,
                iat=int(now),
                exp=exp,
                ack_within_s=request.ack_within_s,
            )
            token = sign_message(claims, self.config_key)
        except BadMessageToken as err:
            raise BadMessageRequest(str(err)) from None
        row = {
            "mid": claims.mid,
            "unit": unit,
            "citizen": citizen,
            "kind": claims.kind,
            "text": claims.text,
            "has_picture": claims.picture is not None,
            "sender": member.staff_id,
            "send_at": send_at,
            "exp": float(exp),
            "ack_within_s": claims.ack_within_s,
            "status": "scheduled",
            "updated_at": now,
            "reason": None,
            "token": token,
        }
        with self.engine.begin() as conn:
            conn.execute(messages.insert().values(**row))
        self.audit.append(
            "message_created",
            actor=member.staff_id,
            unit=unit,
            mid=claims.mid,
            message_kind=claims.kind,
            send_at=round(send_at, 3),
            has_picture=claims.picture is not None,
        )
        return _row(row)

    def statuses(self, unit: str, limit: int = 100) -> list[dict[str, Any]]:
        """The newest messages of ``unit`` (newest first) with their status."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(messages)
                .where(messages.c.unit == unit)
                .order_by(messages.c.send_at.desc())
                .limit(limit)
            ).mappings()
            return [_row(r) for r in rows]

    # ---------------------------------------------------------------- sending

    def wake(self) -> None:
        """Look for due messages now rather than at the next poll."""
        self._wake.set()

    def _due(self, now: float) -> list[tuple[str, str, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(messages.c.mid, messages.c.unit, messages.c.token)
                .where(messages.c.status == "scheduled", messages.c.send_at <= now)
                .order_by(messages.c.send_at)
                .limit(200)
            )
            return [(r[0], r[1], r[2]) for r in rows]

    def _set(self, mid: str, from_: tuple[str, ...], **values: Any) -> bool:
        """Update one message if its status is one of ``from_``; whether it was."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(messages)
                .where(messages.c.mid == mid, messages.c.status.in_(from_))
                .values(**values)
            )
        return bool(result.rowcount)

    async def send_due(self, now: float | None = None) -> int:
        """Publish every due message this instance can take; how many went out. Messages that
        expired without a report from their unit are marked missed first."""
        now = time.time() if now is None else now
        for mid in await asyncio.to_thread(self._overdue, now):
            log.warning("message %s expired without a report from its unit", mid)
        sent = 0
        for mid, unit, token in await asyncio.to_thread(self._due, now):
            expired = await asyncio.to_thread(self._expired, mid, now)
            if expired:
                continue
            taken = await asyncio.to_thread(
                self._set, mid, ("scheduled",), status="sent", updated_at=now
            )
            if not taken:
                continue  # another instance took it
            message = MessageMessage(payload=MessagePayload(token=token))
            try:
                await self.publish(unit, Channel.MESSAGE, message)
            except LinkError as err:
                log.warning("message %s to %s not sent yet: %s", mid, unit, err)
                await asyncio.to_thread(
                    self._set, mid, ("sent",), status="scheduled", updated_at=time.time()
                )
                continue
            log.info("message %s sent to %s", mid, unit)
            sent += 1
        return sent

    def _overdue(self, now: float) -> list[str]:
        """Mark messages the unit never reported on although they expired (the unit was offline
        or lost them) as missed; their ids."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(messages.c.mid, messages.c.unit).where(
                    messages.c.status.in_(("sent", "shown")),
                    messages.c.exp < now - REPORT_SLACK_S,
                )
            ).all()
        reason = "the unit did not report it before it expired (offline?)"
        overdue = []
        for mid, unit in rows:
            values = {"status": "missed", "updated_at": now, "reason": reason, "token": None}
            if self._set(mid, ("sent", "shown"), **values):
                self.audit.append("message_missed", unit=unit, mid=mid, reason=reason)
                overdue.append(mid)
        return overdue

    def _expired(self, mid: str, now: float) -> bool:
        """Mark a scheduled message that expired before it could be sent (central was down)."""
        with self.engine.connect() as conn:
            exp = conn.execute(select(messages.c.exp).where(messages.c.mid == mid)).scalar()
        if exp is None or now <= exp:
            return False
        values = {"status": "missed", "updated_at": now, "reason": "expired before it was sent"}
        return self._set(mid, ("scheduled",), token=None, **values)

    async def run(self) -> None:
        """Send due messages until cancelled (every ``poll_s``, or at once after :meth:`wake`)."""
        while True:
            try:
                await self.send_due()
            except Exception:
                log.exception("sending due messages failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            self._wake.clear()

    # ---------------------------------------------------------------- what the unit did

    def on_event(self, device_id: str, detail: dict[str, Any]) -> None:
        """Move a message's status on from a unit's ``message`` event (blocking)."""
        action, mid = detail.get("action"), detail.get("mid")
        if action not in _FROM or not isinstance(mid, str):
            if action == "refused":
                log.warning("unit %s refused a message: %s", device_id, detail.get("reason"))
            return
        reason = detail.get("reason")
        with self.engine.begin() as conn:
            result = conn.execute(
                update(messages)
                .where(
                    messages.c.mid == mid,
                    messages.c.unit == device_id,
                    messages.c.status.in_(_FROM[action]),
                )
                .values(
                    status=action,
                    updated_at=time.time(),
                    reason=None if reason is None else str(reason)[:200],
                    # kept until the citizen has dealt with it, to send it again if the unit
                    # lost it (offline when it was sent, or restarted while showing it)
                    **({} if action == "shown" else {"token": None}),
                )
            )
        if not result.rowcount:
            log.info("message event %s for %s from %s changes nothing", action, mid, device_id)
            return
        kind = "message_refused_by_unit" if action == "refused" else f"message_{action}"
        self.audit.append(
            kind, unit=device_id, mid=mid, reason=None if reason is None else str(reason)[:200]
        )

    def _undelivered(self, unit: str, now: float) -> list[tuple[str, str]]:
        """The unit's messages sent but not dealt with yet, and still valid: ``(mid, token)``."""
        return self._undelivered_many([unit], now).get(unit, [])

    def _undelivered_many(self, units: list[str], now: float) -> dict[str, list[tuple[str, str]]]:
        """:meth:`_undelivered` of each of ``units`` (those that have any), in one statement."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(messages.c.unit, messages.c.mid, messages.c.token)
                .where(
                    messages.c.unit.in_(units),
                    messages.c.status.in_(("sent", "shown")),
                    messages.c.token.is_not(None),
                    messages.c.exp > now,
                )
                .order_by(messages.c.unit, messages.c.send_at)
            ).all()
        found: dict[str, list[tuple[str, str]]] = {}
        for unit, mid, token in rows:
            found.setdefault(unit, []).append((mid, token))
        return found

    async def resend(self, unit: str) -> int:
        """Send the unit's undelivered messages again (it came online); how many. The unit shows
        a message it still has on screen only once."""
        count = 0
        for mid, token in await self._missed(unit):
            try:
                await self.publish(
                    unit, Channel.MESSAGE, MessageMessage(payload=MessagePayload(token=token))
                )
            except LinkError as err:
                log.warning("message %s to %s not sent again: %s", mid, unit, err)
                return count
            log.info("message %s sent again to %s (it came online)", mid, unit)
            count += 1
        return count

    def on_unit_online(self, unit: str) -> None:
        """An ingest hook (on the loop): a unit came online; send what it may have missed."""
        task = asyncio.get_running_loop().create_task(self.resend(unit))
        self._resends.add(task)
        task.add_done_callback(self._resends.discard)

    def on_event_record(self, record: EventRecord) -> None:
        """An ingest hook: pass the unit's ``message`` events to :meth:`on_event`."""
        if record.kind == "message":
            self.on_event(record.device_id, record.detail)
