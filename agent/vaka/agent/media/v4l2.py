"""A USB/CSI camera through Video4Linux2, read with OpenCV (works on any Linux board)."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from vaka.agent.media.source import BgrImage, CameraUnavailable, FrameSource

log = logging.getLogger(__name__)


class V4l2Source(FrameSource):
    """``cv2.VideoCapture(device, cv2.CAP_V4L2)`` at the requested size and frame rate.

    The camera paces :meth:`read`. If the driver picks another size than asked, frames come at
    the driver's size and a warning is logged once at open.
    """

    def __init__(
        self, device: str = "/dev/video0", width: int = 640, height: int = 480, fps: float = 15
    ) -> None:
        super().__init__(width, height, fps)
        self.device = device
        self.name = f"camera at {device}"
        self._capture: Any = None  # cv2.VideoCapture, imported lazily

    def _open(self) -> None:
        if not os.path.exists(self.device):
            raise CameraUnavailable(
                f"no camera at {self.device}: the device node does not exist "
                "(is the camera plugged in and its driver loaded?)"
            )
        import cv2  # only on units with a USB camera

        capture = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not capture.isOpened():
            capture.release()
            raise CameraUnavailable(
                f"no camera at {self.device}: it exists but could not be opened as a V4L2 "
                "capture device (busy, no permission for the video group, or not a camera)"
            )
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        capture.set(cv2.CAP_PROP_FPS, self.fps)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a stale queue
        actual = (
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        if actual != (self.width, self.height):
            log.warning(
                "%s delivers %dx%d instead of the %dx%d asked for",
                self.name,
                actual[0],
                actual[1],
                self.width,
                self.height,
            )
        self._capture = capture

    def _read(self) -> tuple[BgrImage, float]:
        if self._capture is None:
            raise CameraUnavailable(f"{self.name} is not open")
        ok, image = self._capture.read()
        captured_at = time.time()
        if not ok or image is None:
            raise CameraUnavailable(f"{self.name} stopped delivering frames (unplugged?)")
        if image.ndim == 2:  # some IR cameras deliver greyscale
            import cv2

            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        return np.asarray(image, dtype=np.uint8), captured_at

    def _close(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()
