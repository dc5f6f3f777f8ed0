"""The night check's scene estimate (docs/privacy.md): made on the unit from the camera's frames
while the picture is blurred, sent to the staff side with the view level, and kept in the
call's ``call_ended`` audit entry (the last estimate, never a picture).

The estimator on synthetic arrays, then on the real stack (broker, central, an agent on the
synthetic camera, a staff client over aiortc): the moving pattern gives ``movement: yes``, the
pattern frozen on one frame (``[media] source = "still"``) ``no`` after the warm-up.
"""

import asyncio
import re
from typing import Any

import numpy as np
import pytest

from tests.conftest import TOTP_SECRET
from tests.nightcheck import PASSWORD, UNIT, load_directory, running_agent
from vaka.agent.media.estimate import WARM_UP_S, WINDOW_S, Estimate, SceneEstimator
from vaka.agent.media.settings import MediaSettings, make_source
from vaka.central.http.fleet import CONSOLE_DIR
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.errors import ConfigError
from vaka.staff.client import StaffCall, StaffClient

#: the pattern's code blocks (they change with every frame): the bottom quarter of the picture
CODE_AREA = [0.0, 0.7, 1.0, 0.3]


def room(*, spot: tuple[int, int] | None = None, light: int = 0) -> Any:
    """A 320x240 "room": a textured grey scene, with a bright square at ``spot`` (x, y)."""
    rng = np.random.default_rng(7)
    tiles = rng.integers(40, 160, size=(12, 16)).astype(np.int16)  # furniture, walls, a bed
    image = np.clip(np.kron(tiles, np.ones((20, 20), dtype=np.int16)) + light, 0, 255)
    image = image.astype(np.uint8)
    if spot is not None:
        x, y = spot
        image[y : y + 30, x : x + 30] = 250
    return np.dstack([image, image, image])


def feed(estimator: SceneEstimator, frames: list[Any], start: float = 0.0) -> list[Estimate]:
    """Each frame 0.2 s after the one before (the watch's sampling rate)."""
    return [estimator.feed(frame, start + i * 0.2) for i, frame in enumerate(frames)]


def test_a_still_scene_is_no_movement_after_the_warm_up() -> None:
    estimator = SceneEstimator()
    seen = feed(estimator, [room()] * 25)
    warm = round(WARM_UP_S / 0.2)
    assert {e.movement for e in seen[:warm]} == {"unsure"}
    assert {e.movement for e in seen[warm:]} == {"no"}
    assert {e.person_in_bed for e in seen} == {"unsure"}  # no bed region: never a guess


def test_movement_is_yes_and_fades_back_to_no() -> None:
    estimator = SceneEstimator()
    moving = [room(spot=(20 + 10 * i, 40)) for i in range(10)]
    seen = feed(estimator, moving)
    assert seen[0].movement == "unsure" and {e.movement for e in seen[1:]} == {"yes"}
    after = feed(estimator, [moving[-1]] * 30, start=2.0)
    still_for = [2.0 + i * 0.2 - 1.8 for i in range(30)]  # since the last movement
    assert [e.movement for e in after] == ["yes" if s <= WINDOW_S else "no" for s in still_for]


def test_too_dark_or_uniform_is_unsure_and_a_change_of_light_is_no_movement() -> None:
    estimator = SceneEstimator()
    dark = np.full((240, 320, 3), 5, dtype=np.uint8)
    grey = np.full((240, 320, 3), 128, dtype=np.uint8)
    assert {e.movement for e in feed(estimator, [dark] * 30 + [grey] * 30)} == {"unsure"}
    seen = feed(estimator, [room()] * 20, start=20.0)
    assert seen[-1].movement == "no"
    # The IR light comes on: everything brighter at once. Not movement: the warm-up again.
    lit = feed(estimator, [room(light=60)] * 20, start=30.0)
    assert lit[0].movement == "unsure" and lit[-1].movement == "no"
    assert "yes" not in {e.movement for e in lit}


def test_person_in_bed_follows_where_movement_was_last_seen() -> None:
    bed = (0.5, 0.0, 0.5, 1.0)  # the right half of the picture
    estimator = SceneEstimator(bed)
    assert {e.person_in_bed for e in feed(estimator, [room()] * 20)} == {"unsure"}
    turning = [room(spot=(200 + 5 * (i % 2), 100)) for i in range(6)]
    seen = feed(estimator, turning, start=10.0)
    assert seen[-1] == Estimate("yes", "yes")
    # Lying still again: no movement, still in bed (nobody leaves a bed without moving).
    lying = feed(estimator, [turning[-1]] * 30, start=20.0)
    assert lying[-1] == Estimate("no", "yes")
    # Up and walking on the left side of the room: not in bed.
    walking = [room(spot=(20 + 12 * i, 150)) for i in range(8)]
    assert feed(estimator, walking, start=30.0)[-1] == Estimate("yes", "no")


def test_the_synthetic_pattern_moves_and_the_still_source_does_not() -> None:
    for source, expected in (("synthetic", "yes"), ("still", "no")):
        settings = MediaSettings.model_validate(
            {"source": source, "width": 320, "height": 240, "fps": 15}
        )
        estimator = SceneEstimator((0.0, 0.7, 1.0, 0.3))
        with make_source(settings) as camera:
            frames = [camera.read().image for _ in range(25)]
        seen = feed(estimator, frames)
        assert seen[-1].movement == expected, (source, seen[-1])
        assert seen[-1].person_in_bed == ("yes" if expected == "yes" else "unsure")


def test_a_bed_region_outside_the_picture_is_refused() -> None:
    from vaka.agent.config import parse_config

    base = {"unit": {"id": "u-1", "profile": "nightcam"}, "broker": {"host": "h"}}
    for region, words in (
        ([0.5, 0.5, 0.6, 0.2], "bed_region reaches outside the picture"),
        ([0.1, 0.1, 0.0, 0.5], "bed_region needs a width and a height above 0"),
        ([-0.1, 0.1, 0.5, 0.5], "bed_region is left, top, width, height as fractions"),
    ):
        with pytest.raises(ConfigError, match=re.escape(words)):
            parse_config({**base, "media": {"bed_region": region}})
    assert MediaSettings(bed_region=(0.1, 0.2, 0.5, 0.5)).bed_region == (0.1, 0.2, 0.5, 0.5)


def test_the_console_says_the_estimate_in_all_three_languages() -> None:
    keys = ("label", "movement", "in_bed", "yes", "no", "unsure")
    catalogs = {}
    for lang in ("sv", "da", "en"):
        text = (CONSOLE_DIR / "i18n" / f"{lang}.js").read_text()
        catalogs[lang] = dict(re.findall(r'^\s*"(estimate\.[a-z_]+)": "([^"]*)",', text, re.M))
        assert set(catalogs[lang]) == {f"estimate.{k}" for k in keys}, lang
    assert catalogs["en"]["estimate.movement"] == "Movement: {value}"
    assert catalogs["sv"]["estimate.in_bed"] == "Person i sängen: {value}"
    assert catalogs["da"]["estimate.in_bed"] == "Person i sengen: {value}"
    for lang in ("sv", "da"):
        assert all(catalogs[lang][k] != catalogs["en"][k] for k in catalogs["en"]), lang


# ---------------------------------------------------------------- on the real stack


async def _estimate(call: StaffCall, movement: str, timeout: float = 15) -> dict[str, Any]:
    def said() -> bool:
        return call.estimate is not None and call.estimate["movement"] == movement

    await wait_for(said, timeout, what=f"the unit's estimate says movement: {movement}")
    assert call.estimate is not None
    return call.estimate


async def _ended(central: CentralService, call_id: str) -> Any:
    def entry() -> Any:
        found = [e for e in central.audit.entries(kind="call_ended") if e.call_id == call_id]
        return found[0] if found else None

    await wait_for(lambda: asyncio.to_thread(entry), 10, what="call_ended in the audit trail")
    return await asyncio.to_thread(entry)


@pytest.mark.parametrize(
    ("source", "movement", "in_bed"), [("synthetic", "yes", "yes"), ("still", "no", "unsure")]
)
async def test_the_estimate_goes_beside_the_blurred_view_and_into_the_audit_entry(
    broker: Broker, central: CentralService, source: str, movement: str, in_bed: str
) -> None:
    await load_directory(central, night_view="escalate")
    unit = running_agent(broker, UNIT, source=source, bed_region=CODE_AREA)
    async with unit, StaffClient(central.url) as staff:
        await staff.login("s-nurse", PASSWORD, totp_secret=TOTP_SECRET)
        call = await staff.dial(UNIT, "night_check")
        said = await _estimate(call, movement)
        assert said == {
            "type": "estimate",
            "call_id": call.call_id,
            "level": "blurred",
            "movement": movement,
            "person_in_bed": in_bed,
        }
        await call.hangup()
    ended = await _ended(central, call.call_id)
    assert ended.detail["estimate_movement"] == movement
    assert ended.detail["estimate_person_in_bed"] == in_bed
    assert (await asyncio.to_thread(central.audit.verify)).ok
