"""The privacy screens keep the TV's layout rules in every language: text at least 48 px, touch
targets at least 160 px, 7:1 contrast, nothing overlapping, every button hit where it is drawn;
and the unit's own privacy mode refuses the calls it blocks, with its words, and ends by itself.
(The window and the whole stack: tests/test_tv_privacy.py, tests/test_privacy_mode.py.)"""

import asyncio
import time
from datetime import datetime
from itertools import combinations

import pytest

from vaka.agent.privacy_mode import PrivacyMode
from vaka.agent.ui import (
    LANGUAGES,
    Catalog,
    Idle,
    PrivacyChoice,
    PrivacyOn,
    ScreenState,
    StaffReach,
    ViewingLogShown,
)
from vaka.agent.ui.drawing import fit_text
from vaka.agent.ui.layout import MIN_TEXT_PX, buttons, describe, hit_test, render
from vaka.agent.ui.privacy_layout import entry_lines
from vaka.agent.ui.spec import contrast_ratio
from vaka.protocol.messages import EventMessage

NIGHT = ("night_staff", "23:10", 20)
STATES: list[ScreenState] = [
    Idle(datetime(2025, 3, 3, 22, 5), privacy=True),
    Idle(datetime(2025, 3, 3, 14, 5), StaffReach.DAY, None, privacy=True),
    Idle(datetime(2025, 3, 3, 14, 5), StaffReach.DAY, "08-123 45 67", privacy=True),
    Idle(datetime(2025, 3, 3, 14, 5), StaffReach.PHONE, "08-123 45 67", privacy=True),
    PrivacyChoice(60),
    PrivacyOn("visitors", "23:40"),
    PrivacyOn("away", "23:40", StaffReach.DAY),
    PrivacyOn("away", "23:40", StaffReach.PHONE),
    ViewingLogShown(None),
    ViewingLogShown(None, failed=True),
    ViewingLogShown(()),
    ViewingLogShown((NIGHT, ("nurse", "02:15", 45))),
    ViewingLogShown((NIGHT,) * 9),
]


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_privacy_screens_are_large_high_contrast_and_clickable(language: str) -> None:
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
            assert hit_test(state, *button.rect.center) == button.id
        for a, b in combinations(targets, 2):
            assert not a.rect.overlaps(b.rect), (state, a.id, b.id)
        assert render(state, catalog).shape == (720, 1280, 3)


def test_the_viewing_log_says_role_time_and_length_and_how_many_are_left_out() -> None:
    catalog = Catalog("en")
    assert entry_lines(ViewingLogShown((NIGHT,)), catalog) == ["Night staff, 23:10, 20 s"]
    sv = Catalog("sv")
    assert entry_lines(ViewingLogShown((NIGHT,)), sv) == ["Nattpersonal, 23:10, 20 s"]
    texts = [t.text for t in describe(ViewingLogShown((NIGHT,) * 9), catalog).texts]
    assert texts[1] == "and 5 earlier" and texts[2:6] == ["Night staff, 23:10, 20 s"] * 4


async def test_the_units_privacy_mode_refuses_what_it_blocks_and_ends_by_itself() -> None:
    sent: list[EventMessage] = []

    async def publish(message: EventMessage) -> None:
        sent.append(message)

    mode = PrivacyMode(publish, duration_min=0.01)  # 0.6 s
    state = await mode.start("away")
    until = time.strftime("%H:%M", time.localtime(state.until))
    assert mode.refusal("night_check") == f"privacy mode: the citizen is away until {until}"
    assert mode.refusal("video_visit") is not None
    assert mode.refusal("break_glass") is None  # an emergency, with its own audited reason
    assert mode.refusal("citizen_call") is None  # the citizen's own call
    async with asyncio.timeout(5):
        while mode.state is not None:
            await asyncio.sleep(0.05)
    assert mode.refusal("night_check") is None
    actions = [(m.payload.detail["action"], m.payload.detail.get("reason")) for m in sent]
    assert actions == [("started", None), ("ended", "time is up")]
