"""The People screen and the idle screen that offers it keep the TV's layout rules in every
language: text at least 48 px, touch targets at least 160 px, 7:1 contrast, nothing overlapping,
every button hit where it is drawn, each person's picture on their own button. (The whole
stack: tests/test_tv_people.py.)"""

import os
from datetime import datetime
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np
import pytest

from vaka.agent.ui import (
    LANGUAGES,
    ButtonId,
    Calling,
    Catalog,
    Idle,
    PeopleShown,
    ScreenState,
    StaffReach,
    Trouble,
)
from vaka.agent.ui.drawing import fit_text
from vaka.agent.ui.layout import MIN_TEXT_PX, buttons, describe, hit_test, render
from vaka.agent.ui.spec import contrast_ratio
from vaka.agent.ui.states import PERSON_BUTTONS

#: ``VAKA_SCREENS=docs/screens`` keeps the screens for the docs
SCREENS = os.environ.get("VAKA_SCREENS")


def face(bgr: tuple[int, int, int]) -> np.ndarray:
    """A 128 x 128 picture of one colour (a person's thumbnail)."""
    return np.full((128, 128, 3), bgr, np.uint8)


PEOPLE = tuple(
    (name, face(bgr))
    for name, bgr in (
        ("Anna Andersson", (40, 90, 200)),
        ("Bo", (160, 110, 40)),
        ("Cecilia", (60, 150, 60)),
    )
)
SIX = tuple((f"Person {i} Lindqvist-Åberg", face((10 * i, 80, 160))) for i in range(6))
STATES: list[ScreenState] = [
    Idle(datetime(2025, 3, 3, 22, 5), people=True),
    Idle(datetime(2025, 3, 3, 14, 5), StaffReach.DAY, None, people=True),
    Idle(datetime(2025, 3, 3, 14, 5), StaffReach.DAY, "08-123 45 67", people=True),
    Idle(datetime(2025, 3, 3, 14, 5), StaffReach.PHONE, "08-123 45 67", people=True),
    Idle(datetime(2025, 3, 3, 22, 5), privacy=True, people=True),
    Idle(datetime(2025, 3, 3, 14, 5), StaffReach.DAY, "08-123 45 67", True, True),
    Idle(datetime(2025, 3, 3, 14, 5), StaffReach.PHONE, None, True, True),
    PeopleShown(None),
    PeopleShown(None, failed=True),
    PeopleShown(()),
    PeopleShown(PEOPLE),
    PeopleShown((("Dora", None),)),
    PeopleShown(SIX),
    Calling(callee="Anna Andersson"),
    Trouble("unavailable", name="Anna Andersson"),
]


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_people_screens_are_large_high_contrast_and_clickable(language: str) -> None:
    catalog = Catalog(language)
    for state in STATES:
        layout = describe(state, catalog)
        targets = buttons(state)
        for spec in layout.texts:
            assert fit_text(spec).size >= MIN_TEXT_PX, (state, spec.text)
            assert contrast_ratio(spec.ink, spec.background) >= 7.0, (state, spec.text)
            for button in targets:  # a text beside a button never runs into it
                if spec.background != button.fill:
                    assert not spec.box.overlaps(button.rect), (state, spec.text, button.id)
        for button in targets:
            assert min(button.rect.w, button.rect.h) >= 160, (state, button.id)
            assert button.rect.x >= 0 and button.rect.x + button.rect.w <= 1280
            assert button.rect.y >= 0 and button.rect.y + button.rect.h <= 720
            assert hit_test(state, *button.rect.center) == button.id
        for a, b in combinations(targets, 2):
            assert not a.rect.overlaps(b.rect), (state, a.id, b.id)
        assert render(state, catalog).shape == (720, 1280, 3)


def test_each_person_is_one_button_with_their_picture_and_name_on_it() -> None:
    catalog = Catalog("en")
    state = PeopleShown(PEOPLE)
    layout = describe(state, catalog)
    persons = [b for b in buttons(state) if b.id in PERSON_BUTTONS]
    assert [b.id for b in persons] == list(PERSON_BUTTONS[:3])
    assert len(layout.videos) == 3
    for button, video, (name, _picture) in zip(persons, layout.videos, PEOPLE, strict=True):
        assert video.above and button.rect.contains(*video.rect.center)
        names = [t for t in layout.texts if t.text == name]
        assert len(names) == 1 and button.rect.contains(*names[0].box.center)
    # The picture is drawn over the button's face, not hidden under it.
    picture = render(state, catalog)
    x, y = layout.videos[0].placed().center
    assert tuple(int(v) for v in picture[y, x]) == (40, 90, 200)
    texts = [t.text for t in layout.texts]
    assert "Who do you want to call?" in texts and "Back" in texts


def test_the_words_a_frail_citizen_reads_in_swedish_danish_and_english() -> None:
    said = {
        lang: [t.text for t in describe(Trouble("unavailable", name="Anna"), Catalog(lang)).texts]
        for lang in LANGUAGES
    }
    assert said["en"][0] == "Anna is not available right now."
    assert said["sv"][0] == "Anna kan inte svara just nu."
    assert said["da"][0] == "Anna kan ikke svare lige nu."
    calling = describe(Calling(callee="Anna"), Catalog("sv")).texts[0].text
    assert calling == "Ringer Anna …"
    idle = [t.text for t in describe(STATES[0], Catalog("da")).texts]
    assert "Mine nærmeste" in idle
    assert hit_test(STATES[0], *buttons(STATES[0])[1].rect.center) is ButtonId.PEOPLE


def test_the_people_screens_for_the_docs(tmp_path: Path) -> None:
    """The idle screen with People and the People screen, in Swedish (``VAKA_SCREENS`` keeps
    them for the docs)."""
    folder = Path(SCREENS) if SCREENS else tmp_path
    sv = Catalog("sv")
    for name, state in (("tv-idle-people-sv", STATES[4]), ("tv-people-sv", PeopleShown(PEOPLE))):
        picture = render(state, sv)
        assert picture.shape == (720, 1280, 3)
        assert cv2.imwrite(str(folder / f"{name}.png"), picture)
