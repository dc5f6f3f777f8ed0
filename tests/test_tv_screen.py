"""The TV unit's screen: catalogs, layout rules, drawing, and the real window under Xvfb.

The window tests start their own Xvfb on a free display (``-displayfd``), take screenshots with
ImageMagick's ``import -window root`` and click with real X events from ``xdotool``. Set
``VAKA_UPDATE_SCREENS=1`` to write the screenshots to ``docs/screens/tv-<state>.png``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from datetime import time as dt_time
from itertools import combinations
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from PIL import Image

from tests.xserver import xdisplay  # noqa: F401 - a fixture
from vaka.agent.enrol import qr_modules
from vaka.agent.media.source import BgrImage
from vaka.agent.ui import (
    LANGUAGES,
    ButtonId,
    Calling,
    Catalog,
    CatalogError,
    Enrolling,
    HeadlessScreen,
    Idle,
    InCall,
    Incoming,
    Message,
    ScreenError,
    ScreenState,
    StaffReach,
    Trouble,
    TvScreen,
    hit_test,
    render,
)
from vaka.agent.ui.catalog import REFERENCE, load_messages
from vaka.agent.ui.drawing import fit_text
from vaka.agent.ui.layout import MIN_TEXT_PX, buttons, describe, face_region, min_target_px
from vaka.agent.ui.spec import BLACK, EDGE_SHADE, WHITE, YELLOW, Rgb, contrast_ratio
from vaka.agent.ui.x11 import screen_pixels, window_manager_running
from vaka.protocol.enrolment import display_code

ROOT = Path(__file__).resolve().parent.parent
SCREENS = ROOT / "docs" / "screens"
MESSAGES = ROOT / "agent" / "vaka" / "agent" / "ui" / "messages"


def _picture(w: int, h: int, back: Rgb, front: Rgb) -> BgrImage:
    """A flat synthetic 'camera' picture: a round shape on a plain background (BGR)."""
    image = np.empty((h, w, 3), np.uint8)
    image[:] = back[::-1]
    yy, xx = np.ogrid[:h, :w]
    inside = ((xx - w / 2) / (w / 5)) ** 2 + ((yy - h / 2.3) / (h / 3.2)) ** 2 <= 1
    image[inside] = front[::-1]
    return image


REMOTE = _picture(640, 480, (96, 140, 176), (232, 190, 160))
SELF = _picture(640, 480, (70, 90, 70), (210, 170, 140))
STATES: dict[str, ScreenState] = {
    "idle": Idle(datetime(2025, 3, 3, 22, 5)),
    "idle-day": Idle(datetime(2025, 3, 3, 14, 5), StaffReach.DAY, "08-123 45 67"),
    "idle-day-phone": Idle(datetime(2025, 3, 3, 14, 5), StaffReach.PHONE, "08-123 45 67"),
    "incoming": Incoming("Anna Lindqvist", "nurse", 5),
    "calling": Calling(),
    "in-call": InCall(REMOTE, SELF),
    "trouble": Trouble("no_connection"),
    "message": Message("Kom ihåg att ta dina mediciner klockan 14:00."),
    "enrolling": Enrolling("ABCDE-FGH23", qr_modules("ABCDEFGH23")),
}
MORE_STATES: list[ScreenState] = [
    Incoming("Bo", "someone from elsewhere", None),
    Incoming("Maria Magdalena Johansson-Øhlenschläger", "night_staff", 1),
    # One of the citizen's contacts, with their picture, ringing and counting down.
    Incoming("Anna Andersson", "contact", None, contact=True, picture=SELF),
    Incoming("Maria Magdalena Johansson-Øhlenschläger", "contact", 4, True, REMOTE),
    InCall(None, None),
    Trouble("no_answer"),
    Trouble("no_such_reason"),
    Message("Ett mycket långt meddelande " * 12),
]


# -- catalogs -----------------------------------------------------------------------------------


def test_catalogs_have_identical_keys_and_placeholders() -> None:
    reference = load_messages(REFERENCE)
    for language in LANGUAGES:
        messages = load_messages(language)
        assert messages.keys() == reference.keys(), language
        for key, text in messages.items():
            assert text.strip(), (language, key)
            assert ("{" in text) == ("{" in reference[key]), (language, key)
        assert Catalog(language).keys() == reference.keys()


def test_a_catalog_that_does_not_match_is_refused_at_load(tmp_path: Path) -> None:
    for language in LANGUAGES:
        shutil.copy(MESSAGES / f"{language}.toml", tmp_path)
    da = tmp_path / "da.toml"
    text = da.read_text(encoding="utf-8")
    text = text.replace('hang_up = "Læg på"\n', "").replace("{name} ringer", "{navn} ringer")
    da.write_text(text + '\n[extra]\nword = "ord"\n', encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        Catalog("da", directory=tmp_path)
    message = str(caught.value)
    assert "missing call.hang_up" in message
    assert "unknown extra.word" in message
    assert "incoming.calling uses {navn}, the en catalog {name}" in message
    Catalog("sv", directory=tmp_path)  # the others are fine

    with pytest.raises(CatalogError, match="no message catalog for language 'fi'"):
        Catalog("fi")


def test_catalog_texts() -> None:
    sv = Catalog("sv")
    assert sv.text("incoming.calling", name="Anna") == "Anna ringer"
    assert sv.text("idle.call_staff") == "Ring nattpersonalen"
    assert sv.text("trouble.alarm") == "Vid nödsituation: använd ditt trygghetslarm."
    assert Catalog("da").text("call.hang_up") == "Læg på"
    with pytest.raises(CatalogError, match="no text 'nope' in the sv message catalog"):
        sv.text("nope")
    with pytest.raises(CatalogError, match="needs the parameter 'name'"):
        sv.text("incoming.calling")


# -- layout rules -------------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_layout_is_large_high_contrast_and_clickable(language: str) -> None:
    catalog = Catalog(language)
    for state in [*STATES.values(), *MORE_STATES]:
        layout = describe(state, catalog)
        for spec in layout.texts:
            assert fit_text(spec).size >= MIN_TEXT_PX, (state, spec.text)
            ratio = contrast_ratio(spec.ink, spec.background)
            assert ratio >= 7.0, (state, spec.text, round(ratio, 1))
        targets = buttons(state)
        for button in targets:
            assert any(
                t.background == button.fill and t.box.x > button.rect.x for t in layout.texts
            )
            side = min(button.rect.w, button.rect.h)
            assert side >= 160 >= min_target_px(), (state, button.id)
            assert button.rect.x >= 0 and button.rect.x + button.rect.w <= 1280
            assert button.rect.y >= 0 and button.rect.y + button.rect.h <= 720
            assert hit_test(state, *button.rect.center) == button.id
        for a, b in combinations(targets, 2):
            apart = (a.rect.x + a.rect.w <= b.rect.x or b.rect.x + b.rect.w <= a.rect.x) or (
                a.rect.y + a.rect.h <= b.rect.y or b.rect.y + b.rect.h <= a.rect.y
            )
            assert apart, (state, a.id, b.id)
        assert hit_test(state, 2, 2) is None
    assert min_target_px() == 87  # 15 mm on a 125 mm (10.1") tall 720-line panel


def test_layout_scales_to_a_1080p_tv() -> None:
    state = STATES["incoming"]
    small, large = buttons(state), buttons(state, (1920, 1080))
    for a, b in zip(small, large, strict=True):
        assert (b.rect.w, b.rect.h) == (a.rect.w * 3 // 2, a.rect.h * 3 // 2)
        assert hit_test(state, *b.rect.center, size=(1920, 1080)) == b.id
    assert render(state, Catalog("en"), (1920, 1080)).shape == (1080, 1920, 3)


def test_nordic_letters_render() -> None:
    catalog = Catalog("sv")
    images = {ch: render(Message(ch), catalog) for ch in "aoåäöæøÅÄÖÆØ"}
    box = describe(Message("x"), catalog).texts[0].box
    for ch, image in images.items():
        glyph = image[box.y : box.y + box.h, box.x : box.x + box.w]
        assert (glyph.max(axis=2) > 128).sum() > 200, f"{ch!r} drew nothing"
    for a, b in combinations(images, 2):
        assert not np.array_equal(images[a], images[b]), f"{a!r} and {b!r} look the same"


def test_render_time_per_frame() -> None:
    import cv2  # as on the unit, where the window has loaded it  # noqa: F401

    catalog = Catalog("sv")
    timings: dict[str, float] = {}
    for name, state in [("in-call", STATES["in-call"]), ("idle", Idle())]:
        render(state, catalog)
        runs = []
        for _ in range(30):
            started = time.perf_counter()
            render(InCall(REMOTE, SELF) if name == "in-call" else state, catalog)
            runs.append((time.perf_counter() - started) * 1000)
        timings[name] = statistics.median(runs)
    print(f"render 1280x720, median ms: {timings}")
    assert timings["in-call"] < 20 and timings["idle"] < 20


# -- the headless screen ------------------------------------------------------------------------


async def test_headless_screen_records_and_presses() -> None:
    presses: asyncio.Queue[ButtonId] = asyncio.Queue()
    screen = HeadlessScreen(Catalog("en"), presses.put_nowait)
    with pytest.raises(ValueError, match="no 'answer' button on nothing"):
        screen.press("answer")
    screen.show(STATES["idle"])
    screen.show(STATES["incoming"])
    assert [type(s) for _, s in screen.history] == [Idle, Incoming]
    screen.press(ButtonId.CANCEL_AUTO_ANSWER)
    assert await asyncio.wait_for(presses.get(), 1) is ButtonId.CANCEL_AUTO_ANSWER
    with pytest.raises(ValueError, match="no 'hang_up' button on the Incoming screen"):
        screen.press("hang_up")
    assert screen.image().shape == (720, 1280, 3)
    screen.close()
    screen.close()
    with pytest.raises(ScreenError, match="is closed"):
        screen.show(STATES["idle"])


def test_no_display_is_refused_not_aborted(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = TvScreen(Catalog("en"), print)
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(ScreenError, match="DISPLAY is not set"):
        screen.start()
    monkeypatch.setenv("DISPLAY", ":4711")
    with pytest.raises(ScreenError, match="cannot connect to the X display :4711"):
        screen.start()
    screen.close()


# -- the real window under Xvfb -----------------------------------------------------------------


@dataclass
class Tv:
    screen: TvScreen
    presses: asyncio.Queue[ButtonId]

    async def show(self, state: ScreenState) -> None:
        self.screen.show(state)
        assert await asyncio.to_thread(self.screen.wait_shown, 5.0)

    async def screenshot(self, path: Path) -> np.ndarray:
        """The whole X screen, RGB."""
        await asyncio.to_thread(
            subprocess.run, ["import", "-window", "root", str(path)], check=True
        )
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))

    async def xdotool(self, *args: str) -> None:
        await asyncio.to_thread(subprocess.run, ["xdotool", *args], check=True)

    async def click(self, button: ButtonId) -> ButtonId:
        """Click the middle of ``button``; the press that arrives. Under load Xvfb/Qt now and
        then lose a click outright (no press at all): then it clicks again, a pixel over, and
        drops any late duplicate. What is under test is *which* button a click presses."""
        state = self.screen.state
        assert state is not None
        (x, y) = next(b.rect.center for b in buttons(state) if b.id == button)
        for attempt in range(3):
            await self.xdotool("mousemove", "--sync", str(x + attempt), str(y), "click", "1")
            try:
                pressed = await asyncio.wait_for(self.presses.get(), 2)
            except TimeoutError:
                continue
            if attempt:
                await asyncio.sleep(0.5)
                while not self.presses.empty():
                    assert self.presses.get_nowait() is pressed
            return pressed
        raise AssertionError(f"three clicks on {button} pressed nothing")


@pytest.fixture
async def tv(xdisplay: str) -> AsyncIterator[Tv]:  # noqa: F811
    presses: asyncio.Queue[ButtonId] = asyncio.Queue()
    screen = TvScreen(Catalog("sv"), presses.put_nowait)  # presses come on this test's loop
    await asyncio.to_thread(screen.start)
    try:
        yield Tv(screen, presses)
    finally:
        await asyncio.to_thread(screen.close)
        screen.close()  # safe twice


async def test_every_state_on_screen(tv: Tv, tmp_path: Path) -> None:
    save = os.environ.get("VAKA_UPDATE_SCREENS") == "1"
    for name, state in STATES.items():
        await tv.show(state)
        shot = await tv.screenshot(tmp_path / f"tv-{name}.png")
        assert shot.shape == (720, 1280, 3)
        layout = describe(state, Catalog("sv"))
        for button in layout.buttons:  # the button's face, beside its white frame
            x, y = button.rect.x + 14, button.rect.center[1]
            assert tuple(shot[y, x]) == button.fill, (name, button.id)
        for spec in layout.texts:  # something is written where each text goes
            area = shot[spec.box.y : spec.box.y + spec.box.h, spec.box.x : spec.box.x + spec.box.w]
            inked = (np.abs(area.astype(int) - spec.ink).sum(axis=2) < 60).sum()
            assert inked > 300, (name, spec.text)
        if isinstance(state, InCall):
            assert tuple(shot[360, 640]) == (232, 190, 160)  # the remote picture, scaled up
            own = layout.videos[1].placed()  # the self view, in the bar below the picture
            assert tuple(shot[own.y + 10, own.x + 10]) == (70, 90, 70)
        elif isinstance(state, Trouble):
            assert tuple(shot[4, 640]) == YELLOW and tuple(shot[100, 100]) == BLACK
        if save:
            SCREENS.mkdir(parents=True, exist_ok=True)
            Image.fromarray(shot).save(SCREENS / f"tv-{name}.png", optimize=True)
            assert (SCREENS / f"tv-{name}.png").stat().st_size < 200_000


# Real X events through Xvfb: now and then (about 1 run in 10 here) a click right after a new
# state is shown is lost by the X server/Qt pair; the behaviour under test is which button a
# delivered click presses, so a lost click gets the test run again.
@pytest.mark.flaky(reruns=2)
async def test_clicks_arrive_as_presses(tv: Tv) -> None:
    await tv.show(STATES["incoming"])
    assert await tv.click(ButtonId.ANSWER) is ButtonId.ANSWER
    assert await tv.click(ButtonId.DECLINE) is ButtonId.DECLINE
    assert await tv.click(ButtonId.CANCEL_AUTO_ANSWER) is ButtonId.CANCEL_AUTO_ANSWER
    await tv.show(Incoming("Anna Lindqvist", "nurse", None))  # cancelled: no Cancel button left
    # (xdotool's --sync waits ~15 s for a move to where the pointer already is: always move)
    await tv.xdotool("mousemove", "--sync", "700", "650", "click", "1")
    await tv.show(InCall(REMOTE, SELF))
    assert await tv.click(ButtonId.HANG_UP) is ButtonId.HANG_UP
    await tv.show(STATES["idle"])
    assert await tv.click(ButtonId.CALL_STAFF) is ButtonId.CALL_STAFF
    await tv.show(STATES["message"])
    assert await tv.click(ButtonId.ACKNOWLEDGE) is ButtonId.ACKNOWLEDGE
    # A finger that slides off the button before letting go presses nothing.
    await tv.xdotool("mousemove", "--sync", "600", "600", "mousedown", "1")
    await tv.xdotool("mousemove", "--sync", "600", "300", "mouseup", "1")
    await asyncio.sleep(0.2)
    assert tv.presses.empty()
    assert await tv.click(ButtonId.ACKNOWLEDGE) is ButtonId.ACKNOWLEDGE  # still works
    await tv.show(Trouble())  # no buttons: clicks anywhere do nothing
    await tv.xdotool("mousemove", "--sync", "620", "580", "click", "1")
    await asyncio.sleep(0.2)
    assert tv.presses.empty()


async def test_only_the_newest_frame_is_drawn(tv: Tv, tmp_path: Path) -> None:
    colours = [(i, 255 - i, 40) for i in range(0, 250, 2)]

    def feed() -> None:  # another thread pushing frames as fast as it can
        for colour in colours:
            tv.screen.show(InCall(_picture(640, 480, colour, colour), None))

    thread = threading.Thread(target=feed)
    thread.start()
    await asyncio.to_thread(thread.join)
    await tv.show(InCall(_picture(640, 480, colours[-1], colours[-1]), None))
    shot = await tv.screenshot(tmp_path / "last.png")
    assert tuple(shot[100, 640]) == colours[-1]
    assert tv.screen.frames < len(colours)  # it skipped frames instead of queueing them
    assert tv.screen.render_ms < 50


async def test_the_screen_reads_back_what_it_shows(tv: Tv, tmp_path: Path) -> None:
    display = os.environ["DISPLAY"]
    assert not window_manager_running(display)  # bare Xvfb: no fullscreen asked for
    assert tv.screen.fullscreen is False
    await tv.show(STATES["incoming"])
    pixels = screen_pixels(display, 1280, 720)
    assert pixels is not None
    shot = await tv.screenshot(tmp_path / "incoming.png")
    assert np.array_equal(pixels[..., ::-1], shot)
    assert np.array_equal(pixels, render(STATES["incoming"], Catalog("sv")))
    assert screen_pixels(":4711", 10, 10) is None


# -- words, pressable buttons, the caller's face, day and night, enrolment -------------

WITH_BUTTONS: list[ScreenState] = [
    Idle(datetime(2025, 3, 3, 23, 5)),
    Idle(datetime(2025, 3, 3, 14, 5), StaffReach.DAY, "08-123 45 67"),
    Incoming("Anna Lindqvist", "nurse", 5),
    Calling(),
    InCall(REMOTE, SELF),
    Message("Kom ihåg att ta dina mediciner klockan 14:00."),
]
NOT_NOW = {"sv": "Inte nu", "da": "Ikke nu", "en": "Not now"}


def _luminance_contrast(a: np.ndarray, b: np.ndarray) -> float:
    return contrast_ratio(tuple(int(v) for v in a), tuple(int(v) for v in b))  # type: ignore[arg-type]


@pytest.mark.parametrize("language", ["sv", "da"])
async def test_not_now_and_every_button_looks_pressable(
    tv: Tv, tmp_path: Path, language: str
) -> None:
    catalog = Catalog(language)
    tv.screen.catalog = catalog
    for state in WITH_BUTTONS:
        await tv.show(state)
        shot = await tv.screenshot(tmp_path / "shot.png")
        # What is on the X screen is exactly what the layout drew, labels included.
        assert np.array_equal(shot, render(state, catalog)[..., ::-1]), state
        layout = describe(state, catalog)
        background = shot[2, 2]
        assert tuple(background) == layout.background
        for button in layout.buttons:
            r = button.rect
            face = shot[button.face.center[1], r.x + 14]
            edge = shot[r.y + r.h - button.edge // 2 - 2, r.center[0]]
            frame = shot[r.y + 1, r.center[0]]
            # A filled face that stands out from the screen (WCAG's 4.5:1 and more), not grey.
            ratio = _luminance_contrast(face, background)
            print(f"{language} {type(state).__name__} {button.id}: face/screen {ratio:.1f}:1")
            assert ratio >= 4.5, (state, button.id, ratio)
            assert int(face.max()) - int(face.min()) >= 100, (button.id, "a grey face")
            # A darker raised edge below the face, and a white frame round the key.
            assert tuple(edge) == tuple(round(c * EDGE_SHADE) for c in button.fill), button.id
            assert tuple(frame) == WHITE, button.id
            # The label is written on the face, black on a light colour.
            label = next(t for t in layout.texts if t.background == button.fill)
            assert label.text == catalog.text(button.label_key)
            assert contrast_ratio(label.ink, button.fill) >= 7.0
    incoming = describe(Incoming("Anna", "nurse", 5), catalog)
    cancel = next(b for b in incoming.buttons if b.id is ButtonId.CANCEL_AUTO_ANSWER)
    assert catalog.text(cancel.label_key) == NOT_NOW[language]
    assert "Vänta" not in catalog.text(cancel.label_key)


WIDE_REMOTE = _picture(1280, 720, (96, 140, 176), (232, 190, 160))


@pytest.mark.parametrize("language", ["sv", "da"])
async def test_the_hang_up_button_leaves_the_callers_face_free(
    tv: Tv, tmp_path: Path, language: str
) -> None:
    catalog = Catalog(language)
    tv.screen.catalog = catalog
    for remote in (REMOTE, WIDE_REMOTE):  # a 4:3 camera and a 16:9 one
        state = InCall(remote, SELF)
        await tv.show(state)
        shot = await tv.screenshot(tmp_path / "call.png")
        layout = describe(state, catalog)
        picture = layout.videos[0].placed()
        face = face_region(picture)
        # The synthetic pattern's face is centred at (w/2, h/2.3) of the picture: in the region.
        cx = picture.x + round(picture.w / 2)
        cy = picture.y + round(picture.h / 2.3)
        assert face.contains(cx, cy)
        for button in layout.buttons:
            assert not button.rect.overlaps(face), (button.id, button.rect, face)
            assert not button.rect.overlaps(picture), (button.id, "covers the picture")
        for other in layout.videos[1:]:  # nor does the unit's own picture
            assert not other.rect.overlaps(face)
        # On the screen: the face region holds only the caller's picture, the face at its centre.
        area = shot[face.y : face.y + face.h, face.x : face.x + face.w].astype(int)
        assert tuple(shot[cy, cx]) == (232, 190, 160)
        back, skin = np.array((96, 140, 176)), np.array((232, 190, 160))
        # every pixel is on the line between the two colours (the scaled pattern's edge blends)
        t = ((area - back) @ (skin - back)) / float((skin - back) @ (skin - back))
        off = np.abs(area - (back + t[..., None] * (skin - back))).max()
        assert off <= 3, f"something else is drawn over the face ({off})"
        hang_up = next(b for b in layout.buttons if b.id is ButtonId.HANG_UP)
        assert tuple(shot[hang_up.face.center[1], hang_up.rect.x + 14]) == hang_up.fill
        assert hit_test(state, *hang_up.rect.center) is ButtonId.HANG_UP
        assert hit_test(state, cx, cy) is None


@pytest.mark.parametrize("language", ["sv", "da"])
async def test_the_staff_button_follows_the_night_hours(
    tv: Tv, tmp_path: Path, language: str
) -> None:
    from vaka.agent.tv.staff_hours import StaffHours

    catalog = Catalog(language)
    tv.screen.catalog = catalog
    stockholm = ZoneInfo("Europe/Stockholm")
    hours = StaffHours(dt_time(21, 0), dt_time(7, 0), stockholm, True, "08-123 45 67")
    phone_only = StaffHours(dt_time(21, 0), dt_time(7, 0), stockholm, False, "08-123 45 67")
    expected = {"sv": ("Ring nattpersonalen", "Ring personalen", "Hemtjänsten: 08-123 45 67",
                       "Ring hemtjänsten: 08-123 45 67"),
                "da": ("Ring til nattevagten", "Ring til personalet", "Hjemmeplejen: 08-123 45 67",
                       "Ring til hjemmeplejen: 08-123 45 67")}[language]  # fmt: skip
    night_label, day_label, day_line, phone_line = expected
    cases = [  # local time in Stockholm (winter, UTC+1): what the screen offers
        ("20:59", hours, day_label, day_line),
        ("21:00", hours, night_label, None),
        ("03:00", hours, night_label, None),
        ("06:59", hours, night_label, None),
        ("07:00", hours, day_label, day_line),
        ("12:00", phone_only, None, phone_line),
        ("23:00", phone_only, night_label, None),
    ]
    for at, staff, label, line in cases:
        hh, mm = map(int, at.split(":"))
        frozen = datetime(2025, 1, 15, hh, mm, tzinfo=stockholm).timestamp()
        state = Idle(staff.local(frozen), staff.reach(frozen), staff.day_phone)
        await tv.show(state)
        shot = await tv.screenshot(tmp_path / "idle.png")
        assert np.array_equal(shot, render(state, catalog)[..., ::-1]), at
        layout = describe(state, catalog)
        assert layout.texts[0].text == at
        labels = [catalog.text(b.label_key) for b in layout.buttons]
        assert labels == ([label] if label else []), at
        if label:
            (button,) = layout.buttons
            assert tuple(shot[button.face.center[1], button.rect.x + 14]) == YELLOW
        texts = [t.text for t in layout.texts]
        assert (line in texts) if line else not any("08-123" in t for t in texts), (at, texts)
        if label is None:  # no button: clicks anywhere do nothing
            assert not buttons(state)
    no_number = Idle(datetime(2025, 1, 15, 12, 0), StaffReach.PHONE, None)
    await tv.show(no_number)
    texts = [t.text for t in describe(no_number, catalog).texts]
    assert catalog.text("idle.no_day_phone") in texts


@pytest.mark.parametrize("language", ["sv", "da"])
async def test_the_enrolment_code_is_on_the_tv(tv: Tv, tmp_path: Path, language: str) -> None:
    import cv2

    catalog = Catalog(language)
    tv.screen.catalog = catalog
    code = "ABCDEFGH23"
    state = Enrolling(display_code(code), qr_modules(code))
    await tv.show(state)
    shot = await tv.screenshot(tmp_path / f"tv-enrolling-{language}.png")
    assert np.array_equal(shot, render(state, catalog)[..., ::-1])
    layout = describe(state, catalog)
    texts = {t.text: t for t in layout.texts}
    assert catalog.text("enrolling.title") in texts
    assert catalog.text("enrolling.hint") in texts
    shown = texts["ABCDE-FGH23"]
    # Large: the biggest text on the screen, 80 px and more of 720 lines.
    assert fit_text(shown).size == max(fit_text(t).size for t in layout.texts) >= 80
    area = shot[shown.box.y : shown.box.y + shown.box.h, shown.box.x : shown.box.x + shown.box.w]
    assert (np.abs(area.astype(int) - YELLOW).sum(axis=2) < 60).sum() > 3000
    # A phone's camera reads the QR code off the screen.
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(shot[..., ::-1].copy())
    assert text == f"VAKA-ENROL:{code}"
    assert not buttons(state)
