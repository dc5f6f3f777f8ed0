"""Load OpenCV's GUI libraries before anything loads PyAV, when the unit will open its screen.

opencv-python and PyAV each bring their own copies of shared libraries (FFmpeg's among them);
whichever the process loads first is used by both. With PyAV first, OpenCV's Qt window fails to
open (measured here: ``ScreenError`` on every attempt); with OpenCV first, both work. aiortc
imports PyAV, and so do the agent's configuration and call modules, so the agent's entry point
calls :func:`preload_gui_if_needed` before importing them. This module imports nothing heavy.
"""

import tomllib
from pathlib import Path


def needs_window(config_path: Path) -> bool:
    """Whether the agent configured at ``config_path`` opens the TV screen's window: the ``tv``
    profile with ``[tv] screen`` not ``headless`` (an unreadable file says no: the
    configuration's own loading reports the problem)."""
    try:
        data = tomllib.loads(config_path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False
    unit, tv = data.get("unit", {}), data.get("tv", {})
    if not isinstance(unit, dict) or not isinstance(tv, dict):
        return False
    return unit.get("profile") == "tv" and tv.get("screen", "auto") != "headless"


def preload_gui_if_needed(config_path: Path) -> bool:
    """Import OpenCV now if the configured unit opens a window; returns whether it did."""
    if not needs_window(config_path):
        return False
    import cv2  # noqa: F401 - loaded for its libraries' sake, see the module docstring

    return True
