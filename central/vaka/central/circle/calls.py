"""The rules of a contact's call to the citizen's TV, applied by the call relay
(:mod:`vaka.central.calls.relay`) when a contact dials: a contact may reach only the TV of their
own citizen, only while they are a contact, only if they may call and only inside their hours,
and only with the citizen's (and the home's) consent to contact calls. A night camera is never
reachable by a contact, and the unit refuses a contact ticket on one by itself too
(``vaka.agent.call.guard``).

Each refusal is a :class:`~vaka.protocol.reasons.Reason` with a code, so the contact's page says
it in the contact's language. The allowed call's ticket names the contact (``sub``, ``name``),
the role ``contact`` and no staff group, so no auto-answer rule of the TV matches it: the TV
rings, unless staff set this contact to be answered by itself (the ticket's ``aa`` countdown,
``[calls] contact_auto_answer_s``).
"""

import asyncio
import base64
import contextlib
import datetime as dt
import io
import logging
import time
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from joserfc.jwk import OKPKey
from PIL import Image, ImageOps
from sqlalchemy import select

from vaka.central.broker.mqtt import PublishToUnit
from vaka.central.circle.contacts import CONTACT_SCOPE, Contact, ContactBook, one_sided
from vaka.central.directory.directory import Directory, StaffMember
from vaka.central.directory.policy import Authorization, CallRefused
from vaka.central.fleet.store import FleetStore
from vaka.central.settings.calls import CallLimits
from vaka.central.storage.tables import assignments
from vaka.errors import LinkError
from vaka.protocol.messages import MessageMessage, MessagePayload, SignalMessage, SignalPayload
from vaka.protocol.reasons import Reason
from vaka.protocol.topics import Channel
from vaka.provisioning.caller_picture import (
    MAX_JPEG_BYTES,
    VALID_S,
    CallerPicture,
    sign_caller_picture,
)

log = logging.getLogger(__name__)

#: the side of the square thumbnail of a contact's picture sent to the TV (pixels)
THUMBNAIL_PX = 240
#: the role a contact's caller carries on the call WebSocket and in the ticket
CONTACT_ROLE = "contact"
CONTACT_PURPOSE = "contact_call"


def thumbnail(data_url: str) -> bytes:
    """A contact's stored picture (a checked ``data:`` URL) as a small square JPEG for the TV."""
    raw = base64.b64decode(data_url.split(",", 1)[1])
    with Image.open(io.BytesIO(raw)) as image:
        square = ImageOps.fit(image.convert("RGB"), (THUMBNAIL_PX, THUMBNAIL_PX))
    for quality in (80, 60, 40):
        out = io.BytesIO()
        square.save(out, format="JPEG", quality=quality)
        if out.tell() <= MAX_JPEG_BYTES:
            break
    return out.getvalue()


@dataclass(frozen=True)
class PeerCall:
    """A citizen's TV calling another citizen's TV, as the rules allowed it."""

    callee: Contact  # in the caller's circle: the other citizen (name and picture for the caller)
    caller: Contact  # in the callee's circle: the calling citizen (name and picture on the callee)
    callee_unit: str
    max_s: int
    auto_answer_s: int | None


def contact_caller(contact: Contact) -> StaffMember:
    """The contact as the relay's caller (the role keeps them apart from any staff member)."""
    return StaffMember(contact.contact_id, contact.display_name, CONTACT_ROLE, contact.active)


class ContactCalls:
    """Checks contacts' calls (blocking: call from a worker thread) and ends one."""

    def __init__(
        self,
        book: ContactBook,
        directory: Directory,
        store: FleetStore,
        limits: CallLimits,
        publish: PublishToUnit,
        *,
        require_consent: bool = True,
        config_key: OKPKey | None = None,
    ) -> None:
        self.book = book
        self.config_key = config_key
        self.publish = publish
        self.directory = directory
        self.store = store
        self.limits = limits
        self.require_consent = require_consent

    def tv_of(self, citizen: str) -> str | None:
        """The citizen's TV unit (by assignment, else as the unit reported), or ``None``."""
        with self.directory.engine.connect() as conn:
            units = conn.execute(
                select(assignments.c.device_id)
                .where(assignments.c.citizen_id == citizen)
                .order_by(assignments.c.device_id)
            ).scalars()
            found = list(units)
        for unit in found:
            profile = self.directory.assigned_profile(unit)
            if profile is None:
                record = self.store.unit(unit)
                profile = record.profile if record is not None else None
            if profile == "tv":
                return unit
        return None

    def authorize_caller(
        self, caller: StaffMember, purpose: str, unit: str, now: float
    ) -> Authorization:
        """:meth:`authorize` for a caller on the call path: only a contact, only
        ``contact_call``."""
        if caller.role != CONTACT_ROLE:
            raise CallRefused(f"the role {caller.role} may not make {purpose} calls")
        if purpose != CONTACT_PURPOSE:
            raise CallRefused(f"a contact may not make {purpose} calls")
        return self.authorize(caller.staff_id, unit, now)

    def authorize(self, contact_id: str, unit: str, now: float) -> Authorization:
        """The call's authorization; :class:`CallRefused` with a coded reason otherwise."""
        contact = self.book.get(contact_id)
        if contact is None or not contact.active:
            raise CallRefused(
                Reason("you are no longer a contact of this person", "contact_removed")
            )
        if self.directory.citizen_of(unit) != contact.citizen_id:
            raise CallRefused(
                Reason(
                    f"you may call only {contact.citizen_name}'s TV",
                    "contact_other_unit",
                    name=contact.citizen_name,
                )
            )
        if unit != self.tv_of(contact.citizen_id):
            raise CallRefused(Reason("a contact can call only the TV", "contact_not_tv"))
        if not contact.rules.may_call:
            raise CallRefused(
                Reason("calls from you to this TV are turned off", "contact_may_not_call")
            )
        if self.require_consent:
            missing = self.directory.consent.refusal(contact.citizen_id, CONTACT_SCOPE, now)
            if missing is not None:
                raise CallRefused(Reason(missing, "contact_no_consent"))
        self._check_hours(contact, now)
        max_s = self.limits.contact_call_max_s
        auto = self.limits.contact_auto_answer_s if contact.rules.auto_answer else None
        window = (int(now), int(now) + max_s)
        return Authorization(contact.citizen_id, None, window, max_s, auto_answer_s=auto)

    def authorize_called(self, contact_id: str, unit: str, now: float) -> Contact:
        """Whether the TV ``unit`` may call ``contact_id`` now: the contact is one of its
        citizen's, active, ``may_be_called``, and the home's consent to contact calls is valid.
        :class:`CallRefused` with a coded reason otherwise (blocking)."""
        contact = self.book.get(contact_id)
        citizen = self.directory.citizen_of(unit)
        if contact is None or not contact.active or citizen != contact.citizen_id:
            raise CallRefused(
                Reason(f"{contact_id} is not a contact of this unit's citizen", "callee_unknown")
            )
        if unit != self.tv_of(contact.citizen_id):
            raise CallRefused(Reason("only the citizen's TV calls contacts", "contact_not_tv"))
        if not contact.rules.may_be_called:
            raise CallRefused(
                Reason(
                    f"{contact.display_name} may not be called from the TV",
                    "callee_may_not_be_called",
                    name=contact.display_name,
                )
            )
        if self.require_consent:
            missing = self.directory.consent.refusal(contact.citizen_id, CONTACT_SCOPE, now)
            if missing is not None:
                raise CallRefused(Reason(missing, "contact_no_consent"))
        return contact

    def authorize_peer(self, contact_id: str, unit: str, now: float) -> "PeerCall":
        """Whether the TV ``unit`` may call the contact of kind citizen ``contact_id`` now: both
        sides' rules (blocking). The caller's side as for any contact it calls
        (:meth:`authorize_called`); the relation present on both sides; on the callee's side the
        contact naming the caller's citizen may call, inside its hours, with the callee home's
        consent; and the callee citizen has a TV (never a night camera).
        :class:`CallRefused` with a coded reason otherwise."""
        contact = self.authorize_called(contact_id, unit, now)
        mirror = self.book.mirror_of(contact)
        if mirror is None:
            raise CallRefused(one_sided(contact))
        if not mirror.rules.may_call:
            raise CallRefused(
                Reason(
                    f"calls from {mirror.display_name} to {contact.display_name}'s TV are "
                    "turned off",
                    "contact_may_not_call",
                )
            )
        if self.require_consent:
            missing = self.directory.consent.refusal(mirror.citizen_id, CONTACT_SCOPE, now)
            if missing is not None:
                raise CallRefused(Reason(missing, "contact_no_consent"))
        self._check_hours(mirror, now)
        callee_unit = self.tv_of(mirror.citizen_id)
        if callee_unit is None:
            raise CallRefused(
                Reason(
                    f"{contact.display_name} has no TV to call",
                    "citizen_no_tv",
                    name=contact.display_name,
                )
            )
        auto = self.limits.contact_auto_answer_s if mirror.rules.auto_answer else None
        return PeerCall(contact, mirror, callee_unit, self.limits.contact_call_max_s, auto)

    def _check_hours(self, contact: Contact, now: float) -> None:
        local = dt.datetime.fromtimestamp(now, ZoneInfo(self.limits.timezone))
        if not contact.rules.allows_minute(local.hour * 60 + local.minute):
            hours = contact.rules.hours()
            raise CallRefused(
                Reason(
                    f"outside the hours agreed for calls ({hours})",
                    "contact_outside_hours",
                    hours=hours,
                )
            )

    def authorize_answer(self, contact_id: str, unit: str, now: float) -> Authorization:
        """The ticket of a contact who answers the TV's call (blocking): the rules of being
        called (not the hours of calling); the TV took the call already, so it never rings."""
        contact = self.authorize_called(contact_id, unit, now)
        max_s = self.limits.contact_call_max_s
        return Authorization(contact.citizen_id, None, (int(now), int(now) + max_s), max_s)

    async def end_call(self, contact: Contact, reason: str) -> str | None:
        """Tell the unit to end the contact's call in progress now; its call id, if there was
        one. Whichever central instance runs the call, the unit's hang-up reaches it, and it
        ends the contact's side."""
        if contact.open_call is None:
            return None
        call_id, unit = contact.open_call
        hangup = SignalPayload(kind="hangup", call_id=call_id, reason=reason)
        with contextlib.suppress(LinkError):  # the unit's own limits end it then
            await self.publish(unit, Channel.SIGNAL_IN, SignalMessage(payload=hangup))
        return call_id

    async def call_opened(self, contact_id: str, call_id: str, unit: str) -> None:
        """Keep the contact's call with the contact (so that removing them ends it), and send
        the TV their picture before it rings."""
        await asyncio.to_thread(self.book.call_opened, contact_id, call_id, unit)
        await self.send_picture(contact_id, call_id, unit)

    async def send_picture(self, contact_id: str, call_id: str, unit: str) -> bool:
        """Send the TV the contact's picture for this call (signed with the config key), before
        the call rings; whether it went. Without a picture or a key, the TV shows the name."""
        contact = await asyncio.to_thread(self.book.get, contact_id)
        if contact is None or contact.picture is None or self.config_key is None:
            return False
        jpeg = await asyncio.to_thread(thumbnail, contact.picture)
        now = int(time.time())
        claims = CallerPicture(
            unit=unit,
            cid=call_id,
            jpeg=base64.b64encode(jpeg).decode(),
            iat=now,
            exp=now + VALID_S,
        )
        token = sign_caller_picture(claims, self.config_key)
        try:
            await self.publish(
                unit, Channel.MESSAGE, MessageMessage(payload=MessagePayload(token=token))
            )
        except LinkError as err:
            log.warning("the picture of %s's call %s not sent: %s", contact_id, call_id, err)
            return False
        return True
