"""Where things go on the People screen (the citizen's contacts, one big target each) and on the
idle screen that offers it.

:mod:`vaka.agent.ui.layout` asks this module for these states' buttons, texts and pictures, so
they follow the same rules (text at least 48 px, targets at least 160 px, contrast 7:1 or more).
A person is one button: their picture at the top of it (drawn over the button's face) and their
name below, in black on the light face. Positions are on the 1280x720 design canvas.
"""

from __future__ import annotations

from collections.abc import Callable

from vaka.agent.ui.catalog import Catalog
from vaka.agent.ui.privacy_layout import idle_buttons as privacy_idle_buttons
from vaka.agent.ui.spec import (
    BLACK,
    BLUE,
    GREEN,
    GREY,
    WHITE,
    YELLOW,
    Rgb,
    Scale,
    TextSpec,
    VideoSpec,
)
from vaka.agent.ui.states import PERSON_BUTTONS, ButtonId, Idle, PeopleShown, StaffReach

Button = tuple[ButtonId, tuple[int, int, int, int], str, Rgb, Rgb]
#: ``text(words, (x, y, w, h), px, ink, lines)``: a text on the black screen (layout's pen).
Pen = Callable[..., TextSpec]

# The idle screen with People: the button to the staff higher (as with the privacy buttons), and
# People below it, alone or between the two privacy buttons.
_PEOPLE: Button = (ButtonId.PEOPLE, (340, 510, 600, 180), "people.open", GREEN, BLACK)
_PEOPLE_IN_ROW: Button = (ButtonId.PEOPLE, (453, 510, 374, 180), "people.open", GREEN, BLACK)
_ROW_LEFT = (60, 510, 373, 180)
_ROW_RIGHT = (847, 510, 373, 180)
_CALL_NIGHT: Button = (ButtonId.CALL_STAFF, (140, 270, 1000, 200), "idle.call_staff", YELLOW, BLACK)
_CALL_DAY: Button = (
    ButtonId.CALL_STAFF, (140, 270, 1000, 200), "idle.call_day_staff", YELLOW, BLACK
)  # fmt: skip
_CALL_DAY_AND_PHONE: Button = (
    ButtonId.CALL_STAFF, (140, 262, 1000, 170), "idle.call_day_staff", YELLOW, BLACK
)  # fmt: skip
# The People screen: the title and Back at the top, two rows of three people below.
_BACK: Button = (ButtonId.PEOPLE_BACK, (900, 6, 340, 160), "people.back", BLUE, BLACK)
_SLOT_W, _SLOT_H = 380, 262
_SLOTS = tuple((40 + 407 * (i % 3), 180 + 274 * (i // 3)) for i in range(len(PERSON_BUTTONS)))
_PICTURE = 108  # the side of a person's picture on their button
_NAME_H = 128


def idle_buttons(state: Idle) -> tuple[Button, ...]:
    """The idle screen's buttons when it offers People (and perhaps the privacy buttons)."""
    if state.privacy:
        *staff, left, right = privacy_idle_buttons(state)
        moved_left: Button = (left[0], _ROW_LEFT, left[2], left[3], left[4])
        moved_right: Button = (right[0], _ROW_RIGHT, right[2], right[3], right[4])
        return (*staff, moved_left, _PEOPLE_IN_ROW, moved_right)
    match state.reach:
        case StaffReach.NIGHT:
            return (_CALL_NIGHT, _PEOPLE)
        case StaffReach.DAY if state.day_phone is None:
            return (_CALL_DAY, _PEOPLE)
        case StaffReach.DAY:
            return (_CALL_DAY_AND_PHONE, _PEOPLE)
    return (_PEOPLE,)


def people_buttons(state: PeopleShown) -> tuple[Button, ...]:
    """Back, and one button per person."""
    persons = tuple(
        (bid, (x, y, _SLOT_W, _SLOT_H), "", BLUE, BLACK)
        for bid, (x, y), _person in zip(PERSON_BUTTONS, _SLOTS, state.people or (), strict=False)
    )
    return (_BACK, *persons)


def people_content(
    state: PeopleShown, catalog: Catalog, text: Pen, sc: Scale
) -> tuple[tuple[VideoSpec, ...], tuple[TextSpec, ...]]:
    """The title, and each person's picture and name on their button (or why there is none)."""
    texts: tuple[TextSpec, ...] = (text(catalog.text("people.title"), (40, 20, 840, 140), 64, n=2),)
    if state.failed:
        return (), (*texts, text(catalog.text("people.failed"), (60, 220, 1160, 220), 64, GREY, 3))
    if state.people is None:
        return (), (*texts, text(catalog.text("people.waiting"), (60, 260, 1160, 120), 64, GREY))
    if not state.people:
        return (), (*texts, text(catalog.text("people.none"), (60, 220, 1160, 220), 64, WHITE, 3))
    videos: tuple[VideoSpec, ...] = ()
    for (x, y), (name, picture) in zip(_SLOTS, state.people, strict=False):
        if picture is not None:
            box = sc.rect(x + (_SLOT_W - _PICTURE) // 2, y + 10, _PICTURE, _PICTURE)
            videos += (VideoSpec(picture, box, sc.px(4), above=True),)
            name_box = (x + 14, y + 10 + _PICTURE + 2, _SLOT_W - 28, _NAME_H)
            texts += (_on_button(name, name_box, sc, 50, 2),)
        else:
            texts += (_on_button(name, (x + 14, y + 20, _SLOT_W - 28, _SLOT_H - 60), sc, 64, 3),)
    return videos, texts


def _on_button(words: str, box: tuple[int, int, int, int], sc: Scale, px: int, n: int) -> TextSpec:
    return TextSpec(words, sc.rect(*box), sc.px(px), sc.px(48), BLACK, BLUE, n)
