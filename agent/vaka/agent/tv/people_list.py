"""The TV's People list: asks central whom the TV may call, and takes central's signed answer.

The TV asks with a ``people`` event; central answers on the ``message`` channel with the list
signed by its config key (:mod:`vaka.provisioning.people`), checked here before anything is
shown. Nothing is kept: each showing asks again, and the answer (names, decoded pictures) lives
only as long as the screen shows it.
"""

from __future__ import annotations

from dataclasses import dataclass

from joserfc.jwk import OKPKey

from vaka.agent.link import UnitLink
from vaka.agent.media.source import BgrImage
from vaka.agent.tv.caller_pictures import decode_jpeg
from vaka.agent.tv.signed_question import ANSWER_TIMEOUT_S, SignedQuestion
from vaka.provisioning.people import BadPeople, People, verify_people


@dataclass(frozen=True, eq=False)
class Person:
    """One person the TV may call: the contact's id (for central), name and picture."""

    contact: str
    name: str
    picture: BgrImage | None


class PeopleList(SignedQuestion[People]):
    """Fetches the citizen's people from central (one question at a time)."""

    def __init__(self, link: UnitLink, device_id: str, config_key: OKPKey | None) -> None:
        super().__init__(
            link, device_id, config_key, "people", "people list", verify_people, BadPeople
        )

    async def fetch(self, timeout_s: float = ANSWER_TIMEOUT_S) -> list[Person] | None:
        """The people this TV may call, or ``None`` (offline, no answer in time)."""
        answer = await self.ask(timeout_s)
        if answer is None:
            return None
        people = []
        for person in answer.people:
            jpeg = person.jpeg_bytes()
            picture = decode_jpeg(jpeg) if jpeg is not None else None
            people.append(Person(person.contact, person.name, picture))
        return people
