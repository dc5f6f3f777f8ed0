"""The citizen's people as central sends them to the TV: whom the TV may call, with pictures.

When the citizen presses "People" on the TV, the unit asks with a ``people`` event; central
answers on the unit's ``message`` channel with the citizen's contacts whom the TV may call
(``may_be_called``), at most :data:`MAX_PEOPLE`, each with their id, the name the citizen knows
them by and a small square JPEG (at most :data:`MAX_JPEG_BYTES`), signed with central's config
key (the key every unit pins in ``[trust] config_key``). The unit verifies it
(:func:`verify_people`), shows it while the screen is up and keeps nothing afterwards: no names
or pictures of people at rest on a unit, and a contact removed a moment ago is gone from the
next showing.

The JOSE header says ``typ: vaka-people+jwt``: no other token signed with the same key passes
for a list of people, nor the other way round.
"""

import base64
import binascii
import json
import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import OKPKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vaka.errors import ProvisioningError
from vaka.protocol.messages import describe_problems
from vaka.protocol.topics import check_device_id
from vaka.provisioning.jws import ALGORITHM, TokenKind, open_token
from vaka.provisioning.tickets import LEEWAY_S

PEOPLE_TYP = "vaka-people+jwt"
#: how many people the TV's screen shows (big targets: two rows of three)
MAX_PEOPLE = 6
#: the largest picture of one person (bytes of JPEG, before base64): six fit one message
MAX_JPEG_BYTES = 4 * 1024
MAX_TOKEN_CHARS = 56 * 1024
PEOPLE = TokenKind(PEOPLE_TYP, "people list", "people list", "not a people list", MAX_TOKEN_CHARS)
#: How long a signed list may be shown after central made it.
VALID_S = 600


class BadPeople(ProvisioningError, ValueError):
    """A people list token was malformed, wrongly signed, for another unit or expired."""


class Person(BaseModel):
    """One person the TV may call: the contact's id, their name, their picture (or none)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    contact: str = Field(pattern=r"^k-[A-Z0-9]{6,20}$")
    name: str = Field(min_length=1, max_length=80)
    jpeg: str | None = Field(default=None, min_length=4, max_length=(MAX_JPEG_BYTES + 2) // 3 * 4)

    def jpeg_bytes(self) -> bytes | None:
        """The picture's JPEG bytes, if there is one."""
        return None if self.jpeg is None else base64.b64decode(self.jpeg)


class People(BaseModel):
    """The signed claims: the unit and its people, in the order the screen shows them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: str
    iat: int = Field(ge=0, lt=2**53)
    exp: int = Field(ge=0, lt=2**53)
    people: list[Person] = Field(max_length=MAX_PEOPLE)

    @field_validator("unit")
    @classmethod
    def _valid_unit(cls, value: str) -> str:
        return check_device_id(value)


def sign_people(people: People, key: OKPKey) -> str:
    """The compact JWS of ``people``, signed with central's config key."""
    return jwt.encode(
        {"alg": ALGORITHM, "typ": PEOPLE_TYP},
        people.model_dump(mode="json"),
        key,
        algorithms=[ALGORITHM],
    )


def is_people(token: str) -> bool:
    """Whether ``token``'s header names a people list (unverified: only to route it)."""
    head = token.split(".", 1)[0]
    try:
        header: Any = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(header, dict) and header.get("typ") == PEOPLE_TYP


def verify_people(token: str, public_key: OKPKey, unit: str, now: float | None = None) -> People:
    """Check size, signature, type, schema, unit and freshness; return the list.

    Raises :class:`BadPeople` with the reason a support person can act on.
    """
    raw = open_token(token, public_key, PEOPLE, BadPeople)
    try:
        people = People.model_validate(raw)
    except ValidationError as err:
        raise BadPeople(f"people list is invalid: {describe_problems(err)}") from None
    if people.unit != unit:
        raise BadPeople(f"people list is for unit {people.unit}, not this unit ({unit})")
    now = time.time() if now is None else now
    if now > people.exp + LEEWAY_S:
        raise BadPeople("people list expired")
    try:
        for person in people.people:
            person.jpeg_bytes()
    except (binascii.Error, ValueError):
        raise BadPeople("a picture in the people list is not valid base64") from None
    return people
