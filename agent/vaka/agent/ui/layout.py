"""Where everything on the TV screen goes: one description per state, used to draw and to click.

:func:`buttons` (the touch targets) and :func:`describe` (everything on the screen) feed both
:func:`render` and :func:`hit_test`, so what is drawn and what a press hits cannot disagree.
Positions are designed on a 1280x720 canvas and scaled uniformly (and centred) to other sizes;
the video of a call always fills the whole screen.

Sizes, for frail and often old eyes and hands:

- **Text** is at least :data:`MIN_TEXT_PX` (48 px of 720 lines, 1/15 of the screen height); the
  clock is 190 px, titles 80-88 px, button labels 72 px. Long texts shrink to fit, never below
  the minimum, and wrap.
- **Touch targets** are at least :data:`MIN_TARGET_MM` (15 mm) on the smallest screen we assume,
  a 10.1" 16:9 touch panel (:data:`SMALLEST_PANEL_HEIGHT_MM`, 125 mm tall), where 15 mm is 87 px
  of 720 (:func:`min_target_px`). Our buttons are 160-240 px tall: 28-42 mm on that panel,
  88-133 mm on a 32" TV.
- **Contrast** of every text on its background is at least 7:1 (WCAG AAA, checked by the tests
  with :func:`~vaka.agent.ui.spec.contrast_ratio`): white on black 21:1, black on the yellow,
  green, blue and red buttons 14.7, 9.7, 11.8 and 7.8:1.
- **Every button looks pressable**: a light, filled face that stands out from the black screen
  by 7:1 or more (nothing grey on grey, nothing that looks switched off), a darker raised edge
  below it like a key's, and a white frame.
- **Nothing covers the caller's face**: in a call their picture has the screen above a bar that
  holds the hang-up button and the unit's own picture (:data:`FACE_REGION`, :func:`face_region`).
- The screen is dark (black background): it is often seen at night.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime

import numpy as np
import numpy.typing as npt

from vaka.agent.media.source import BgrImage
from vaka.agent.ui.catalog import Catalog
from vaka.agent.ui.drawing import draw
from vaka.agent.ui.people_layout import idle_buttons as people_idle_buttons
from vaka.agent.ui.people_layout import people_buttons, people_content
from vaka.agent.ui.privacy_layout import buttons_of, idle_buttons, idle_texts, texts_of
from vaka.agent.ui.spec import (
    BASE,
    BLACK,
    BLUE,
    EDGE_PX,
    GREEN,
    GREY,
    RED,
    WHITE,
    YELLOW,
    ButtonSpec,
    Layout,
    Rect,
    Rgb,
    Scale,
    Size,
    TextSpec,
    VideoSpec,
)
from vaka.agent.ui.states import (
    ButtonId,
    Calling,
    Enrolling,
    Idle,
    InCall,
    Incoming,
    Message,
    PeopleShown,
    PrivacyChoice,
    PrivacyOn,
    ScreenState,
    StaffReach,
    Trouble,
    ViewingLogShown,
)

log = logging.getLogger(__name__)

MIN_TEXT_PX = 48
"""Smallest text height, in pixels of the 720-line design canvas."""
MIN_TARGET_MM = 15.0
"""Smallest side of a touch target."""
SMALLEST_PANEL_HEIGHT_MM = 125.0
"""Height of the smallest screen we design for (10.1" 16:9); a larger TV makes all bigger."""

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip

# The buttons of each kind of screen: id, rectangle on the design canvas, label key, colours.
# Answer and Decline are in the same place with or without a countdown, so nothing moves under
# the citizen's finger when auto-answer is cancelled.
_Button = tuple[ButtonId, tuple[int, int, int, int], str, Rgb, Rgb]
_CALL_NIGHT_STAFF: _Button = (
    ButtonId.CALL_STAFF, (140, 420, 1000, 240), "idle.call_staff", YELLOW, BLACK
)  # fmt: skip
_CALL_DAY_STAFF: _Button = (
    ButtonId.CALL_STAFF, (140, 420, 1000, 240), "idle.call_day_staff", YELLOW, BLACK
)  # fmt: skip
# With the day number written below it, the button is a little lower and shorter.
_CALL_DAY_STAFF_AND_PHONE: _Button = (
    ButtonId.CALL_STAFF, (140, 380, 1000, 210), "idle.call_day_staff", YELLOW, BLACK
)  # fmt: skip
_ANSWER: _Button = (ButtonId.ANSWER, (60, 290, 560, 210), "incoming.answer", GREEN, BLACK)
_DECLINE: _Button = (ButtonId.DECLINE, (660, 290, 560, 210), "incoming.decline", RED, BLACK)
_CANCEL: _Button = (
    ButtonId.CANCEL_AUTO_ANSWER, (340, 530, 600, 170), "incoming.cancel", BLUE, BLACK
)  # fmt: skip
# A contact's call offers "not this evening" below Decline; its "Not now" goes below Answer.
_CONTACT_CANCEL: _Button = (
    ButtonId.CANCEL_AUTO_ANSWER, (60, 530, 560, 170), "incoming.cancel", BLUE, BLACK
)  # fmt: skip
_QUIET: _Button = (
    ButtonId.DO_NOT_DISTURB, (660, 530, 560, 170), "incoming.quiet", GREY, BLACK
)  # fmt: skip
# A contact's picture, left of their name, above the buttons.
_CALLER_PICTURE = (40, 20, 250, 250)
_STOP_CALLING: _Button = (ButtonId.HANG_UP, (340, 440, 600, 200), "calling.cancel", RED, BLACK)
# In a call the picture of the caller has the screen above a bar; the button is in the bar, so
# it never covers the caller's face (nor any of their picture).
_REMOTE_AREA = (0, 0, 1280, 540)
_HANG_UP: _Button = (ButtonId.HANG_UP, (440, 552, 400, 164), "call.hang_up", RED, BLACK)
_SELF_VIEW = (1048, 556, 208, 156)
_ACKNOWLEDGE: _Button = (
    ButtonId.ACKNOWLEDGE, (290, 510, 700, 190), "message.acknowledge", BLUE, BLACK
)  # fmt: skip

FACE_REGION = (0.25, 0.10, 0.75, 0.90)
"""Where in a caller's picture their face is, as shares of its width and height (left, top,
right, bottom): the middle of the picture. Nothing may be drawn over it."""


def min_target_px(height: int = BASE[1]) -> int:
    """Pixels making :data:`MIN_TARGET_MM` on the smallest panel, for a screen ``height`` tall."""
    return math.ceil(MIN_TARGET_MM / SMALLEST_PANEL_HEIGHT_MM * height)


def _buttons_of(state: ScreenState) -> tuple[_Button, ...]:
    match state:
        case Idle(people=True):
            return people_idle_buttons(state)
        case Idle(privacy=True):
            return idle_buttons(state)
        case PeopleShown():
            return people_buttons(state)
        case PrivacyChoice() | PrivacyOn() | ViewingLogShown():
            return buttons_of(state)
        case Idle(reach=StaffReach.NIGHT):
            return (_CALL_NIGHT_STAFF,)
        case Idle(reach=StaffReach.DAY, day_phone=None):
            return (_CALL_DAY_STAFF,)
        case Idle(reach=StaffReach.DAY):
            return (_CALL_DAY_STAFF_AND_PHONE,)
        case Idle():
            return ()
        case Incoming(contact=True, countdown_s=None):
            return (_ANSWER, _DECLINE, _QUIET)
        case Incoming(contact=True):
            return (_ANSWER, _DECLINE, _CONTACT_CANCEL, _QUIET)
        case Incoming(countdown_s=None):
            return (_ANSWER, _DECLINE)
        case Incoming():
            return (_ANSWER, _DECLINE, _CANCEL)
        case Calling():
            return (_STOP_CALLING,)
        case InCall():
            return (_HANG_UP,)
        case Trouble():
            return ()
        case Message():
            return (_ACKNOWLEDGE,)
        case Enrolling():
            return ()
    raise TypeError(f"not a screen state: {state!r}")


def buttons(state: ScreenState, size: Size = BASE) -> tuple[ButtonSpec, ...]:
    """The touch targets of ``state`` on a screen of ``size``, in screen pixels."""
    sc = Scale(size)
    return tuple(
        ButtonSpec(bid, sc.rect(*box), key, fill, ink, sc.px(EDGE_PX))
        for bid, box, key, fill, ink in _buttons_of(state)
    )


def face_region(picture: Rect) -> Rect:
    """The part of a caller's ``picture`` (where it lands on the screen) their face is in."""
    left, top, right, bottom = FACE_REGION
    x, y = picture.x + round(picture.w * left), picture.y + round(picture.h * top)
    return Rect(
        x, y, picture.x + round(picture.w * right) - x, picture.y + round(picture.h * bottom) - y
    )


def hit_test(state: ScreenState, x: int, y: int, size: Size = BASE) -> ButtonId | None:
    """The button of ``state`` under the screen pixel ``(x, y)``, or ``None``."""
    for button in buttons(state, size):
        if button.rect.contains(x, y):
            return button.id
    return None


def _date_text(now: datetime, catalog: Catalog) -> str:
    text = catalog.text(
        "idle.date",
        weekday=catalog.text(f"weekday.{WEEKDAYS[now.weekday()]}"),
        day=now.day,
        month=catalog.text(f"month.{MONTHS[now.month - 1]}"),
    )
    return text[:1].upper() + text[1:]


def _trouble_key(reason: str, night: bool, catalog: Catalog) -> str:
    key = f"trouble.{reason}"
    if catalog.has(key) and reason != "alarm":
        return key if night or not catalog.has(f"{key}_day") else f"{key}_day"
    log.warning("no text for the trouble %r: showing no_connection", reason)
    return "trouble.no_connection"


def describe(state: ScreenState, catalog: Catalog, size: Size = BASE) -> Layout:
    """Everything :func:`render` draws for ``state`` on a screen of ``size``, in ``catalog``'s
    language."""
    sc = Scale(size)
    low = sc.px(MIN_TEXT_PX)
    targets = buttons(state, size)
    labels = tuple(
        TextSpec(
            catalog.text(b.label_key), b.face.inset(sc.px(24)), sc.px(72), low, b.ink, b.fill, 2
        )
        for b in targets
        if b.label_key  # a person's button: their name and picture come with the content
    )
    videos, texts, frame = _content(state, catalog, sc, size)
    return Layout(size, BLACK, videos, targets, texts + labels, frame)


class _Pen:
    """Writes a screen's texts: boxes and sizes on the design canvas, on the black screen."""

    def __init__(self, sc: Scale) -> None:
        self.sc = sc
        self.low = sc.px(MIN_TEXT_PX)

    def __call__(
        self, t: str, box: tuple[int, int, int, int], px: int, ink: Rgb = WHITE, n: int = 1
    ) -> TextSpec:
        return TextSpec(t, self.sc.rect(*box), self.sc.px(px), self.low, ink, BLACK, n)


def _idle_texts(state: Idle, catalog: Catalog, text: _Pen) -> tuple[TextSpec, ...]:
    """The clock, the date, and by day the provider's number (under the button or instead)."""
    now = state.now or datetime.now()
    texts: tuple[TextSpec, ...] = (
        text(f"{now:%H:%M}", (0, 30, 1280, 210), 190),
        text(_date_text(now, catalog), (40, 250, 1200, 100), 68),
    )
    phone = state.day_phone
    if state.reach is StaffReach.DAY and phone is not None:
        texts += (text(catalog.text("idle.day_phone", phone=phone), (40, 608, 1200, 96), 60),)
    elif state.reach is StaffReach.PHONE:
        words = (
            catalog.text("idle.call_day_phone", phone=phone)
            if phone is not None
            else catalog.text("idle.no_day_phone")
        )
        texts += (text(words, (60, 400, 1160, 280), 80, YELLOW, 2),)
    return texts


def _enrolling(
    state: Enrolling, catalog: Catalog, text: _Pen
) -> tuple[tuple[VideoSpec, ...], tuple[TextSpec, ...]]:
    """The words, the code, large, and its QR symbol beside them."""
    texts = (
        text(catalog.text("enrolling.title"), (40, 24, 1200, 150), 72, n=2),
        text(catalog.text("enrolling.hint"), (500, 220, 740, 150), 60, GREY, 2),
        text(state.code, (500, 400, 740, 150), 120, YELLOW),
    )
    if state.qr is None:
        return (), texts
    return (_qr_picture(state.qr, text.sc.rect(60, 200, 400, 400)),), texts


def _incoming(
    state: Incoming, catalog: Catalog, text: _Pen
) -> tuple[tuple[VideoSpec, ...], tuple[TextSpec, ...]]:
    """Who calls (with their picture, when a contact has one) and the auto-answer countdown."""
    role_key = f"role.{state.caller_role}"
    role_text = catalog.text(role_key) if catalog.has(role_key) else state.caller_role
    left = 40
    videos: tuple[VideoSpec, ...] = ()
    if state.picture is not None:
        videos = (VideoSpec(state.picture, text.sc.rect(*_CALLER_PICTURE), text.sc.px(4)),)
        left = 320
    width = 1240 - left
    texts: tuple[TextSpec, ...] = (
        text(catalog.text("incoming.calling", name=state.caller_name), (left, 20, width, 110), 88),
        text(role_text, (left, 130, width, 80), 60, GREY),
    )
    if state.countdown_s is not None:
        seconds = max(0, state.countdown_s)
        key = "incoming.countdown_one" if seconds == 1 else "incoming.countdown"
        texts += (text(catalog.text(key, seconds=seconds), (left, 212, width, 72), 52, YELLOW),)
    return videos, texts


def _content(
    state: ScreenState, catalog: Catalog, sc: Scale, size: Size
) -> tuple[tuple[VideoSpec, ...], tuple[TextSpec, ...], Rgb | None]:
    """The pictures, the texts (besides the buttons') and the frame colour of ``state``."""
    text = _Pen(sc)
    videos: tuple[VideoSpec, ...] = ()
    texts: tuple[TextSpec, ...] = ()
    frame: Rgb | None = None
    match state:
        case Idle(privacy=True) | Idle(people=True):
            date = _date_text(state.now or datetime.now(), catalog)
            texts = idle_texts(state, catalog, text, date)
        case PrivacyChoice() | PrivacyOn() | ViewingLogShown():
            texts = texts_of(state, catalog, text)
        case Idle():
            texts = _idle_texts(state, catalog, text)
        case Incoming():
            videos, texts = _incoming(state, catalog, text)
        case PeopleShown():
            videos, texts = people_content(state, catalog, text, sc)
        case Calling(night=night, callee=callee):
            title = catalog.text("calling.title" if night else "calling.title_day")
            if callee is not None:
                title = catalog.text("calling.person", name=callee)
            texts = (
                text(title, (40, 110, 1200, 180), 80, n=2),
                text(catalog.text("calling.hint"), (40, 300, 1200, 90), 60, GREY),
            )
        case InCall(remote_frame=remote, self_frame=own):
            if remote is not None:
                videos += (VideoSpec(remote, sc.rect(*_REMOTE_AREA)),)
            else:
                texts = (text(catalog.text("call.connecting"), (0, 210, 1280, 120), 72),)
            if own is not None:
                videos += (VideoSpec(own, sc.rect(*_SELF_VIEW), sc.px(4)),)
        case Trouble(reason_key=reason, night=night, name=name):
            what = catalog.text(_trouble_key(reason, night, catalog), name=name)
            texts = (
                text(what, (60, 120, 1160, 170), 88, n=2),
                text(catalog.text("trouble.alarm"), (60, 320, 1160, 300), 80, YELLOW, 3),
            )
            frame = YELLOW
        case Message(text=body, picture=picture) if picture is not None:
            videos = (VideoSpec(picture, sc.rect(40, 40, 560, 440), sc.px(4)),)
            texts = (text(body, (640, 40, 600, 440), 72, n=6),)
        case Message(text=body):
            texts = (text(body, (60, 40, 1160, 440), 80, n=6),)
        case Enrolling():
            videos, texts = _enrolling(state, catalog, text)
    return videos, texts, frame


def _qr_picture(qr: npt.NDArray[np.bool_], box: Rect) -> VideoSpec:
    """The QR symbol as black and white squares of whole pixels, as large as ``box`` allows
    (scaling it like a photo would blur the modules a camera has to tell apart)."""
    module = max(1, min(box.w, box.h) // max(qr.shape))
    picture = np.where(qr, 0, 255).astype(np.uint8).repeat(module, 0).repeat(module, 1)
    h, w = picture.shape
    placed = Rect(box.x + (box.w - w) // 2, box.y + (box.h - h) // 2, w, h)
    return VideoSpec(np.repeat(picture[..., None], 3, axis=2), placed)


def render(state: ScreenState, catalog: Catalog, size: Size = BASE) -> BgrImage:
    """The picture of ``state`` on a screen of ``size``: BGR ``uint8``, shape ``(h, w, 3)``."""
    return draw(describe(state, catalog, size))
