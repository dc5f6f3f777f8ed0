"""The agent loads OpenCV before PyAV exactly when its TV screen opens a window."""

import subprocess
import sys
from pathlib import Path

import pytest

from vaka.agent.gui_preload import needs_window


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[unit]\nprofile = "tv"\n', True),
        ('[unit]\nprofile = "tv"\n[tv]\nscreen = "window"\n', True),
        ('[unit]\nprofile = "tv"\n[tv]\nscreen = "headless"\n', False),
        ('[unit]\nprofile = "nightcam"\n', False),
        ("not toml [", False),
    ],
)
def test_needs_window(tmp_path: Path, text: str, expected: bool) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    assert needs_window(path) is expected
    assert needs_window(tmp_path / "missing.toml") is False


def test_the_agent_entry_point_loads_opencv_before_pyav(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[unit]\nprofile = "tv"\n')
    probe = (
        "import sys; from vaka.agent import cli; from vaka.agent.gui_preload import "
        f"preload_gui_if_needed as p; p(__import__('pathlib').Path({str(path)!r})); "
        # The agent's configuration no longer loads PyAV (a call does): import what a call does.
        "import vaka.agent.config, vaka.agent.media.audio; mods = list(sys.modules); "
        "print(mods.index('cv2') < mods.index('av'))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
