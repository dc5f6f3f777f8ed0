"""A camera that draws :mod:`vaka.rtc.pattern`: the fake beside the real cameras."""

from __future__ import annotations

import logging
import threading
import time

from vaka.agent.media.source import BgrImage, FrameSource
from vaka.rtc.pattern import draw_pattern

log = logging.getLogger(__name__)


class SyntheticSource(FrameSource):
    """Draws the test pattern with an increasing counter and the capture time in ms.

    :meth:`read` paces itself to ``fps`` like a real camera (sleeping until the next frame is
    due; if the reader falls behind, it does not try to catch up with a burst). ``night=True``
    (the default, as on the ``nightcam``) draws greyscale bars as an IR camera gives.
    ``still=True`` draws the first frame again and again (counter and time stand still): a
    scene where nothing moves.
    """

    name = "synthetic camera"

    def __init__(
        self,
        width: int = 640,
        height: int = 480,
        fps: float = 15,
        *,
        night: bool = True,
        still: bool = False,
    ):
        super().__init__(width, height, fps)
        self.night = night
        self.still = still
        self._still_at = 0
        self._counter = 0
        self._due = 0.0
        self._closing = threading.Event()

    def _open(self) -> None:
        # Check the size now, not at the first read: the pattern needs a minimum size.
        draw_pattern(self.width, self.height, 0, 0, night=self.night)
        self._counter = 0
        self._due = time.monotonic()
        self._closing.clear()

    def _read(self) -> tuple[BgrImage, float]:
        delay = self._due - time.monotonic()
        if delay > 0:
            self._closing.wait(delay)
        now = time.monotonic()
        self._due = max(self._due + 1.0 / self.fps, now)
        captured_at = time.time()
        stamp = round(captured_at * 1000)
        if self.still:
            self._still_at = self._still_at or stamp
            stamp = self._still_at
        image = draw_pattern(self.width, self.height, self._counter, stamp, night=self.night)
        self._counter += 0 if self.still else 1
        return image, captured_at

    def _close(self) -> None:
        self._closing.set()
