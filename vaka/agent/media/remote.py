"""The remote party's video on the TV: a consumer that keeps the newest received picture."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from vaka.agent.media.source import BgrImage

log = logging.getLogger(__name__)

FrameCallback = Callable[[BgrImage], None]
"""Called on the event loop with each received picture (BGR ``uint8``, ``(height, width, 3)``)."""


class RemoteVideo:
    """Reads a remote video track in a task and keeps only the newest picture.

    Every frame is taken from aiortc as soon as it is decoded, so nothing queues up behind a slow
    screen: a screen that draws less often than frames arrive simply sees the newest one. The
    conversion to BGR (``frame.to_ndarray(format="bgr24")``) is done once per frame when
    ``on_frame`` is set, otherwise only when :attr:`latest` is read.

    :param on_frame: called with each received picture (the TV screen's
        ``show(InCall(remote_frame=...))``). It runs on the event loop and must be quick; if it
        raises, the error is logged (the first time, then counted in :attr:`callback_errors`)
        and reception goes on.
    """

    def __init__(self, on_frame: FrameCallback | None = None) -> None:
        self.on_frame = on_frame
        self.frames = 0
        "Frames received."
        self.first_frame_at: float | None = None
        "``time.perf_counter()`` when the first frame arrived."
        self.callback_errors = 0
        "How many times ``on_frame`` raised."
        self.ended = asyncio.Event()
        "Set when the track ended or :meth:`stop` was called."
        self._frame: av.VideoFrame | None = None
        self._image: BgrImage | None = None
        self._task: asyncio.Task[None] | None = None

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

    @property
    def running(self) -> bool:
        """Whether a track is being read."""
        return self._task is not None and not self._task.done()

    def start(self, track: MediaStreamTrack) -> None:
        """Start reading ``track`` (a video track). Call from the event loop.

        :raises ValueError: ``track`` is not video, or a track is already being read.
        """
        if track.kind != "video":
            raise ValueError(f"remote video needs a video track, got {track.kind}")
        if self.running:
            raise ValueError("remote video already reads a track")
        self.ended.clear()
        self._task = asyncio.get_running_loop().create_task(self._consume(track))

    async def stop(self) -> None:
        """Stop reading. The newest picture stays available. Safe twice."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.ended.set()

    async def _consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    log.info("remote video ended after %d frames", self.frames)
                    return
                if isinstance(frame, av.VideoFrame):
                    self._take(frame)
        finally:
            self.ended.set()

    def _take(self, frame: av.VideoFrame) -> None:
        if self.first_frame_at is None:
            self.first_frame_at = time.perf_counter()
            log.info("first remote video frame, %dx%d", frame.width, frame.height)
        self.frames += 1
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
