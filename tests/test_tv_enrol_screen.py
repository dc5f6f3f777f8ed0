"""A new TV unit shows its enrolment code on the TV, large and as a QR code, until a technician
approves it; then the enrolment screen goes away.

A real generic unit (claim identity, no certificate) enrols against the real broker and central,
its window on a private Xvfb. Runs in a pytest process of its own (``make test`` does that), like
the other window tests: OpenCV's Qt window binds the process to one X display.
"""

import asyncio
import subprocess
from pathlib import Path

import cv2  # OpenCV's libraries before PyAV's (vaka/agent/gui_preload.py)
import numpy as np
import pytest

from tests.test_enrolment import generic_config, pending_code, technician
from tests.tvunit import CITIZEN, tv_directory
from tests.xserver import screenshot, xdisplay  # noqa: F401 - xdisplay is a fixture
from vaka.agent.config import parse_config
from vaka.agent.enrol import qr_modules
from vaka.agent.identity import resolve_identity
from vaka.agent.ui import Catalog, Enrolling, render
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.protocol.enrolment import display_code

pytestmark = pytest.mark.timeout(120)

WORDS = {
    "sv": ("Den här enheten är inte klar än.", "Teknikern behöver koden:"),
    "da": ("Denne enhed er ikke klar endnu.", "Teknikeren skal bruge koden:"),
}


def _window_open() -> bool:
    found = subprocess.run(
        ["xdotool", "search", "--onlyvisible", "--name", "^Vaka$"], capture_output=True
    )
    return found.returncode == 0 and bool(found.stdout.strip())


@pytest.mark.parametrize("language", ["sv", "da"])
async def test_a_new_tv_shows_its_code_until_it_is_approved(
    broker: Broker,
    central: CentralService,
    tmp_path: Path,
    xdisplay: str,  # noqa: F811
    language: str,
) -> None:
    config = generic_config(broker, tmp_path / "creds")
    config["unit"]["profile"] = "tv"
    config["tv"] = {"screen": "window", "language": language}
    enrolling = asyncio.create_task(resolve_identity(parse_config(config)))
    try:
        code = await pending_code(central)
        catalog = Catalog(language)
        state = Enrolling(display_code(code), qr_modules(code))
        title, hint = WORDS[language]
        assert (catalog.text("enrolling.title"), catalog.text("enrolling.hint")) == (title, hint)
        expected = render(state, catalog)[..., ::-1]
        shot_path = tmp_path / "enrolling.png"

        async def on_screen() -> bool:
            shot = await asyncio.to_thread(screenshot, shot_path)
            return bool(np.array_equal(shot, expected))

        # The TV shows exactly the enrolment screen of the code central is waiting for ...
        await wait_for(on_screen, 15, what="the enrolment code on the TV")
        assert await asyncio.to_thread(_window_open)
        shot = await asyncio.to_thread(screenshot, shot_path)
        # ... and a phone's camera reads the same code off the screen.
        text, _, _ = cv2.QRCodeDetector().detectAndDecode(shot[..., ::-1].copy())
        assert text == f"VAKA-ENROL:{code}"

        http = await technician(central)
        await asyncio.to_thread(central.directory.load, tv_directory())
        async with http:
            body = {"profile": "tv", "citizen": CITIZEN, "group": "g-night"}
            async with http.post(f"/api/enrolments/{display_code(code)}/approve", json=body) as r:
                assert r.status == 200, await r.text()
        resolved = await asyncio.wait_for(enrolling, 30)
        assert resolved.unit.id == f"u-{code.lower()}"
        # Enrolled: the enrolment screen is gone (the agent opens its own screen next).
        assert not await asyncio.to_thread(_window_open)
        assert not await on_screen()
    finally:
        enrolling.cancel()
