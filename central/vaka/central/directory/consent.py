"""The consent record: who in a citizen's home consented to what, since when, and withdrawals.

Consent is kept per citizen and per cohabitant (anyone else in the home who may appear in the
picture), per scope: ``night_check``, ``video_visit``, ``break_glass``, ``contact_call`` (the
citizen's own contacts call the TV, :mod:`vaka.central.circle`). A call for one of those
needs valid consent — given, not withdrawn — from the citizen and from every cohabitant;
:meth:`ConsentRecord.refusal` says whose is missing ("no valid consent for night checks from
citizen c-1001"). Whether central requires it is ``[privacy] require_consent`` (on unless a
configuration turns it off; the dev stack does, see docs/privacy.md).

A withdrawal is never undone by loading an older directory file: a consent loaded again counts
only if it was given after the recorded withdrawal. Blocking: call from a worker thread.
"""

import datetime as dt
import time

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection, Engine

from vaka.central.directory.spec import CITIZEN_SELF, CitizenSpec
from vaka.central.storage.engine import upsert
from vaka.central.storage.tables import cohabitants, consents

#: The scopes a call purpose needs consent for (a citizen's own call needs none).
SCOPE_WORDS = {
    "night_check": "night checks",
    "video_visit": "video visits",
    "break_glass": "emergency (break-glass) calls",
    "contact_call": "calls from the citizen's contacts",
}


def _stamp(when: dt.datetime | dt.date) -> float:
    """Unix seconds of a datetime (local time if naive) or of a date's local midnight."""
    if not isinstance(when, dt.datetime):
        when = dt.datetime.combine(when, dt.time())
    return (when if when.tzinfo else when.astimezone()).timestamp()


class ConsentRecord:
    """Queries and updates on the consent tables."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self, conn: Connection, citizen: CitizenSpec) -> None:
        """Replace the citizen's cohabitants and upsert the consents the entry names."""
        conn.execute(delete(cohabitants).where(cohabitants.c.citizen_id == citizen.id))
        for person in sorted(set(citizen.cohabitants)):
            conn.execute(cohabitants.insert().values(citizen_id=citizen.id, person_id=person))
        for entry in citizen.consent:
            given = _stamp(entry.given)
            withdrawn = None if entry.withdrawn is None else _stamp(entry.withdrawn)
            for scope in entry.scope:
                self._put(conn, citizen.id, entry.person, scope, given, withdrawn)

    def _put(
        self,
        conn: Connection,
        citizen: str,
        person: str,
        scope: str,
        given: float,
        withdrawn: float | None,
    ) -> None:
        key = (
            (consents.c.citizen_id == citizen)
            & (consents.c.person_id == person)
            & (consents.c.scope == scope)
        )
        kept = conn.execute(select(consents.c.withdrawn_at).where(key)).scalar()
        if withdrawn is None and kept is not None and given <= kept:
            withdrawn = kept  # a recorded withdrawal stands until consent is given after it
        values = {"given_at": given, "withdrawn_at": withdrawn}
        ins = upsert(self.engine, consents).values(
            citizen_id=citizen, person_id=person, scope=scope, **values
        )
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=["citizen_id", "person_id", "scope"], set_=values
            )
        )

    def give(self, citizen: str, person: str, scope: str, at: float | None = None) -> None:
        """Record ``person``'s consent to ``scope`` in ``citizen``'s home (now, or ``at``)."""
        given = time.time() if at is None else at
        with self.engine.begin() as conn:
            self._put(conn, citizen, person, scope, given, None)

    def withdraw(self, citizen: str, person: str, scope: str, at: float | None = None) -> bool:
        """Record the withdrawal of a consent (now, or ``at``); ``False`` if there was none."""
        when = time.time() if at is None else at
        with self.engine.begin() as conn:
            done = conn.execute(
                consents.update()
                .where(
                    consents.c.citizen_id == citizen,
                    consents.c.person_id == person,
                    consents.c.scope == scope,
                )
                .values(withdrawn_at=when)
            )
        return bool(done.rowcount)

    def people(self, citizen: str) -> list[str]:
        """Who in ``citizen``'s home gives consent: the citizen, then the cohabitants."""
        with self.engine.connect() as conn:
            others = conn.execute(
                select(cohabitants.c.person_id)
                .where(cohabitants.c.citizen_id == citizen)
                .order_by(cohabitants.c.person_id)
            ).scalars()
            return [CITIZEN_SELF, *others]

    def entries(self, citizen: str) -> list[dict[str, object]]:
        """The consents recorded for ``citizen``'s home (``GET /api/consent``)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    consents.c.person_id,
                    consents.c.scope,
                    consents.c.given_at,
                    consents.c.withdrawn_at,
                )
                .where(consents.c.citizen_id == citizen)
                .order_by(consents.c.person_id, consents.c.scope)
            ).all()
        return [
            {"person": person, "scope": scope, "given_at": given, "withdrawn_at": withdrawn}
            for person, scope, given, withdrawn in rows
        ]

    def refusal(self, citizen: str, purpose: str, now: float) -> str | None:
        """Why a ``purpose`` call to ``citizen``'s home lacks consent, or ``None``."""
        words = SCOPE_WORDS.get(purpose)
        if words is None:
            return None
        with self.engine.connect() as conn:
            others = conn.execute(
                select(cohabitants.c.person_id)
                .where(cohabitants.c.citizen_id == citizen)
                .order_by(cohabitants.c.person_id)
            ).scalars()
            people = [CITIZEN_SELF, *others]
            rows = conn.execute(
                select(consents.c.person_id, consents.c.given_at, consents.c.withdrawn_at).where(
                    consents.c.citizen_id == citizen, consents.c.scope == purpose
                )
            ).all()
        valid = {
            person
            for person, given, withdrawn in rows
            if given <= now and (withdrawn is None or withdrawn > now)
        }
        for person in people:
            if person not in valid:
                who = (
                    f"citizen {citizen}"
                    if person == CITIZEN_SELF
                    else f"cohabitant {person} of citizen {citizen}"
                )
                return f"no valid consent for {words} from {who}"
        return None
