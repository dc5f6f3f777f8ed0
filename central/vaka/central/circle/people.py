"""The TV's People screen: the citizen's contacts whom the TV may call, sent to the TV on request.

A TV asks with a ``people`` event (the citizen pressed "People"). :meth:`PeopleDesk.
on_event_record` (an ingest hook, on the writing thread) hands the request to
:meth:`PeopleDesk.run` on the event loop, which lists the unit's citizen's contacts who are not
removed and ``may_be_called`` (none without the home's consent to contact calls), at most
:data:`~vaka.provisioning.people.MAX_PEOPLE` by name, each with a small square picture, and
sends the list to the unit signed with the config key (:mod:`vaka.provisioning.people`). The
unit shows it while the screen is up and stores none of it.
"""

import asyncio
import base64
import io
import logging
import time

from joserfc.jwk import OKPKey
from PIL import Image, ImageOps

from vaka.central.broker.mqtt import PublishToUnit
from vaka.central.circle.calls import ContactCalls
from vaka.central.circle.contacts import CONTACT_SCOPE
from vaka.central.fleet.questions import UnitQuestions
from vaka.errors import LinkError
from vaka.protocol.messages import MessageMessage, MessagePayload
from vaka.protocol.topics import Channel
from vaka.provisioning.people import (
    MAX_JPEG_BYTES,
    MAX_PEOPLE,
    VALID_S,
    People,
    Person,
    sign_people,
)

log = logging.getLogger(__name__)

#: the side of a person's square picture on the People screen (pixels)
PEOPLE_PX = 128


def small_picture(data_url: str) -> str | None:
    """A contact's stored picture as a small square JPEG (base64) that fits the list, or
    ``None`` if even the lowest quality is too large."""
    raw = base64.b64decode(data_url.split(",", 1)[1])
    with Image.open(io.BytesIO(raw)) as image:
        square = ImageOps.fit(image.convert("RGB"), (PEOPLE_PX, PEOPLE_PX))
    for quality in (75, 55, 35):
        out = io.BytesIO()
        square.save(out, format="JPEG", quality=quality)
        if out.tell() <= MAX_JPEG_BYTES:
            return base64.b64encode(out.getvalue()).decode()
    return None


class PeopleDesk(UnitQuestions):
    """Answers the TVs' requests for their People screen."""

    kind = "people"
    what = "people list"

    def __init__(
        self, rules: ContactCalls, config_key: OKPKey | None, publish: PublishToUnit
    ) -> None:
        self.rules = rules
        self.config_key = config_key
        self.publish = publish
        super().__init__()

    def build(self, unit: str, now: float) -> People:
        """The people ``unit``'s TV may call now (blocking)."""
        rules = self.rules
        citizen = rules.directory.citizen_of(unit)
        people: list[Person] = []
        if citizen is not None and unit == rules.tv_of(citizen):
            consent = (
                rules.directory.consent.refusal(citizen, CONTACT_SCOPE, now)
                if rules.require_consent
                else None
            )
            callable_ = [c for c in rules.book.of_citizen(citizen) if c.rules.may_be_called]
            for contact in callable_ if consent is None else []:
                jpeg = small_picture(contact.picture) if contact.picture else None
                people.append(
                    Person(contact=contact.contact_id, name=contact.display_name, jpeg=jpeg)
                )
                if len(people) == MAX_PEOPLE:
                    break
        iat = int(now)
        return People(unit=unit, iat=iat, exp=iat + VALID_S, people=people)

    async def send(self, unit: str) -> None:
        """Send ``unit`` its people, signed (nothing without a config key)."""
        if self.config_key is None:
            log.warning("people list for %s not sent: no [keys] config_key to sign it", unit)
            return
        people = await asyncio.to_thread(self.build, unit, time.time())
        token = sign_people(people, self.config_key)
        try:
            await self.publish(
                unit, Channel.MESSAGE, MessageMessage(payload=MessagePayload(token=token))
            )
        except LinkError as err:
            log.warning("people list for %s not sent: %s", unit, err)
            return
        log.info("people list sent to %s: %d contact(s)", unit, len(people.people))
