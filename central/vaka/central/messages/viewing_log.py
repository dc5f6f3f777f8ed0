"""The citizen's viewing log: who looked in through the unit's camera, sent to the TV on request.

A TV asks with a ``viewing_log`` event (the citizen pressed "Who looked in?", or it is the
morning). :meth:`ViewingLogDesk.on_event_record` (an ingest hook, on the writing thread) hands
the request to :meth:`ViewingLogDesk.run` on the event loop, which reads the camera sessions of
the citizen's units (the TV's and the nightcam's) of the last :data:`PERIOD_S` from the audit
trail — the performed supervisions
(:func:`vaka.central.audit.reports.supervisions`): night checks and emergency look-ins that
reached media — and sends them to the unit signed with the config key
(:mod:`vaka.provisioning.viewing_log`). Each entry names the staff member's role, never the
person: "Night staff, 23:10, 20 s". The unit stores none of it.
"""

import asyncio
import logging
import time

from joserfc.jwk import OKPKey

from vaka.central.audit.reports import supervisions
from vaka.central.audit.trail import AuditLog
from vaka.central.broker.mqtt import PublishToUnit
from vaka.central.directory.directory import Directory
from vaka.central.fleet.questions import UnitQuestions
from vaka.errors import LinkError
from vaka.protocol.messages import MessageMessage, MessagePayload
from vaka.protocol.topics import Channel
from vaka.provisioning.viewing_log import (
    MAX_ENTRIES,
    VALID_S,
    ViewingEntry,
    ViewingLog,
    sign_viewing_log,
)

log = logging.getLogger(__name__)

#: The period a viewing log covers: the last day (the night before, on a morning).
PERIOD_S = 24 * 3600.0


class ViewingLogDesk(UnitQuestions):
    """Answers the units' viewing log requests."""

    kind = "viewing_log"
    what = "viewing log"

    def __init__(
        self,
        audit: AuditLog,
        directory: Directory,
        config_key: OKPKey | None,
        publish: PublishToUnit,
    ) -> None:
        self.audit = audit
        self.directory = directory
        self.config_key = config_key
        self.publish = publish
        super().__init__()

    def build(self, unit: str, now: float) -> ViewingLog:
        """The viewing log of the last :data:`PERIOD_S` for ``unit``: the sessions of every
        camera in the citizen's home (the nightcam in the bedroom shows on the TV's list)
        (blocking)."""
        since = now - PERIOD_S
        citizen = self.directory.citizen_of(unit)
        sessions = [
            s
            for s in supervisions(self.audit, since, now)
            if s.unit == unit or (citizen is not None and s.citizen == citizen)
        ]
        roles: dict[str, str] = {}
        entries = []
        for s in sessions[-MAX_ENTRIES:]:
            if s.staff not in roles:
                member = self.directory.staff_member(s.staff)
                roles[s.staff] = member.role if member is not None else "staff"
            entries.append(
                ViewingEntry(
                    role=roles[s.staff],
                    purpose=s.purpose,
                    at=s.started,
                    seconds=round(s.duration_s),
                )
            )
        iat = int(now)
        return ViewingLog(unit=unit, since=since, iat=iat, exp=iat + int(VALID_S), entries=entries)

    async def send(self, unit: str) -> None:
        """Send ``unit`` its viewing log, signed (nothing without a config key)."""
        if self.config_key is None:
            log.warning("viewing log for %s not sent: no [keys] config_key to sign it", unit)
            return
        viewing = await asyncio.to_thread(self.build, unit, time.time())
        token = sign_viewing_log(viewing, self.config_key)
        message = MessageMessage(payload=MessagePayload(token=token))
        try:
            await self.publish(unit, Channel.MESSAGE, message)
        except LinkError as err:
            log.warning("viewing log for %s not sent: %s", unit, err)
            return
        log.info("viewing log sent to %s: %d session(s)", unit, len(viewing.entries))
