"""A citizen's contacts: who may call the citizen's TV, as whom, when — added and removed by
staff, only with the citizen's recorded consent to contact calls.

A contact has a display name and a picture the citizen recognises, a relation ("daughter",
"friend", "neighbour at Solgården"), the name the contact knows the citizen by (shown on the
contact's own page only), and rules: whether they may call the TV and between which hours
(central's ``[calls] timezone``), whether the TV may call them, and whether the TV answers their
calls by itself (never, unless staff set it for that contact). Removing a contact ends their
access at once; :meth:`ContactBook.remove` returns the call in progress, which the caller ends.

A contact of kind **citizen** names another citizen (``peer_citizen``): that citizen's TV calls
and is called from this citizen's TV. It has no invitation and no log-in (it is a TV, not a
person with a page). Staff add it only with consent to contact calls recorded in both homes, and
the relation counts only when the other citizen's circle names this citizen too
(:func:`mirror_of`); a call over a one-sided relation is refused with its reason.

Blocking: call from a worker thread.
"""

import base64
import binascii
import io
import re
import secrets
import time
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.engine import Engine, RowMapping

from vaka.central.directory.consent import ConsentRecord
from vaka.central.storage.tables import citizens, contacts, memberships, permissions
from vaka.errors import VakaError
from vaka.protocol.reasons import Reason

#: the consent scope contact calls need (from the citizen and everyone else in the home)
CONTACT_SCOPE = "contact_call"
#: the largest picture accepted (bytes, before base64)
PICTURE_MAX_BYTES = 256 * 1024
_DATA_URL = re.compile(r"^data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)$")
_HOURS = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


class ContactError(VakaError, ValueError):
    """A contact could not be added or changed; the message says why in words staff can act on."""


def parse_clock(text: str) -> int:
    """``"08:30"`` -> 510 (minutes after midnight); ``"24:00"`` is the end of the day."""
    found = _HOURS.match(text)
    if found is None:
        raise ContactError(f"{text!r} is not a time of day (HH:MM, 24 h)")
    minutes = int(found.group(1)) * 60 + int(found.group(2))
    if minutes > 24 * 60:
        raise ContactError(f"{text!r} is not a time of day (HH:MM, 24 h)")
    return minutes


def clock(minutes: int) -> str:
    """510 -> ``"08:30"``."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def check_picture(data_url: str | None) -> str | None:
    """The picture as stored (a PNG or JPEG ``data:`` URL that Pillow can read), or ``None``."""
    if data_url is None or data_url == "":
        return None
    found = _DATA_URL.match(data_url)
    if found is None:
        raise ContactError("the picture must be a PNG or JPEG image (a data: URL)")
    try:
        raw = base64.b64decode(found.group(2), validate=True)
    except binascii.Error:
        raise ContactError("the picture is not valid base64") from None
    if len(raw) > PICTURE_MAX_BYTES:
        raise ContactError(f"the picture is larger than {PICTURE_MAX_BYTES // 1024} KB")
    try:
        with Image.open(io.BytesIO(raw)) as image:
            image.verify()
            kind = (image.format or "").lower()
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise ContactError("the picture is not a readable PNG or JPEG image") from None
    if kind not in ("png", "jpeg"):
        raise ContactError("the picture must be a PNG or JPEG image")
    return data_url


@dataclass(frozen=True)
class ContactRules:
    """What a contact may do."""

    may_call: bool = True
    call_from_min: int = 8 * 60
    call_until_min: int = 20 * 60
    may_be_called: bool = True
    auto_answer: bool = False

    def hours(self) -> str:
        """``"08:00-20:00"``."""
        return f"{clock(self.call_from_min)}-{clock(self.call_until_min)}"

    def allows_minute(self, minute: int) -> bool:
        """Whether a call may start at ``minute`` after local midnight (hours may span it)."""
        start, end = self.call_from_min, self.call_until_min
        if start == end:
            return False
        if start < end:
            return start <= minute < end
        return minute >= start or minute < end


@dataclass(frozen=True)
class Contact:
    """One contact of one citizen."""

    contact_id: str
    citizen_id: str
    display_name: str
    citizen_name: str
    relation: str
    picture: str | None
    rules: ContactRules
    added_by: str
    added_at: float
    removed_at: float | None
    open_call: tuple[str, str] | None  # (call id, unit) of the call in progress
    peer_citizen: str | None = None  # a contact of kind "citizen": the other citizen

    @property
    def kind(self) -> str:
        """``citizen`` (another citizen's TV) or ``person`` (the contact's page)."""
        return "person" if self.peer_citizen is None else "citizen"

    @property
    def active(self) -> bool:
        """Whether the contact has not been removed."""
        return self.removed_at is None

    def staff_json(self) -> dict[str, object]:
        """What staff see of the contact."""
        return {
            "id": self.contact_id,
            "citizen": self.citizen_id,
            "display_name": self.display_name,
            "citizen_name": self.citizen_name,
            "relation": self.relation,
            "picture": self.picture,
            "may_call": self.rules.may_call,
            "hours": {
                "from": clock(self.rules.call_from_min),
                "until": clock(self.rules.call_until_min),
            },
            "may_be_called": self.rules.may_be_called,
            "auto_answer": self.rules.auto_answer,
            "added_by": self.added_by,
            "added_at": self.added_at,
            "removed_at": self.removed_at,
            "in_call": self.open_call is not None,
            "kind": self.kind,
            "peer_citizen": self.peer_citizen,
        }


def _contact(row: RowMapping) -> Contact:
    rules = ContactRules(
        row["may_call"],
        row["call_from_min"],
        row["call_until_min"],
        row["may_be_called"],
        row["auto_answer"],
    )
    open_call = None
    if row["open_call_id"] is not None and row["open_call_unit"] is not None:
        open_call = (row["open_call_id"], row["open_call_unit"])
    return Contact(
        row["contact_id"],
        row["citizen_id"],
        row["display_name"],
        row["citizen_name"],
        row["relation"],
        row["picture"],
        rules,
        row["added_by"],
        row["added_at"],
        row["removed_at"],
        open_call,
        row["peer_citizen"],
    )


def one_sided(contact: Contact) -> Reason:
    """Why a contact of kind citizen does not count yet: the other citizen's circle does not
    name this contact's citizen."""
    return Reason(
        f"{contact.display_name}'s circle does not name {contact.citizen_name}: a call between "
        "two citizens needs the relation on both sides",
        "citizen_one_sided",
        name=contact.display_name,
        other=contact.citizen_name,
    )


def new_contact_id() -> str:
    """``k-`` and ten unambiguous characters: the contact's log-in name with a password."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "k-" + "".join(secrets.choice(alphabet) for _ in range(10))


class ContactBook:
    """The contacts table."""

    def __init__(self, engine: Engine, consent: ConsentRecord) -> None:
        self.engine = engine
        self.consent = consent

    def add(
        self,
        citizen: str,
        display_name: str,
        citizen_name: str,
        relation: str,
        picture: str | None,
        rules: ContactRules,
        actor: str,
        *,
        require_consent: bool = True,
        now: float | None = None,
        peer_citizen: str | None = None,
    ) -> Contact:
        """Add a contact to ``citizen``'s circle (of kind citizen with ``peer_citizen``);
        :class:`ContactError` without consent to contact calls (in both homes for a citizen),
        for an unknown citizen, a citizen as their own contact, or a bad picture."""
        at = time.time() if now is None else now
        stored_picture = check_picture(picture)
        if peer_citizen == citizen:
            raise ContactError(f"citizen {citizen} cannot be their own contact")
        for who in (citizen, peer_citizen):
            if who is not None and not self._known(who):
                raise ContactError(f"unknown citizen {who}")
        if require_consent:
            for who in (citizen, peer_citizen):
                missing = self.consent.refusal(who, CONTACT_SCOPE, at) if who else None
                if missing is not None:
                    raise ContactError(missing)
        contact_id = new_contact_id()
        with self.engine.begin() as conn:
            conn.execute(
                contacts.insert().values(
                    contact_id=contact_id,
                    citizen_id=citizen,
                    display_name=display_name,
                    citizen_name=citizen_name,
                    relation=relation,
                    picture=stored_picture,
                    may_call=rules.may_call,
                    call_from_min=rules.call_from_min,
                    call_until_min=rules.call_until_min,
                    may_be_called=rules.may_be_called,
                    auto_answer=rules.auto_answer,
                    added_by=actor,
                    added_at=at,
                    peer_citizen=peer_citizen,
                )
            )
        found = self.get(contact_id)
        assert found is not None
        return found

    def _known(self, citizen: str) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(
                select(citizens.c.citizen_id).where(citizens.c.citizen_id == citizen)
            ).first()
        return found is not None

    def mirror_of(self, contact: Contact) -> "Contact | None":
        """For a contact of kind citizen: the other citizen's active contact naming this
        contact's citizen (the other side of the relation), or ``None`` (one-sided)."""
        if contact.peer_citizen is None:
            return None
        query = (
            select(contacts)
            .where(
                contacts.c.citizen_id == contact.peer_citizen,
                contacts.c.peer_citizen == contact.citizen_id,
                contacts.c.removed_at.is_(None),
            )
            .order_by(contacts.c.added_at)
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else _contact(row)

    def get(self, contact_id: str) -> Contact | None:
        """The contact (removed ones too), or ``None``."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(contacts).where(contacts.c.contact_id == contact_id))
                .mappings()
                .first()
            )
        return None if row is None else _contact(row)

    def of_citizen(self, citizen: str, *, removed: bool = False) -> list[Contact]:
        """The citizen's contacts by name (removed ones only if asked)."""
        query = select(contacts).where(contacts.c.citizen_id == citizen)
        if not removed:
            query = query.where(contacts.c.removed_at.is_(None))
        with self.engine.connect() as conn:
            rows = conn.execute(
                query.order_by(contacts.c.display_name, contacts.c.contact_id)
            ).mappings()
            return [_contact(row) for row in rows]

    def remove(self, contact_id: str, actor: str, now: float | None = None) -> Contact | None:
        """Remove the contact now; the contact as it was (its open call is for the caller to
        end), or ``None`` if there is no such contact or it was already removed."""
        at = time.time() if now is None else now
        with self.engine.begin() as conn:
            row = (
                conn.execute(
                    select(contacts).where(
                        contacts.c.contact_id == contact_id, contacts.c.removed_at.is_(None)
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            conn.execute(
                contacts.update()
                .where(contacts.c.contact_id == contact_id)
                .values(removed_at=at, removed_by=actor, open_call_id=None, open_call_unit=None)
            )
        return _contact(row)

    def call_opened(self, contact_id: str, call_id: str, unit: str) -> None:
        """Note the contact's call in progress."""
        with self.engine.begin() as conn:
            conn.execute(
                contacts.update()
                .where(contacts.c.contact_id == contact_id)
                .values(open_call_id=call_id, open_call_unit=unit)
            )

    def call_closed(self, contact_id: str, call_id: str) -> None:
        """Forget the contact's call ``call_id`` (not a newer one)."""
        with self.engine.begin() as conn:
            conn.execute(
                contacts.update()
                .where(contacts.c.contact_id == contact_id, contacts.c.open_call_id == call_id)
                .values(open_call_id=None, open_call_unit=None)
            )


#: roles that look after a citizen's circle; care staff only for citizens their group serves
CIRCLE_ROLES = frozenset({"day_staff", "night_staff", "support", "technician", "administrator"})
_CARE_ROLES = frozenset({"day_staff", "night_staff"})


def circle_refusal(engine: Engine, staff_id: str, role: str, citizen: str) -> str | None:
    """Why ``staff_id`` may not look after ``citizen``'s contacts, or ``None``."""
    if role not in CIRCLE_ROLES:
        return f"the role {role} may not look after citizens' contacts"
    if role not in _CARE_ROLES:
        return None
    with engine.connect() as conn:
        found = conn.execute(
            select(permissions.c.group_id)
            .join(memberships, memberships.c.group_id == permissions.c.group_id)
            .where(memberships.c.staff_id == staff_id, permissions.c.citizen_id == citizen)
            .limit(1)
        ).first()
    if found is None:
        return f"staff {staff_id} is not in a group that serves citizen {citizen}"
    return None


def citizens_in_care(engine: Engine, staff_id: str, role: str) -> list[str]:
    """The citizens whose circles ``staff_id`` may look after (see :func:`circle_refusal`)."""
    if role not in CIRCLE_ROLES:
        return []
    query = select(citizens.c.citizen_id)
    if role in _CARE_ROLES:
        query = (
            select(permissions.c.citizen_id)
            .join(memberships, memberships.c.group_id == permissions.c.group_id)
            .where(memberships.c.staff_id == staff_id)
            .distinct()
        )
    with engine.connect() as conn:
        return sorted(str(row[0]) for row in conn.execute(query))
