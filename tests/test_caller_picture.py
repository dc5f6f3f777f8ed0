"""A contact's picture on its way to the TV, and the citizen's "do not disturb", in memory:
central's thumbnail is small and square; the signed token passes only for its own unit, while
fresh, and as its own kind; the unit keeps a few calls' pictures in memory and refuses a bad
one with a reason; do not disturb lasts until the next morning and refuses contacts only."""

import base64
import datetime as dt
import io
import logging
import time

import pytest
from joserfc.jwk import OKPKey
from PIL import Image

from tests.circle import picture
from vaka.agent.tv.caller_pictures import KEPT, CallerPictures
from vaka.agent.tv.quiet import DoNotDisturb
from vaka.central.circle.calls import THUMBNAIL_PX, thumbnail
from vaka.protocol.refusals import Refusals
from vaka.provisioning.caller_picture import (
    MAX_JPEG_BYTES,
    BadCallerPicture,
    CallerPicture,
    is_caller_picture,
    sign_caller_picture,
    verify_caller_picture,
)
from vaka.provisioning.tickets import new_ticket_key
from vaka.provisioning.viewing_log import ViewingLog, is_viewing_log, sign_viewing_log

UNIT = "u-tv"


@pytest.fixture(scope="module")
def key() -> OKPKey:
    return new_ticket_key()


def _noisy_picture() -> str:
    """A large photo-like picture (noise compresses badly) as a PNG data: URL."""
    out = io.BytesIO()
    Image.effect_noise((600, 400), 80).convert("RGB").save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def _token(key: OKPKey, call_id: str = "call-1", unit: str = UNIT, age_s: int = 0) -> str:
    jpeg = thumbnail(picture())
    now = int(time.time()) - age_s
    claims = CallerPicture(
        unit=unit, cid=call_id, jpeg=base64.b64encode(jpeg).decode(), iat=now, exp=now + 300
    )
    return sign_caller_picture(claims, key)


def test_the_thumbnail_is_small_and_square() -> None:
    for data_url in (picture(), _noisy_picture()):
        jpeg = thumbnail(data_url)
        assert len(jpeg) <= MAX_JPEG_BYTES
        with Image.open(io.BytesIO(jpeg)) as image:
            assert image.format == "JPEG" and image.size == (THUMBNAIL_PX, THUMBNAIL_PX)


def test_a_caller_picture_passes_only_for_its_unit_fresh_and_as_its_kind(key: OKPKey) -> None:
    token = _token(key)
    assert is_caller_picture(token) and not is_viewing_log(token)
    assert verify_caller_picture(token, key, UNIT).cid == "call-1"
    with pytest.raises(BadCallerPicture, match=r"is for unit u-other, not this unit \(u-tv\)"):
        verify_caller_picture(_token(key, unit="u-other"), key, UNIT)
    with pytest.raises(BadCallerPicture, match="caller picture expired"):
        verify_caller_picture(_token(key, age_s=3600), key, UNIT)
    with pytest.raises(BadCallerPicture):
        verify_caller_picture(token, new_ticket_key(), UNIT)  # another key
    now = int(time.time())
    other_kind = sign_viewing_log(
        ViewingLog(unit=UNIT, since=now - 60, iat=now, exp=now + 60, entries=[]), key
    )
    assert not is_caller_picture(other_kind)
    with pytest.raises(BadCallerPicture, match="not a caller picture"):
        verify_caller_picture(other_kind, key, UNIT)


def test_the_unit_keeps_a_few_pictures_and_refuses_a_bad_one(
    key: OKPKey, caplog: pytest.LogCaptureFixture
) -> None:
    refusals = Refusals(logging.getLogger("test"))
    pictures = CallerPictures(UNIT, key, refusals)
    came: list[str] = []
    pictures.on_picture = came.append
    for n in range(KEPT + 1):
        pictures.handle(_token(key, f"call-{n}"))
    assert came == [f"call-{n}" for n in range(KEPT + 1)]
    assert pictures.get("call-0") is None  # the oldest went
    image = pictures.get(f"call-{KEPT}")
    assert image is not None and image.shape == (THUMBNAIL_PX, THUMBNAIL_PX, 3)
    pictures.forget(f"call-{KEPT}")
    assert pictures.get(f"call-{KEPT}") is None
    with caplog.at_level(logging.WARNING):
        pictures.handle(_token(key, "call-x", unit="u-other"))
    assert pictures.get("call-x") is None and came[-1] != "call-x"
    assert "is for unit u-other" in caplog.text
    assert refusals.by_category["bad caller picture"] == 1


def test_do_not_disturb_lasts_until_the_morning_and_refuses_contacts_only() -> None:
    zone = dt.timezone(dt.timedelta(hours=1))
    quiet = DoNotDisturb("07:00")
    evening = dt.datetime(2026, 12, 4, 19, 30, tzinfo=zone)
    until = quiet.start(evening)
    assert dt.datetime.fromtimestamp(until, zone) == dt.datetime(2026, 12, 5, 7, 0, tzinfo=zone)
    now = evening.timestamp()
    assert quiet.refuses("contact_call", now)
    assert not quiet.refuses("video_visit", now) and not quiet.refuses("citizen_call", now)
    assert not quiet.refuses("contact_call", until + 1) and quiet.until is None
    # Set after midnight it ends the same morning; a configured hour is kept.
    late = DoNotDisturb("08:30")
    night = dt.datetime(2026, 12, 5, 1, 15, tzinfo=zone)
    end = dt.datetime.fromtimestamp(late.start(night), zone)
    assert end == dt.datetime(2026, 12, 5, 8, 30, tzinfo=zone)
    late.stop()
    assert not late.refuses("contact_call", night.timestamp())
