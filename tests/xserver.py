"""A private X server (Xvfb) for tests of the TV unit's real window, and ways to look at it
(ImageMagick's ``import``) and click on it (``xdotool``, real X events)."""

import os
import select
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def xdisplay() -> Iterator[str]:
    """A private Xvfb at 1280x720 on a display number it picks itself; DISPLAY points to it."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (Debian package xvfb; scripts/setup.sh installs it)")
    read, write = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    number = b""
    while not number.endswith(b"\n") and select.select([read], [], [], 10)[0]:
        chunk = os.read(read, 16)
        if not chunk:
            break
        number += chunk
    os.close(read)
    old = os.environ.get("DISPLAY")
    try:
        assert number.strip().isdigit(), "Xvfb did not start"
        os.environ["DISPLAY"] = f":{number.decode().strip()}"
        yield os.environ["DISPLAY"]
    finally:
        if old is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = old
        xvfb.terminate()
        xvfb.wait(5)


def screenshot(path: Path) -> np.ndarray:
    """The whole X screen, RGB (blocking)."""
    subprocess.run(["import", "-window", "root", str(path)], check=True)
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def xdotool(*args: str) -> None:
    """Run ``xdotool`` (blocking)."""
    subprocess.run(["xdotool", *args], check=True)
