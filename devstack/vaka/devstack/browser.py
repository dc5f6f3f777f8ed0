"""The browser for the staff console on this machine: Debian's Chromium, headless, fake camera.

Playwright drives it; its own browser downloads are never used (``playwright install`` is not
run). The tests and the console screenshots start Chromium with these flags and viewports.
"""

import os
from pathlib import Path

CHROMIUM = Path(os.environ.get("VAKA_CHROMIUM", "/usr/bin/chromium"))
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
VIEWPORTS = {"phone": (390, 844), "tablet": (820, 1180), "desktop": (1280, 800)}
