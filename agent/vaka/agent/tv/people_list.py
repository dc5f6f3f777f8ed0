"""The TV's People list: asks central whom the TV may call, and takes central's signed answer.

The TV asks with a ``people`` event; central answers on the ``message`` channel with the list
signed by its config key (:mod:`vaka.provisioning.people`), checked here before anything is
shown. Nothing is kept: each showing asks again, and the answer (names, decoded pictures) lives
only as long as the screen shows it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from joserfc.jwk import OKPKey

from vaka.agent.link import UnitLink
from vaka.agent.media.source import BgrImage
from vaka.agent.tv.caller_pictures import decode_jpeg
from vaka.errors import LinkError
from vaka.protocol.messages import EventMessage, EventPayload
from vaka.protocol.topics import Channel
from vaka.provisioning.people import BadPeople, verify_people

log = logging.getLogger(__name__)

#: How long the TV waits for central's answer before it says the list cannot be fetched.
ANSWER_TIMEOUT_S = 10.0


@dataclass(frozen=True, eq=False)
class Person:
    """One person the TV may call: the contact's id (for central), name and picture."""

    contact: str
    name: str
    picture: BgrImage | None


class PeopleList:
    """Fetches the citizen's people from central (one question at a time)."""

    def __init__(self, link: UnitLink, device_id: str, config_key: OKPKey | None) -> None:
        self.link = link
        self.device_id = device_id
        self.config_key = config_key
        self._waiting: asyncio.Future[list[Person]] | None = None

    async def fetch(self, timeout_s: float = ANSWER_TIMEOUT_S) -> list[Person] | None:
        """The people this TV may call, or ``None`` (offline, no answer in time)."""
        if self.config_key is None:
            log.warning("people: this unit has no pinned config key ([trust] config_key)")
            return None
        waiting: asyncio.Future[list[Person]] = asyncio.get_running_loop().create_future()
        self._waiting = waiting
        ask = EventMessage(payload=EventPayload(kind="people", detail={"action": "request"}))
        try:
            await self.link.publish(Channel.EVENTS, ask)
            async with asyncio.timeout(timeout_s):
                return await waiting
        except LinkError as err:
            log.warning("people cannot be asked for: %s", err)
        except TimeoutError:
            log.warning("people: central did not answer within %g s", timeout_s)
        finally:
            if self._waiting is waiting:
                self._waiting = None
        return None

    def handle(self, token: str) -> None:
        """A people token from the ``message`` channel: checked, decoded, given to the asker."""
        if self.config_key is None:
            return
        try:
            answer = verify_people(token, self.config_key, self.device_id)
        except BadPeople as err:
            self.link.refusals.refuse("bad people list", str(err), "the message channel")
            return
        waiting = self._waiting
        if waiting is None or waiting.done():
            log.info("people list arrived with nobody waiting: dropped")
            return
        people = []
        for person in answer.people:
            jpeg = person.jpeg_bytes()
            picture = decode_jpeg(jpeg) if jpeg is not None else None
            people.append(Person(person.contact, person.name, picture))
        waiting.set_result(people)
