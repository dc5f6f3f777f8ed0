"""The remote party's video on the TV: a consumer that keeps the newest received picture."""

from __future__ import annotations

import logging
from collections.abc import Callable

import av
import numpy as np

from vaka.agent.media.reader import TrackReader
from vaka.agent.media.source import BgrImage

log = logging.getLogger(__name__)

FrameCallback = Callable[[BgrImage], None]
"""Called on the event loop with each received picture (BGR ``uint8``, ``(height, width, 3)``)."""


class RemoteVideo(TrackReader):
    """Reads a remote video track in a task and keeps only the newest picture.

    Nothing queues up behind a slow screen: a screen that draws less often than frames arrive
    simply sees the newest one. The conversion to BGR (``frame.to_ndarray(format="bgr24")``) is
    done once per frame when ``on_frame`` is set, otherwise only when :attr:`latest` is read.

    :param on_frame: called with each received picture (the TV screen's
        ``show(InCall(remote_frame=...))``). It runs on the event loop and must be quick; if it
        raises, the error is logged (the first time, then counted in :attr:`callback_errors`)
        and reception goes on.
    """

    kind = "video"
    frame_type = av.VideoFrame

    def __init__(self, on_frame: FrameCallback | None = None) -> None:
        super().__init__()
        self.on_frame = on_frame
        self.callback_errors = 0
        "How many times ``on_frame`` raised."
        self._frame: av.VideoFrame | None = None
        self._image: BgrImage | None = None

    @property
    def latest(self) -> BgrImage | None:
        """The newest received picture as BGR ``uint8``, ``None`` before the first frame."""
        if self._image is None and self._frame is not None:
            self._image = np.asarray(self._frame.to_ndarray(format="bgr24"), dtype=np.uint8)
        return self._image

    @property
    def size(self) -> tuple[int, int] | None:
        """``(width, height)`` of the newest frame, ``None`` before the first."""
        if self._frame is None:
            return None
        return self._frame.width, self._frame.height

    def _take(self, frame: av.VideoFrame) -> None:
        if self.frames == 1:
            log.info("first remote video frame, %dx%d", frame.width, frame.height)
        self._frame, self._image = frame, None
        if self.on_frame is None:
            return
        image = self.latest
        assert image is not None
        try:
            self.on_frame(image)
        except Exception:
            self.callback_errors += 1
            if self.callback_errors == 1:
                log.exception("showing a remote video frame failed (further failures counted)")
