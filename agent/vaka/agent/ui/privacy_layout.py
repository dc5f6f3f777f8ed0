"""Where things go on the privacy screens: the idle screen with its two privacy buttons, the
choice "I have visitors" / "I am away", the running privacy mode, and the viewing log.

:mod:`vaka.agent.ui.layout` asks this module for these states' buttons and texts, so they
follow the same rules (text at least 48 px, targets at least 160 px, contrast 7:1 or more).
Positions are on the 1280x720 design canvas.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from vaka.agent.ui.catalog import Catalog
from vaka.agent.ui.spec import BLACK, BLUE, GREEN, GREY, WHITE, YELLOW, Rgb, TextSpec
from vaka.agent.ui.states import (
    ButtonId,
    Idle,
    PrivacyChoice,
    PrivacyOn,
    StaffReach,
    ViewingLogShown,
)

Button = tuple[ButtonId, tuple[int, int, int, int], str, Rgb, Rgb]
#: ``text(words, (x, y, w, h), px, ink, lines)``: a text on the black screen (layout's pen).
Pen = Callable[..., TextSpec]
PrivacyState = PrivacyChoice | PrivacyOn | ViewingLogShown

# The idle screen with the privacy buttons: the button to the staff a little higher and
# shorter, and a row of two below it.
_PRIVACY: Button = (ButtonId.PRIVACY, (60, 510, 560, 180), "privacy.open", BLUE, BLACK)
_VIEWING_LOG: Button = (ButtonId.VIEWING_LOG, (660, 510, 560, 180), "viewlog.open", BLUE, BLACK)
_CALL_NIGHT: Button = (ButtonId.CALL_STAFF, (140, 270, 1000, 200), "idle.call_staff", YELLOW, BLACK)
_CALL_DAY: Button = (
    ButtonId.CALL_STAFF,
    (140, 270, 1000, 200),
    "idle.call_day_staff",
    YELLOW,
    BLACK,
)
_CALL_DAY_AND_PHONE: Button = (
    ButtonId.CALL_STAFF, (140, 262, 1000, 170), "idle.call_day_staff", YELLOW, BLACK
)  # fmt: skip
_VISITORS: Button = (
    ButtonId.PRIVACY_VISITORS, (60, 250, 560, 210), "privacy.visitors", GREEN, BLACK
)  # fmt: skip
_AWAY: Button = (ButtonId.PRIVACY_AWAY, (660, 250, 560, 210), "privacy.away", GREEN, BLACK)
_BACK: Button = (ButtonId.BACK, (340, 510, 600, 180), "privacy.back", BLUE, BLACK)
_END: Button = (ButtonId.PRIVACY_END, (140, 260, 1000, 190), "privacy.end", BLUE, BLACK)
_CALL_NIGHT_LOW: Button = (
    ButtonId.CALL_STAFF, (140, 490, 1000, 190), "idle.call_staff", YELLOW, BLACK
)  # fmt: skip
_CALL_DAY_LOW: Button = (
    ButtonId.CALL_STAFF, (140, 490, 1000, 190), "idle.call_day_staff", YELLOW, BLACK
)  # fmt: skip
_CLOSE: Button = (ButtonId.BACK, (340, 530, 600, 170), "viewlog.close", BLUE, BLACK)
#: How many sessions the viewing log lists (the newest; "and 3 more" says the rest).
LOG_LINES = 5


def idle_buttons(state: Idle) -> tuple[Button, ...]:
    """The idle screen's buttons when it offers the privacy mode and the viewing log."""
    row = (_PRIVACY, _VIEWING_LOG)
    match state.reach:
        case StaffReach.NIGHT:
            return (_CALL_NIGHT, *row)
        case StaffReach.DAY if state.day_phone is None:
            return (_CALL_DAY, *row)
        case StaffReach.DAY:
            return (_CALL_DAY_AND_PHONE, *row)
    return row


def idle_texts(state: Idle, catalog: Catalog, text: Pen, date: str) -> tuple[TextSpec, ...]:
    """The clock and date, smaller than on the plain idle screen, and the provider's number."""
    now = state.now or datetime.now()
    texts: tuple[TextSpec, ...] = (
        text(f"{now:%H:%M}", (0, 10, 1280, 165), 150),
        text(date, (40, 180, 1200, 78), 60),
    )
    phone = state.day_phone
    if state.reach is StaffReach.DAY and phone is not None:
        texts += (text(catalog.text("idle.day_phone", phone=phone), (40, 438, 1200, 66), 52),)
    elif state.reach is StaffReach.PHONE:
        words = (
            catalog.text("idle.call_day_phone", phone=phone)
            if phone is not None
            else catalog.text("idle.no_day_phone")
        )
        texts += (text(words, (60, 270, 1160, 220), 72, YELLOW, 2),)
    return texts


def buttons_of(state: PrivacyState) -> tuple[Button, ...]:
    """The buttons of the privacy choice, the running mode and the viewing log."""
    match state:
        case PrivacyChoice():
            return (_VISITORS, _AWAY, _BACK)
        case PrivacyOn(reach=StaffReach.NIGHT):
            return (_END, _CALL_NIGHT_LOW)
        case PrivacyOn(reach=StaffReach.DAY):
            return (_END, _CALL_DAY_LOW)
        case PrivacyOn():
            return (_END,)
        case ViewingLogShown():
            return (_CLOSE,)
    raise TypeError(f"not a privacy screen: {state!r}")


def texts_of(state: PrivacyState, catalog: Catalog, text: Pen) -> tuple[TextSpec, ...]:
    """The words of the privacy choice, the running mode and the viewing log."""
    match state:
        case PrivacyChoice(minutes=minutes):
            return (
                text(
                    catalog.text("privacy.title", minutes=minutes),
                    (40, 40, 1200, 180),
                    72,
                    WHITE,
                    2,
                ),
            )
        case PrivacyOn(mode=mode, until=until):
            key = "privacy.on_away" if mode == "away" else "privacy.on_visitors"
            return (text(catalog.text(key, until=until), (40, 30, 1200, 210), 72, WHITE, 3),)
        case ViewingLogShown():
            return _log_texts(state, catalog, text)
    raise TypeError(f"not a privacy screen: {state!r}")


def _log_texts(state: ViewingLogShown, catalog: Catalog, text: Pen) -> tuple[TextSpec, ...]:
    texts = (text(catalog.text("viewlog.title"), (40, 16, 1200, 96), 64),)
    if state.failed:
        return (*texts, text(catalog.text("viewlog.failed"), (60, 160, 1160, 220), 64, GREY, 3))
    if state.entries is None:
        return (*texts, text(catalog.text("viewlog.waiting"), (60, 200, 1160, 120), 64, GREY))
    if not state.entries:
        return (*texts, text(catalog.text("viewlog.none"), (60, 200, 1160, 120), 64))
    entries = state.entries
    shown = entries[-(LOG_LINES - 1) :] if len(entries) > LOG_LINES else entries
    lines = [_entry(catalog, *entry) for entry in shown]
    if len(shown) < len(entries):  # the oldest are left out: say how many
        lines = [catalog.text("viewlog.more", count=len(entries) - len(shown)), *lines]
    return texts + tuple(
        text(line, (60, 122 + i * 80, 1160, 76), 56) for i, line in enumerate(lines)
    )


def _entry(catalog: Catalog, role: str, at: str, seconds: int) -> str:
    key = f"role.{role}"
    who = catalog.text(key) if catalog.has(key) else catalog.text("viewlog.someone")
    return catalog.text("viewlog.entry", role=who, time=at, seconds=seconds)


def entry_lines(state: ViewingLogShown, catalog: Catalog) -> list[str]:
    """The viewing log's lines as the screen writes them (what a test compares with the
    audit trail)."""
    return [_entry(catalog, *entry) for entry in state.entries or ()]
