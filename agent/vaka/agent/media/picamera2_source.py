"""The Raspberry Pi camera (CSI, e.g. a NoIR module) through picamera2/libcamera.

``picamera2`` exists only on Raspberry Pi OS (``python3-picamera2`` from its apt repository,
which brings libcamera's Python bindings); it is imported inside :meth:`Picamera2Source.open`
so the rest of the agent runs anywhere.
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import Any

from vaka.agent.media.source import BgrImage, CameraUnavailable, FrameSource

log = logging.getLogger(__name__)


class Picamera2Source(FrameSource):
    """A picamera2 video configuration at the requested size, read with ``capture_array``.

    The main stream is ``RGB888``, which libcamera lays out as B, G, R: OpenCV's BGR order, no
    conversion needed. The camera paces :meth:`read` at ``fps`` (the ``FrameRate`` control).
    """

    def __init__(
        self, width: int = 640, height: int = 480, fps: float = 15, *, camera_num: int = 0
    ) -> None:
        super().__init__(width, height, fps)
        self.camera_num = camera_num
        self.name = f"Raspberry Pi camera {camera_num}"
        self._camera: Any = None

    def _open(self) -> None:
        try:
            module = importlib.import_module("picamera2")
        except ImportError as err:
            raise CameraUnavailable(
                f"{self.name} cannot be used: picamera2 is not installed ({err}); it needs "
                "python3-picamera2 from Raspberry Pi OS (apt install python3-picamera2)"
            ) from err
        try:
            camera = module.Picamera2(self.camera_num)
        except (RuntimeError, IndexError, OSError) as err:
            raise CameraUnavailable(f"no {self.name}: {err}") from err
        try:
            config = camera.create_video_configuration(
                main={"size": (self.width, self.height), "format": "RGB888"},
                controls={"FrameRate": float(self.fps)},
                buffer_count=4,
            )
            camera.configure(config)
            camera.start()
        except Exception as err:
            camera.close()
            raise CameraUnavailable(f"{self.name} could not be started: {err}") from err
        self._camera = camera

    def _read(self) -> tuple[BgrImage, float]:
        if self._camera is None:
            raise CameraUnavailable(f"{self.name} is not open")
        try:
            image: BgrImage = self._camera.capture_array("main")
        except Exception as err:
            raise CameraUnavailable(f"{self.name} stopped delivering frames: {err}") from err
        return image, time.time()

    def _close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            try:
                camera.stop()
            finally:
                camera.close()
