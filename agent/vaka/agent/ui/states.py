"""What the TV screen can show: one immutable value per screen, and the ids of its buttons.

The agent decides *what* to show by passing one of these to ``Screen.show``; how it looks and where
its buttons are is :mod:`vaka.agent.ui.layout`'s business. Presses come back as a
:class:`ButtonId`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from vaka.agent.media.source import BgrImage


class ButtonId(StrEnum):
    """Every button the screen can have. The value is what a press reports (and logs)."""

    CALL_STAFF = "call_staff"
    "Idle: call the staff (the night staff in the night hours)."
    ANSWER = "answer"
    "Incoming call: take it."
    DECLINE = "decline"
    "Incoming call: refuse it."
    CANCEL_AUTO_ANSWER = "cancel_auto_answer"
    "Incoming call: stop the auto-answer countdown (the call keeps ringing)."
    DO_NOT_DISTURB = "do_not_disturb"
    "A contact's incoming call: decline it, and refuse contacts' calls until the morning."
    HANG_UP = "hang_up"
    "In a call, or while calling the night staff: end it."
    ACKNOWLEDGE = "acknowledge"
    "A message or reminder: the citizen has seen it."
    PRIVACY = "privacy"
    "Idle: visitors or away (the privacy mode's choice)."
    PRIVACY_VISITORS = "privacy_visitors"
    "The privacy choice: I have visitors."
    PRIVACY_AWAY = "privacy_away"
    "The privacy choice: I am away."
    PRIVACY_END = "privacy_end"
    "Privacy mode: turn the camera back on."
    VIEWING_LOG = "viewing_log"
    "Idle: who looked in (the viewing log)."
    BACK = "back"
    "The privacy choice or the viewing log: back to the idle screen."
    PEOPLE = "people"
    "Idle: the citizen's people (contacts the TV may call)."
    PEOPLE_BACK = "people_back"
    "The People screen: back to the idle screen."
    PERSON_1 = "person_1"
    "The People screen: call the first person (the others follow in order)."
    PERSON_2 = "person_2"
    PERSON_3 = "person_3"
    PERSON_4 = "person_4"
    PERSON_5 = "person_5"
    PERSON_6 = "person_6"


#: The People screen's buttons, one per person, in the order the people are shown.
PERSON_BUTTONS = (
    ButtonId.PERSON_1,
    ButtonId.PERSON_2,
    ButtonId.PERSON_3,
    ButtonId.PERSON_4,
    ButtonId.PERSON_5,
    ButtonId.PERSON_6,
)


class StaffReach(StrEnum):
    """How the idle screen offers the citizen the staff (the care provider's hours decide)."""

    NIGHT = "night"
    "The night hours: the button rings the night staff."
    DAY = "day"
    "The daytime: the button rings the staff on duty (with the day phone number, if there is one)."
    PHONE = "phone"
    "The daytime, where the staff take no calls through the unit: no button, the phone number."


@dataclass(frozen=True)
class Idle:
    """Nothing going on: the clock, the date and the button to the staff."""

    now: datetime | None = None
    "The time to show; ``None`` shows the current local time whenever the screen is drawn."
    reach: StaffReach = StaffReach.NIGHT
    "What the button says, or that there is none."
    day_phone: str | None = None
    "The care provider's daytime number (e.g. ``08-123 45 67``); shown in the daytime."
    privacy: bool = False
    "Offer the privacy mode and the viewing log (two buttons below the one to the staff)."
    people: bool = False
    "Offer the People button (the citizen's contacts, to call one) below the staff's button."


@dataclass(frozen=True, eq=False)
class Incoming:
    """Somebody is calling the citizen. Compared by identity (it may carry a picture)."""

    caller_name: str
    "Who is calling, as central names them (e.g. ``Anna``)."
    caller_role: str
    "Their role: a catalog key under ``role.`` (``nurse``) or, if there is none, shown as given."
    countdown_s: int | None = None
    "Seconds until the call is answered by itself; ``None`` when it only rings."
    contact: bool = False
    "One of the citizen's contacts calls: offer ``Not this evening`` (do not disturb)."
    picture: BgrImage | None = None
    "The caller's picture (a contact's, BGR), shown beside the name; ``None`` for none."


@dataclass(frozen=True)
class Calling:
    """The citizen pressed the button and the staff are being rung."""

    night: bool = True
    "The night staff (``True``) or the day's staff."
    callee: str | None = None
    "One of the citizen's people, by name, instead of the staff."


@dataclass(frozen=True, eq=False)
class InCall:
    """A call is up. Compared by identity: each video frame makes a new state."""

    remote_frame: BgrImage | None = None
    "The latest picture from the caller, BGR; ``None`` until the first one arrives."
    self_frame: BgrImage | None = None
    "The latest picture from the unit's own camera, BGR; ``None`` hides the self view."


@dataclass(frozen=True)
class Trouble:
    """A call cannot be made or taken: say so, and point to the safety alarm."""

    reason_key: str = "no_connection"
    "What is wrong: a catalog key under ``trouble.`` (``no_connection``, ``no_camera``, ...)."
    night: bool = True
    "In the night hours; by day a reason with a ``_day`` text (``no_staff_day``) shows that one."
    name: str = ""
    "Whom it is about (``{name}`` in the text: ``Anna is not available right now``)."


@dataclass(frozen=True, eq=False)
class Message:
    """A message or reminder from the staff, shown until the citizen acknowledges it."""

    text: str
    "The message, already in the citizen's language (it comes from the staff)."
    picture: BgrImage | None = None
    "A picture sent with it (BGR), shown beside the text; ``None`` for text only."


@dataclass(frozen=True, eq=False)
class Enrolling:
    """A new unit waits for a technician to approve its enrolment code."""

    code: str
    "The code as a person reads it (``ABCDE-FGH23``)."
    qr: npt.NDArray[np.bool_] | None = None
    "The code's QR symbol, ``True`` for a dark module, quiet zone included; ``None`` for none."


@dataclass(frozen=True)
class PrivacyChoice:
    """The citizen is choosing a privacy mode: "I have visitors" or "I am away"."""

    minutes: int = 60
    "How long the camera will be off."


@dataclass(frozen=True)
class PrivacyOn:
    """The privacy mode runs: the camera is off until ``until``; the staff can still be called."""

    mode: str = "visitors"
    "``visitors`` or ``away``."
    until: str = ""
    "When it ends, as the citizen reads a time (``23:40``)."
    reach: StaffReach = StaffReach.NIGHT
    "What the button to the staff says, or that there is none."


@dataclass(frozen=True)
class ViewingLogShown:
    """Who looked in: one ``(role, time, seconds)`` per camera session, oldest first.

    ``entries`` is ``None`` while the log is being fetched from central; ``failed`` when it
    could not be."""

    entries: tuple[tuple[str, str, int], ...] | None = None
    failed: bool = False


@dataclass(frozen=True, eq=False)
class PeopleShown:
    """The citizen's people, one big target each (picture and name): one press calls one.

    ``people`` is ``None`` while the list is fetched from central; ``failed`` when it could not
    be. Compared by identity (it carries pictures)."""

    people: tuple[tuple[str, BgrImage | None], ...] | None = None
    "``(name, picture)`` per person, in the order of :data:`PERSON_BUTTONS`."
    failed: bool = False


ScreenState = (
    Idle
    | Incoming
    | Calling
    | InCall
    | Trouble
    | Message
    | Enrolling
    | PrivacyChoice
    | PrivacyOn
    | ViewingLogShown
    | PeopleShown
)
"""Anything the screen can show."""
